"""What the trained text models share (models/policy/scope_model.py, models/policy/nudge_model.py): the
features of a request (lemmas and pairs of neighbouring lemmas, pymorphy3 through the memoised `lemma`), a
logistic regression over them, and its JSON form. Trained by `python -m scripts.train_text_models`."""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import repeat
from typing import Any, NamedTuple

from models.policy.lemmas import lemma

# Letters only, inner hyphens and apostrophes kept: digits and codes are facts, not wording.
_WORD = re.compile(r"[^\W\d_]+(?:['’-][^\W\d_]+)*")


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


class Lemmas(NamedTuple):
    """The lemmas of the subject line and of the body, in text order: what a model scores."""

    subject: tuple[str, ...]
    body: tuple[str, ...]


# Both models score the same request one after the other (the unclear rule's the whole new text, the
# out-of-scope rule's its part before the signature): the lemmas are made once and kept for the next call.
@lru_cache(maxsize=8)
def lemmatise(subject: str, body: str) -> Lemmas:
    return Lemmas(tuple(map(lemma, _WORD.findall(subject))), tuple(map(lemma, _WORD.findall(body))))


def lemmatise_prefix(subject: str, body: str, end: int) -> Lemmas:
    """The lemmas of `subject` and `body[:end]`, cut from those of the whole body. `end` must fall between
    words (the signature cut falls at a line's start), so the words before it are the whole body's first."""
    whole = lemmatise(subject, body)
    if end >= len(body):
        return whole
    return Lemmas(whole.subject, whole.body[: len(_WORD.findall(body, 0, end))])


@dataclass(frozen=True)
class LinearModel:
    bias: float
    weights: dict[str, float]  # by feature name: "u:сайт", "b:наш_сайт"
    # The same weights keyed for `score`: a lemma, and a pair of lemmas as a tuple, so a request's features
    # are made by set() and zip() in C rather than by a string concatenation per word (the names cost
    # 3-4x as much in the policy benchmark, where every request is scored twice).
    unigrams: dict[str, float] = field(default_factory=dict, compare=False, repr=False)
    bigrams: dict[tuple[str, str], float] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        for name, w in self.weights.items():
            kind, _, rest = name.partition(":")
            if kind == "u":
                self.unigrams[rest] = w
            elif kind == "b":
                first, _, second = rest.partition("_")  # lemmas have no "_": `_WORD` excludes it
                self.bigrams[(first, second)] = w

    def margin(self, names: Collection[str]) -> float:
        # map over dict.get with a repeated default: the loop stays in C (a generator cost twice as much).
        return self.bias + sum(map(self.weights.get, names, repeat(0.0, len(names))))

    def probability(self, names: Collection[str]) -> float:
        return _sigmoid(self.margin(names))

    def score(self, lemmas: Lemmas) -> float:
        """The probability of `feature_names` for the text the lemmas came from, made without the names."""
        uni = set(lemmas.subject)
        uni.update(lemmas.body)
        pairs = set(zip(lemmas.subject, lemmas.subject[1:], strict=False))
        pairs.update(zip(lemmas.body, lemmas.body[1:], strict=False))
        return _sigmoid(self.bias + sum(map(self.unigrams.get, uni, repeat(0.0, len(uni))))
                        + sum(map(self.bigrams.get, pairs, repeat(0.0, len(pairs)))))


def _sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, z))))


def linear_to_json(m: LinearModel) -> dict[str, Any]:
    return {"bias": m.bias, "weights": dict(sorted(m.weights.items()))}


def linear_from_json(d: dict[str, Any]) -> LinearModel:
    return LinearModel(float(d["bias"]), {str(k): float(v) for k, v in d["weights"].items()})


def weightiest(model: LinearModel, subject: str, body: str, count: int) -> list[Feature]:
    """The `count` features that pushed hardest towards the model's class, first span of each, in text order
    (subject first): the words a finding shows as its evidence."""
    first: dict[str, Feature] = {}
    for f in features(subject, body):
        first.setdefault(f.name, f)
    weights = model.weights
    top = sorted((n for n in first if weights.get(n, 0.0) > 0), key=lambda n: -weights[n])[:count]
    return sorted((first[n] for n in top), key=lambda f: (f.where != "subject", f.start))
