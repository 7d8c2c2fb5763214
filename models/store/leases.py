"""Database leases: exactly one process at a time plays a singleton role (mail watcher, SLA scheduler).

A lease is one `Lease` row: who holds it and until when. The holder renews it well before it
expires; a process that dies stops renewing, and once `expires_at` has passed any peer takes the row
over with ONE guarded update (`name=..., expires_at < now` or the holder is already us), so two
processes can never both believe they hold it. The same code runs on SQLite and PostgreSQL (no
advisory locks, no dialect-specific SQL).

Times are the processes' own UTC clocks: hosts sharing a database must keep them in sync (NTP); a
skew well under the lease's length is harmless because the holder renews every third of it.

`run_with_lease` is the loop the composition root wraps each singleton component in: wait for the
lease, run the component while renewing it, cancel the component the moment the lease is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from tortoise.exceptions import IntegrityError
from tortoise.expressions import Q

from models.clock import utcnow
from models.tables import Lease

log = logging.getLogger(__name__)



def unique_holder(instance_name: str) -> str:
    """The holder id of one process: its readable name plus a random tag, so two processes an
    operator configured with the same INSTANCE_NAME still never share a lease."""
    return f"{instance_name}#{secrets.token_hex(3)}"[:200]


class LeaseManager:
    """One named lease as seen by one holder."""

    def __init__(
        self, name: str, holder: str, ttl_seconds: float, *, clock: Callable[[], datetime] = utcnow
    ) -> None:
        if ttl_seconds <= 0:
            raise ValueError("ttl_seconds must be positive")
        self.name = name
        self.holder = holder
        self.ttl = timedelta(seconds=ttl_seconds)
        self._clock = clock

    @property
    def ttl_seconds(self) -> float:
        return self.ttl.total_seconds()

    async def acquire(self) -> bool:
        """Take the lease if it is free, expired, or already ours; True when we hold it now."""
        now = self._clock()
        expires = now + self.ttl
        # Guarded takeover: only an expired row (its holder stopped renewing) or our own changes.
        changed = await Lease.filter(Q(expires_at__lt=now) | Q(holder=self.holder), name=self.name).update(
            holder=self.holder, expires_at=expires, acquired_at=now
        )
        if changed:
            return True
        try:
            await Lease.create(name=self.name, holder=self.holder, expires_at=expires, acquired_at=now)
        except IntegrityError:
            return False  # a live holder has it (or a peer inserted it a moment ago)
        return True

    async def renew(self) -> bool:
        """Extend our lease; False when it is no longer ours (a peer took it over after it expired).

        Renewing a lease that expired but was not taken over is safe: nobody else held it meanwhile."""
        now = self._clock()
        changed = await Lease.filter(name=self.name, holder=self.holder).update(expires_at=now + self.ttl)
        return bool(changed)

    async def release(self) -> None:
        """Give the lease up at once (graceful stop), so a peer need not wait for it to expire."""
        await Lease.filter(name=self.name, holder=self.holder).delete()

    async def current_holder(self) -> str | None:
        """Who holds the lease now (None when free or expired); for logs, status and tests."""
        row = await Lease.filter(name=self.name, expires_at__gte=self._clock()).first()
        return row.holder if row is not None else None


async def run_with_lease(
    lease: LeaseManager,
    work: Callable[[], Awaitable[None]],
    *,
    retry_seconds: float | None = None,
    renew_seconds: float | None = None,
) -> None:
    """Run `work` only while holding `lease`, forever.

    Not the holder: try again every `retry_seconds` (default a third of the TTL, at most 5 s).
    Holder: start `work` and renew every `renew_seconds` (default a third of the TTL). A renewal that
    finds the lease taken over cancels `work` at once; a renewal that fails on a database error keeps
    `work` running only until the lease would have expired. A crash of `work` releases the lease and
    propagates (the supervisor restarts us with backoff); so does cancellation (shutdown)."""
    ttl = lease.ttl_seconds
    retry = retry_seconds if retry_seconds is not None else min(5.0, ttl / 3)
    renew_every = renew_seconds if renew_seconds is not None else ttl / 3
    loop = asyncio.get_running_loop()
    waiting_logged = False
    while True:
        try:
            held = await lease.acquire()
        except Exception as exc:  # a database hiccup: not the holder for now
            log.warning(
                "lease %s: could not be acquired (%s: %s); retrying", lease.name, type(exc).__name__, exc
            )
            held = False
        if not held:
            if not waiting_logged:
                log.info("lease %s is held by another process; standing by", lease.name)
                waiting_logged = True
            await asyncio.sleep(retry)
            continue
        waiting_logged = False
        valid_until = loop.time() + ttl
        log.info("lease %s acquired by %s: starting", lease.name, lease.holder)
        task = asyncio.create_task(work(), name=f"{lease.name}:work")
        try:
            while True:
                await asyncio.wait({task}, timeout=renew_every)
                if task.done():
                    task.result()  # re-raises a crash
                    log.warning("lease %s: the component returned; releasing the lease", lease.name)
                    return
                try:
                    renewed = await lease.renew()
                except Exception as exc:
                    if loop.time() + renew_every < valid_until:
                        log.warning("lease %s: renewal failed (%s); retrying", lease.name, type(exc).__name__)
                        continue
                    log.error("lease %s: could not be renewed before it expires; stopping", lease.name)
                    break
                if not renewed:
                    log.error("lease %s was taken over by another process; stopping", lease.name)
                    break
                valid_until = loop.time() + ttl
        finally:
            if not task.done():
                task.cancel()
            with contextlib.suppress(BaseException):
                await asyncio.shield(_settle(task))
            # Best effort, shielded from our own cancellation: a peer can start at once instead
            # of waiting for the expiry (harmless when the lease is no longer ours).
            with contextlib.suppress(BaseException):
                await asyncio.shield(lease.release())
        task_self = asyncio.current_task()
        if task_self is not None and task_self.cancelling():
            raise asyncio.CancelledError  # a shutdown arrived while we were settling: honour it
        # Lost it: stand by like any other non-holder.
        await asyncio.sleep(retry)


async def _settle(task: asyncio.Task[None]) -> None:
    with contextlib.suppress(BaseException):
        await task
