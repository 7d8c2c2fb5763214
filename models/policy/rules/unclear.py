"""2.1-2.2: the request must state its task clearly. A mail with only a greeting, thanks or a
signature, only attachments, only contact details, or only a nudge ("ну что, есть новости?", "напоминаю о
своём письме", "any update?", "сколько можно ждать?!") states nothing: staff should ask what is needed, or
find the earlier request.

"Meaningful" words are those left, over the subject and the new text together, after taking away:
- the words listed in `config/defaults/unclear.toml` (greetings and politeness, function words, the words
  of a nudge, exasperation) and its idioms ("сколько можно", "дать знать", "let me know"), in any form;
- the sender's own name and people's names;
- the signature block: from a sign-off line ("С уважением", "--", "Best regards", "Отправлено с iPhone")
  on, and trailing lines that read as a signature without one (a job title or department, a company form,
  contacts, the names beside them);
- the header lines of a quoted or forwarded mail ("От:", "Sent:"), and phones, e-mails, links and dates.
The quote of a reply (lines starting with ">", and everything after "-----Original Message-----" or "...
написал:") is the earlier mail's. The subject of a reply or a forward ("Re: ...", "Fwd: ...") is the earlier mail's: it counts only when
the new text has no word at all and is not a bare "?" or "!" (a ping on that mail). A negation ("не", "нет") counts only beside another meaningful word: "не работает оплата" is a task,
"ответа до сих пор нет" is not. A number of three digits or more left over (an order, an error code)
counts as a word: "API отдаёт 401" is a task.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from models.policy.base import (
    DEFAULTS_DIR,
    Finding,
    FindingCode,
    PolicyConfig,
    PolicyContext,
    PolicyRequest,
    Rule,
)
from models.policy.lemmas import analyzer, lemma, lemmas_of
from models.policy.nudge_model import MODEL_FILE, NudgeModel, load_nudge_file

if TYPE_CHECKING:
    from models.inbound import InboundMessage
    from models.policy.base import PolicyData

CONFIG_FILE = "unclear.toml"
_WORD = re.compile(r"[^\W\d_]+(?:-[^\W\d_]+)*")
_NUMBER = re.compile(r"\d{3,}")
_LATIN_NAME = re.compile(r"^(?:[A-Z][a-z'-]+|[A-Z]\.)$")
# Contact details and dates: facts about the sender or the mail, not a task. A phone needs a "+", brackets
# or two separators and 7-15 digits, so an order number ("51377", "88412") or a code ("403") stays a word.
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_URL = re.compile(r"(?:https?://|www\.)\S+|\b[\w-]+\.(?:ru|com|net|org|io|рф|su|uk|de)\b", re.IGNORECASE)
_PHONE_CANDIDATE = re.compile(r"\+?\(?\d[\d \t().-]{5,}\d")
_DATE = re.compile(r"\b\d{1,2}[./]\d{1,2}[./]\d{2,4}\b|\b\d{1,2}:\d{2}\b|\b(?:19|20)\d{2}\s*(?:г\b|год)",
                   re.IGNORECASE)
_DOMAIN_HINT = re.compile(r"\.(?:ru|com|net|org|io|рф|su|uk|de)\b", re.IGNORECASE)
_DIGIT = re.compile(r"\d")
# What a mail program leaves of an inline image: "[image: logo.png]", "[cid:image001.png@01DA5F2C.3E8B1A90]".
_PLACEHOLDER = re.compile(r"\[(?:image|cid|картинка|изображение)\b[^\]\n]{0,300}\]", re.IGNORECASE)
_CYRILLIC = re.compile("[а-яё]")
_SENTENCE_END = re.compile(r"[.?!]\s*$")
_MAX_SIGNATURE_LINE = 120
_PING_MARKS = frozenset("?!¿.… \t\r\n")
_TAIL_LINES = 8  # a signature without a sign-off is looked for in the last lines only
# "Re:", "Fwd:", "Отв:", "Пересл:" (repeated, with a counter such as "Re[2]:"): the subject of an earlier mail.
_REPLY_SUBJECT = re.compile(r"^\s*(?:(?:re|fwd?|aw|wg|отв|ответ|пересл)\s*(?:\[\d+\]|\(\d+\))?\s*:\s*)+",
                            re.IGNORECASE)


@dataclass(frozen=True)
class UnclearLexicon:
    """The lemmatised lists of unclear.toml."""

    min_words: int
    empty: frozenset[str]  # lemmas that carry no task (filler, function, nudge, exasperation)
    nudge: frozenset[str]  # the nudge and exasperation lemmas, named in the evidence
    negation: frozenset[str]
    weak: frozenset[str]  # nudge words that count beside a thing or an action asked for
    phrases: dict[str, tuple[tuple[str, ...], ...]]  # first lemma -> the rest of each idiom, longest first
    signature_start: re.Pattern[str]
    titles: frozenset[str]
    companies: frozenset[str]
    organisations: frozenset[str]  # lemmas: "агентство", "магазин", "studio": with a name in quotes, a company
    address_marks: frozenset[str]  # as written, casefolded: "ул", "д", "офис", "street"
    contact_labels: frozenset[str]
    quote_header: re.Pattern[str]


# The separator line of a quoted or forwarded mail ("-----Original Message-----", "On ... wrote:").
# The runs of dashes are possessive and the text before the words lazy: a line of 16,000 dashes followed by
# anything else took 13 s (quadratic backtracking) and now takes well under a millisecond; tests/policy/
# test_unclear.py sends such lines.
_SEPARATOR = re.compile(
    r"^[ \t>]*+(?:-{3,}+|_{3,}+)[^\n]*?(?:original message|forwarded message|пересылаемое сообщение|"
    r"исходное сообщение|переслано)|^[ \t>]*+(?:on .{4,80} wrote|.{4,80}(?:написал|написала|пишет)\(?а?\)?)"
    r"[ \t]*:[ \t]*$", re.IGNORECASE)


# The separator of a reply's quote ("-----Original Message-----", "On ... wrote:", "... написал:"): what
# follows is the earlier mail, not this one's words. A forward's separator is not one: the forwarded
# mail is what the client sends us.
_REPLY_SEPARATOR = re.compile(
    r"^[ \t>]*+(?:(?:-{3,}+|_{3,}+)[^\n]*?(?:original message|исходное сообщение)[^\n]*+|on .{4,80} wrote[ \t]*:[ \t]*|"
    r".{4,80}(?:написал|написала|пишет)\(?а?\)?[ \t]*:[ \t]*|"
    # Gmail's Russian attribution has no verb: "Чт, 6 февр. 2025 г. в 16:40, Инна <inna@shop.ru>:", then
    # the quote's ">" lines.
    r"[^\n<>]{4,120}<[^<>\s@]{1,64}@[^<>\s]{1,255}>[ \t]*:[ \t]*(?=\n[ \t]*>))$", re.IGNORECASE | re.MULTILINE)


# Words one of which a reply separator holds: the regex is tried only then. ">:" ends an attribution line
# that names its writer's address.
_REPLY_WORDS = ("original message", "исходное сообщение", "wrote", "написал", "пишет", ">:")


def _read(path: Path) -> dict[str, Any]:
    with path.open("rb") as fh:
        return tomllib.load(fh)


def _merged(config: PolicyConfig) -> dict[str, Any]:
    """The shipped lists plus an operator's unclear.toml in CONFIG_DIR, whose lists extend them."""
    data = _read(DEFAULTS_DIR / CONFIG_FILE)
    extra_path = config.config_dir / CONFIG_FILE if config.config_dir is not None else None
    if extra_path is None or not extra_path.is_file():
        return data
    extra = _read(extra_path)
    if "min_meaningful_words" in extra:
        data["min_meaningful_words"] = int(extra["min_meaningful_words"])
    for section, lists in extra.items():
        if isinstance(lists, dict):
            for key, values in lists.items():
                if isinstance(values, list):
                    data.setdefault(section, {})[key] = [*data.get(section, {}).get(key, []), *values]
                else:  # a setting ("[model] rescue_above = 0.9") replaces the shipped one
                    data.setdefault(section, {})[key] = values
    return data


def _lemset(values: list[str]) -> frozenset[str]:
    return frozenset(lemma(w) for v in values for w in _WORD.findall(v))


def _starts(values: list[str]) -> str:
    """An alternation of the entries (spaces match any run of spaces); never matches when there are none."""
    return "|".join(r"\s+".join(map(re.escape, v.split())) for v in values if v.strip()) or r"(?!)"


def load_unclear_lexicon(config: PolicyConfig) -> UnclearLexicon:
    """Read and lemmatise unclear.toml: on first use, in the process that analyses (see PolicyData)."""
    data = _merged(config)
    words, sig, phrase_lists = data.get("words", {}), data.get("signature", {}), data.get("phrases", {})
    nudge = _lemset(words.get("nudge", [])) | _lemset(words.get("exasperation", []))
    phrases: dict[str, list[tuple[str, ...]]] = {}
    for entry in (p for values in phrase_lists.values() for p in values):
        seq = tuple(lemmas_of(entry))
        if len(seq) > 1:
            phrases.setdefault(seq[0], []).append(seq[1:])
    # A sign-off may follow a few symbols (an emoji, a bullet): "🌱 Пожалуйста, подумайте об экологии".
    start = re.compile(rf"^[ \t]*(?:(?:--|—)[ \t]*(?:$|[^\W\d_])|(?:[^\w\s-]{{1,3}}[ \t]*)?(?:{_starts(sig.get('start', []))}))",
                       re.IGNORECASE | re.MULTILINE)
    headers = re.compile(rf"^[ \t>]*(?:{_starts(sig.get('quote_headers', []))})[ \t]*:", re.IGNORECASE)
    return UnclearLexicon(
        min_words=int(data.get("min_meaningful_words", 2)),
        empty=_lemset(words.get("filler", [])) | _lemset(words.get("function", [])) | nudge,
        nudge=nudge, negation=_lemset(words.get("negation", [])), weak=_lemset(words.get("weak", [])),
        phrases={k: tuple(sorted(v, key=len, reverse=True)) for k, v in phrases.items()},
        signature_start=start, titles=_lemset(sig.get("titles", [])),
        companies=frozenset(w.casefold() for w in sig.get("companies", [])),
        organisations=_lemset(sig.get("organisations", [])),
        address_marks=frozenset(w.casefold() for w in sig.get("address_marks", [])),
        contact_labels=_lemset(sig.get("contact_labels", [])), quote_header=headers)


@lru_cache(maxsize=50_000)
def _is_ping(text: str) -> bool:
    """Only question or exclamation marks (and dots, blanks): "?", "??!", "...?". A set test, not a regex:
    a megabyte of "?" ending in a digit must not backtrack."""
    return ("?" in text or "!" in text) and _PING_MARKS.issuperset(text)


def _is_name(word: str) -> bool:
    """A capitalised first name, surname or patronymic ("Елена", "Соколова"): a signature, not a task."""
    if not word[:1].isupper() or not re.search("[а-яё]", word[1:]):
        return False
    tag = analyzer().parse(word)[0].tag
    return "Name" in tag or "Surn" in tag or "Patr" in tag


@lru_cache(maxsize=20_000)
def _may_be_name(word: str) -> bool:
    """A capitalised word one of whose readings is a name: "Вера" (also "faith"), "Роза", "Лукина"."""
    if not word[:1].isupper() or not re.search("[а-яё]", word[1:]):
        return False
    return any({"Name", "Surn", "Patr"} & set(p.tag.grammemes) for p in analyzer().parse(word))


@lru_cache(maxsize=20_000)
def _is_verb(word: str) -> bool:
    return any(p.tag.POS in ("VERB", "INFN") for p in analyzer().parse(word.casefold())[:2])


@lru_cache(maxsize=20_000)
def _is_nominative(word: str) -> bool:
    return not re.search("[а-яё]", word.casefold()) or any("nomn" in p.tag for p in analyzer().parse(word))


def _without_contacts(text: str) -> str:
    """`text` with e-mails, links, phones, dates and inline-image placeholders ("[image: logo.png]",
    "[cid:image001.png@01DA…]") blanked out."""
    # Cheap tests first: most requests have no "@" and few digits, and each sub scans the whole text.
    if "[" in text:
        text = _PLACEHOLDER.sub(" ", text)
    if "@" in text:
        text = _EMAIL.sub(" ", text)
    if "www" in text or "//" in text or _DOMAIN_HINT.search(text):
        text = _URL.sub(" ", text)
    if _DIGIT.search(text):
        text = _DATE.sub(" ", _PHONE_CANDIDATE.sub(_phone_blank, text))
    return text


def _contact_removed(line: str, bare: str) -> bool:
    """Whether blanking took away a phone, an e-mail or a link (a date alone is not a contact)."""
    return bare != line and (_DIGIT.search(line) is None or _DATE.sub(" ", line) != bare)


def _phone_blank(m: re.Match[str]) -> str:
    s = m.group()
    digits = sum(c.isdigit() for c in s)
    looks_like_phone = s.startswith(("+", "(")) or "(" in s or len(re.findall(r"[ \t.-]\d", s)) >= 2
    return " " if 7 <= digits <= 15 and looks_like_phone else s


_QUOTED_NAME = re.compile(r"[ \t]*[«\"“][^«»\"“”\n]{1,60}[»\"”][ \t]*")


def _line_kind(line: str, lex: UnclearLexicon) -> str | None:
    """"contact", "company", "title", "name" or "address" when `line` reads as a line of a signature, else
    None."""
    if len(line) > _MAX_SIGNATURE_LINE:
        return None  # a paragraph, not a signature line: and a long line is not lemmatised for nothing
    words = _WORD.findall(line)
    if len(words) > 8 or len(words) > 4 and _SENTENCE_END.search(line):
        return None  # a sentence: most last lines of a request end here, before any lemma or regex
    lemmas = [lemma(w) for w in words]
    bare = _without_contacts(line)
    if bare != line or any(w in lex.contact_labels for w in lemmas):
        if all(w in lex.contact_labels for w in (lemma(x) for x in _WORD.findall(bare))):
            return "contact"
    if not words or len(words) > 6 or any(_is_verb(w) for w in words if _CYRILLIC.search(w.casefold())):
        return None  # "ООО «Ромашка» не может войти" is a request, not a signature line
    if (any(w.casefold() in lex.companies for w in words) or _QUOTED_NAME.fullmatch(line)
            or _QUOTED_NAME.search(line) and any(lemma(w) in lex.organisations  # a kind outside the quotes
                                                 for w in _WORD.findall(_QUOTED_NAME.sub(" ", line)))):
        return "company"  # "ООО «Ромашка»", a name in quotes alone, "Агентство интернет-маркетинга «Точка роста»"
    if not _SENTENCE_END.search(line) and _is_title(words, lemmas, lex):
        return "title"
    if _DIGIT.search(line) and any(w.casefold() in lex.address_marks for w in words):
        return "address"  # "г. Казань, ул. Баумана, 9", "офис 12": only beside other signature lines
    # Names and initials ("Иванова Т.С.", "Sergey Volkov"): kept unless beside a title, company or contacts.
    if len(words) <= 4 and all(_is_name(w) or _LATIN_NAME.match(w) or len(w) == 1 for w in words):
        return "name"
    return None


def _is_title_word(word: str, lem: str, lex: UnclearLexicon) -> bool:
    """A title word in the nominative, or a compound ending in one: "аккаунт-менеджер", "SMM-специалист"."""
    if lem not in lex.titles and "-" in lem:
        lem = lemma(lem.rsplit("-", 1)[1])
        word = word.rsplit("-", 1)[1]
    return lem in lex.titles and _is_nominative(word)


def _is_title(words: list[str], lemmas: list[str], lex: UnclearLexicon) -> bool:
    """A job title or department ("главный бухгалтер", "отдел логистики", "CEO, Volkov Trade"), after the
    names of its holder if any ("Вера Лукина, аккаунт-менеджер"); the caller has made sure the line has no
    Russian verb."""
    names = 0
    while (names < 3 and names < len(words) - 1 and not _is_title_word(words[names], lemmas[names], lex)
           and (_may_be_name(words[names]) or _LATIN_NAME.match(words[names]))):
        names += 1  # "Jonas Keller, Head of E-Commerce": the title starts at "Head", a capitalised word too
    words, lemmas = words[names:], lemmas[names:]
    if not any(_is_title_word(w, lem, lex) for w, lem in zip(words[:2], lemmas[:2], strict=False)):
        return False
    # English has no morphology here: a title line is title words, capitalised names, "of", "and".
    return all(lem in lex.titles or w[:1].isupper() or lem in ("of", "and") or re.search("[а-яё]", lem)
               for w, lem in zip(words, lemmas, strict=True))


def _signature_tail(lines: list[str], lex: UnclearLexicon) -> int:
    """How many trailing lines are a signature without a sign-off: lines that read as a signature, with
    contacts or a company among them, or a name beside a title ("Sergey Volkov / CEO, Volkov Trade")."""
    kinds: list[str] = []
    for line in reversed(lines[-_TAIL_LINES:]):
        if not line.strip() or ("[" in line and len(line) <= _MAX_SIGNATURE_LINE
                                and not _PLACEHOLDER.sub("", line).strip()):
            kinds.append("")  # a blank line, or only an inline image (a logo): "[cid:image001.png@01DA…]"
            continue
        kind = _line_kind(line, lex)
        if kind is None:
            break
        kinds.append(kind)
    while kinds and kinds[-1] == "":
        kinds.pop()  # blank lines above the signature belong to the request
    found = set(kinds)
    # An address line alone is not a signature ("Доставка: ул. Ленина, 5" may end a request); beside a
    # name, a title, a company or contacts it is one.
    if found & {"contact", "company"} or {"title", "name"} <= found or "address" in found and found & {"title", "name"}:
        return len(kinds)
    return 0


def _is_quoted_header(line: str, lex: UnclearLexicon) -> bool:
    return lex.quote_header.match(line) is not None or _SEPARATOR.match(line) is not None


@dataclass
class _Count:
    words: list[str] = field(default_factory=list)  # meaningful lemmas (negations included)
    negations: int = 0
    weak: list[str] = field(default_factory=list)  # weak nudge words seen (lemmas)
    anchored: bool = False  # a meaningful word names a thing or an action asked for
    nudge: list[str] = field(default_factory=list)  # the nudge words as written
    signature: bool = False  # a signature block or contact details were taken away

    @property
    def total(self) -> int:
        real = len(self.words) - self.negations
        if not real:
            return 0
        return real + self.negations + (len(self.weak) if self.anchored else 0)


@lru_cache(maxsize=50_000)
def _is_anchor(word: str) -> bool:
    """A thing (a noun; an acronym or a brand in Latin letters: "API", "Ozon") or an action asked for (an
    imperative, an infinitive): what makes a weak nudge word part of a task ("прошу возврат", "жду счёт").
    English has no morphology here: only a capitalised Latin word counts."""
    if not re.search("[а-яё]", word.casefold()):
        return word[:1].isupper()  # the weak words are Russian: beside them, "API", "Ozon", "Excel" are things
    tag = analyzer().parse(word.casefold())[0].tag
    return tag.POS in ("NOUN", "INFN") or "impr" in tag


class _Words:
    """A line's words and their lemmas, found only as far as they are read: counting stops at the
    second meaningful word, so a long paragraph is not lemmatised to the end."""

    __slots__ = ("_iter", "lemmas", "tokens")

    def __init__(self, text: str) -> None:
        self._iter = _WORD.finditer(text)
        self.tokens: list[str] = []
        self.lemmas: list[str] = []

    def has(self, i: int) -> bool:
        while len(self.tokens) <= i:
            m = next(self._iter, None)
            if m is None:
                return False
            self.tokens.append(m.group())
            self.lemmas.append(lemma(m.group()))
        return True


def _phrase_end(words: _Words, i: int, lex: UnclearLexicon) -> int | None:
    """The end of an idiom starting at word `i`: its words in order, with up to two words that carry no task
    between them ("let me know", "дайте, пожалуйста, знать"); None when none matches."""
    for rest in lex.phrases[words.lemmas[i]]:
        pos = i + 1
        for want in rest:
            gap = 0
            while words.has(pos) and words.lemmas[pos] != want and words.lemmas[pos] in lex.empty and gap < 2:
                pos, gap = pos + 1, gap + 1
            if not words.has(pos) or words.lemmas[pos] != want:
                break
            pos += 1
        else:
            return pos
    return None


def _meaningful(words: _Words, i: int, lex: UnclearLexicon, own_name: set[str]) -> bool:
    """Is token i a word that carries a task by itself (not empty, weak, a negation or a name)?"""
    if i < 0 or not words.has(i):
        return False
    lem = words.lemmas[i]
    return not (lem in lex.empty or lem in lex.weak or lem in lex.negation or lem in own_name or len(lem) < 2
                or _is_name(words.tokens[i]))


def _count(text: str, lex: UnclearLexicon, own_name: set[str], acc: _Count) -> None:
    """Add the meaningful words of `text` to `acc`, stopping once there are enough."""
    words = _Words(text)
    i = 0
    while words.has(i):
        tok, lem = words.tokens[i], words.lemmas[i]
        end = _phrase_end(words, i, lex) if lem in lex.phrases else None
        if end is not None:
            acc.nudge.append(" ".join(words.tokens[i:end]))
            i = end
            continue
        i += 1
        if lem in lex.weak:
            acc.weak.append(lem)
            acc.nudge.append(tok)
        elif lem in lex.empty or lem in own_name or len(lem) < 2 or _is_name(tok):
            if lem in lex.nudge:
                acc.nudge.append(tok)
            continue
        elif lem in lex.negation:
            # Beside a meaningful word only: "не работает", "оплату не получили"; not "Ни одного ответа".
            if not (_meaningful(words, i - 2, lex, own_name) or _meaningful(words, i, lex, own_name)):
                continue
            acc.words.append(lem)
            acc.negations += 1
        elif lem in acc.words:
            continue  # a word said twice is one word: "SSL" over "по SSL что-то решилось?"
        else:
            acc.words.append(lem)
            if not acc.anchored:
                acc.anchored = _is_anchor(tok)
        if acc.total >= lex.min_words:
            return
    acc.words += _NUMBER.findall(text)[: lex.min_words]


def without_signature(text: str, lex: UnclearLexicon) -> str:
    """`text` up to its signature block: a sign-off line ("С уважением", "--", "Sent from ...") or trailing
    lines that read as a signature (title, company, contacts). Offsets into the result are offsets into
    `text`. The out-of-scope rule uses it too: "программист 1С, ООО «ОптТорг»" under a request is a job
    title, not a subject."""
    m = lex.signature_start.search(text)
    if m is not None:
        text = text[: m.start()]
    lines = text.split("\n")
    cut = _signature_tail(lines, lex)
    return "\n".join(lines[:-cut]) if cut else text


def load_nudge_model(config: PolicyConfig) -> NudgeModel | None:
    """The trained second opinion (models/policy/nudge_model.py) as `[model]` in unclear.toml sets it. None
    when disabled."""
    section = _merged(config).get("model", {})
    if not section.get("enabled", True):
        return None
    rescue = float(section.get("rescue_above", 0.8))
    if not 0.0 < rescue < 1.0:
        raise ValueError(f"unclear.toml: [model] rescue_above must be between 0 and 1, got {rescue}")
    return NudgeModel(load_nudge_file(config.data_file(str(section.get("file", MODEL_FILE)))), rescue,
                      int(section.get("min_words", 6)), _lemset(section.get("talk_verbs", [])),
                      frozenset(w.casefold() for w in section.get("task_verbs_en", [])))


def own_part(text: str) -> str:
    """The new text without a reply's quote: what follows the reply separator, and ">" lines."""
    folded = text.casefold()
    if any(w in folded for w in _REPLY_WORDS):
        reply = _REPLY_SEPARATOR.search(text)
        if reply is not None:
            text = text[: reply.start()]
    if ">" not in text:
        return text
    return "\n".join(line for line in text.split("\n") if not line.lstrip().startswith(">"))


def _without_vcards(lines: list[str]) -> list[str]:
    """The lines outside "BEGIN:VCARD" … "END:VCARD" blocks (a contact card pasted as text)."""
    if not any(line.strip().upper() == "BEGIN:VCARD" for line in lines):
        return lines
    kept, inside = [], False
    for line in lines:
        mark = line.strip().upper()
        if mark == "BEGIN:VCARD":
            inside = True
        elif mark == "END:VCARD" and inside:
            inside = False
        elif not inside:
            kept.append(line)
    return kept


def _count_body(text: str, lex: UnclearLexicon, own_name: set[str], acc: _Count) -> None:
    """Count the new text line by line, without the signature block, quoted headers and contacts. The
    last lines are read as a possible signature only when the lines above them did not say enough."""
    folded = text.casefold()
    # The separator's regex is tried only when one of its words is there (it costs ~45 us a mail).
    if any(w in folded for w in _REPLY_WORDS):
        reply = _REPLY_SEPARATOR.search(text)
        if reply is not None:
            text = text[: reply.start()]
    m = lex.signature_start.search(text)
    if m is not None:
        text, acc.signature = text[: m.start()], True
    # Quoted lines ("> ...") are the earlier mail's words; a vCard is contacts.
    lines = [line for line in text.split("\n") if not line.lstrip().startswith(">")]
    if "begin:vcard" in folded:  # the per-line scan only where one can be (folded holds the whole text)
        lines = _without_vcards(lines)
    head, tail = lines[:-_TAIL_LINES], lines[-_TAIL_LINES:]
    for part in (head, tail):
        if part is tail:
            cut = _signature_tail(tail, lex)
            if cut:
                part, acc.signature = tail[:-cut], True
        for line in part:
            if not line or line.isspace() or _is_quoted_header(line, lex):
                continue
            bare = _without_contacts(line)
            acc.signature |= _contact_removed(line, bare)
            _count(bare, lex, own_name, acc)
            if acc.total >= lex.min_words:
                return


class UnclearRule(Rule):
    code = FindingCode.UNCLEAR
    clause = "2.1-2.2"
    title_ru = "Задача не сформулирована"
    title_en = "Task not stated"

    def analyse(self, message: InboundMessage, data: PolicyData) -> dict[str, Any]:
        """The meaningful words of the subject and the new text, the nudge words, and whether a signature or
        contacts were taken away."""
        lex = data.get(load_unclear_lexicon)
        msg = message
        own_name = set(lemmas_of(msg.from_name)) | set(lemmas_of(msg.from_address.split("@", 1)[0]))
        acc = _Count()
        # A reply's or a forward's subject names the earlier mail's task, not this one's: "Re: не работает
        # магазин" over "жду." is a nudge. It counts only when the new text has no word at all (a client
        # who wrote the task in the subject of a reply).
        # A bare "?" or "!!" under it is a ping on that earlier mail, not a task written in the subject.
        if not (_REPLY_SUBJECT.match(msg.subject) and (_WORD.search(msg.new_text) or _is_ping(msg.new_text))):
            _count(msg.subject, lex, own_name, acc)
        if acc.total < lex.min_words:
            _count_body(msg.new_text, lex, own_name, acc)
        meaningful = [w for w in acc.words if w not in lex.negation or acc.total]
        found = {"words": meaningful, "enough": acc.total >= lex.min_words, "min": lex.min_words,
                 "nudge": list(dict.fromkeys(acc.nudge))[:5], "signature": acc.signature}
        model = data.get(load_nudge_model) if found["enough"] else None
        if model is not None:
            # Enough words for the rule, but the model has read such long nudges: see nudge_model.py.
            own = own_part(msg.new_text)
            opinion = model.judge(msg.subject, own, lambda: without_signature(own, lex))
            if opinion is not None:
                p, words = opinion
                texts = {"subject": msg.subject, "body": own}
                found |= {"enough": False, "model": round(p, 2),
                          "nudge": list(dict.fromkeys(texts[f.where][f.start:f.end] for f in words))}
        return found

    async def check(self, req: PolicyRequest, ctx: PolicyContext) -> list[Finding]:
        msg = req.message
        found: dict[str, Any] = self.analysis(req, ctx)
        if found["enough"]:
            return []
        return [self.finding({"meaningful_words": found["words"], "min": found["min"],
                              "attachments": len(msg.attachments), "nudge": found["nudge"],
                              "signature": found["signature"],
                              # Set when the trained model found the nudge: its probability, 0-1.
                              "model": found.get("model")}, "warn")]
