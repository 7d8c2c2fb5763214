"""A second opinion for the out-of-scope rule: a logistic regression over the lemmas and lemma pairs of a
request, trained on the tuning part of the labelled corpus (tests/data/policy_corpus.jsonl) by
`python -m scripts.train_text_models`, its weights shipped in `config/defaults/out_of_scope_model.json`.

Why beside the rules: the rules read structure (an ask about a subject that is not ours) and explain
themselves, but every phrasing they were not written for is a miss, and every innocent use of a work verb
they were not written for is a false alarm. Measured on batches of requests held out by writer, the model
alone is as precise as the rules and both err on different requests. So the rule decides, and the model
only overrules it where it is confident (thresholds in `out_of_scope.toml`, `[model]`):

- a rule finding is dropped when the model gives the request less than `veto_below` ("разберитесь, почему
  ваш сервис списал дважды" reads as a report whatever its verbs);
- a request the rule lets through is found out of scope when the model gives it more than `rescue_above`,
  with the topic the model picks and the words that weighed most as evidence.

The features are cheap: the lemmas are the ones the rules look up anyway (memoised), and scoring is one
dictionary probe per feature. The domain stays pure: no I/O but reading the weights file once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from models.policy.text_model import (
    Feature,
    LinearModel,
    feature_names,
    lemmatise,
    lemmatise_prefix,
    linear_from_json,
    linear_to_json,
    weightiest,
)

MODEL_FILE = "out_of_scope_model.json"
_EVIDENCE_WORDS = 3


@dataclass(frozen=True)
class ScopeModel:
    out_of_scope: LinearModel  # is the request out of scope at all
    topics: dict[str, LinearModel]  # one against the rest, over the out-of-scope requests: which topic
    veto_below: float
    rescue_above: float

    def probability(self, subject: str, body: str, whole: str | None = None) -> float:
        """How sure the model is that the request is out of scope, 0-1: run on every request. `body` may be
        the start of `whole` (the new text before its signature): the lemmas are then cut from the whole's,
        which the unclear rule's model scores too."""
        if whole is not None and whole.startswith(body):
            return self.out_of_scope.score(lemmatise_prefix(subject, whole, len(body)))
        return self.out_of_scope.score(lemmatise(subject, body))

    def opinion(self, subject: str, body: str) -> ScopeOpinion:
        """The probability with the topic and the words behind it: run only when the model finds a request
        the rule let through."""
        names = feature_names(subject, body)
        topic = max(sorted(self.topics), key=lambda t: self.topics[t].margin(names)) if self.topics else None
        evidence = weightiest(self.out_of_scope, subject, body, _EVIDENCE_WORDS)
        return ScopeOpinion(self.out_of_scope.probability(names), topic, evidence)


@dataclass(frozen=True)
class ScopeOpinion:
    probability: float
    topic: str | None
    evidence: list[Feature]


def model_to_json(model: ScopeModel, meta: dict[str, Any]) -> dict[str, Any]:
    return {"meta": meta, "out_of_scope": linear_to_json(model.out_of_scope),
            "topics": {name: linear_to_json(m) for name, m in sorted(model.topics.items())}}


def load_model_file(path: Path, veto_below: float, rescue_above: float) -> ScopeModel:
    data = json.loads(path.read_text(encoding="utf-8"))
    return ScopeModel(linear_from_json(data["out_of_scope"]),
                      {k: linear_from_json(v) for k, v in data["topics"].items()}, veto_below, rescue_above)
