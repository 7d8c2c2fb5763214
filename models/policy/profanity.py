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

from models.text_scan import RunScan, Spans

DEFAULT_CONFIG_PATH = Path(__file__).resolve().parents[2] / "config" / "defaults" / "profanity.toml"

CATEGORIES = ("obscene", "insult", "english", "accusation")
_DEFAULT_SCRIPT = {"obscene": "cyrillic", "insult": "cyrillic", "english": "latin", "accusation": "cyrillic"}

_WILDCARD = "?"  # what a mask character becomes in a normalised word
_CACHE_LIMIT = 50_000

# A word: letters/digits, mask characters, and invisible characters people use to split a
# word so that a filter misses it (soft hyphen, zero-width joiners, combining stress marks).
_INVISIBLE = "\u00ad\u200b\u200c\u200d\u2060\ufeff\u0300-\u036f"
_TOKEN_RE = re.compile(rf"(?:[^\W_]|[*#@{_INVISIBLE}])+")
# The same with underscores kept inside: much faster to scan; underscores are split later.
_LOOSE_TOKEN_RE = re.compile(rf"[\w*#@{_INVISIBLE}]+")
_INVISIBLE_TABLE = {cp: None for cp in [0xAD, 0x200B, 0x200C, 0x200D, 0x2060, 0xFEFF, *range(0x300, 0x370)]}
# Gap between letters of a spread-out word: "х у й", "п.и.з.д.е.ц", "х-у-й", "б_л_я".
_SPREAD_GAP_RE = re.compile(r"[\s._\-]{1,3}")
# Where a spread-out word may be: three or more one-character words (with optional markup and
# invisible characters) separated by such gaps. Covers every run the tokenizer would join, so
# the fast path only needs to look inside these spans.
_ONE_CHAR = rf"[#@*]*[{_INVISIBLE}]*(?:[^\W_]|[*#@])[{_INVISIBLE}]*[#*]*"
_SPREAD_HINT_RE = re.compile(
    rf"(?<![^\W_])(?<![*#@{_INVISIBLE}]){_ONE_CHAR}(?:[\s._\-]{{1,3}}{_ONE_CHAR}){{2,}}(?![^\W_])(?![*#@{_INVISIBLE}])"
)
# A necessary condition for _SPREAD_HINT_RE, several times cheaper to search for (it starts with a gap
# character, which the regex engine skips to in C, instead of two lookbehinds at every position): a
# spread-out word has a one-character word between two gaps, followed by another one-character word.
_SPREAD_NEED_RE = re.compile(
    rf"[\s._\-]{_ONE_CHAR}[\s._\-]{{1,3}}[#@*]*[{_INVISIBLE}]*(?:[^\W_]|[*#@])[{_INVISIBLE}]*[#*]*(?![^\W_])"
)
# Links and addresses; the address branch may start only where no address character precedes it (RunScan,
# models/text_scan.py): otherwise `re` rescans a long word from each of its characters, quadratic.
_URL_OR_EMAIL_RE = RunScan(
    r"(?:https?://|www\.)\S+|[\w.+-]+@[\w-]+(?:\.[\w-]+)+",
    r"(?:https?://|www\.)\S+|(?<![\w.+-])[\w.+-]+@[\w-]+(?:\.[\w-]+)+",
    re.IGNORECASE,
)
_HAS_CYRILLIC_RE = re.compile("[а-яёА-ЯЁіїєІЇЄ]")
_PURE_CYRILLIC_RE = re.compile("[а-яёА-ЯЁ]+")
_REPEAT_RE = re.compile(r"([^?])\1+")
_MASK_RUN_RE = re.compile(r"\?+")
_SPREAD_MASKS_RE = re.compile(r"(?:[^?]\?)+[^?]")  # "х*у*й": masks used as separators
_GROUP_OPEN_RE = re.compile(r"\(\?(?:[:=!]|<[=!])")
_NAMED_GROUP_RE = re.compile(r"\(\?P<e\d+>")
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
    chain_first: tuple[str, ...]  # prefixes that may precede a second prefix
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
    # Exceptions are compared before doubled letters are collapsed: "поддонок" (a tray) is an
    # exception, while "подонок" (scoundrel) is not.
    return ProfanityConfig(
        lookalikes=dict(norm.get("lookalikes", {})),
        strong_lookalikes=frozenset(norm.get("strong_lookalikes", "")),
        latin_leet=dict(norm.get("latin_leet", {})),
        mask_chars=str(norm.get("mask_chars", "*#@")),
        prefixes=tuple(raw.get("prefixes", {}).get("russian", ())),
        chain_first=tuple(raw.get("prefixes", {}).get("chain_first", ())),
        exception_words=frozenset(_plain_normalise(w) for w in exc.get("words", ())),
        exception_stems=tuple(_plain_normalise(w) for w in exc.get("stems", ())),
        exception_phrases=tuple(exc.get("phrases", ())),
        entries=tuple(entries),
        phrases=tuple(phrases),
    )


def _plain_normalise(word: str) -> str:
    return word.lower().replace("ё", "е")


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
    """All entries of one script compiled into one regex; the first entry that fully matches
    a word wins, so category order (obscene before insult ...) is the priority.

    Entries sharing a prefix setting are grouped behind ONE prefix group: repeating the
    prefix alternation per root made a miss (the common case) about five times slower."""

    def __init__(
        self, entries: list[ProfanityEntry], prefixes: tuple[str, ...], chain_first: tuple[str, ...]
    ) -> None:
        def prefix_key(entry: ProfanityEntry) -> tuple[bool, tuple[str, ...]]:
            return entry.prefixes, tuple(sorted(entry.exclude_prefixes))

        # Stable sort: categories keep their order, entries inside one get grouped.
        order = {category: rank for rank, category in enumerate(CATEGORIES)}
        self.entries = sorted(entries, key=lambda e: (order[e.category], prefix_key(e)))
        plain_blocks, wild_blocks = [], []
        for (_, (has_prefixes, exclude)), group in itertools.groupby(
            enumerate(self.entries), key=lambda item: (item[1].category, prefix_key(item[1]))
        ):
            chain = ""
            if has_prefixes:
                chain = _prefix_group(prefixes, exclude)
                if chain:
                    chain = _prefix_group(chain_first, exclude) + chain
            plain_alts, wild_alts = [], []
            for index, entry in group:
                try:
                    re.compile(entry.pattern)
                    wild = _wildcard_aware(entry.pattern)
                except (re.error, ValueError) as exc:
                    raise ValueError(f"profanity entry {entry.root!r}: bad pattern: {exc}") from exc
                plain_alts.append(f"(?P<e{index}>{entry.pattern})")
                wild_alts.append(f"(?P<e{index}>{wild})")
            plain_blocks.append(f"{chain}(?:{'|'.join(plain_alts)})")
            wild_blocks.append(f"{_wildcard_aware(chain)}(?:{'|'.join(wild_alts)})")
        never = "(?!)"  # an empty alternation must match nothing
        self._plain = re.compile("|".join(plain_blocks) or never)
        self._wild = re.compile("|".join(wild_blocks) or never)
        # The same without named groups: capturing groups make a miss ~3x slower, and nearly
        # every word is a miss, so the named regex only runs to tell WHICH entry matched.
        self._plain_test = re.compile(_NAMED_GROUP_RE.sub("(?:", self._plain.pattern))

    def match(self, word: str) -> ProfanityEntry | None:
        if _WILDCARD in word:
            found = self._wild.fullmatch(word)
        elif self._plain_test.fullmatch(word) is None:
            return None
        else:
            found = self._plain.fullmatch(word)
        if found is None or found.lastgroup is None:
            return None
        return self.entries[int(found.lastgroup[1:])]


def _prefix_group(prefixes: tuple[str, ...], exclude: tuple[str, ...]) -> str:
    """Optional group of prefixes as a trie ("п(?:о(?:д(?:о|ъ|ь)?)?|ре|ри|ро)"): the regex
    engine then checks a few letters instead of fifty alternatives for every word."""
    allowed = sorted({p for p in prefixes if p and p not in exclude})
    return f"(?:{_trie_regex(allowed)})?" if allowed else ""


def _trie_regex(words: list[str]) -> str:
    by_first: dict[str, list[str]] = {}
    for word in words:
        by_first.setdefault(word[0], []).append(word[1:])
    branches = []
    for first, rests in by_first.items():
        longer = [r for r in rests if r]
        if not longer:
            branches.append(re.escape(first))
            continue
        tail = f"(?:{_trie_regex(longer)})"
        # Prefer the longer prefix first; the shorter one is still tried on backtracking.
        branches.append(re.escape(first) + tail + ("?" if "" in rests else ""))
    return "|".join(branches)


def _compile_phrases(patterns: list[str]) -> re.Pattern[str] | None:
    """All phrase patterns in one regex (one scan of the text); group ``p<i>`` names the rule."""
    if not patterns:
        return None
    parts = []
    for index, pattern in enumerate(patterns):
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"bad profanity phrase pattern {pattern!r}: {exc}") from exc
        parts.append(f"(?P<p{index}>{pattern.replace(' ', _PHRASE_GAP)})")
    return re.compile(r"(?<!\w)(?:" + "|".join(parts) + r")(?!\w)")


# A word as found in the text: (characters, start, end).
_Span = tuple[str, int, int]


class ProfanityDetector:
    """Find obscene words, insults, English profanity and accusations in a text."""

    def __init__(self, config_path: Path | None = None) -> None:
        cfg = load_config(config_path)
        self.config = cfg
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
            script: _ScriptMatcher(
                [e for e in cfg.entries if e.script == script], cfg.prefixes, cfg.chain_first
            )
            for script in ("cyrillic", "latin")
        }
        self._phrase_rules = list(cfg.phrases)
        self._phrases = _compile_phrases([rule.pattern for rule in cfg.phrases])
        self._exception_phrases = _compile_phrases(list(cfg.exception_phrases))
        self._cache: dict[str, ProfanityEntry | None] = {}
        # Raw words (as the loose tokenizer cuts them) known to contain nothing: a text made
        # only of such words skips the per-word work entirely.
        self._clean: set[str] = set()

    # -- public -------------------------------------------------------------------------

    def find(self, text: str) -> list[ProfanityHit]:
        if not text:
            return []
        if self._clean.issuperset(_LOOSE_TOKEN_RE.findall(text)):
            # Fast path: every word is known to be clean; only spread-out letters ("х у й")
            # can still hide something, and those are looked at in place.
            hits: list[ProfanityHit] = []
            if _SPREAD_NEED_RE.search(text) is not None:
                for m in _SPREAD_HINT_RE.finditer(text):
                    hits.extend(self._word_hits(text, *m.span()))
        else:
            hits = self._word_hits(text, 0, len(text))
        lowered = _lower_same_length(text)
        hits.extend(self._phrase_hits(text, lowered, hits))
        if self._exception_phrases is not None and hits:
            spans = Spans(m.span() for m in self._exception_phrases.finditer(lowered))
            hits = [h for h in hits if not spans.overlaps(h.start, h.end)]
        hits.sort(key=lambda h: h.start)
        return hits

    # -- words --------------------------------------------------------------------------

    def _word_hits(self, text: str, lo: int, hi: int) -> list[ProfanityHit]:
        """Hits for the words in text[lo:hi] (lo/hi at word boundaries)."""
        skip = Spans(())
        if "@" in text or "://" in text or "www." in text:
            skip = Spans(m.span() for m in _URL_OR_EMAIL_RE.finditer(text))
        hits: list[ProfanityHit] = []
        run: list[_Span] = []  # consecutive single letters, maybe a spread-out word

        cache, clean_words = self._cache, self._clean

        def report(raw: str, start: int, end: int) -> bool:
            entry = cache[raw] if raw in cache else self._classify(raw)
            if entry is None:
                return False
            # Words inside addresses and links are classified (so the verdict cache stays a
            # pure function of the word) but not reported.
            if not skip.covers(start):
                hits.append(ProfanityHit(text[start:end], start, end, entry.category, entry.root))
            return True

        def flush() -> None:
            # Fewer than three spread letters is ordinary text ("т. е.", "и я").
            if len(run) >= 3:
                report("".join(r[0] for r in run), run[0][1], run[-1][2])
            run.clear()

        for m in _LOOSE_TOKEN_RE.finditer(text, lo, hi):
            loose = m.group()
            if loose.isalnum() and len(loose) > 1:  # the common case, kept short
                if run:
                    flush()
                if not report(loose, *m.span()) and loose not in clean_words:
                    self._remember_clean(loose)
                continue
            if "_" in loose:  # "б_л_я": underscores separate letters
                parts: list[_Span] = [(p.group(), *p.span()) for p in _TOKEN_RE.finditer(text, *m.span())]
            else:
                parts = [(loose, *m.span())]
            clean = True
            for raw, start, end in parts:
                if not raw.isalnum():
                    trimmed = _trim_markup(raw, start, end)
                    if trimmed is None:
                        continue
                    raw, start, end = trimmed
                    single = len(raw.translate(_INVISIBLE_TABLE)) == 1
                else:
                    single = len(raw) == 1
                if single:
                    if run and not _SPREAD_GAP_RE.fullmatch(text, run[-1][2], start):
                        flush()
                    run.append((raw, start, end))
                    continue
                if run:
                    flush()
                if report(raw, start, end):
                    clean = False
            if clean:
                self._remember_clean(loose)
        flush()
        return hits

    def _remember_clean(self, word: str) -> None:
        if len(self._clean) >= _CACHE_LIMIT:
            self._clean.clear()
        self._clean.add(word)

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
        word = raw if raw.isalnum() else raw.translate(_INVISIBLE_TABLE)
        if word.isalpha():  # plain words: the common case, kept short
            if _PURE_CYRILLIC_RE.fullmatch(word):
                return self._match_form("cyrillic", word.lower().replace("ё", "е"))
            if word.isascii():
                entry = self._match_form("latin", word.lower())
                if entry is None and self.config.strong_lookalikes.issuperset(word):
                    entry = self._match_form("cyrillic", word.translate(self._strong_table).lower())
                return entry
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
            yield "cyrillic", word.lower().replace("ё", "е")
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
        yield word.translate(table).lower().replace("ё", "е")
        if any(ch in word for ch in dual):
            alt = "".join(dual.get(ch, ch) for ch in word)
            yield alt.translate(table).lower().replace("ё", "е")

    def _match_form(self, script: str, form: str) -> ProfanityEntry | None:
        """`form` is normalised but not yet collapsed, so exceptions see the real spelling."""
        if _WILDCARD not in form:
            if form in self.config.exception_words or form.startswith(self.config.exception_stems):
                return None
            return self._matchers[script].match(_collapse(form))
        return self._match_masked(script, _collapse(form))

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

    def _phrase_hits(self, text: str, lowered: str, word_hits: list[ProfanityHit]) -> Iterator[ProfanityHit]:
        if self._phrases is None:
            return
        # The word hits only: phrase matches (one finditer) never overlap one another.
        taken = Spans((h.start, h.end) for h in word_hits)
        for m in self._phrases.finditer(lowered):
            start, end = m.span()
            if taken.overlaps(start, end):
                continue  # the offending word itself is already reported
            rule = self._phrase_rules[int(str(m.lastgroup)[1:])]
            yield ProfanityHit(text[start:end], start, end, rule.category, rule.root)


def _trim_markup(raw: str, start: int, end: int) -> _Span | None:
    """Drop hashtag/mention signs and markdown emphasis ("**важно**") at word edges: they
    are not masks hiding a letter."""
    lead = len(raw) - len(raw.lstrip("#@"))
    if lead == 0 and raw.startswith("**"):
        lead = len(raw) - len(raw.lstrip("*"))
    trail = len(raw) - len(raw.rstrip("#"))
    if trail == 0 and raw.endswith("**"):
        trail = len(raw) - len(raw.rstrip("*"))
    if lead + trail >= len(raw):
        return None
    return raw[lead : len(raw) - trail], start + lead, end - trail


def _collapse(word: str) -> str:
    """ "хууууй" -> "хуй": repeated letters are both an obfuscation and a typo."""
    # search() first: most words have no doubled letter and sub() is three times slower.
    return _REPEAT_RE.sub(r"\1", word) if _REPEAT_RE.search(word) else word


def _lower_same_length(text: str) -> str:
    """Lower-case keeping offsets valid: a few characters ("İ") grow when lower-cased, and
    phrase offsets must still point into the original text."""
    lowered = text.lower()
    if len(lowered) != len(text):
        lowered = "".join(ch.lower() if len(ch.lower()) == 1 else ch for ch in text)
    return lowered.replace("ё", "е")
