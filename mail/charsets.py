"""Turn bytes of doubtful charset into text: mail bodies and header values as Russian mail really sends them.

Russian mail still arrives in koi8-r, windows-1251 and cp866, is often mislabelled (koi8-r declared as
windows-1251, utf-8 declared as windows-1251) or not labelled at all. Generic detectors guess short koi8-r
text as Japanese or Turkish, so the Cyrillic candidates are scored here on Russian letter frequency and
letter case; charset-normalizer is only asked when no Cyrillic reading looks like text at all.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import functools
import math
import re
import unicodedata

import charset_normalizer

# Candidates in order of prior likelihood for Russian mail: on a tie the earlier one wins.
CYRILLIC_CANDIDATES: tuple[str, ...] = ("windows-1251", "koi8-r", "cp866", "iso-8859-5", "mac-cyrillic")
# Prior per candidate, added to the score: mac-cyrillic differs from windows-1251 only in a few letters
# and is rare in practice, so it must win clearly to be chosen.
_PRIOR: dict[str, float] = {
    "windows-1251": 0.0,
    "koi8-r": 0.0,
    "cp866": -0.5,
    "iso-8859-5": -1.0,
    "mac-cyrillic": -3.0,
}

# Relative frequency (percent) of Russian letters in ordinary prose.
_RU_FREQ: dict[str, float] = {
    "о": 10.97, "е": 8.45, "а": 8.01, "и": 7.35, "н": 6.70, "т": 6.26, "с": 5.47, "р": 4.73,
    "в": 4.54, "л": 4.40, "к": 3.49, "м": 3.21, "д": 2.98, "п": 2.81, "у": 2.62, "я": 2.01,
    "ы": 1.90, "ь": 1.74, "г": 1.70, "з": 1.65, "б": 1.59, "ч": 1.44, "й": 1.21, "х": 0.97,
    "ж": 0.94, "ш": 0.73, "ю": 0.64, "ц": 0.48, "щ": 0.36, "э": 0.32, "ф": 0.26, "ъ": 0.04, "ё": 0.20,
}  # fmt: skip
# Per-letter reward: log-probability shifted so that common letters score positive and rare ones negative.
# A wrong single-byte reading maps common letters onto rare ones, so its sum goes down fast.
_LETTER_SCORE: dict[str, float] = {ch: math.log(p / 100.0) + 3.9 for ch, p in _RU_FREQ.items()}
_RU_UPPER = frozenset(ch.upper() for ch in _RU_FREQ)
# Cyrillic letters of other languages: rare in Russian mail, frequent in wrong readings (Ђ, ѓ, ў, Ї...).
_MILD_FOREIGN_CYRILLIC = frozenset("іїєґІЇЄҐ")

# Only this much of a body is scored: enough to decide, cheap for big bodies.
SAMPLE_BYTES = 4096

# Codec names Python accepts but that are not charsets a mail could legitimately be written in.
_FORBIDDEN_CODEC_WORDS = (
    "escape",
    "idna",
    "punycode",
    "undefined",
    "uu",
    "hex",
    "base64",
    "rot",
    "zip",
    "bz2",
)

_CHARSET_ALIASES: dict[str, str] = {
    "win-1251": "windows-1251", "win1251": "windows-1251", "x-cp1251": "windows-1251",
    "cp-1251": "windows-1251", "windows1251": "windows-1251", "x-win-1251": "windows-1251",
    "koi8r": "koi8-r", "x-koi8-r": "koi8-r", "koi8": "koi8-r", "koi-8-r": "koi8-r",
    "cp-866": "cp866", "ibm866": "cp866", "x-cp866": "cp866", "dos-866": "cp866", "866": "cp866",
    "utf8": "utf-8", "x-utf-8": "utf-8", "unicode-1-1-utf-8": "utf-8",
    "x-mac-cyrillic": "mac-cyrillic", "maccyrillic": "mac-cyrillic",
    "us-ascii": "ascii", "ansi_x3.4-1968": "ascii", "x-unknown": "", "unknown-8bit": "", "unknown": "",
}  # fmt: skip


def normalize_charset(name: str | None) -> str | None:
    """Return a Python codec name for a declared MIME charset, or None when it is missing, unknown or not a
    text charset (a mail cannot make us run the `zlib` or `unicode_escape` codecs)."""
    if not name:
        return None
    cleaned = name.strip().strip("\"'").strip().lower()
    cleaned = _CHARSET_ALIASES.get(cleaned, cleaned)
    if not cleaned or len(cleaned) > 40 or any(word in cleaned for word in _FORBIDDEN_CODEC_WORDS):
        return None
    try:
        info = codecs.lookup(cleaned)
    except (LookupError, ValueError, TypeError):
        return None
    if not getattr(info, "_is_text_encoding", True):  # bytes-to-bytes codecs (zlib, hex...)
        return None
    return cleaned


def _is_ascii_compatible(codec: str) -> bool:
    return not codec.replace("_", "-").startswith(("utf-16", "utf-32", "utf-7", "utf16", "utf32", "utf7"))


def russian_score(text: str) -> float:
    """How much `text` looks like real (mostly Russian) text; higher is better, comparable between readings
    of the same bytes. Rewards frequent Russian letters; penalises what wrong readings produce: rare letters,
    uppercase in the middle of a word, Latin and Cyrillic mixed in one word, controls, box drawing."""
    score = 0.0
    prev_kind = ""  # "lower", "upper", "latin" or "" (not a letter) for the previous character
    for ch in text:
        value = _LETTER_SCORE.get(ch)
        if value is not None:
            score += value
            if prev_kind == "latin":
                score -= 3.0
            prev_kind = "lower"
            continue
        if ch in _RU_UPPER:
            score += _LETTER_SCORE[ch.lower()]
            if prev_kind == "lower":
                score -= 4.0  # "РїСЂРёРІРµС‚": utf-8 read as windows-1251
            elif prev_kind == "latin":
                score -= 3.0
            prev_kind = "upper"
            continue
        if ch.isascii():
            if ch.isalpha():
                if prev_kind in ("lower", "upper"):
                    score -= 3.0
                prev_kind = "latin"
                continue
            prev_kind = ""
            if ch < " " and ch not in "\t\n\r\f":
                score -= 10.0
            elif ch == "\x7f":
                score -= 10.0
            continue
        prev_kind = ""
        code = ord(ch)
        if 0x80 <= code <= 0x9F or ch == "\ufffd":
            score -= 10.0
        elif 0x2500 <= code <= 0x259F:
            score -= 5.0  # box drawing: koi8-r/cp866 high halves read with the wrong table
        elif 0x0400 <= code <= 0x04FF:
            score -= 2.0 if ch in _MILD_FOREIGN_CYRILLIC else 5.0
        elif ch in "«»–—…№“”„‘’•\u00a0":
            score += 0.5  # punctuation Russian text really uses
        else:
            category = unicodedata.category(ch)
            if category.startswith("L"):
                score -= 1.0 if code < 0x0250 else 3.0  # Latin-1 accents mildly, other scripts strongly
            elif category in ("Sm", "So", "Co", "Cn", "Cc", "Cs"):
                score -= 3.0
            else:
                score -= 0.5
    return score


def _strict(data: bytes, codec: str) -> str | None:
    try:
        return data.decode(codec)
    except (UnicodeError, LookupError, ValueError, TypeError):
        return None


def guess_cyrillic(data: bytes) -> tuple[str, float] | None:
    """The best-scoring Cyrillic single-byte reading of `data` (codec, score), or None if none decodes."""
    sample = data[:SAMPLE_BYTES]
    best: tuple[str, float] | None = None
    for codec in CYRILLIC_CANDIDATES:
        text = _strict(sample, codec)
        if text is None:
            continue
        score = russian_score(text) + _PRIOR[codec]
        if best is None or score > best[1]:
            best = (codec, score)
    return best


# Characters utf-8 decoding of single-byte Cyrillic produces: C1 controls, CJK extensions, private use.
_SUSPICIOUS_UTF8 = re.compile("[\x80-\x9f\u3400-\u4dbf\ue000-\uf8ff\U00020000-\U0010ffff]")


def _letters(text: str) -> int:
    return sum(1 for ch in text if ch.isalpha() and not ch.isascii())


def decode_bytes(data: bytes, declared: str | None = None) -> tuple[str, str]:
    """Decode a body (or any text bytes) to str. Returns (text, codec actually used).

    The declared charset is trusted unless it is demonstrably wrong (`_label_is_wrong` says what that
    means); only then, or when there is no usable label, are the Cyrillic readings scored. Never raises:
    the last resort is utf-8 with replacement characters."""
    codec = normalize_charset(declared)
    if codec is not None and not _is_ascii_compatible(codec):
        text = _strict(data, codec)
        if text is not None:
            return text, codec
        codec = None
    if data.isascii():
        return data.decode("ascii"), "ascii"
    kind = _label_kind(codec)
    if kind == "utf-8":
        text = _strict(data, "utf-8")
        if text is None:
            text = _mostly_utf8(data, labelled=True)
        if text is not None:
            return text, "utf-8"
        codec = None  # most non-ASCII bytes are not UTF-8: the label is wrong
    elif kind == "other":
        text = _strict(data, codec)  # type: ignore[arg-type]
        if text is not None:
            return text, codec  # type: ignore[return-value]
        codec = None
    utf8 = _strict(data, "utf-8")
    if utf8 is not None and not _SUSPICIOUS_UTF8.search(utf8[:SAMPLE_BYTES]):
        # Non-ASCII bytes that form valid utf-8 are utf-8 whatever 8-bit label they carry: windows-1251 or
        # koi8-r Russian text practically never happens to be valid utf-8. Short cp866 can ("Ёлка" is a
        # valid 4-byte sequence), but it then decodes to rare CJK or unassigned characters, checked above.
        return utf8, "utf-8"
    if kind == "none":
        mostly = _mostly_utf8(data, labelled=False)
        if mostly is not None:
            return mostly, "utf-8"
    declared_text = _strict(data, codec) if kind in ("cyrillic", "latin") else None
    guess = guess_cyrillic(data)
    if declared_text is not None:
        if guess is None or guess[0] == codec or not _label_is_wrong(declared_text, data, kind, guess):
            return declared_text, codec  # type: ignore[return-value]
    if guess is not None:
        sample = data[:SAMPLE_BYTES]
        non_ascii = sum(1 for b in sample if b >= 0x80)
        # Plausible Cyrillic: on average each non-ASCII byte earned a positive score.
        if guess[1] > 0 or non_ascii == 0 or guess[1] / non_ascii > -1.0:
            return data.decode(guess[0], errors="replace"), guess[0]
    try:
        best = charset_normalizer.from_bytes(data[: SAMPLE_BYTES * 4]).best()
    except Exception:  # the detector is a heuristic library; it must not break mail intake
        best = None
    if best is not None and best.encoding:
        found = normalize_charset(best.encoding)
        if found is not None:
            text = _strict(data, found)
            if text is not None:
                return text, found
    if guess is not None:
        return data.decode(guess[0], errors="replace"), guess[0]
    return data.decode("utf-8", errors="replace"), "utf-8"


# When is a declared label "demonstrably wrong"? Only on evidence in the bytes themselves:
#  1. they do not decode under it (strict), e.g. 8-bit bytes labelled us-ascii, or gb2312 on cp1251 bytes;
#  2. an 8-bit label (Cyrillic or Latin) on bytes that are valid, plausible multi-byte UTF-8 (above);
#  3. utf-8 on bytes most of whose non-ASCII bytes are not UTF-8 (`_mostly_utf8`); a few bad bytes in
#     real UTF-8 (a cut multi-byte character, a stray byte) keep the label and become U+FFFD;
#  4. a Cyrillic label when another Cyrillic reading reads clearly better as Russian: both readings claim
#     to be Russian, so Russian letter statistics are a fair judge between them (koi8-r sent as cp1251);
#  5. a Latin-script label (latin-1, cp1252, iso-8859-2...) when its reading has the shape of Cyrillic
#     mojibake (most non-ASCII letters stand in runs of three or more: whole words of accented letters,
#     "Çäðàâñòâóéòå", which Western European text does not have; its accents sit among ASCII letters,
#     "oggi è stato") AND the Cyrillic reading reads clearly better as Russian.
# Any other label (Chinese, Japanese, Korean, Greek, Hebrew...) that decodes is kept: Russian letter
# statistics say nothing about Chinese, so they must not overrule it.
_NON_ASCII_LETTER = re.compile(r"[^\x00-\x7f\W\d_]")
_NON_ASCII_LETTER_RUN = re.compile(r"[^\x00-\x7f\W\d_]{3,}")
_CYRILLIC_CODECS = frozenset({"cp1251", "koi8-r", "koi8-u", "cp866", "iso8859-5", "mac-cyrillic", "cp855",
                              "kz1048", "ptcp154"})  # fmt: skip


@functools.lru_cache(maxsize=64)
def _label_kind(codec: str | None) -> str:
    """"none" (no usable label, or us-ascii), "utf-8", "cyrillic" (an 8-bit Cyrillic table), "latin" (an
    8-bit table whose upper half is mostly Latin letters) or "other" (multi-byte or non-Latin tables)."""
    if codec is None:
        return "none"
    name = codecs.lookup(codec).name
    if name == "ascii":
        return "none"
    if name == "utf-8":
        return "utf-8"
    if name in _CYRILLIC_CODECS:
        return "cyrillic"
    upper = bytes(range(0xC0, 0x100)).decode(codec, errors="replace")
    if len(upper) == 64 and sum(1 for ch in upper if "LATIN" in unicodedata.name(ch, "")) >= 24:
        return "latin"
    return "other"


def _label_is_wrong(declared_text: str, data: bytes, kind: str, guess: tuple[str, float]) -> bool:
    """Rules 4 and 5 above: the 8-bit label decodes, but the bytes show they are other Cyrillic text."""
    sample = declared_text[: len(data[:SAMPLE_BYTES])]
    if kind == "latin":
        letters = len(_NON_ASCII_LETTER.findall(sample))
        in_runs = sum(len(run) for run in _NON_ASCII_LETTER_RUN.findall(sample))
        if letters == 0 or in_runs * 2 <= letters:
            return False
    declared_score = russian_score(sample)
    # Clearly better: a margin that grows with the amount of non-ASCII letters, so a couple of odd
    # characters do not flip a correctly labelled message; the base is high enough that a short all-caps
    # word ("ФНС РФ" in cp1251 reads as lowercase "тмя пт" in koi8-r, which scores ~4 better) keeps its
    # label: five letters of frequency statistics are no proof.
    margin = 4.5 + 0.1 * _letters(declared_text[:SAMPLE_BYTES])
    return guess[1] > declared_score + margin


_BAD_BYTE = re.compile("[\udc80-\udcff]")
_NON_ASCII = re.compile("[^\x00-\x7f]")


def _mostly_utf8(data: bytes, *, labelled: bool) -> str | None:
    """UTF-8 with a few invalid bytes, decoded with U+FFFD for them; None when the bytes are not UTF-8.
    Labelled utf-8 stays utf-8 unless invalid bytes outnumber the valid non-ASCII characters (8-bit
    Cyrillic labelled utf-8 is nearly all invalid bytes); unlabelled bytes need four valid characters per
    invalid byte and none of the rare characters single-byte text decodes to."""
    text = data[: SAMPLE_BYTES * 4].decode("utf-8", errors="surrogateescape")
    bad = len(_BAD_BYTE.findall(text))
    good = len(_NON_ASCII.findall(text)) - bad
    if labelled:
        if good < max(bad, 1):
            return None
    elif good < 3 or good < 4 * bad or _SUSPICIOUS_UTF8.search(_BAD_BYTE.sub("", text)):
        return None
    return data.decode("utf-8", errors="replace")


# ---- header values -------------------------------------------------------------------------------------

# An RFC 2047 encoded word, found leniently: also glued to other text and with a lowercase b/q.
_ENCODED_WORD = re.compile(r"=\?([^?\s]{1,60})\?([bBqQ])\?([^?\s]*?)\?=")
_B_ALPHABET = re.compile(r"[A-Za-z0-9+/=_-]*")
_BETWEEN_WORDS = re.compile(r"[ \t\r\n]*")
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]")
_WHITESPACE_RUN = re.compile(r"[\t\r\n]+")
# RFC 5322 unfolding removes the line break only: "Re:\r\n Hi" is "Re: Hi", not "Re:  Hi".
_FOLD = re.compile(r"\r?\n(?=[ \t])")


def clean_header_text(text: str) -> str:
    """Unfold and remove CR/LF, other control characters and bidi overrides from a decoded header value."""
    if "\n" in text or "\r" in text:  # most values are one line: skip both scans (~10 % of a parse)
        text = _WHITESPACE_RUN.sub(" ", _FOLD.sub("", text))
    elif "\t" in text:
        text = _WHITESPACE_RUN.sub(" ", text)
    return _CONTROL.sub("", text).strip()


def raw_header_bytes(value: str) -> bytes:
    """The bytes behind a header value as the email package stores it (8-bit bytes as surrogate escapes)."""
    try:
        return value.encode("ascii", "surrogateescape")
    except UnicodeEncodeError:
        return value.encode("utf-8", "surrogateescape")


def _decode_b(payload: str) -> bytes:
    if not _B_ALPHABET.fullmatch(payload):
        raise ValueError("not base64")
    cleaned = payload.strip().replace("-", "+").replace("_", "/")  # tolerate the url-safe alphabet
    cleaned = cleaned.rstrip("=")
    cleaned += "=" * (-len(cleaned) % 4)
    try:
        return base64.b64decode(cleaned)
    except (binascii.Error, ValueError):
        if len(cleaned.rstrip("=")) % 4 == 1:  # one stray character: drop it rather than lose the word
            trimmed = cleaned.rstrip("=")[:-1]
            try:
                return base64.b64decode(trimmed + "=" * (-len(trimmed) % 4))
            except (binascii.Error, ValueError):
                pass
        raise


def _decode_q(payload: str) -> bytes:
    out = bytearray()
    raw = payload.replace("_", " ").encode("ascii", "surrogateescape")
    i = 0
    while i < len(raw):
        byte = raw[i]
        if byte == 0x3D and _is_hex(raw[i + 1 : i + 3]):
            out.append(int(raw[i + 1 : i + 3], 16))
            i += 3
            continue
        out.append(byte)
        i += 1
    return bytes(out)


def _is_hex(pair: bytes) -> bool:
    return len(pair) == 2 and all(chr(b) in "0123456789abcdefABCDEF" for b in pair)


def _decode_plain(segment: str) -> str:
    data = raw_header_bytes(segment)
    if data.isascii():
        return segment
    return decode_bytes(data)[0]


def decode_header_bytes(data: bytes, charset: str | None) -> str:
    """Raw 8-bit header bytes decoded under a charset hint (trusted unless the bytes prove it wrong),
    cleaned like `decode_header`."""
    return clean_header_text(decode_bytes(data, charset)[0])


def decode_header(value: str) -> str:
    """Decode a raw header value: RFC 2047 encoded words (broken ones too: split multibyte characters across
    words, missing padding, words glued to text) and raw 8-bit bytes in an unknown charset. The result is
    cleaned with `clean_header_text`. Never raises."""
    try:
        return clean_header_text(_decode_header(value))
    except Exception:  # a header must never stop intake; show what we have
        return clean_header_text(raw_header_bytes(value).decode("utf-8", errors="replace"))


def _decode_header(value: str) -> str:
    if "=?" not in value:
        return _decode_plain(value)
    pieces: list[str] = []
    pending: list[tuple[str, bytes]] = []  # adjacent encoded words: bytes joined before decoding

    def flush() -> None:
        if not pending:
            return
        # Adjacent words in the same charset are joined as bytes: senders split multibyte characters.
        groups: list[tuple[str, bytearray]] = []
        for charset, data in pending:
            if groups and groups[-1][0] == charset:
                groups[-1][1].extend(data)
            else:
                groups.append((charset, bytearray(data)))
        for charset, data in groups:
            pieces.append(decode_bytes(bytes(data), charset.split("*", 1)[0])[0])
        pending.clear()

    pos = 0
    for match in _ENCODED_WORD.finditer(value):
        between = value[pos : match.start()]
        if pending and _BETWEEN_WORDS.fullmatch(between):
            pass  # whitespace between two encoded words is not part of the text (RFC 2047 section 6.2)
        else:
            flush()
            if between:
                pieces.append(_decode_plain(between))
        charset, encoding, payload = match.group(1), match.group(2).lower(), match.group(3)
        try:
            data = _decode_b(payload) if encoding == "b" else _decode_q(payload)
        except (binascii.Error, ValueError):
            flush()
            pieces.append(match.group(0))  # undecodable word: keep it visible rather than drop text
            pos = match.end()
            continue
        pending.append((charset.lower(), data))
        pos = match.end()
    flush()
    if pos < len(value):
        pieces.append(_decode_plain(value[pos:]))
    return "".join(pieces)
