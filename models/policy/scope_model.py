"""A second opinion for the out-of-scope rule: a logistic regression over the lemmas and lemma pairs of a
request, trained on the tuning part of the labelled corpus (tests/data/policy_corpus.jsonl) by
`python -m scripts.train_scope_model`, its weights shipped in `config/defaults/out_of_scope_model.json`.

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

import itertools
import json
import math
import re
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from itertools import repeat
from pathlib import Path
from typing import Any

from models.policy.lemmas import lemma

# Letters only, inner hyphens and apostrophes kept: digits and codes are facts, not wording.
_WORD = re.compile(r"[^\W\d_]+(?:['’-][^\W\d_]+)*")
MODEL_FILE = "out_of_scope_model.json"
_EVIDENCE_WORDS = 3


@dataclass(frozen=True, slots=True)
class Feature:
    name: str  # "u:сайт" (a lemma) or "b:наш_сайт" (a pair of neighbouring lemmas)
    where: str  # "subject" or "body"
    start: int
    end: int


def features(subject: str, body: str) -> Iterator[Feature]:
    """The request's features, in text order, each with the span that shows it (a repeated feature is
    yielded each time; callers keep the first). Pairs do not cross from the subject line into the body."""
    for where, text in (("subject", subject), ("body", body)):
        prev: tuple[str, int] | None = None
        for m in _WORD.finditer(text):
            lem = lemma(m.group())
            yield Feature("u:" + lem, where, m.start(), m.end())
            if prev is not None:
                yield Feature(f"b:{prev[0]}_{lem}", where, prev[1], m.end())
            prev = (lem, m.start())


def feature_names(subject: str, body: str) -> set[str]:
    """The names `features` yields, made without spans: the per-request path (findall and a memoised
    lemma map; building a `Feature` per word cost four times as much)."""
    names: set[str] = set()
    for text in (subject, body):
        lems = list(map(lemma, _WORD.findall(text)))
        names.update(["u:" + lem for lem in lems])
        names.update([f"b:{a}_{b}" for a, b in itertools.pairwise(lems)])
    return names


@dataclass(frozen=True)
class LinearModel:
    bias: float
    weights: dict[str, float]

    def margin(self, names: Collection[str]) -> float:
        # map over dict.get with a repeated default: the loop stays in C (a generator cost twice as much).
        return self.bias + sum(map(self.weights.get, names, repeat(0.0, len(names))))

    def probability(self, names: Collection[str]) -> float:
        return _sigmoid(self.margin(names))


def _sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, z))))


@dataclass(frozen=True)
class ScopeModel:
    out_of_scope: LinearModel  # is the request out of scope at all
    topics: dict[str, LinearModel]  # one against the rest, over the out-of-scope requests: which topic
    veto_below: float
    rescue_above: float

    def probability(self, subject: str, body: str) -> float:
        """How sure the model is that the request is out of scope, 0-1: run on every request."""
        return self.out_of_scope.probability(feature_names(subject, body))

    def opinion(self, subject: str, body: str) -> ScopeOpinion:
        """The probability with the topic and the words behind it: run only when the model finds a request
        the rule let through."""
        found = list(features(subject, body))
        names = {f.name for f in found}
        topic = max(sorted(self.topics), key=lambda t: self.topics[t].margin(names)) if self.topics else None
        # The evidence: the features that pushed hardest towards "out of scope", first span of each.
        first: dict[str, Feature] = {}
        for f in found:
            first.setdefault(f.name, f)
        weights = self.out_of_scope.weights
        top = sorted((n for n in first if weights.get(n, 0.0) > 0), key=lambda n: -weights[n])[:_EVIDENCE_WORDS]
        spans = sorted((first[n] for n in top), key=lambda f: (f.where != "subject", f.start))
        return ScopeOpinion(self.out_of_scope.probability(names), topic, spans)


@dataclass(frozen=True)
class ScopeOpinion:
    probability: float
    topic: str | None
    evidence: list[Feature]


def model_to_json(model: ScopeModel, meta: dict[str, Any]) -> str:
    def linear(m: LinearModel) -> dict[str, Any]:
        return {"bias": m.bias, "weights": dict(sorted(m.weights.items()))}

    data = {"meta": meta, "out_of_scope": linear(model.out_of_scope),
            "topics": {name: linear(m) for name, m in sorted(model.topics.items())}}
    return json.dumps(data, ensure_ascii=False, indent=0, sort_keys=False) + "\n"


def load_model_file(path: Path, veto_below: float, rescue_above: float) -> ScopeModel:
    data = json.loads(path.read_text(encoding="utf-8"))

    def linear(d: dict[str, Any]) -> LinearModel:
        return LinearModel(float(d["bias"]), {str(k): float(v) for k, v in d["weights"].items()})

    return ScopeModel(linear(data["out_of_scope"]), {k: linear(v) for k, v in data["topics"].items()},
                      veto_below, rescue_above)
