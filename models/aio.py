"""Asyncio helpers shared by the long-running loops."""

from __future__ import annotations

import asyncio


def raise_if_cancelling() -> None:
    """Re-raise a cancellation that a library swallowed.

    On Python 3.11, `asyncio.wait_for` (used inside aiosmtplib, aioimaplib and the database drivers)
    can return a result and drop a cancellation that arrived at the same moment. The task then keeps
    `cancelling() > 0` and would loop on forever, hanging a graceful shutdown. Loops call this once
    per iteration so a requested stop always ends them.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
