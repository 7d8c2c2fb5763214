"""Typed callback data for the staff chat's inline buttons.

Ids only (MasterGroosha style): a button carries what to do and on which ticket, never text, so a
button is always under Telegram's 64-byte limit and everything else is read from the database when
it is pressed. `TicketAction.pack()` of the longest action with a 9-digit ticket id is ~25 bytes.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from aiogram.filters.callback_data import CallbackData
from pydantic import BeforeValidator, Field

# Ticket ids are IntField primary keys (models/tables.py): signed 32-bit on SQLite and PostgreSQL alike.
# A button carrying anything else does not parse (pydantic's ValidationError is a ValueError, which the
# CallbackData filter treats as "not mine"), so it falls through to the staff chat's fallback and is
# answered "stale" instead of reaching the database with an id it cannot bind (OverflowError).
MAX_ID = 2**31 - 1


def _ascii_digits(value: object) -> object:
    """From a packed button only plain digits: " 5", "5.0", "٣" are not ids we ever packed."""
    if isinstance(value, str) and not (value.isascii() and value.isdigit()):
        raise ValueError("not an id")
    return value


def parse_ticket_id(text: str) -> int | None:
    """A ticket number typed by staff (/ticket N, /note N): plain ASCII digits within the id column's
    range, else None (a 20-digit number must answer "usage", not reach the database and overflow)."""
    if not (text.isascii() and text.isdigit()) or len(text) > len(str(MAX_ID)):
        return None
    value = int(text)
    return value if 1 <= value <= MAX_ID else None


TicketId = Annotated[int, BeforeValidator(_ascii_digits), Field(ge=1, le=MAX_ID)]


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
    TAKE = "tk"  # assign the ticket to whoever pressed
    TEMPLATES = "sr"  # list the saved replies to answer this ticket with
    MERGE = "mg"  # ask which ticket to merge this one into
    CLIENT_HISTORY = "ch"  # the ticket's client: last requests and this month's count (2.6)


class Reason(StrEnum):
    """Refusal reasons: the keys of models.desk.REFUSAL_EVENTS."""

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
    ticket_id: TicketId


class RefuseAction(CallbackData, prefix="rf"):
    op: RefuseOp
    ticket_id: TicketId
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


class ReplyOp(StrEnum):
    PREVIEW = "v"  # picked from a card's list: show the filled text with Send / Cancel
    SEND = "s"
    CANCEL = "x"
    SHOW = "w"  # /replies: show the reply's text
    DELETE = "d"  # /replies: delete it


class SavedReplyAction(CallbackData, prefix="sr"):
    """A saved reply by a short hash of its name (a name can be 64 Cyrillic letters: 128 bytes, over the
    button's 64), on a ticket (0 from /replies, where no ticket is involved)."""

    op: ReplyOp
    ticket_id: Annotated[int, BeforeValidator(_ascii_digits), Field(ge=0, le=MAX_ID)]
    name_hash: Annotated[str, Field(pattern=r"^[0-9a-f]{10}$")]


class MergeAction(CallbackData, prefix="mg"):
    """Merge confirmed across clients (or cancelled)."""

    confirm: bool
    source: TicketId
    target: TicketId
