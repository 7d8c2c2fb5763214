"""Card buttons that decide: accept (with confirmation when the policy objects), refuse (reason picker,
optional comment), undo a refusal, answer from FAQ, close, refuse after acceptance (confirmation naming
the acceptance, then the reasons), and the keyboard navigation ("…", back).

Each press becomes one desk call; the desk's guarded updates turn a double click or a faster
colleague into "already accepted: <name> at HH:MM". Every query is answered by CallbackAnswerMiddleware,
even when a handler fails.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiogram import F, Router
from aiogram.types import CallbackQuery
from aiogram.utils.callback_answer import CallbackAnswer

from bot.board import TelegramBoard, short
from bot.callbacks import Op, Reason, RefuseAction, RefuseOp, TicketAction, WithdrawAction, WithdrawOp
from bot.handlers.common import answer_text, delivered, set_keyboard
from bot.i18n import finding_title, reason_label, t
from bot.views.messages import ViewEdit, ViewMessage
from models.desk import Desk, Outcome
from models.policy.base import Verdict
from models.tables import KeyValue, OutboxStatus, StaffMember, TelegramOutbox, Ticket, TicketStatus

log = logging.getLogger(__name__)

PROMPT_KEY = "refuse_prompt:{chat_id}:{message_id}"  # prompts posted before they went through the outbox
PROMPT_KIND = "refuse_prompt"  # the outbox row of a refusal prompt


def prompt_key(chat_id: int, message_id: int) -> str:
    return PROMPT_KEY.format(chat_id=chat_id, message_id=message_id)


def build_decisions_router() -> Router:
    router = Router(name="decisions")

    @router.callback_query(TicketAction.filter(F.op.in_({Op.ACCEPT, Op.CONFIRM_ACCEPT})))
    async def accept(
        query: CallbackQuery,
        callback_data: TicketAction,
        desk: Desk,
        board: TelegramBoard,
        staff: StaffMember,
        callback_answer: CallbackAnswer,
    ) -> None:
        lang = board.lang
        ticket_id = callback_data.ticket_id
        confirmed = callback_data.op == Op.CONFIRM_ACCEPT
        outcome = await desk.accept(ticket_id, staff, confirmed=confirmed)
        if outcome.status == "needs_confirmation":
            what = ", ".join(finding_title(f, lang) for f in outcome.findings)
            callback_answer.text = short(t("ans.confirm", lang, what=what), 200)
            callback_answer.show_alert = True
            await set_keyboard(desk, query, board.confirm_keyboard(ticket_id, outcome.findings), ticket_id)
            return
        callback_answer.text = answer_text(outcome, board, "ans.accepted")
        if outcome.ok and outcome.older_waiting:
            # 2.3: requests are handled in order of arrival; say so, with the oldest one a click away.
            oldest = outcome.older_waiting[0]
            ids = ", ".join(f"#{i}" for i in outcome.older_waiting)
            text = board.views.render("notice", lang, text=t("msg.older_waiting", lang, n=ticket_id, ids=ids))
            chat_id = board.config.staff_chat_id
            older = ViewMessage(chat_id, text, board.open_keyboard(oldest), reply_to_card=ticket_id, ticket_id=ticket_id,
                                kind="notice")
            await desk.post(older, f"older:{ticket_id}:{query.id}", chat_id=chat_id)
        elif not outcome.ok:
            await set_keyboard(desk, query, await board.card_keyboard_now(ticket_id), ticket_id)

    @router.callback_query(TicketAction.filter(F.op == Op.REFUSE))
    async def refuse_menu(
        query: CallbackQuery, callback_data: TicketAction, desk: Desk, board: TelegramBoard,
        callback_answer: CallbackAnswer,
    ) -> None:
        ticket = await Ticket.get_or_none(id=callback_data.ticket_id)
        if ticket is None or ticket.status != TicketStatus.NEW:
            # A stale Refuse on an accepted card says who accepted it; refusing it is "refuse after
            # acceptance" in the "…" menu, never this button.
            await _not_waiting(query, desk, board, callback_answer, callback_data.ticket_id, ticket)
            return
        suggested = Verdict.from_json(ticket.verdict).refuse_reason if ticket.verdict else None
        callback_answer.text = t("ans.pick_reason", board.lang)
        await set_keyboard(desk, query, board.refuse_keyboard(ticket.id, suggested), ticket.id)

    @router.callback_query(RefuseAction.filter(F.op == RefuseOp.PICK))
    async def refuse_reason_picked(
        query: CallbackQuery, callback_data: RefuseAction, desk: Desk, board: TelegramBoard,
        staff: StaffMember, callback_answer: CallbackAnswer,
    ) -> None:
        await _reason_picked(query, desk, board, staff, callback_answer, callback_data.ticket_id,
                             callback_data.reason, withdrawing=False)

    @router.callback_query(RefuseAction.filter(F.op.in_({RefuseOp.NO_COMMENT, RefuseOp.CANCEL})))
    async def refuse_prompt_button(
        query: CallbackQuery, callback_data: RefuseAction, desk: Desk, board: TelegramBoard,
        staff: StaffMember, callback_answer: CallbackAnswer,
    ) -> None:
        await _prompt_button(query, desk, board, staff, callback_answer, callback_data.ticket_id,
                             callback_data.reason.value, cancel=callback_data.op == RefuseOp.CANCEL,
                             withdrawing=False)

    # Refuse after acceptance: "…" -> ask (names the acceptance) -> confirm -> reason -> comment or none.
    @router.callback_query(WithdrawAction.filter(F.op.in_({WithdrawOp.ASK, WithdrawOp.CONFIRM})))
    async def withdraw_menu(
        query: CallbackQuery, callback_data: WithdrawAction, desk: Desk, board: TelegramBoard,
        callback_answer: CallbackAnswer,
    ) -> None:
        lang = board.lang
        ticket_id = callback_data.ticket_id
        ticket = await Ticket.get_or_none(id=ticket_id)
        if ticket is None or ticket.status != TicketStatus.ACCEPTED:
            await _not_waiting(query, desk, board, callback_answer, ticket_id, ticket)
            return
        if query.message is None:
            return
        if callback_data.op == WithdrawOp.ASK:
            decided = await desk.decided(ticket_id)
            callback_answer.text = short(
                t("ans.withdraw_confirm", lang, who=short(decided.staff_name, 80), time=board.clock_time(decided.at))
                if decided is not None and decided.staff_name
                else t("ans.withdraw_confirm_unknown", lang),
                200,
            )
            callback_answer.show_alert = True
            value = board.withdraw_confirm_keyboard(ticket_id)
        else:
            suggested = Verdict.from_json(ticket.verdict).refuse_reason if ticket.verdict else None
            callback_answer.text = t("ans.pick_reason", lang)
            value = board.refuse_keyboard(ticket_id, suggested, withdrawing=True)
        await set_keyboard(desk, query, value, ticket_id)

    @router.callback_query(WithdrawAction.filter(F.op == WithdrawOp.PICK))
    async def withdraw_reason_picked(
        query: CallbackQuery, callback_data: WithdrawAction, desk: Desk, board: TelegramBoard,
        staff: StaffMember, callback_answer: CallbackAnswer,
    ) -> None:
        await _reason_picked(query, desk, board, staff, callback_answer, callback_data.ticket_id,
                             callback_data.reason, withdrawing=True)

    @router.callback_query(WithdrawAction.filter(F.op.in_({WithdrawOp.NO_COMMENT, WithdrawOp.CANCEL})))
    async def withdraw_prompt_button(
        query: CallbackQuery, callback_data: WithdrawAction, desk: Desk, board: TelegramBoard,
        staff: StaffMember, callback_answer: CallbackAnswer,
    ) -> None:
        if callback_data.reason is None:
            callback_answer.text = t("ans.invalid", board.lang, detail="?")
            return
        await _prompt_button(query, desk, board, staff, callback_answer, callback_data.ticket_id,
                             callback_data.reason.value, cancel=callback_data.op == WithdrawOp.CANCEL,
                             withdrawing=True)

    @router.callback_query(TicketAction.filter(F.op.in_({Op.UNDO, Op.FAQ, Op.CLOSE})))
    async def simple_decision(
        query: CallbackQuery, callback_data: TicketAction, desk: Desk, board: TelegramBoard,
        staff: StaffMember, callback_answer: CallbackAnswer,
    ) -> None:
        ticket_id = callback_data.ticket_id
        if callback_data.op == Op.UNDO:
            outcome, key = await desk.undo_refusal(ticket_id, staff), "ans.undone"
        elif callback_data.op == Op.FAQ:
            outcome, key = await desk.answer_faq(ticket_id, staff), "ans.faq_sent"
        else:
            outcome, key = await desk.close(ticket_id, staff), "ans.closed"
        callback_answer.text = answer_text(outcome, board, key)
        if outcome.status in ("too_late", "already", "invalid"):
            # The card may show a stale keyboard: put the one for the ticket's current state back.
            await set_keyboard(desk, query, await board.card_keyboard_now(ticket_id), ticket_id)

    @router.callback_query(TicketAction.filter(F.op.in_({Op.MORE, Op.BACK, Op.HINT_REPLY})))
    async def navigate(
        query: CallbackQuery, callback_data: TicketAction, desk: Desk, board: TelegramBoard,
        callback_answer: CallbackAnswer,
    ) -> None:
        ticket_id = callback_data.ticket_id
        if callback_data.op == Op.HINT_REPLY:
            callback_answer.text = short(t("ans.reply_hint", board.lang), 200)
            callback_answer.show_alert = True
            return
        if not await Ticket.exists(id=ticket_id):
            callback_answer.text = t("ans.not_found", board.lang)
            return
        if query.message is None:
            return
        value = (
            await board.more_keyboard(ticket_id)
            if callback_data.op == Op.MORE
            else await board.card_keyboard_now(ticket_id)
        )
        await set_keyboard(desk, query, value, ticket_id)

    return router


async def _not_waiting(
    query: CallbackQuery, desk: Desk, board: TelegramBoard, callback_answer: CallbackAnswer,
    ticket_id: int, ticket: Ticket | None,
) -> None:
    """A press that needs another state than the ticket's: say who decided it and when, and put the
    keyboard for the ticket's current state back on the card (it may be stale)."""
    if ticket is None:
        callback_answer.text = t("ans.not_found", board.lang)
        return
    if ticket.status == TicketStatus.NEW:
        outcome = Outcome("not_accepted", ticket_id)
    else:
        outcome = Outcome("already", ticket_id, decided=await desk.decided(ticket_id))
    callback_answer.text = answer_text(outcome, board, "ans.already")
    message = query.message
    if message is not None and message.message_id == ticket.card_message_id:
        await set_keyboard(desk, query, await board.card_keyboard_now(ticket_id), ticket_id)


async def _reason_picked(
    query: CallbackQuery, desk: Desk, board: TelegramBoard, staff: StaffMember,
    callback_answer: CallbackAnswer, ticket_id: int, reason: Reason | None, *, withdrawing: bool,
) -> None:
    """A refusal reason was picked: ask for the comment, if the ticket is still where the prompt began
    (waiting for a plain refusal, accepted for a withdrawal); otherwise say who decided meanwhile."""
    expected = TicketStatus.ACCEPTED if withdrawing else TicketStatus.NEW
    ticket = await Ticket.get_or_none(id=ticket_id)
    if ticket is None or ticket.status != expected or reason is None:
        await _not_waiting(query, desk, board, callback_answer, ticket_id, ticket)
        return
    await _ask_for_comment(query, desk, board, staff, callback_answer, ticket_id, reason.value,
                           withdrawing=withdrawing)


async def _ask_for_comment(
    query: CallbackQuery, desk: Desk, board: TelegramBoard, staff: StaffMember, callback_answer: CallbackAnswer,
    ticket_id: int, reason: str, *, withdrawing: bool,
) -> None:
    """A reason picked: post the prompt whose reply carries the comment (replies.py), with "no comment".
    The prompt goes through the outbox with the pending refusal remembered under its key; a reply to it
    (or a button on it) finds that by the message id the outbox records when it posts the prompt."""
    lang = board.lang
    if query.message is None:
        return
    chat_id = query.message.chat.id
    key = "msg.withdraw_prompt" if withdrawing else "msg.refuse_prompt"
    prompt = ViewMessage(
        chat_id,
        board.views.render("notice", lang, text=t(key, lang, n=ticket_id, reason=reason_label(reason, lang))),
        board.refuse_prompt_keyboard(ticket_id, reason, withdrawing=withdrawing),
        reply_to_message_id=query.message.message_id,
        ticket_id=ticket_id,
        kind=PROMPT_KIND,
    )
    value: dict[str, Any] = {"ticket_id": ticket_id, "reason": reason, "staff_id": staff.id}
    if withdrawing:
        value["withdraw"] = True
    await delivered(await desk.post(prompt, f"prompt:{chat_id}:{query.id}", chat_id=chat_id, remember=value))
    callback_answer.text = short(reason_label(reason, lang), 200)
    await set_keyboard(desk, query, await board.card_keyboard_now(ticket_id), ticket_id)


async def _prompt_button(
    query: CallbackQuery, desk: Desk, board: TelegramBoard, staff: StaffMember,
    callback_answer: CallbackAnswer, ticket_id: int, reason: str, *, cancel: bool, withdrawing: bool,
) -> None:
    """"Refuse without a comment" or "Cancel" on a refusal prompt (plain, or after acceptance)."""
    lang = board.lang
    if query.message is None:
        return
    chat_id, message_id = query.message.chat.id, query.message.message_id
    pending = await pending_prompt(chat_id, message_id)
    if pending is not None:
        await KeyValue.filter(key=pending.key).delete()
    if cancel:
        callback_answer.text = t("ans.cancelled", lang)
        text = t("msg.refuse_cancelled", lang, n=ticket_id)
    else:
        refuse = desk.withdraw_acceptance_and_refuse if withdrawing else desk.refuse
        outcome = await refuse(ticket_id, staff, reason)
        callback_answer.text = answer_text(
            outcome, board, "ans.refused", seconds=int(desk.config.refusal_grace.total_seconds())
        )
        if not outcome.ok:
            await set_keyboard(desk, query, None, ticket_id)
            return
        done = "msg.withdraw_done" if withdrawing else "msg.refuse_done"
        text = t(done, lang, n=ticket_id, reason=reason_label(reason, lang), comment="")
    edit = ViewEdit(chat_id, message_id, board.views.render("notice", lang, text=text), ticket_id=ticket_id)
    await desk.post(edit, f"prompt_done:{query.id}", chat_id=chat_id)


async def pending_prompt(chat_id: int, message_id: int, wait: float = 2.0) -> KeyValue | None:
    """The pending refusal of the prompt posted as `message_id`, or None. The prompt's outbox row carries
    the key it is remembered under; a reply that arrives while the row's message id is still being
    recorded (Telegram answered, our commit is on its way) waits up to `wait` seconds for it."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    while True:
        row = await TelegramOutbox.filter(chat_id=chat_id, result_message_id=message_id, kind=PROMPT_KIND).first()
        if row is not None:
            return await KeyValue.get_or_none(key=row.idempotency_key)
        legacy = await KeyValue.get_or_none(key=prompt_key(chat_id, message_id))  # a prompt posted directly
        if legacy is not None or loop.time() >= deadline:
            return legacy
        if not await TelegramOutbox.exists(chat_id=chat_id, kind=PROMPT_KIND, status=OutboxStatus.SENDING):
            return None
        await asyncio.sleep(0.1)
