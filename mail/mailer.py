"""`TemplateMailer`: the domain's `Mailer` port, built from the jinja2 renderer and the composer."""

from __future__ import annotations

from typing import Any

from mail.compose import compose_email, make_message_id
from mail.render import EmailRenderer
from models.ports import ComposedEmail, ThreadInfo


class TemplateMailer:
    def __init__(self, renderer: EmailRenderer, *, from_address: str, from_name: str) -> None:
        self.renderer = renderer
        self.from_address = from_address
        self.from_name = from_name
        self.domain = from_address.split("@", 1)[1]

    def compose(
        self,
        event: str,
        thread: ThreadInfo,
        context: dict[str, Any],
        *,
        auto_submitted: bool = True,
        attachments: list[tuple[str, str, bytes]] | None = None,
        staff_name: str = "",
        message_id: str | None = None,
    ) -> ComposedEmail:
        """`message_id`: the id a draft was given when it was queued (None: a new one)."""
        full = {
            "ticket_number": thread.ticket_id,
            "client_name": thread.client_name,
            "original_subject": thread.original_subject,
            "staff_name": staff_name,
            **context,
        }
        rendered = self.renderer.render(event, thread.language, full)
        message_id = message_id or self.new_message_id()
        content = compose_email(
            from_address=self.from_address,
            from_name=self.from_name,
            to_address=thread.to_address,
            to_name=thread.to_name,
            subject=rendered.subject,
            text=rendered.text,
            html=rendered.html,
            message_id=message_id,
            in_reply_to=thread.in_reply_to,
            references=thread.references,
            auto_submitted=auto_submitted,
            attachments=attachments or [],
        )
        return ComposedEmail(
            message_id=message_id,
            recipients=[thread.to_address],
            content=content,
            subject=rendered.subject,
            text=rendered.text,
        )

    def new_message_id(self) -> str:
        return make_message_id(self.domain)
