"""The parse workers: a process pool that parses mail and does the policy's text work on it.

spawn, not fork: the parent holds database threads and sockets a fork would copy. Each worker gets
ready when it starts (the malloc setting, then the parser's imports and the policy's data files and
morphology dictionaries), and the pool starts its workers as soon as it is built, so that this happens
while the bridge logs in to IMAP instead of while the first mail of a backlog waits for it.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor

from bot.memory import return_large_buffers_to_os
from models.policy.analyser import TextAnalyser


def prepare_parse_worker(analyser: TextAnalyser | None = None) -> None:
    """The pool's initializer, run once in each worker process."""
    return_large_buffers_to_os()  # a worker parses 25 MB mail too
    import mail.parse  # noqa: F401 - imported now rather than with the first mail

    if analyser is not None:
        analyser.warm()


def make_parse_pool(workers: int, analyser: TextAnalyser | None = None) -> ProcessPoolExecutor:
    pool = ProcessPoolExecutor(
        workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=prepare_parse_worker,
        initargs=(analyser,),
    )
    # A pool of spawned processes starts all its workers on the first submission: make it now.
    pool.submit(int)
    return pool
