"""The jinja2 Environment of templates/telegram/<view>.<lang>.html: every value escaped the Telegram way,
and every post fitted within Telegram's 4096 UTF-16 units."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2

from bot.i18n import norm_lang, t
from bot.text import cut_utf16, visible_len, visible_text
from bot.views.text import tg_escape

TEMPLATES_DIR = Path(__file__).resolve().parent.parent.parent / "templates" / "telegram"

# Room kept below the hard limit: Telegram's own trimming is the only thing we do not model exactly.
SAFE_LIMIT = 4000


class TelegramViews:
    """One jinja2 Environment for templates/telegram/<view>.<lang>.html (an override dir first)."""

    def __init__(self, override_dir: Path | None = None) -> None:
        loaders: list[jinja2.BaseLoader] = []
        if override_dir is not None:
            loaders.append(jinja2.FileSystemLoader(str(override_dir)))
        loaders.append(jinja2.FileSystemLoader(str(TEMPLATES_DIR)))
        self.env = jinja2.Environment(
            loader=jinja2.ChoiceLoader(loaders),
            undefined=jinja2.StrictUndefined,
            autoescape=True,
            # finalize runs before autoescape: it escapes the Telegram way and marks the result safe.
            finalize=tg_escape,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=False,
        )

    def render(self, view: str, lang: str, **context: Any) -> str:
        return self.env.get_template(f"{view}.{norm_lang(lang)}.html").render(**context).strip()

    def render_fitted(
        self, view: str, lang: str, body: str, cut_key: str = "card.cut", limit: int = SAFE_LIMIT, **context: Any
    ) -> str:
        """Render with as much of `body` as fits in `limit`; the markup is never cut."""
        # A body of more than `limit` characters (each at least one UTF-16 unit, all shown) cannot fit:
        # it is not rendered, escaped and measured whole first. A 5 MB body cost the event loop about a
        # second per card that way (issue 16); now only the part that fits is ever rendered.
        if len(body.strip()) <= limit:
            full = self.render(view, lang, body=body, cut="", **context)
            if visible_len(full) <= limit:
                return full
        cut = t(cut_key, lang, n=len(body))
        base = self.render(view, lang, body="", cut=cut, **context)
        budget = limit - visible_len(base) - 2
        return self.render(view, lang, body=cut_utf16(body, budget).rstrip(), cut=cut, **context)

    def render_list(self, view: str, lang: str, items: list[Any], **context: Any) -> str:
        """Render a list view, dropping items from the end (with "… and N more") until it fits."""
        count = min(len(items), 60)
        while True:
            more = t("more_items", lang, n=len(items) - count) if count < len(items) else ""
            text = self.render(view, lang, items=items[:count], more=more, **context)
            if visible_len(text) <= SAFE_LIMIT or count == 0:
                return text if visible_len(text) <= SAFE_LIMIT else cut_utf16(visible_text(text), SAFE_LIMIT)
            count -= 1 if count < 10 else max(1, count // 5)

