"""Text helpers of every view: what a client wrote, cleaned and escaped for Telegram HTML, and short."""

from __future__ import annotations

import html
import re
import unicodedata
from typing import Any

from markupsafe import Markup

from bot.i18n import norm_lang
from bot.text import truncate_utf16, utf16_len

# Unicode format characters (category Cf): invisible, and some reorder what is shown (U+202E turns
# "invoice_gpj.exe" into "invoice_exe.jpg"). Written out as ranges rather than computed from unicodedata
# at import (a scan of 1.1 M code points costs start-up time); tests/test_board.py checks the list
# still covers every Cf character Python knows.
_ZWJ = "\u200d"
_INVISIBLE_BMP = (  # without ZWJ (see _drop_invisible)
    "\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u180e\u200b\u200c\u200e\u200f\u202a-\u202e"
    "\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb"
)
_INVISIBLE_ASTRAL = (
    "\U000110bd\U000110cd\U00013430-\U0001343f\U0001bca0-\U0001bca3\U0001d173-\U0001d17a"
    "\U000e0001\U000e0020-\U000e007f"
)
INVISIBLE_RANGES = _INVISIBLE_BMP + _INVISIBLE_ASTRAL + _ZWJ
# Two classes: a class with astral ranges is about 3 times slower on every character (CPU time on 5.5 MB
# of Cyrillic: 0.045 s against 0.13 s), so that one runs only on text that has astral characters.
_INVISIBLE_BMP_RE = re.compile(f"[{_INVISIBLE_BMP}]")
_INVISIBLE_ASTRAL_RE = re.compile(f"[{_INVISIBLE_ASTRAL}]")
_ZWJ_RE = re.compile(_ZWJ)


def _is_pictograph(char: str) -> bool:
    """Emoji-ish: a symbol (So), a skin-tone modifier or the emoji variation selector."""
    return unicodedata.category(char) == "So" or "\U0001f3fb" <= char <= "\U0001f3ff" or char == "\ufe0f"


def _drop_invisible(match: re.Match[str]) -> str:
    # ZWJ between two pictographs builds one emoji (👩‍💻): kept. Anywhere else it is an invisible
    # character that splits words (and keyword checks), so it goes like every other one.
    if match.group() == _ZWJ:
        text, at = match.string, match.start()
        if 0 < at < len(text) - 1 and _is_pictograph(text[at - 1]) and _is_pictograph(text[at + 1]):
            return _ZWJ
    return ""


def strip_invisible(text: str) -> str:
    """`text` without format characters (bidi overrides and isolates, zero-width ones, the BOM, soft
    hyphens, Arabic letter mark, tags): what a client writes is shown in the order and with the
    characters it really has."""
    # Plain substitutions run in C; only ZWJs (rare) get the per-match look at their neighbours.
    text = _INVISIBLE_BMP_RE.sub("", text)
    if utf16_len(text) != len(text):  # has astral characters (a C-speed check: 4 ms for 5 MB)
        text = _INVISIBLE_ASTRAL_RE.sub("", text)
    return _ZWJ_RE.sub(_drop_invisible, text) if _ZWJ in text else text


def tg_escape(value: Any) -> Markup:
    """Telegram-HTML-safe text: invisible format characters removed (strip_invisible), <, > and &
    escaped; quotes left alone (Telegram needs no more). Every value a Telegram template renders goes
    through here (the jinja finalize), so every card field from email is cleaned in one place."""
    if isinstance(value, Markup):
        return value
    if value is None:
        return Markup("")
    return Markup(html.escape(strip_invisible(str(value)), quote=False))


def short(text: str | None, limit: int) -> str:
    """One line, at most `limit` UTF-16 units, an ellipsis when cut."""
    return truncate_utf16(" ".join((text or "").split()), limit)


def human_size(size: int, lang: str) -> str:
    units = ("Б", "КБ", "МБ", "ГБ") if norm_lang(lang) == "ru" else ("B", "KB", "MB", "GB")
    value = float(size)
    for unit in units:
        if value < 1024 or unit == units[-1]:
            return f"{value:.0f} {unit}" if unit == units[0] else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} {units[0]}"

