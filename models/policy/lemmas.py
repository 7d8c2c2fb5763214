"""Word forms: tokenise text and match phrases on lemmas (pymorphy3), so "помогите написать скрипт"
matches the listed phrase "помочь написать скрипт" whatever the case, number or tense.

The analyser is built once per process and lemma look-ups are memoised: the same few thousand words
recur in support mail, and pymorphy3 parsing is the expensive step of every text rule.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple

import pymorphy3

# Letters only (digits are facts, not words); inner hyphens keep "онлайн-касса" as one word.
_WORD = re.compile(r"[^\W\d_]+(?:-[^\W\d_]+)*")
_CYRILLIC = re.compile(r"[а-яё]")


class Token(NamedTuple):
    # A named tuple rather than a frozen dataclass: a request makes a few hundred of these, and a frozen
    # dataclass's __init__ (object.__setattr__ per field) was two thirds of the cost of tokenising.
    text: str  # as written
    start: int
    end: int
    lemma: str


@dataclass(frozen=True, slots=True)
class PhraseHit:
    key: str  # what the phrase belongs to (a category, an FAQ entry id...)
    phrase: str  # the phrase as listed in the configuration
    text: str  # the matched span as written in the mail
    start: int
    end: int


@lru_cache(maxsize=1)
def analyzer() -> pymorphy3.MorphAnalyzer:
    # Loading the dictionaries takes ~0.1 s and tens of MB: once per process.
    return pymorphy3.MorphAnalyzer()


@lru_cache(maxsize=200_000)
def lemma(word: str) -> str:
    """Normal form of one word: pymorphy3 for Russian, a light plural strip for English."""
    w = word.casefold().replace("ё", "е")
    if _CYRILLIC.search(w):
        return analyzer().parse(w)[0].normal_form.replace("ё", "е")
    # English: no morphology dictionary installed; "scripts" -> "script" is enough for phrase lists,
    # which list other forms ("writing code") explicitly.
    if len(w) > 3 and w.endswith("s") and not w.endswith(("ss", "us", "is")):
        return w[:-1]
    return w


def tokenize(text: str) -> list[Token]:
    return [Token(text[start:end], start, end, lem) for (start, end), lem in zip(_spans(text).all(), lemmas_of(text),
                                                                                   strict=True)]


# Several rules (out of scope, FAQ, password change, unclear...) read the same subject and text of one
# request: small caches of recent texts make the work once per text. The lemmas are what matching
# needs; the character spans only matter for a hit, so they are found only then.
@lru_cache(maxsize=32)
def lemmas_of(text: str) -> tuple[str, ...]:
    # findall and map run in C; building a Token per word was most of the cost of the text rules.
    return tuple(map(lemma, _WORD.findall(text)))


@lru_cache(maxsize=32)
def _lemma_set(text: str) -> frozenset[str]:
    return frozenset(lemmas_of(text))


class _WordSpans:
    """The character spans of a text's words, found only as far as they are asked for: a phrase hit
    needs the spans of its own words, usually near the start of the text, not of every word."""

    __slots__ = ("_found", "_words")

    def __init__(self, text: str) -> None:
        self._found: list[tuple[int, int]] = []
        self._words = _WORD.finditer(text)

    def __getitem__(self, index: int) -> tuple[int, int]:
        found = self._found
        while len(found) <= index:
            found.append(next(self._words).span())  # StopIteration: no such word, a caller's bug
        return found[index]

    def all(self) -> list[tuple[int, int]]:
        self._found.extend(m.span() for m in self._words)
        return self._found


@lru_cache(maxsize=32)
def _spans(text: str) -> _WordSpans:
    return _WordSpans(text)


class PhraseMatcher:
    """Finds listed phrases as lemma sequences in a text.

    Up to `max_gap` other words may stand between the words of a phrase ("настроить наш скрипт"
    matches "настроить скрипт"), but order is kept: listing both orders is the configuration's job.
    """

    def __init__(self, phrases: Iterable[tuple[str, str]], max_gap: int = 2) -> None:
        self.max_gap = max_gap
        self._phrases = list(phrases)
        self._index: tuple[dict[str, list[tuple[str, str, tuple[str, ...]]]], frozenset[str]] | None = None

    def _indexed(self) -> tuple[dict[str, list[tuple[str, str, tuple[str, ...]]]], frozenset[str]]:
        # Built on the first search, not with the matcher: lemmatising the phrases loads the morphology
        # dictionaries (about 0.1 s and 24 MB), which a process whose texts are analysed by its parse
        # workers never needs. Index by first lemma so a text is scanned once, whatever the phrases.
        if self._index is None:
            by_first: dict[str, list[tuple[str, str, tuple[str, ...]]]] = {}
            for key, phrase in self._phrases:
                seq = lemmas_of(phrase)
                if seq:
                    by_first.setdefault(seq[0], []).append((key, phrase, seq))
            self._index = by_first, frozenset(by_first)
        return self._index

    def __len__(self) -> int:
        return sum(len(v) for v in self._indexed()[0].values())

    def find(self, text: str, tokens: Sequence[Token] | None = None) -> list[PhraseHit]:
        if tokens is None:
            lemmas, spans, present = lemmas_of(text), None, _lemma_set(text)
        else:
            lemmas, spans = tuple(t.lemma for t in tokens), tuple((t.start, t.end) for t in tokens)
            present = frozenset(lemmas)
        # Only phrases all of whose words occur in the text can match: usually none, and then the text
        # is not walked at all (a phrase starting with a common word like "не" made that walk costly).
        index, firsts = self._indexed()
        by_first: dict[str, list[tuple[str, str, tuple[str, ...]]]] = {}
        for first in firsts & present:
            possible = [entry for entry in index[first] if present.issuperset(entry[2])]
            if possible:
                by_first[first] = possible
        hits: list[PhraseHit] = []
        if not by_first:
            return hits
        # Only the positions of the possible first words are visited, found by tuple.index (a C scan)
        # instead of a Python loop over every word; hits come out in text order as before.
        found: list[tuple[int, int, PhraseHit]] = []
        for first, entries in by_first.items():
            i = -1
            while True:
                try:
                    i = lemmas.index(first, i + 1)
                except ValueError:
                    break
                for order, (key, phrase, seq) in enumerate(entries):
                    end = self._match_rest(lemmas, i, seq)
                    if end is not None:
                        spans = spans or _spans(text)
                        start_char, end_char = spans[i][0], spans[end][1]
                        found.append((i, order, PhraseHit(key, phrase, text[start_char:end_char], start_char,
                                                          end_char)))
        found.sort(key=lambda f: (f[0], f[1]))
        return [hit for _, _, hit in found]

    def _match_rest(self, lemmas: Sequence[str], i: int, seq: tuple[str, ...]) -> int | None:
        pos = i
        for want in seq[1:]:
            for j in range(pos + 1, min(pos + 2 + self.max_gap, len(lemmas))):
                if lemmas[j] == want:
                    pos = j
                    break
            else:
                return None
        return pos
