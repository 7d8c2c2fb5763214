"""Client emails from templates: one jinja2 Environment, one HTML source per event and language.

Template files live in `templates/email/` (and, first, in an operator's override directory):

- `<event>.<lang>.html`          the body; the single source of both alternatives. The plain-text part is
                                 derived from the rendered HTML, so the two can never say different things;
- `<event>.<lang>.subject.txt`   optional; gets `reply_subject` ("Re: <topic> [#N]", or "" when the client's
                                 subject was empty) and decides what to do without it;
- `_layout.<lang>.html`, `_signature.<lang>.html`  shared greeting, staff comment, ticket note, signature.

Every template gets `ticket_number`, `client_name`, `original_subject`, `support_address`,
`company_name`, `signature`, `staff_name`, `comment`, `withdrawn_acceptance`, `language`, plus two derived values:
`topic` (the client's subject without Re:/Fwd: prefixes and without our `[#N]` tag) and `reply_subject`.
A missing variable is an error (StrictUndefined), never a silently empty sentence in a client's inbox.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import html2text
import jinja2
from markupsafe import Markup, escape

EVENTS: tuple[str, ...] = (
    "acknowledged",  # a new request is registered (2.3): sent at once by ingest, not by a staff decision
    "accepted",
    "refused_unidentified",
    "refused_out_of_scope",
    "refused_profanity",
    "refused_duplicate",
    "refused_monthly_limit",
    "consulting_not_provided",
    "faq_answer",
    "staff_reply",
    "resolved",
)
LANGUAGES: tuple[str, ...] = ("ru", "en")

SHIPPED_DIR = Path(__file__).resolve().parent.parent / "templates" / "email"

# Used only when there is no `<event>.<lang>.subject.txt` and the client's subject was empty.
_FALLBACK_SUBJECT = {"ru": "Ваше обращение", "en": "Your request"}

# Reply/forward prefixes mail clients put in front of a subject, in the languages our clients use.
# "Re[2]:" and "Re(2):" are Outlook/The Bat! counters. Longer alternatives first ("ответ" before "отв").
_PREFIX_RE = re.compile(
    r"^\s*(?:(?:re|fwd|fw|aw|wg|ответ|отв|пересл|перес)\s*(?:\[\d+\]|\(\d+\))?\s*:\s*)+",
    re.IGNORECASE,
)
_ALLOWED_LINK_SCHEMES = frozenset({"http", "https"})


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    text: str
    html: str


def ticket_tag(ticket_number: int | str) -> str:
    return f"[#{ticket_number}]"


def strip_subject_prefixes(subject: str) -> str:
    """'RE: Fwd: Отв: Касса не работает' -> 'Касса не работает'; whitespace collapsed to one line."""
    return _PREFIX_RE.sub("", " ".join(subject.split())).strip()


def reply_subject(original_subject: str, ticket_number: int | str) -> str:
    """'Re: <subject without prefixes> [#N]', keeping an existing [#N] instead of adding a second one;
    "" when nothing is left of the original subject (the caller then uses a per-event default)."""
    topic = strip_subject_prefixes(original_subject)
    if not topic:
        return ""
    tag = ticket_tag(ticket_number)
    if _tag_re(ticket_number).search(topic):
        # Normalise "[# 12]" to "[#12]" so our own intake recognises it the same way every time.
        return "Re: " + _tag_re(ticket_number).sub(tag, topic)
    return f"Re: {topic} {tag}"


def subject_topic(original_subject: str, ticket_number: int | str) -> str:
    """What the client's email was about, for quoting in a sentence: no prefixes, no [#N] tag."""
    topic = _tag_re(ticket_number).sub(" ", strip_subject_prefixes(original_subject))
    return " ".join(topic.split())


def _tag_re(ticket_number: int | str) -> re.Pattern[str]:
    # (?!\d) so that ticket 12 does not match "[#123]".
    return re.compile(r"\[\s*#\s*" + re.escape(str(ticket_number)) + r"(?!\d)\s*\]")


def nl2br(value: Any) -> Markup:
    """Escape text written by a person (client or staff), then keep their line breaks."""
    lines = str(value).replace("\r\n", "\n").replace("\r", "\n").split("\n")
    # "<br>" without a newline: a newline in HTML is a space, which html2text would keep as a
    # leading space on the next line of the plain-text part.
    return Markup("<br>").join(escape(line) for line in lines)


class _PlainText(html2text.HTML2Text):
    """html2text tuned for a plain-text email rather than Markdown.

    - no Markdown escaping: a staff line "- item" or "C:\\path" must reach the client unchanged;
    - links as "title (url)": readable in any mail client, unlike "[title](url)";
    - no emphasis markers, no line wrapping (mail clients wrap themselves, URLs stay whole).
    """

    def __init__(self) -> None:
        super().__init__(bodywidth=0)
        self.ignore_links = True  # we write links ourselves in handle_tag
        self.ignore_emphasis = True
        self.ignore_images = True
        self.unicode_snob = True  # keep «», — and Cyrillic entities as they are
        self._links: list[tuple[str, list[str]]] = []

    def handle_tag(self, tag: str, attrs: dict[str, str | None], start: bool) -> None:
        super().handle_tag(tag, attrs, start)
        if tag != "a":
            return
        if start:
            self._links.append((attrs.get("href") or "", []))
        elif self._links:
            href, text_parts = self._links.pop()
            if _link_needs_url(href, "".join(text_parts).strip()):
                self.o(f" ({href})")

    def handle_data(self, data: str, entity_char: bool = False) -> None:
        if self._links:
            self._links[-1][1].append(data)
        # entity_char=True is html2text's only switch that skips Markdown escaping of this data.
        super().handle_data(data, entity_char=True)


def _link_needs_url(href: str, text: str) -> bool:
    if not href or href.startswith("mailto:"):
        return False  # a mailto link's text is the address already
    bare = re.sub(r"^[a-z]+://", "", href, flags=re.IGNORECASE).rstrip("/")
    return text not in (href, bare)


def html_to_text(html: str) -> str:
    converter = _PlainText()
    text = converter.handle(html)
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").split("\n")]
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
    return text + "\n"


def _check_links(links: Any) -> None:
    """FAQ links come from staff; anything but http(s) (javascript:, data:) must not reach a client."""
    for link in links:
        url = link["url"] if isinstance(link, dict) else link.url
        if urlsplit(str(url)).scheme.lower() not in _ALLOWED_LINK_SCHEMES:
            raise ValueError(f"FAQ link must be http(s): {url!r}")


class EmailRenderer:
    def __init__(
        self,
        *,
        override_dir: Path | None = None,
        company_name: str = "Storeolis",
        support_address: str = "support@storeolis.ru",
        signature: str | None = None,
    ) -> None:
        """`signature` replaces the default closing line ("служба технической поддержки <company>")
        in both languages; leave it None to use `_signature.<lang>.html`."""
        self.override_dir = override_dir
        self.company_name = company_name
        self.support_address = support_address
        self.signature = signature or ""
        loaders: list[jinja2.BaseLoader] = []
        if override_dir is not None:
            # First, so an operator can replace any single file without touching code or the shipped set.
            loaders.append(jinja2.FileSystemLoader(str(override_dir)))
        loaders.append(jinja2.FileSystemLoader(str(SHIPPED_DIR)))
        self.env = jinja2.Environment(
            loader=jinja2.ChoiceLoader(loaders),
            undefined=jinja2.StrictUndefined,
            # HTML escaped (client and staff text is hostile by default); subjects are plain text.
            autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default=False),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters["nl2br"] = nl2br

    def render(self, event: str, language: str, context: dict[str, Any]) -> RenderedEmail:
        """Render one email. Raises ValueError for an unknown event or language (only "ru" and "en")
        or a non-http(s) FAQ link, and jinja2.UndefinedError when a variable the template needs is missing."""
        if event not in EVENTS:
            raise ValueError(f"unknown email event: {event!r}")
        if language not in LANGUAGES:
            raise ValueError(f"unsupported language: {language!r} (expected one of {LANGUAGES})")
        for key in ("ticket_number", "client_name", "original_subject"):
            if key not in context:
                raise jinja2.UndefinedError(f"{key!r} is undefined")
        if "faq_links" in context:
            _check_links(context["faq_links"])

        number = context["ticket_number"]
        original = str(context["original_subject"])
        full: dict[str, Any] = {
            "company_name": self.company_name,
            "support_address": self.support_address,
            "signature": self.signature,
            "staff_name": "",
            "comment": "",
            "withdrawn_acceptance": "",  # a refusal after acceptance: the date the client was told "accepted"
            **context,
            "language": language,
            "topic": subject_topic(original, number),
            "reply_subject": reply_subject(original, number),
        }
        html = self.env.get_template(f"{event}.{language}.html").render(full)
        return RenderedEmail(subject=self._subject(event, language, full), text=html_to_text(html), html=html)

    def _subject(self, event: str, language: str, context: dict[str, Any]) -> str:
        try:
            template = self.env.get_template(f"{event}.{language}.subject.txt")
        except jinja2.TemplateNotFound:
            subject = context["reply_subject"] or (
                f"{_FALLBACK_SUBJECT[language]} {ticket_tag(context['ticket_number'])}"
            )
        else:
            subject = template.render(context)
        # A subject is one line whatever the template's whitespace; compose sanitizes it again.
        return " ".join(subject.split())

    def sample_context(self, event: str, language: str) -> dict[str, Any]:
        """Realistic data for every variable `event` uses; also what `check_all` renders with."""
        if event not in EVENTS:
            raise ValueError(f"unknown email event: {event!r}")
        if language not in LANGUAGES:
            raise ValueError(f"unsupported language: {language!r} (expected one of {LANGUAGES})")
        ru = language == "ru"
        context: dict[str, Any] = {
            "ticket_number": 1042,
            "client_name": "Ирина Соколова" if ru else "Irina Sokolova",
            "original_subject": "Re: Не загружается каталог товаров"
            if ru
            else "Re: Product catalogue fails to load",
            "staff_name": "Алексей Смирнов" if ru else "Alexey Smirnov",
            "comment": "",
        }
        links = [
            {"title": "Импорт каталога" if ru else "Catalogue import", "url": "https://storeolis.ru/help/catalog-import"},
            {"title": "Частые ошибки" if ru else "Common errors", "url": "https://storeolis.ru/help/faq"},
        ]
        extra: dict[str, dict[str, Any]] = {
            "acknowledged": {"deadline": "02.12.2026 18:00", "timezone": "Europe/Moscow", "faq_links": links},
            "refused_duplicate": {"original_ticket_number": 1037},
            "refused_monthly_limit": {"monthly_limit": 3},
            "faq_answer": {
                "faq_answer_text": (
                    "Каталог загружается из файла YML: проверьте, что файл доступен по ссылке."
                    if ru
                    else "The catalogue is imported from a YML file: check that the file is reachable."
                ),
                "faq_links": links,
            },
            "staff_reply": {
                "reply_text": (
                    "Мы перезапустили импорт.\nКаталог снова доступен, проверьте, пожалуйста."
                    if ru
                    else "We restarted the import.\nThe catalogue is available again, please check."
                ),
            },
        }
        context.update(extra.get(event, {}))
        return context

    def check_all(self) -> list[str]:
        """Render every event in every language with sample data; return readable problems, [] when fine.

        Run at start-up (`python -m bot check`) so a broken override fails the deploy, not a client's email.
        """
        problems: list[str] = []
        if self.override_dir is not None:
            problems.extend(_check_override_dir(self.override_dir))
        for event in EVENTS:
            for language in LANGUAGES:
                name = f"{event}.{language}"
                try:
                    context = self.sample_context(event, language)
                    email = self.render(event, language, context)
                except Exception as exc:  # any failure of an operator's template is a finding, not a crash
                    problems.append(f"{name}: {type(exc).__name__}: {exc}")
                    continue
                tag = ticket_tag(context["ticket_number"])
                for part in ("subject", "text", "html"):
                    if tag not in getattr(email, part):
                        problems.append(f"{name}: the {part} does not mention the ticket number {tag}")
        return problems


def _check_override_dir(override_dir: Path) -> list[str]:
    if not override_dir.is_dir():
        return [f"override directory {override_dir} does not exist"]
    known = {p.name for p in SHIPPED_DIR.iterdir()}
    known |= {f"{e}.{lang}.{kind}" for e in EVENTS for lang in LANGUAGES for kind in ("html", "subject.txt")}
    # A misspelt file name would otherwise be ignored silently and the shipped text sent instead.
    return [
        f"override {path.name} is not a known template name and is never used"
        for path in sorted(override_dir.iterdir())
        if path.is_file() and not path.name.startswith(".") and path.name not in known
    ]
