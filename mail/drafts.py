"""Emails queued as drafts and composed when they are sent.

Composing one email (the jinja2 templates, then the standard library's MIME generator) costs about 6.7 ms
of CPU. The acknowledgement every new request gets (issue 20) was composed inside the ingest transaction,
on the process's one event loop: a 5,000-mail backlog took twice as long. Now ingest writes the outbox row
with what the email will say (`draft`, a `models.ports.EmailDraft`) and its Message-ID, in the same
transaction as the ticket, so nothing is lost and the thread knows the id at once; the email sender, after
claiming the row, composes it here:

* in a parse worker when the process has them (the CPU is spent on the other core), else in a thread;
* once: the bytes are stored on the row before they are sent, so a retry, or a resend after a crash,
  sends exactly the same message;
* with the ticket's outbound Message filled in (subject, text, size) in the same write.

A draft that cannot be composed (a template an operator broke) fails its row with the reason, as an
address the server refuses does; nothing is sent.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
from concurrent.futures import BrokenExecutor, Executor
from dataclasses import dataclass
from pathlib import Path

from tortoise.transactions import in_transaction

from mail.mailer import TemplateMailer
from mail.render import EmailRenderer
from models.ports import ComposedEmail, EmailDraft
from models.statuses import MessageDirection, OutboxStatus
from models.tables import EmailOutbox, Message

log = logging.getLogger(__name__)


class DraftError(Exception):
    """The draft cannot become an email; its row fails with this text as `last_error`. The text opens with
    `draft <reason>[ (<detail>)]: ` so the staff views can say why in the chat's language
    (`draft_failure`, bot/i18n.py `msg.email_reason.<reason>`) while the log and the row keep the English
    particulars. Reasons: "no_content" (neither bytes nor a draft), "no_composer" (this sender composes no
    drafts), "compose_failed" (a template, a variable or an address failed; `detail` is the error's type)."""

    def __init__(self, reason: str, message: str, detail: str = "") -> None:
        tag = f"{reason} ({detail})" if detail else reason
        super().__init__(f"draft {tag}: {message}")
        self.reason = reason
        self.detail = detail


_DRAFT_FAILURE = re.compile(r"draft (no_content|no_composer|compose_failed)(?: \((\w{1,100})\))?: ")


def draft_failure(error: str | None) -> tuple[str, str] | None:
    """(reason, detail) of a row's `last_error` written by DraftError, else None (an SMTP reply, say)."""
    found = _DRAFT_FAILURE.match(error or "")
    return (found.group(1), found.group(2) or "") if found else None


@dataclass(frozen=True)
class MailerRecipe:
    """What the process's TemplateMailer is built from: plain values, so a worker builds its own."""

    from_address: str
    from_name: str
    override_dir: str | None = None
    company_name: str = "Storeolis"
    support_address: str = "support@storeolis.ru"
    signature: str | None = None

    def build(self) -> TemplateMailer:
        renderer = EmailRenderer(
            override_dir=Path(self.override_dir) if self.override_dir else None,
            company_name=self.company_name,
            support_address=self.support_address,
            signature=self.signature,
        )
        return TemplateMailer(renderer, from_address=self.from_address, from_name=self.from_name)


_MAILERS: dict[MailerRecipe, TemplateMailer] = {}  # per process: a worker builds its mailer once


def compose_draft(recipe: MailerRecipe, draft: dict, message_id: str) -> ComposedEmail:
    """The email of a stored draft, under the Message-ID it was given when queued. Module-level and fed
    plain values: a process pool runs it."""
    mailer = _MAILERS.get(recipe)
    if mailer is None:
        mailer = _MAILERS.setdefault(recipe, recipe.build())
    parsed = EmailDraft.from_json(draft)
    return mailer.compose(parsed.event, parsed.thread, parsed.context, auto_submitted=parsed.auto_submitted,
                          message_id=message_id)


class DraftComposer:
    """Turns a claimed draft row into the bytes to send (see the module docstring)."""

    def __init__(self, recipe: MailerRecipe, executor: Executor | None = None) -> None:
        self.recipe = recipe
        self.executor = executor  # None: the loop's default thread pool

    async def content(self, row: EmailOutbox) -> bytes:
        """The bytes of `row`: its own, or its draft composed now and stored with it."""
        if row.content:
            return bytes(row.content)
        if not row.draft:
            raise DraftError("no_content", "the row has neither content nor a draft")
        composed = await self._compose(row)
        async with in_transaction():
            # Guarded by the claim: a row taken back meanwhile (lease, shutdown) is left to its new owner.
            await EmailOutbox.filter(id=row.id, status=OutboxStatus.SENDING).update(content=composed.content)
            await Message.filter(message_id=row.message_id, direction=MessageDirection.OUTBOUND).update(
                subject=composed.subject[:1000], text=composed.text, new_text=composed.text,
                size=len(composed.content),
            )
        row.content = composed.content
        return composed.content

    async def _compose(self, row: EmailOutbox) -> ComposedEmail:
        job = functools.partial(compose_draft, self.recipe, row.draft, row.message_id)
        loop = asyncio.get_running_loop()
        try:
            try:
                return await loop.run_in_executor(self.executor, job)
            except BrokenExecutor:
                # A worker died (the parse path reports it); the email need not wait for the pool.
                log.warning("email outbox #%s: the worker pool is broken; composing in a thread", row.id)
                return await asyncio.to_thread(job)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # noqa: BLE001 - a template, a variable, a bad address: all fail the row
            raise DraftError("compose_failed", f"could not compose the {row.event} email: {type(error).__name__}: {error}",
                             detail=type(error).__name__) from error
