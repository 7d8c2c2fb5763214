"""Several items per pool task, one future per item (mail/pool_chunks.py), with a real process pool."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import pytest

from mail.pool_chunks import ItemFailed, run_each, submit_chunked


def square_or_fail(n: int) -> int:
    if n % 5 == 3:
        raise ValueError(f"bad item {n}")
    return n * n


def die_on_seven(n: int) -> int:
    if n == 7:
        os._exit(1)  # the worker process dies, as under the OOM killer
    return n


class Unpicklable(Exception):
    def __reduce__(self):  # type: ignore[no-untyped-def]
        raise TypeError("cannot pickle this")


def raise_unpicklable(n: int) -> int:
    raise Unpicklable("local state")


@pytest.fixture
def pool() -> Iterator[ProcessPoolExecutor]:
    executor = ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn"))
    try:
        yield executor
    finally:
        executor.shutdown(wait=True, cancel_futures=True)


async def test_each_item_gets_its_own_result_or_error_in_order(pool: ProcessPoolExecutor) -> None:
    futures = submit_chunked(pool, square_or_fail, list(range(11)), size=4)
    assert len(futures) == 11
    outcomes = await asyncio.gather(*futures, return_exceptions=True)
    for n, outcome in enumerate(outcomes):
        if n % 5 == 3:
            assert isinstance(outcome, ValueError) and str(outcome) == f"bad item {n}"
        else:
            assert outcome == n * n


async def test_a_dead_worker_fails_the_items_of_its_task_only(pool: ProcessPoolExecutor) -> None:
    futures = submit_chunked(pool, die_on_seven, list(range(4, 12)), size=4)  # tasks [4..7] and [8..11]
    outcomes = await asyncio.gather(*futures, return_exceptions=True)
    assert all(isinstance(o, Exception) for o in outcomes[:4])  # the task holding 7 broke
    # The pool is broken for everything after the death; what matters is that nothing hangs and
    # every item has an outcome.
    assert len(outcomes) == 8


async def test_dropping_one_item_leaves_the_others() -> None:
    with ThreadPoolExecutor(1) as threads:
        futures = submit_chunked(threads, square_or_fail, [1, 2, 4], size=3)
        futures[1].cancel()
        assert await futures[0] == 1 and await futures[2] == 16
        assert futures[1].cancelled()


def test_an_unpicklable_error_comes_back_as_its_description() -> None:
    [failed] = run_each(raise_unpicklable, [1])
    assert isinstance(failed, ItemFailed)
    assert isinstance(failed.error, RuntimeError) and "local state" in str(failed.error)
