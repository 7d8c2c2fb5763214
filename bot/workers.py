"""The parse workers: a process pool that parses mail and does the policy's text work on it.

spawn, not fork: the parent holds database threads and sockets a fork would copy. Each worker gets
ready when it starts (the malloc setting, then the parser's imports and the policy's data files and
morphology dictionaries), and the pool starts its workers as soon as it is built: `python -m bot run`
builds it before importing the rest of the process, so this happens on the other core while that
import runs, instead of while the first mail of a backlog waits for it.
"""

from __future__ import annotations

import functools
import multiprocessing
import multiprocessing.connection
import os
import threading
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import TYPE_CHECKING

from bot.gc_freeze import freeze_startup_objects, pause_collection
from bot.memory import return_large_buffers_to_os

if TYPE_CHECKING:  # this module is imported before the policy package (see start_parse_pool)
    from bot.settings import CoreSettings
    from models.policy.analyser import TextAnalyser


def prepare_parse_worker(analyser: TextAnalyser | Callable[[], TextAnalyser] | None = None) -> None:
    """The pool's initializer, run once in each worker process: `analyser` is the policy's text work, or
    what makes it in the worker (so the parent need not import the policy first)."""
    exit_with_parent()  # first: a parent killed while this worker loads its dictionaries must not orphan it
    pause_collection()
    return_large_buffers_to_os()  # a worker parses 25 MB mail too
    import mail.parse  # noqa: F401 - imported now rather than with the first mail

    if analyser is not None:
        if not hasattr(analyser, "warm"):
            analyser = analyser()
        analyser.warm()
    freeze_startup_objects()  # the dictionaries and data files: out of the collector's full passes


def exit_with_parent() -> None:
    """End this worker as soon as the process that spawned it ends, however it ends (even SIGKILL).

    A pool worker waits on its call queue, whose pipe it holds both ends of (the queue is pickled whole
    into each spawned worker), so the parent's death alone never wakes it: before this, a `kill -9` of
    the bridge left every worker running for good (about 70 MB each), and with them the resource tracker,
    which ends only when the last holder of its pipe (the bridge and these workers) is gone.

    The watch is on the parent's sentinel, the pipe a spawned child reads its start data from and whose
    other end only the parent holds: the kernel closes it when the parent dies. A daemon thread waits on
    it and ends the process without cleanup (nothing of a worker's needs saving: the parent, which owned
    the work, is gone). prctl(PR_SET_PDEATHSIG) is not used: it fires when the *thread* that spawned the
    worker ends, and the pool spawns workers from whichever thread submits work."""
    parent = multiprocessing.parent_process()
    if parent is None or parent.sentinel is None:  # not a spawned child (a test calling the initializer)
        return
    threading.Thread(target=_exit_when_ready, args=(parent.sentinel,), name="parent-watch", daemon=True).start()


def _exit_when_ready(sentinel: int) -> None:
    multiprocessing.connection.wait([sentinel])  # readable (EOF) once the parent has ended
    os._exit(0)


def _analyser_for(settings: CoreSettings) -> TextAnalyser:
    from bot.policy_config import make_text_analyser

    return make_text_analyser(settings)


def start_parse_pool(settings: CoreSettings) -> ProcessPoolExecutor | None:
    """The parse pool for `settings` (None with PARSE_WORKERS=0), started now.

    `python -m bot run` calls this before it imports the rest of the process (the policy, aiogram, the
    ORM models, the handlers: over a second of one core), so the workers load their dictionaries on the
    other core meanwhile and are ready when the first mail of a backlog is stored. The workers build the
    policy's text work from the settings themselves: this process has not imported the policy yet."""
    if settings.PARSE_WORKERS <= 0:
        return None
    return make_parse_pool(settings.PARSE_WORKERS, functools.partial(_analyser_for, settings))


def make_parse_pool(
    workers: int, analyser: TextAnalyser | Callable[[], TextAnalyser] | None = None
) -> ProcessPoolExecutor:
    pool = ProcessPoolExecutor(
        workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=prepare_parse_worker,
        initargs=(analyser,),
    )
    # A pool of spawned processes starts one worker per submission (while none is idle), from the thread
    # that submits: one no-op per worker starts them all now, from here.
    for _ in range(workers):
        pool.submit(int)
    return pool
