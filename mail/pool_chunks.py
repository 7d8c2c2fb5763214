"""Several parses per process-pool task, one future per parse.

Every task a `ProcessPoolExecutor` runs costs a pickled call, a pipe write and read each way, a wake-up of
the pool's manager thread and a future resolved across threads: about 0.15 ms of CPU spread over both
processes (docs/benchmarks.md), a tenth of a mail's parse. `submit_chunked` sends up to `size` items per
task and gives back one asyncio future per item, resolved as the task returns, so callers still
await (or drop) each mail on its own. One item's failure is that item's, not its neighbours'.
"""

from __future__ import annotations

import asyncio
import pickle
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from typing import Any


class ItemFailed:
    """An item whose function raised: carries the exception (or, if that cannot be pickled back from
    the worker, a RuntimeError with its repr)."""

    def __init__(self, error: BaseException) -> None:
        try:
            pickle.dumps(error)
        except Exception:  # noqa: BLE001 - any unpicklable exception becomes a plain description
            error = RuntimeError(repr(error))
        self.error = error


def run_each(fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
    """In the worker: `fn` on every item; an exception becomes that item's `ItemFailed`."""
    results: list[Any] = []
    for item in items:
        try:
            results.append(fn(item))
        except Exception as exc:  # noqa: BLE001 - reported per item, like a failed single-item task
            results.append(ItemFailed(exc))
    return results


def submit_chunked(
    executor: Executor, fn: Callable[[Any], Any], items: Sequence[Any], size: int
) -> list[asyncio.Future[Any]]:
    """Run `fn` on every item in the pool, `size` items per task; one future per item, in order."""
    loop = asyncio.get_running_loop()
    futures: list[asyncio.Future[Any]] = []
    for start in range(0, len(items), max(1, size)):
        chunk = list(items[start : start + max(1, size)])
        mine = [loop.create_future() for _ in chunk]
        task = loop.run_in_executor(executor, run_each, fn, chunk)
        task.add_done_callback(lambda done, mine=mine: _distribute(done, mine))
        futures += mine
    return futures


def _distribute(task: asyncio.Future[Any], futures: list[asyncio.Future[Any]]) -> None:
    pending = [f for f in futures if not f.done()]  # an item dropped meanwhile stays as it is
    if task.cancelled():
        for f in pending:
            f.cancel()
        return
    error = task.exception()
    if error is not None:  # the whole task failed (a worker died): every item of it failed
        for f in pending:
            f.set_exception(error)
        return
    for f, result in zip(futures, task.result(), strict=True):
        if f.done():
            continue
        if isinstance(result, ItemFailed):
            f.set_exception(result.error)
        else:
            f.set_result(result)
