"""RateLimiter on a virtual clock: sleeping advances the clock, so the schedule is exact and instant."""

from __future__ import annotations

import asyncio

import pytest

from bot.ratelimit import RateLimiter, is_group_chat

GROUP, OTHER_GROUP, ALICE, BOB = -100123, -100456, 1001, 1002


class VirtualClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


def limiter(clock: VirtualClock, **kwargs: float) -> RateLimiter:
    return RateLimiter(clock=clock, sleep=clock.sleep, slack=0.0, **kwargs)  # type: ignore[arg-type]


async def send_times(limit: RateLimiter, clock: VirtualClock, chat_id: int, count: int) -> list[float]:
    times = []
    for _ in range(count):
        await limit.acquire(chat_id, is_group_chat(chat_id))
        times.append(round(clock.now - 1000.0, 6))
    return times


def test_negative_ids_are_groups() -> None:
    assert is_group_chat(GROUP) and not is_group_chat(ALICE)


async def test_group_gets_twenty_a_minute_one_a_second() -> None:
    clock = VirtualClock()
    times = await send_times(limiter(clock), clock, GROUP, 41)
    assert times[:20] == [float(n) for n in range(20)]  # 1 a second
    assert times[20] == 60.0  # the 21st waits for the first to leave the sliding minute
    assert times[40] == 120.0
    for i in range(len(times)):  # never more than 20 in any minute
        assert sum(1 for t in times if times[i] <= t < times[i] + 60) <= 20


async def test_private_chat_gets_one_a_second_without_a_minute_cap() -> None:
    clock = VirtualClock()
    assert await send_times(limiter(clock), clock, ALICE, 30) == [float(n) for n in range(30)]


async def test_time_scale_shrinks_every_window() -> None:
    clock = VirtualClock()
    times = await send_times(limiter(clock, time_scale=0.1), clock, GROUP, 21)
    assert times[1] == pytest.approx(0.1) and times[20] == pytest.approx(6.0)


async def test_global_limit_spans_chats() -> None:
    clock = VirtualClock()
    limit = limiter(clock, global_per_second=3)
    for user in range(5):  # five different private chats, no per-chat wait
        await limit.acquire(10 + user, False)
    assert clock.now - 1000.0 == pytest.approx(1.0)  # the 4th had to wait for the global second
    assert limit.delay(99, False) == 0.0  # the 6th fits the same second as the 4th and 5th
    await limit.acquire(99, False)
    assert limit.delay(98, False) == pytest.approx(1.0)  # the 7th would be the 4th in that second


async def test_chats_do_not_slow_each_other_below_the_global_limit() -> None:
    clock = VirtualClock()
    limit = limiter(clock)
    await limit.acquire(GROUP, True)
    await limit.acquire(OTHER_GROUP, True)
    await limit.acquire(ALICE, False)
    assert clock.sleeps == []


async def test_penalty_holds_the_chat_and_everything_else() -> None:
    clock = VirtualClock()
    limit = limiter(clock)
    limit.penalize(ALICE, 5)
    assert limit.delay(ALICE, False) == pytest.approx(5.0)
    assert limit.delay(BOB, False) == pytest.approx(5.0)  # for safety, globally too
    await limit.acquire(BOB, False)
    assert clock.now - 1000.0 == pytest.approx(5.0)
    assert limit.delay(ALICE, False) == 0.0  # the penalty is over


async def test_penalty_is_real_seconds_not_scaled() -> None:
    clock = VirtualClock()
    limit = limiter(clock, time_scale=0.01)
    limit.penalize(GROUP, 2)
    assert limit.delay(GROUP, True) == pytest.approx(2.0)


async def test_concurrent_waiters_never_overbook_a_window() -> None:
    clock = VirtualClock()
    limit = limiter(clock, global_per_second=2)
    stamps: list[float] = []

    async def one(chat: int) -> None:
        await limit.acquire(chat, False)
        stamps.append(clock.now)

    await asyncio.gather(*(one(10 + n) for n in range(6)))
    for t in stamps:
        assert sum(1 for u in stamps if t <= u < t + 1) <= 2


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        RateLimiter(time_scale=0)
    with pytest.raises(ValueError):
        RateLimiter(group_per_minute=0)


async def test_waiting_for_room_counts_nothing_and_acquire_counts_at_sending_time() -> None:
    clock = VirtualClock()
    limit = limiter(clock)
    await limit.acquire(ALICE)
    start = clock.now
    await limit.wait_for_room(ALICE)  # one a second: waits for the next second, takes nothing
    assert clock.now - start == pytest.approx(1.0)
    await limit.wait_for_room(ALICE)  # still room: no wait, and still nothing counted
    assert clock.now - start == pytest.approx(1.0)
    clock.now += 0.3  # rendering the message took a while
    await limit.acquire(ALICE)  # counted now, when it is sent
    assert limit.delay(ALICE) == pytest.approx(1.0)  # the next one waits a full second from the send
