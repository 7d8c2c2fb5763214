"""Telegram's text measures, written once: its length unit (UTF-16 code units), cutting to a limit
without splitting a surrogate pair, and the plain text a reader sees of our HTML.

Used by the card renderer (bot/board.py) and by the outbox's plain-text fallback
(bot/telegram_outbox.py). tests/rig keeps its own copies on purpose: the fake Bot API server is an
independent oracle of what Telegram would accept.
"""

from __future__ import annotations

import html

from models.text_scan import tags_removed


def utf16_len(text: str) -> int:
    """Telegram's length of `text`: UTF-16 code units (an astral character such as an emoji counts 2)."""
    return len(text.encode("utf-16-le")) // 2


def cut_utf16(text: str, limit: int) -> str:
    """The longest prefix of `text` within `limit` UTF-16 units, never splitting a surrogate pair."""
    if limit <= 0:
        return ""
    if utf16_len(text) <= limit:
        return text
    used = 0
    for i, char in enumerate(text):
        used += 2 if ord(char) > 0xFFFF else 1
        if used > limit:
            return text[:i]
    return text


def truncate_utf16(text: str, limit: int) -> str:
    """`text` within `limit` UTF-16 units, ending with an ellipsis when it had to be cut."""
    if utf16_len(text) <= limit:
        return text
    return cut_utf16(text, limit - 1) + "…"


def html_to_text(html_text: str) -> str:
    """What Telegram shows of our HTML: tags removed and the named entities decoded (untrimmed).
    Exact only for HTML built here (every user text escaped, so every '<' starts one of our tags);
    on broken HTML it still ends, in linear time (models/text_scan.tags_removed)."""
    return html.unescape(tags_removed(html_text, ""))


def visible_text(html_text: str) -> str:
    """`html_to_text`, trimmed: what the reader sees and Telegram counts against its limits."""
    return html_to_text(html_text).strip()


def visible_len(html_text: str) -> int:
    return utf16_len(visible_text(html_text))
