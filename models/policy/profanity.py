"""Obscene language and insult detector for clause 2.6 of the support regulations.

Clause 2.6 lets support refuse a request that uses "нецензурная лексика и оскорбления". This
module only finds evidence; a person decides. Design, and why:

* No third-party profanity list: those flag "команда"/"корабля" or miss "п*здец". The word
  data is ours, in ``config/defaults/profanity.toml``, editable by operators.
* Every word is normalised before matching (look-alike letters, case, ё, repeated letters,
  masks, letters spread out with spaces or dots), and roots only match at the START of a word
  after an optional known prefix. Anchoring is what keeps "употреблять", "застрахуйте",
  "рубля", "Scunthorpe" clean without long exception lists.
* Hits always point at the original characters (``text[hit.start:hit.end] == hit.word``),
  so staff see exactly what the customer wrote.
* Speed: all roots of one script are compiled into a single regex, and verdicts are cached
  per distinct word, so a typical email costs a dictionary lookup per word.
"""

from __future__ import annotations

import itertools
import re
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_CONFIG_PATH = Path(__file__).resolve().parents[2] / "config" / "defaults" / "profanity.toml"

CATEGORIES = ("obscene", "insult", "english", "accusation")
_DEFAULT_SCRIPT = {"obscene": "cyrillic", "insult": "cyrillic", "english": "latin", "accusation": "cyrillic"}

_WILDCARD = "?"  # what a mask character becomes in a normalised word
_CACHE_LIMIT = 50_000

# A word: letters/digits, mask characters, and invisible characters people use to split a
# word so that a filter misses it (soft hyphen, zero-width joiners, combining stress marks).
_INVISIBLE = "\u00ad\u200b\u200c\u200d\u2060\ufeff\u0300-\u036f"
_TOKEN_RE = re.compile(rf"(?:[^\W_]|[*#@{_INVISIBLE}])+")
_INVISIBLE_TABLE = {cp: None for cp in [0xAD, 0x200B, 0x200C, 0x200D, 0x2060, 0xFEFF, *range(0x300, 0x370)]}
# Gap between letters of a spread-out word: "х у й", "п.и.з.д.е.ц", "х-у-й", "б_л_я".
_SPREAD_GAP_RE = re.compile(r"[\s._\-]{1,3}")
_URL_OR_EMAIL_RE = re.compile(r"(?:https?://|www\.)\S+|[\w.+-]+@[\w-]+(?:\.[\w-]+)+", re.IGNORECASE)
_HAS_CYRILLIC_RE = re.compile("[а-яёА-ЯЁіїєІЇЄ]")
_PURE_CYRILLIC_RE = re.compile("[а-яёА-ЯЁ]+")
_REPEAT_RE = re.compile(r"([^?])\1+")
_MASK_RUN_RE = re.compile(r"\?+")
_SPREAD_MASKS_RE = re.compile(r"(?:[^?]\?)+[^?]")  # "х*у*й": masks used as separators
_GROUP_OPEN_RE = re.compile(r"\(\?(?:[:=!]|<[=!])")
_PHRASE_GAP = r"[^\w.!?]+"


@dataclass(frozen=True)
class ProfanityHit:
    """One offending word (or short phrase) with evidence for staff."""

    word: str  # exactly as written, e.g. "х у й" or "п*здец"
    start: int  # offsets into the checked text: text[start:end] == word
    end: int
    category: str  # "obscene" | "insult" | "english" | "accusation"
    root: str  # the config entry that matched


@dataclass(frozen=True)
class ProfanityEntry:
    category: str
    root: str
    pattern: str  # fullmatch regex over one normalised word, written without doubled letters
    script: str = "cyrillic"  # which normalised form of a word it is matched against
    prefixes: bool = False  # allow up to two Russian prefixes before the pattern
    exclude_prefixes: tuple[str, ...] = ()
    skip_titlecase: bool = False  # "Dick"/"Козел" capitalised is a name or a brand


@dataclass(frozen=True)
class PhraseRule:
    category: str
    root: str
    pattern: str  # regex over lower-cased text; a space stands for a gap inside one sentence


@dataclass(frozen=True)
class ProfanityConfig:
    lookalikes: Mapping[str, str]
    strong_lookalikes: frozenset[str]
    latin_leet: Mapping[str, str]
    mask_chars: str
    prefixes: tuple[str, ...]
    exception_words: frozenset[str]
    exception_stems: tuple[str, ...]
    exception_phrases: tuple[str, ...]
    entries: tuple[ProfanityEntry, ...]
    phrases: tuple[PhraseRule, ...]


# ----------------------------------------------------------------------------- config


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """Overlay an operator file on the defaults: tables merge, lists append, scalars replace."""
    merged = dict(base)
    for key, value in extra.items():
        old = merged.get(key)
        if isinstance(old, dict) and isinstance(value, dict):
            merged[key] = _merge(old, value)
        elif isinstance(old, list) and isinstance(value, list):
            merged[key] = old + value
        else:
            merged[key] = value
    return merged


def _read_toml(path: Path) -> dict[str, Any]:
    with path.open("rb") as fh:
        return tomllib.load(fh)


def load_config(path: Path | None = None) -> ProfanityConfig:
    """Load word data. A custom file with ``extend_defaults = true`` is merged onto the
    defaults; any other custom file replaces them (so an operator can also remove words)."""
    raw = _read_toml(DEFAULT_CONFIG_PATH)
    if path is not None and Path(path) != DEFAULT_CONFIG_PATH:
        custom = _read_toml(Path(path))
        raw = _merge(raw, custom) if custom.get("extend_defaults") else custom
    return _parse_config(raw)


def _parse_config(raw: dict[str, Any]) -> ProfanityConfig:
    norm = raw.get("normalise", {})
    exc = raw.get("exceptions", {})
    entries: list[ProfanityEntry] = []
    for category in CATEGORIES:
        for item in raw.get(category, []):
            entries.append(
                ProfanityEntry(
                    category=category,
                    root=str(item["root"]),
                    pattern=str(item["pattern"]),
                    script=str(item.get("script", _DEFAULT_SCRIPT[category])),
                    prefixes=bool(item.get("prefixes", False)),
                    exclude_prefixes=tuple(item.get("exclude_prefixes", ())),
                    skip_titlecase=bool(item.get("skip_titlecase", False)),
                )
            )
    phrases = []
    for item in raw.get("phrase", []):
        if item["category"] not in CATEGORIES:
            raise ValueError(f"profanity phrase {item.get('root')!r}: unknown category {item['category']!r}")
        phrases.append(PhraseRule(str(item["category"]), str(item["root"]), str(item["pattern"])))
    for entry in entries:
        if entry.script not in ("cyrillic", "latin"):
            raise ValueError(f"profanity entry {entry.root!r}: script must be 'cyrillic' or 'latin'")
    # Exception words go through the same normalisation as text, so "ебитда" and "сучков"
    # may be written naturally (with doubled letters or ё) in the file.
    return ProfanityConfig(
        lookalikes=dict(norm.get("lookalikes", {})),
        strong_lookalikes=frozenset(norm.get("strong_lookalikes", "")),
        latin_leet=dict(norm.get("latin_leet", {})),
        mask_chars=str(norm.get("mask_chars", "*#@")),
        prefixes=tuple(raw.get("prefixes", {}).get("russian", ())),
        exception_words=frozenset(_plain_normalise(w) for w in exc.get("words", ())),
        exception_stems=tuple(_plain_normalise(w) for w in exc.get("stems", ())),
        exception_phrases=tuple(exc.get("phrases", ())),
        entries=tuple(entries),
        phrases=tuple(phrases),
    )


def _plain_normalise(word: str) -> str:
    return _REPEAT_RE.sub(r"\1", word.lower().replace("ё", "е"))


# ----------------------------------------------------------------------------- regexes


def _wildcard_aware(pattern: str) -> str:
    """Rewrite a pattern so that the wildcard "?" in a masked word matches any one letter:
    literal letters become ``[x?]``, classes gain "?", ``\\w`` becomes ``[\\w?]``."""
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "\\":
            nxt = pattern[i + 1 : i + 2]
            out.append(r"[\w?]" if nxt == "w" else ch + nxt)
            i += 2
        elif ch == "[":
            j = i + 1
            if pattern[j : j + 1] == "^":
                j += 1
            if pattern[j : j + 1] == "]":
                j += 1
            while j < n and pattern[j] != "]":
                j += 2 if pattern[j] == "\\" else 1
            body = pattern[i + 1 : j]
            out.append(pattern[i : j + 1] if body.startswith("^") else f"[{body}?]")
            i = j + 1
        elif ch == "(" and pattern[i + 1 : i + 2] == "?":
            group = _GROUP_OPEN_RE.match(pattern, i)
            if group is None:
                raise ValueError(f"unsupported group syntax in profanity pattern {pattern!r}")
            out.append(group.group())
            i = group.end()
        else:
            out.append(f"[{ch}?]" if ch.isalpha() else ch)
            i += 1
    return "".join(out)


class _ScriptMatcher:
    """All entries of one script compiled into one alternation; the first that fully
    matches a word wins, so config order (obscene before insult ...) is the priority."""

    def __init__(self, entries: list[ProfanityEntry], prefixes: tuple[str, ...]) -> None:
        self.entries = entries
        plain_parts, wild_parts = [], []
        for index, entry in enumerate(entries):
            try:
                re.compile(entry.pattern)
                wild = _wildcard_aware(entry.pattern)
            except (re.error, ValueError) as exc:
                raise ValueError(f"profanity entry {entry.root!r}: bad pattern: {exc}") from exc
            chain = ""
            if entry.prefixes:
                allowed = sorted((p for p in prefixes if p not in entry.exclude_prefixes), key=len, reverse=True)
                if allowed:
                    chain = "(?:" + "|".join(map(re.escape, allowed)) + "){0,2}"
            plain_parts.append(f"(?P<e{index}>{chain}(?:{entry.pattern}))")
            wild_parts.append(f"(?P<e{index}>{_wildcard_aware(chain)}(?:{wild}))")
        never = "(?!)"  # an empty alternation must match nothing
        self._plain = re.compile("|".join(plain_parts) or never)
        self._wild = re.compile("|".join(wild_parts) or never)

    def match(self, word: str) -> ProfanityEntry | None:
        found = (self._wild if _WILDCARD in word else self._plain).fullmatch(word)
        if found is None or found.lastgroup is None:
            return None
        return self.entries[int(found.lastgroup[1:])]


def _compile_phrase(pattern: str) -> re.Pattern[str]:
    try:
        return re.compile(r"(?<!\w)(?:" + pattern.replace(" ", _PHRASE_GAP) + r")(?!\w)")
    except re.error as exc:
        raise ValueError(f"bad profanity phrase pattern {pattern!r}: {exc}") from exc


# ----------------------------------------------------------------------------- detector


@dataclass(frozen=True)
class _Token:
    raw: str  # original characters (spread-out letters joined, separators dropped)
    start: int
    end: int


class ProfanityDetector:
    """Find obscene words, insults, English profanity and accusations in a text."""

    def __init__(self, config_path: Path | None = None) -> None:
        cfg = load_config(config_path)
        self.config = cfg
        self._masks = cfg.mask_chars
        # Masks that are also look-alikes ("@" = "а") are tried both ways.
        self._dual = {ch: cfg.lookalikes[ch] for ch in cfg.mask_chars if ch in cfg.lookalikes}
        mask_map = {ch: _WILDCARD for ch in cfg.mask_chars}
        self._ru_table = str.maketrans({**cfg.lookalikes, **mask_map})
        self._strong_table = str.maketrans(
            {**{k: v for k, v in cfg.lookalikes.items() if k in cfg.strong_lookalikes}, **mask_map}
        )
        self._latin_table = str.maketrans({**cfg.latin_leet, **mask_map})
        self._latin_dual = {ch: cfg.latin_leet[ch] for ch in cfg.mask_chars if ch in cfg.latin_leet}
        self._matchers = {
            script: _ScriptMatcher([e for e in cfg.entries if e.script == script], cfg.prefixes)
            for script in ("cyrillic", "latin")
        }
        self._phrases = [(_compile_phrase(rule.pattern), rule) for rule in cfg.phrases]
        self._exception_phrases = [_compile_phrase(p) for p in cfg.exception_phrases]
        self._cache: dict[str, ProfanityEntry | None] = {}

    # -- public -------------------------------------------------------------------------

    def find(self, text: str) -> list[ProfanityHit]:
        if not text:
            return []
        hits: list[ProfanityHit] = []
        for token in self._tokens(text):
            entry = self._classify(token.raw)
            if entry is not None:
                hits.append(ProfanityHit(text[token.start : token.end], token.start, token.end, entry.category, entry.root))
        hits.extend(self._phrase_hits(text, hits))
        if self._exception_phrases and hits:
            lowered = _lower_same_length(text)
            spans = [m.span() for rx in self._exception_phrases for m in rx.finditer(lowered)]
            hits = [h for h in hits if not any(s < h.end and h.start < e for s, e in spans)]
        hits.sort(key=lambda h: h.start)
        return hits

    # -- tokenising ---------------------------------------------------------------------

    def _tokens(self, text: str) -> Iterator[_Token]:
        """Words of the text, with spread-out single letters ("х у й") joined into one."""
        skip: list[tuple[int, int]] = []
        if "@" in text or "://" in text or "www." in text:
            skip = [m.span() for m in _URL_OR_EMAIL_RE.finditer(text)]
        run: list[_Token] = []
        for m in _TOKEN_RE.finditer(text):
            start, end = m.span()
            if skip and any(s <= start < e for s, e in skip):
                continue
            token = self._trim_markup(text, start, end)
            if token is None:
                continue
            if len(token.raw.translate(_INVISIBLE_TABLE)) == 1:
                if run and not _SPREAD_GAP_RE.fullmatch(text, run[-1].end, token.start):
                    yield from self._flush(run)
                    run = []
                run.append(token)
                continue
            yield from self._flush(run)
            run = []
            yield token
        yield from self._flush(run)

    @staticmethod
    def _flush(run: list[_Token]) -> Iterator[_Token]:
        # Fewer than three spread letters is ordinary text ("т. е.", "и я").
        if len(run) >= 3:
            yield _Token("".join(t.raw for t in run), run[0].start, run[-1].end)

    @staticmethod
    def _trim_markup(text: str, start: int, end: int) -> _Token | None:
        """Drop hashtag/mention signs and markdown emphasis ("**важно**") at word edges,
        which are not masks hiding a letter."""
        raw = text[start:end]
        lead = len(raw) - len(raw.lstrip("#@"))
        if lead == 0 and raw.startswith("**"):
            lead = len(raw) - len(raw.lstrip("*"))
        trail = len(raw) - len(raw.rstrip("#"))
        if trail == 0 and raw.endswith("**"):
            trail = len(raw) - len(raw.rstrip("*"))
        if lead + trail >= len(raw):
            return None
        return _Token(raw[lead : len(raw) - trail], start + lead, end - trail)

    # -- classifying one word -----------------------------------------------------------

    def _classify(self, raw: str) -> ProfanityEntry | None:
        cached = self._cache.get(raw, False)
        if cached is not False:
            return cached  # type: ignore[return-value]
        entry = self._classify_uncached(raw)
        if entry is not None and entry.skip_titlecase and raw[:1].isupper() and raw[1:].islower():
            entry = None
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[raw] = entry
        return entry

    def _classify_uncached(self, raw: str) -> ProfanityEntry | None:
        word = raw.translate(_INVISIBLE_TABLE)
        for script, form in self._forms(word):
            if len(form) < 2:
                continue
            entry = self._match_form(script, form)
            if entry is not None:
                return entry
        return None

    def _forms(self, word: str) -> Iterator[tuple[str, str]]:
        """Normalised spellings of one word to try: Cyrillic ones for Russian roots, Latin
        ones for English words and transliterated мат."""
        if _PURE_CYRILLIC_RE.fullmatch(word):  # the common case, kept cheap
            yield "cyrillic", _collapse(word.lower().replace("ё", "е"))
            return
        if _HAS_CYRILLIC_RE.search(word):
            yield from (("cyrillic", f) for f in self._spellings(word, self._ru_table, self._dual))
            return
        if not any(ch.isalpha() for ch in word):
            return  # numbers, "***": nothing to read
        yield from (("latin", f) for f in self._spellings(word, self._latin_table, self._latin_dual))
        letters = [ch for ch in word if ch.isalpha()]
        if all(ch in self.config.strong_lookalikes for ch in letters):
            yield from (("cyrillic", f) for f in self._spellings(word, self._strong_table, {}))

    @staticmethod
    def _spellings(word: str, table: dict[int, Any], dual: Mapping[str, str]) -> Iterator[str]:
        # Translate before lower-casing: the look-alike table is case-sensitive (B/b).
        yield _collapse(word.translate(table).lower().replace("ё", "е"))
        if any(ch in word for ch in dual):
            alt = "".join(dual.get(ch, ch) for ch in word)
            yield _collapse(alt.translate(table).lower().replace("ё", "е"))

    def _match_form(self, script: str, form: str) -> ProfanityEntry | None:
        matcher = self._matchers[script]
        if _WILDCARD not in form:
            if form in self.config.exception_words or form.startswith(self.config.exception_stems):
                return None
            return matcher.match(form)
        return self._match_masked(script, form)

    def _match_masked(self, script: str, form: str) -> ProfanityEntry | None:
        """A masked word matches when some filling of its masks gives a listed word. Mostly
        masked scraps ("х**", "***") are ignored: too little is left to judge."""
        masks = form.count(_WILDCARD)
        runs = list(_MASK_RUN_RE.finditer(form))
        if len(form) < 3 or len(form) - masks < 2 or masks * 2 > len(form) or len(runs) > 2:
            return None
        if _SPREAD_MASKS_RE.fullmatch(form):  # "х*у*й": the masks only separate letters
            entry = self._match_form(script, form.replace(_WILDCARD, ""))
            if entry is not None:
                return entry
        # People rarely type exactly one mask per hidden letter ("п***ц" for "пиздец"), and
        # doubled letters are collapsed, so try each run one shorter and one longer too.
        matcher = self._matchers[script]
        choices = [sorted({max(1, len(r.group()) - 1), len(r.group()), len(r.group()) + 1}) for r in runs]
        for lengths in itertools.product(*choices):
            pieces, last = [], 0
            for run, length in zip(runs, lengths, strict=True):
                pieces.append(form[last : run.start()])
                pieces.append(_WILDCARD * length)
                last = run.end()
            pieces.append(form[last:])
            entry = matcher.match("".join(pieces))
            if entry is not None:
                return entry
        return None

    # -- phrases ------------------------------------------------------------------------

    def _phrase_hits(self, text: str, word_hits: list[ProfanityHit]) -> Iterator[ProfanityHit]:
        if not self._phrases:
            return
        lowered = _lower_same_length(text)
        for rx, rule in self._phrases:
            for m in rx.finditer(lowered):
                start, end = m.span()
                if any(h.start < end and start < h.end for h in word_hits):
                    continue  # the offending word itself is already reported
                yield ProfanityHit(text[start:end], start, end, rule.category, rule.root)


def _collapse(word: str) -> str:
    """"хууууй" -> "хуй": repeated letters are both an obfuscation and a typo."""
    return _REPEAT_RE.sub(r"\1", word)


def _lower_same_length(text: str) -> str:
    """Lower-case keeping offsets valid: a few characters ("İ") grow when lower-cased, and
    phrase offsets must still point into the original text."""
    lowered = text.lower()
    if len(lowered) != len(text):
        lowered = "".join(ch.lower() if len(ch.lower()) == 1 else ch for ch in text)
    return lowered.replace("ё", "е")
