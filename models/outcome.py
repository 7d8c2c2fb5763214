"""What a staff action did (`Outcome`), and who decided a ticket first (`Decided`): the use cases'
answers to the handlers (models/desk.py, assignment.py, merging.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class Decided:
    """Who took a ticket out of the waiting state, and when: what "already accepted by X at HH:MM" names."""

    status: str  # the ticket's status: accepted | refused | answered | closed
    action: str  # the Decision row's kind
    staff_name: str
    at: datetime


@dataclass
class Outcome:
    """What a staff action did, for the handler to answer the button press."""

    status: str  # done | already | needs_confirmation | not_found | too_late | invalid | not_accepted
    ticket_id: int | None = None
    findings: list[dict[str, Any]] = field(default_factory=list)
    older_waiting: list[int] = field(default_factory=list)
    email_id: int | None = None
    detail: str = ""
    decided: Decided | None = None  # with "already": the decision that got there first

    @property
    def ok(self) -> bool:
        return self.status == "done"
