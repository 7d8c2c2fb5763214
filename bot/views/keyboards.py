"""The inline keyboards: ids only in the callback data (bot/callbacks.py), within Telegram's 64 bytes."""

from __future__ import annotations

from typing import Any

from aiogram.filters.callback_data import CallbackData

from bot.callbacks import Op, Reason, RefuseAction, RefuseOp, TicketAction, WithdrawAction, WithdrawOp
from bot.i18n import finding_title, reason_label, t
from bot.views.context import ViewContext
from bot.views.text import short
from models.assignment import OPEN_STATUSES
from models.policy.base import Verdict
from models.tables import Ticket, TicketStatus

REASONS: tuple[str, ...] = tuple(r.value for r in Reason)


def button(text: str, data: CallbackData) -> dict[str, str]:
    return {"text": text, "callback_data": data.pack()}


def keyboard(rows: list[list[dict[str, str]]]) -> dict[str, Any]:
    return {"inline_keyboard": [row for row in rows if row]}



class Keyboards(ViewContext):
    # Keyboards ------------------------------------------------------------------------------
    def card_keyboard(self, ticket_id: int, status: TicketStatus, *, has_faq: bool, undo: bool) -> dict[str, Any]:
        lang = self.lang

        def b(key: str, op: Op, **kw: Any) -> dict[str, str]:
            return button(t(key, lang, **kw), TicketAction(op=op, ticket_id=ticket_id))

        more = b("btn.more", Op.MORE)
        # Every open card: take it, or answer it with a saved reply.
        tools = [b("btn.take", Op.TAKE), b("btn.template", Op.TEMPLATES)]
        if status == TicketStatus.NEW:
            rows = [[b("btn.accept", Op.ACCEPT), b("btn.refuse", Op.REFUSE)]]
            if has_faq:
                rows.append([b("btn.faq", Op.FAQ)])
            rows += [tools, [more]]
        elif status == TicketStatus.ACCEPTED:
            rows = [[b("btn.reply_hint", Op.HINT_REPLY)], tools, [b("btn.close", Op.CLOSE), more]]
        elif status == TicketStatus.ANSWERED:
            rows = [tools, [b("btn.close", Op.CLOSE), more]]
        elif status == TicketStatus.REFUSED and undo:
            rows = [[b("btn.undo", Op.UNDO)], [more]]
        elif status == TicketStatus.MERGED:
            rows = []  # merged: nothing left to do on this card
        else:
            rows = [[more]]
        return keyboard(rows)

    async def card_keyboard_now(self, ticket_id: int) -> dict[str, Any]:
        ticket = await Ticket.get(id=ticket_id)
        status = TicketStatus(ticket.status)
        has_faq = bool(ticket.verdict and Verdict.from_json(ticket.verdict).faq_entries)
        undo = status == TicketStatus.REFUSED and await self._undo_possible(ticket_id)
        return self.card_keyboard(ticket_id, status, has_faq=has_faq, undo=undo)

    async def more_keyboard(self, ticket_id: int) -> dict[str, Any]:
        lang = self.lang
        ticket = await Ticket.get(id=ticket_id)
        files = await self.ticket_files(ticket_id)

        def b(key: str, op: Op, **kw: Any) -> dict[str, str]:
            return button(t(key, lang, **kw), TicketAction(op=op, ticket_id=ticket_id))

        rows = [[b("btn.full_text", Op.FULL_TEXT)]]
        if files:
            rows.append([b("btn.files", Op.FILES, n=len(files))])
        rows.append([b("btn.eml", Op.EML)])
        rows.append([b("btn.client_history", Op.CLIENT_HISTORY)])
        if ticket.status in OPEN_STATUSES:
            rows.append([b("btn.close", Op.CLOSE)])
            rows.append([b("btn.merge", Op.MERGE)])
        if ticket.status == TicketStatus.ACCEPTED:
            # Refusing an accepted request is its own, confirmed action (never the plain Refuse button).
            rows.append([button(t("btn.withdraw", lang), WithdrawAction(op=WithdrawOp.ASK, ticket_id=ticket_id))])
        rows.append([b("btn.back", Op.BACK)])
        return keyboard(rows)

    def refuse_keyboard(self, ticket_id: int, suggested: str | None, *, withdrawing: bool = False) -> dict[str, Any]:
        """The reason picker; `withdrawing`: of a refusal after acceptance (its own callback prefix)."""
        lang = self.lang
        order = sorted(REASONS, key=lambda r: r != suggested)
        rows = []
        for reason in order:
            label = reason_label(reason, lang)
            if reason == suggested:
                label = "⭐ " + label
            data: CallbackData = (
                WithdrawAction(op=WithdrawOp.PICK, ticket_id=ticket_id, reason=Reason(reason))
                if withdrawing
                else RefuseAction(op=RefuseOp.PICK, ticket_id=ticket_id, reason=Reason(reason))
            )
            rows.append([button(label, data)])
        rows.append([button(t("btn.back", lang), TicketAction(op=Op.BACK, ticket_id=ticket_id))])
        return keyboard(rows)

    def refuse_prompt_keyboard(self, ticket_id: int, reason: str, *, withdrawing: bool = False) -> dict[str, Any]:
        lang = self.lang
        r = Reason(reason)
        if withdrawing:
            return keyboard(
                [
                    [button(t("btn.no_comment", lang),
                            WithdrawAction(op=WithdrawOp.NO_COMMENT, ticket_id=ticket_id, reason=r))],
                    [button(t("btn.cancel", lang), WithdrawAction(op=WithdrawOp.CANCEL, ticket_id=ticket_id, reason=r))],
                ]
            )
        return keyboard(
            [
                [button(t("btn.no_comment", lang), RefuseAction(op=RefuseOp.NO_COMMENT, ticket_id=ticket_id, reason=r))],
                [button(t("btn.cancel", lang), RefuseAction(op=RefuseOp.CANCEL, ticket_id=ticket_id, reason=r))],
            ]
        )

    def confirm_keyboard(self, ticket_id: int, findings: list[dict[str, Any]]) -> dict[str, Any]:
        lang = self.lang
        what = short(", ".join(finding_title(f, lang) for f in findings), 60)
        return keyboard(
            [
                [button(t("btn.confirm_accept", lang, what=what), TicketAction(op=Op.CONFIRM_ACCEPT, ticket_id=ticket_id))],
                [button(t("btn.back", lang), TicketAction(op=Op.BACK, ticket_id=ticket_id))],
            ]
        )

    def withdraw_confirm_keyboard(self, ticket_id: int) -> dict[str, Any]:
        """The confirmation of a refusal after acceptance (the press is answered with who accepted when)."""
        lang = self.lang
        return keyboard(
            [
                [button(t("btn.withdraw_confirm", lang), WithdrawAction(op=WithdrawOp.CONFIRM, ticket_id=ticket_id))],
                [button(t("btn.back", lang), TicketAction(op=Op.BACK, ticket_id=ticket_id))],
            ]
        )

    def open_keyboard(self, ticket_id: int) -> dict[str, Any]:
        return keyboard([[button(t("btn.open", self.lang, n=ticket_id), TicketAction(op=Op.OPEN, ticket_id=ticket_id))]])


    def alert_keyboard(self, ticket_id: int) -> dict[str, Any]:
        """The on-call agent acts from an SLA alert itself: open the request or take it."""
        return keyboard(
            [
                [
                    button(t("btn.open", self.lang, n=ticket_id), TicketAction(op=Op.OPEN, ticket_id=ticket_id)),
                    button(t("btn.accept", self.lang), TicketAction(op=Op.ACCEPT, ticket_id=ticket_id)),
                ]
            ]
        )
