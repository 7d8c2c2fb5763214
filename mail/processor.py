"""The mail processor: stored raw mail -> parsed mail -> `models.ingest.Ingest`, in arrival order.

Parsing is CPU work on client bytes: with a process pool (bot/workers.py) it runs there, both cores busy
under a backlog, and each `process_stored` call also starts the parses of the next `parse_ahead` rows, a
few mails per pool task (`parse_chunk`, mail/pool_chunks.py). Mails are ingested as soon as their own
parse is done, while the workers parse the later ones; consecutive new requests whose parses are done
share one ingest transaction (up to `max_group`). Without a pool each mail is parsed inline.

This is the only place that knows about the pool: the domain (models/) sees parsed mail only.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

from mail.pool_chunks import submit_chunked
from models.analysed import AnalysedMail, parse_and_analyse
from models.inbound import InboundMessage, without_nul
from models.ingest import Ingest, StoredRow, is_request, plainly_new, raw_content, stored_rows
from models.store.raw_store import load_contents


@dataclass
class ParsePool:
    """How stored mail is parsed and handed to ingest (no executor: inline, one by one)."""

    executor: Executor | None = None
    # In the pool: raw mail id -> parsed message, read by the worker itself (mail/stored.py).
    parse_stored: Callable[[int], AnalysedMail | InboundMessage | None] | None = None
    # The policy's text work (`PolicyEngine.analyse`), run in the pool beside the parser; picklable.
    analyser: Callable[[InboundMessage], dict[str, Any]] | None = None
    # At most this many new requests share one ingest transaction: it holds the database's write
    # lock while their policies run, so staff actions wait for one group at most.
    max_group: int = 64
    # With a pool, the parses of this many rows after the current batch are started early.
    parse_ahead: int = 100
    # Mails per pool task when the workers read them by id (mail/pool_chunks.py).
    parse_chunk: int = 10


class MailProcessor:
    def __init__(
        self,
        ingest: Ingest,
        parser: Callable[[bytes], InboundMessage],
        pool: ParsePool | None = None,
        *,
        on_done: Callable[[], None] = lambda: None,
    ) -> None:
        self.ingest = ingest
        self.parser = parser
        self.pool = pool or ParsePool()
        # After each batch: wake the outbox workers for what it queued.
        self.on_done = on_done
        self._ahead: dict[int, asyncio.Future[Any]] = {}  # raw mail id -> its parse, started ahead

    def offload_parse(self, raw: bytes) -> Awaitable[AnalysedMail] | None:
        """Parse and analyse `raw` in the pool (a staff decision's re-evaluation); None without a pool
        that analyses (the caller then uses a thread)."""
        if self.pool.executor is None or self.pool.analyser is None:
            return None
        return self._submit_bytes(raw)

    async def process_stored(self, batch: int = 50) -> int:
        """Turn up to `batch` stored raw emails into tickets, in arrival order; returns how many."""
        # The bytes are in raw_mail_content: a worker that reads them itself (parse_stored) never makes
        # the main process hold them, and the other paths load them only where they are needed.
        # The next calls' rows are read too and their parses started now (`parse_ahead`): the workers never
        # wait for this batch's last group to be ingested before they get more to parse.
        ahead = self.pool.parse_ahead if self.pool.executor is not None else 0
        rows = await stored_rows(batch + ahead)
        pending = await self._parses_for(rows)
        rows, later = rows[:batch], rows[batch:]
        self._ahead = {row.id: future for row, future in zip(later, pending[batch:], strict=True)}
        pending = pending[:batch]
        if not rows:
            return 0
        seen: dict[int, AnalysedMail | Exception] = {}  # a lookahead that ends a group is not parsed twice
        try:
            i = 0
            while i < len(rows):
                # With a pool, each mail is ingested as soon as its own parse is done, in arrival order,
                # while the workers are still parsing the later ones: parsing and ingesting overlap.
                parsed = seen.pop(i, None) or await self._parsed(rows[i], pending[i] if pending else None)
                try:
                    thread = await self.ingest.thread_of(parsed)
                    if thread is not None or not is_request(parsed):
                        await self.ingest.ingest(rows[i], parsed, thread)
                        i += 1
                        continue
                except Exception as exc:  # this mail's data (or the database): see Ingest.failed
                    await self.ingest.failed(rows[i], parsed, exc)
                    i += 1
                    continue
                # New requests whose parses are already done go in together: one transaction, one claim
                # and one insert per table for the group instead of a chain of round trips per mail.
                group = [(rows[i], parsed)]
                i += 1
                while i < len(rows) and len(group) < self.pool.max_group and pending and pending[i].done():
                    parsed = seen[i] = await self._parsed(rows[i], pending[i])
                    if not plainly_new(parsed):
                        break  # ingested on its own, in order, by the outer loop
                    group.append((rows[i], seen.pop(i)))
                    i += 1
                await self.ingest.ingest_group(group)  # type: ignore[arg-type]  # is_request checked
        finally:
            for future in pending:  # only matters when an ingest raised: nothing is left running for it
                _discard(future)
        self.on_done()
        return len(rows)

    async def _parses_for(self, rows: Sequence[StoredRow]) -> list[asyncio.Future[Any]]:
        """A started parse for every row (none without a pool): those begun ahead by the previous call,
        new ones for the rest. Parses begun ahead for rows no longer waiting are dropped."""
        if self.pool.executor is None:
            return []
        started, self._ahead = self._ahead, {}
        wanted = {row.id for row in rows}
        for raw_mail_id, future in started.items():
            if raw_mail_id not in wanted:  # taken by another processor meanwhile
                _discard(future)
        missing = [row for row in rows if row.id not in started]
        new = dict(zip([row.id for row in missing], await self._submit_parses(missing), strict=True))
        return [started.get(row.id) or new[row.id] for row in rows]

    async def _parsed(self, row: StoredRow, future: asyncio.Future[Any] | None) -> AnalysedMail | Exception:
        """The parse of one row: from the pool (awaited; a done future may be awaited again) or inline."""
        if future is None:
            return self._safe_parse(await raw_content(row.id))
        parsed = await _outcome(future)
        if parsed is None:  # the worker's connection could not see the row yet: hand the bytes over
            parsed = await _outcome(self._submit_bytes(await raw_content(row.id)))
        return parsed or RuntimeError("the parser returned nothing")

    async def _submit_parses(self, rows: Sequence[StoredRow]) -> list[asyncio.Future[Any]]:
        """Start parsing every row in the process pool (none without a pool: parsed inline, one by one)."""
        # Parsing is CPU work: a process pool keeps it off the event loop and uses both cores for a backlog.
        if self.pool.executor is None or not rows:
            return []
        if self.pool.parse_stored is not None:  # the worker reads the bytes itself; a few ids per task
            return submit_chunked(self.pool.executor, self.pool.parse_stored, [r.id for r in rows], self.pool.parse_chunk)
        contents = await load_contents(r.id for r in rows)
        return [self._submit_bytes(contents.get(r.id) or b"") for r in rows]

    def _submit_bytes(self, content: bytes) -> asyncio.Future[Any]:
        assert self.pool.executor is not None
        work = functools.partial(parse_and_analyse, parser=self.parser, analyser=self.pool.analyser)
        return asyncio.get_running_loop().run_in_executor(self.pool.executor, work, bytes(content))

    def _safe_parse(self, content: bytes) -> AnalysedMail | Exception:
        try:
            # Inline (no pool): the rules analyse the text themselves while they run.
            return AnalysedMail(without_nul(self.parser(bytes(content))))
        except Exception as exc:  # the parser promises MalformedMessage only; anything else is ours
            return exc


async def _outcome(future: asyncio.Future[Any]) -> AnalysedMail | Exception | None:
    """A parse in the pool as a value: the parser's exception (or a dead worker's) quarantines that mail;
    None from a worker that reads the row itself means it could not see the row."""
    try:
        result = await future
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        return exc
    if result is None or isinstance(result, AnalysedMail):
        return result
    if isinstance(result, InboundMessage):  # a plain parser in the pool (tests, custom set-ups)
        return AnalysedMail(without_nul(result))
    return RuntimeError(str(result))


def _discard(future: asyncio.Future[Any]) -> None:
    """A parse no longer wanted: cancelled if it has not run, its outcome retrieved if it has (no
    "exception was never retrieved" noise)."""
    if future.done() and not future.cancelled():
        future.exception()
    else:
        future.cancel()
