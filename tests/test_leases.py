"""Database leases (models/store/leases.py) on the test database: SQLite by default, PostgreSQL in CI's second pass."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from models.store.leases import LeaseManager, run_with_lease, unique_holder
from models.tables import Lease


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


async def test_the_first_acquirer_holds_the_lease_and_others_are_refused(db: str) -> None:
    clock = Clock()
    a = LeaseManager("mail-watcher", "host-a:1", 30, clock=clock)
    b = LeaseManager("mail-watcher", "host-b:2", 30, clock=clock)
    assert await a.acquire() is True
    assert await b.acquire() is False
    assert await a.acquire() is True  # acquiring again what we hold is fine
    assert await a.current_holder() == "host-a:1"
    other = LeaseManager("sla-scheduler", "host-b:2", 30, clock=clock)
    assert await other.acquire() is True  # leases are independent by name
    assert await Lease.all().count() == 2


async def test_renewal_keeps_the_lease_past_its_first_expiry(db: str) -> None:
    clock = Clock()
    a = LeaseManager("mail-watcher", "host-a:1", 30, clock=clock)
    b = LeaseManager("mail-watcher", "host-b:2", 30, clock=clock)
    assert await a.acquire()
    for _ in range(5):
        clock.advance(20)  # 100 s in all, more than three TTLs, renewed every 20 s
        assert await a.renew() is True
        assert await b.acquire() is False
    assert await b.renew() is False  # renewing what one never held


async def test_an_expired_lease_is_taken_over_and_the_old_holder_learns_it_lost(db: str) -> None:
    clock = Clock()
    a = LeaseManager("mail-watcher", "host-a:1", 30, clock=clock)
    b = LeaseManager("mail-watcher", "host-b:2", 30, clock=clock)
    assert await a.acquire()
    clock.advance(29)
    assert await b.acquire() is False  # still valid
    clock.advance(2)  # a stopped renewing (died): expired
    assert await b.acquire() is True
    assert await a.renew() is False
    assert await a.acquire() is False
    row = await Lease.get(name="mail-watcher")
    assert row.holder == "host-b:2" and row.acquired_at == clock.now


async def test_release_lets_a_peer_take_over_at_once_and_only_the_holder_can_release(db: str) -> None:
    clock = Clock()
    a = LeaseManager("mail-watcher", "host-a:1", 30, clock=clock)
    b = LeaseManager("mail-watcher", "host-b:2", 30, clock=clock)
    assert await a.acquire()
    await b.release()  # not b's to release: nothing happens
    assert await b.acquire() is False
    await a.release()
    assert await a.current_holder() is None
    assert await b.acquire() is True


async def test_of_many_simultaneous_acquirers_exactly_one_wins(db: str) -> None:
    managers = [LeaseManager("mail-watcher", unique_holder(f"host-{i}"), 30) for i in range(8)]
    results = await asyncio.gather(*(m.acquire() for m in managers))
    assert results.count(True) == 1
    # and after expiry, of many simultaneous takeovers, exactly one wins too
    await Lease.filter(name="mail-watcher").update(expires_at=datetime.now(UTC) - timedelta(seconds=1))
    results = await asyncio.gather(*(m.acquire() for m in managers))
    assert results.count(True) == 1


async def test_run_with_lease_runs_one_worker_at_a_time_and_hands_over(db: str) -> None:
    active: list[str] = []
    overlaps: list[list[str]] = []

    def worker(name: str):  # type: ignore[no-untyped-def]
        async def work() -> None:
            active.append(name)
            if len(active) > 1:
                overlaps.append(list(active))
            try:
                await asyncio.Event().wait()
            finally:
                active.remove(name)

        return work

    a = LeaseManager("mail-watcher", "a", 1.5)
    b = LeaseManager("mail-watcher", "b", 1.5)
    task_a = asyncio.create_task(run_with_lease(a, worker("a"), retry_seconds=0.1, renew_seconds=0.3))
    await _until(lambda: active == ["a"])
    task_b = asyncio.create_task(run_with_lease(b, worker("b"), retry_seconds=0.1, renew_seconds=0.3))
    await asyncio.sleep(2.0)  # several TTLs: a keeps renewing, b stands by
    assert active == ["a"]

    # a's lease is taken away behind its back (as if it had stalled past expiry): a stops its worker
    await Lease.filter(name="mail-watcher").update(holder="intruder")
    await _until(lambda: active == [])
    await Lease.filter(name="mail-watcher").delete()
    await _until(lambda: len(active) == 1)
    first = active[0]

    # the holder shuts down: it releases, the other one takes over without waiting for expiry
    (task_a if first == "a" else task_b).cancel()
    await _until(lambda: active == ["b" if first == "a" else "a"])
    (task_b if first == "a" else task_a).cancel()
    await asyncio.gather(task_a, task_b, return_exceptions=True)
    assert overlaps == []
    assert await Lease.all().count() == 0  # released on shutdown


async def test_a_crashing_worker_releases_the_lease_and_propagates(db: str) -> None:
    async def crash() -> None:
        raise RuntimeError("boom")

    lease = LeaseManager("sla-scheduler", "a", 30)
    with pytest.raises(RuntimeError, match="boom"):
        await asyncio.wait_for(run_with_lease(lease, crash, renew_seconds=0.05), 10)
    assert await lease.current_holder() is None


async def _until(predicate, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]  # noqa: ASYNC109
    for _ in range(int(timeout / 0.02)):
        if predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s")
