"""The words of ticket search: what a message is indexed under, what a query asks for, where a text hits.

Pure text work (no database, no tortoise), so a parse worker can make a mail's index terms beside the
policy's analysis, which has already lemmatised the same subject and text (`models/policy/lemmas.py`
memoises both the texts and the words: the extra cost is the join and one scan for exact tokens).

Two kinds of term, both lower-cased with "ё" as "е":
- a word (letters, maybe with inner hyphens: "онлайн-касса") is indexed and asked for by its lemma, so
  "письмо покупателю" finds "письма покупателям" and "пароля" finds "пароль";
- anything else is an exact token: "полярный-7", "e512", an order number, "ivan@romashka.ru" (plus its
  domain "romashka.ru") and the digit parts of a compound ("д-2024/117": "2024", "117").
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from models.policy.lemmas import lemma, lemmas_of

# Words as the policy sees them: letters with inner hyphens (models/policy/lemmas.py `_WORD`).
_WORD = re.compile(r"[^\W\d_]+(?:-[^\W\d_]+)*")
# Compound tokens: word characters joined by the separators of codes, numbers and addresses.
_TOKEN = re.compile(r"\w+(?:[-./@+]\w+)*")
_PARTS = re.compile(r"[^-./@+_]+")
# The characters an index term may hold besides letters and digits; the SQLite FTS5 tokenizer keeps them
# inside a token (migration 0003), so a term is one token there.
TOKEN_CHARS = "-_.@/+"
MAX_TOKEN = 100  # longer "tokens" are base64 or junk, not something anyone types
# Text read per message: the policy's cut (models/policy/base.py POLICY_TEXT_CHARS), so in a parse worker
# the lemmas of the same string come from its caches.
INDEX_CHARS = 64 * 1024
# Words a query asks nothing by (PostgreSQL's `russian` configuration drops them as stop words as well).
STOP_WORDS = frozenset(
    "в во на и а но не ни по с со к ко у о об от до за из для что как же ли бы то или из-за the a an of to in"
    " and or is".split()
)


def norm(token: str) -> str:
    return token.casefold().replace("ё", "е")


def exact_tokens(text: str) -> list[str]:
    """The exact tokens of `text` (not plain words): compounds, their domain and digit parts."""
    out: list[str] = []
    for token in _TOKEN.findall(text):
        if len(token) > MAX_TOKEN or _WORD.fullmatch(token):
            continue
        key = norm(token)
        out.append(key)
        if "@" in key:
            out.append(key.rsplit("@", 1)[1])
        if not key.isalnum():
            out.extend(part for part in _PARTS.findall(key) if part != key and any(c.isdigit() for c in part))
    return out


def index_terms(texts: Iterable[str]) -> str:
    """The terms one message is indexed under, space-separated, each once: the lemmas of its words and
    its exact tokens."""
    terms: dict[str, None] = {}
    for text in texts:
        text = text[:INDEX_CHARS]
        terms.update(dict.fromkeys(lemmas_of(text)))
        terms.update(dict.fromkeys(exact_tokens(text)))
    terms.pop("", None)
    return " ".join(terms)


@dataclass(frozen=True, slots=True)
class Term:
    typed: str  # as the staff typed it (PostgreSQL parses this with its own configuration)
    key: str  # the lemma of a word, or the exact token
    exact: bool


def query_terms(text: str) -> tuple[Term, ...]:
    """The terms of a query, each once, without stop words."""
    terms: dict[str, Term] = {}
    for token in _TOKEN.findall(text):
        token = token[:MAX_TOKEN]
        if _WORD.fullmatch(token):
            if norm(token) in STOP_WORDS:
                continue
            term = Term(token, lemma(token), exact=False)
        else:
            term = Term(token, norm(token), exact=True)
        terms.setdefault(term.key, term)
    return tuple(terms.values())


def hit_spans(text: str, terms: Sequence[Term]) -> list[tuple[int, int]]:
    """Where `text` says one of `terms` (by lemma or exactly), in text order."""
    words = {t.key for t in terms if not t.exact}
    exact = {t.key for t in terms if t.exact}
    spans: list[tuple[int, int]] = []
    for match in _TOKEN.finditer(text):
        token, start = match.group(), match.start()
        if norm(token) in exact:
            spans.append(match.span())
            continue
        for part in _PARTS.finditer(token):
            if norm(part.group()) in exact:
                spans.append((start + part.start(), start + part.end()))
                continue
            for word in _WORD.finditer(part.group()):
                if word.group() and words and lemma(word.group()) in words:
                    offset = start + part.start()
                    spans.append((offset + word.start(), offset + word.end()))
        if words and _WORD.fullmatch(token) and "-" in token and lemma(token) in words:
            spans.append(match.span())
    return sorted(set(spans))


_SPACES = re.compile(r"\s+")
SNIPPET_CHARS = 180
SCAN_CHARS = 8000  # a snippet is looked for at the start of a long text only


def snippet(text: str, terms: Sequence[Term], width: int = SNIPPET_CHARS) -> tuple[tuple[str, bool], ...]:
    """About `width` characters of `text` around its first hit, as (piece, is_hit) pieces with the
    whitespace collapsed; the start of the text when nothing hits."""
    text = text[:SCAN_CHARS]
    spans = hit_spans(text, terms)
    first = spans[0][0] if spans else 0
    start = max(0, first - width // 3)
    if start:
        space = text.find(" ", start, first)
        start = space + 1 if space >= 0 else start
    end = min(len(text), start + width)
    if end < len(text):
        space = text.rfind(" ", max(start, spans[0][1] if spans else start), end)
        end = space if space > 0 else end
    pieces: list[tuple[str, bool]] = [("…", False)] if start else []
    at = start
    for s, e in spans:
        if s < at or e > end:
            continue
        pieces.append((text[at:s], False))
        pieces.append((text[s:e], True))
        at = e
    pieces.append((text[at:end], False))
    if end < len(text):
        pieces.append(("…", False))
    out = [(piece if hit else _SPACES.sub(" ", piece), hit) for piece, hit in pieces]
    if out and not out[0][1]:
        out[0] = (out[0][0].lstrip(), False)
    if out and not out[-1][1]:
        out[-1] = (out[-1][0].rstrip(), False)
    out = [(piece, hit) for piece, hit in out if piece]
    return tuple(out)


def hit_count(text: str, terms: Sequence[Term]) -> int:
    """How many of `terms` `text` says (the message shown for a ticket is the one saying most)."""
    found = set()
    words = {t.key for t in terms if not t.exact}
    for s, e in hit_spans(text[:SCAN_CHARS], terms):
        piece = text[s:e]
        found.add(lemma(piece) if _WORD.fullmatch(piece) and words else norm(piece))
    return len(found)
