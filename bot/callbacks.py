"""Typed callback data for the staff chat's inline buttons.

Ids only (MasterGroosha style): a button carries what to do and on which ticket, never text, so a
button is always under Telegram's 64-byte limit and everything else is read from the database when
it is pressed. `TicketAction.pack()` of the longest action with a 9-digit ticket id is ~25 bytes.
"""

from __future__ import annotations

from enum import StrEnum

from aiogram.filters.callback_data import CallbackData


class Op(StrEnum):
    ACCEPT = "a"
    CONFIRM_ACCEPT = "ac"  # accept despite the findings the policy raised
    REFUSE = "r"  # open the reason picker
    FAQ = "f"
    CLOSE = "c"
    UNDO = "u"  # undo a refusal within its grace period
    MORE = "m"  # the "…" keyboard
    BACK = "b"  # back to the card's own keyboard
    FULL_TEXT = "t"
    FILES = "fl"
    EML = "e"
    HINT_REPLY = "h"  # explains that a Telegram reply to the card goes to the client
    OPEN = "o"  # show a ticket (e.g. the oldest waiting one, 2.3)


class Reason(StrEnum):
    """Refusal reasons: the keys of models.workflow.REFUSAL_EVENTS."""

    UNIDENTIFIED = "unidentified"
    OUT_OF_SCOPE = "out_of_scope"
    PROFANITY = "profanity"
    DUPLICATE = "duplicate"
    MONTHLY_LIMIT = "monthly_limit"
    CONSULTING = "consulting"


class RefuseOp(StrEnum):
    PICK = "p"  # a reason picked: ask for an optional comment
    NO_COMMENT = "n"  # refuse now, without a comment
    CANCEL = "x"


class TicketAction(CallbackData, prefix="tk"):
    op: Op
    ticket_id: int


class RefuseAction(CallbackData, prefix="rf"):
    op: RefuseOp
    ticket_id: int
    reason: Reason


class WithdrawOp(StrEnum):
    """"Refuse after acceptance": its own prefix, so no older button of the plain refusal can reach it."""

    ASK = "q"  # from the "…" menu of an accepted card: show the confirmation naming the acceptance
    CONFIRM = "y"  # confirmed: show the refusal reasons
    PICK = "p"  # a reason picked: ask for an optional comment
    NO_COMMENT = "n"  # withdraw the acceptance and refuse now, without a comment
    CANCEL = "x"


class WithdrawAction(CallbackData, prefix="wd"):
    op: WithdrawOp
    ticket_id: int
    reason: Reason | None = None  # set from PICK on
