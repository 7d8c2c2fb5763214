"""Parse workers that read the stored raw mail themselves (mail/stored.py), through a real process pool."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import secrets
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from tortoise.connection import get_connection

from bot.workers import make_parse_pool
from mail.parse import parse_message
from mail.stored import postgres_params, sqlite_path, stored_mail_parser
from models.inbound import InboundMessage
from models.policy import PolicyConfig
from models.policy.analyser import TextAnalyser
from models.store import db as database
from models.store.raw_store import load_content
from models.tables import Message, RawMail, RawMailStatus, Ticket
from tests.helpers.desk import Desk, make_email, store_raw_mail


def test_a_sqlite_file_or_postgres_lets_workers_read_for_themselves(tmp_path) -> None:
    assert sqlite_path(f"sqlite://{tmp_path}/a.sqlite3") == tmp_path / "a.sqlite3"
    assert sqlite_path("sqlite://:memory:") is None
    assert stored_mail_parser("sqlite://:memory:", parse_message) is None  # no other process can open it
    assert sqlite_path("postgres://postgres@127.0.0.1:5432/bridge") is None
    # The worker's connection: where and who only (tortoise's pool options mean nothing to it).
    assert postgres_params("postgresql://u:p%40ss@db.local:6432/bridge?minsize=2&maxsize=5") == {
        "host": "db.local", "port": 6432, "user": "u", "password": "p@ss", "database": "bridge"}
    assert stored_mail_parser("postgres://postgres@127.0.0.1:5432/bridge", parse_message) is not None


async def store(raw: bytes, uid: int) -> RawMail:
    return await store_raw_mail(
        raw, mailbox="INBOX", uidvalidity=1, uid=uid, internal_date=datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
        + timedelta(minutes=uid), sha256=hashlib.sha256(raw).hexdigest(), size=len(raw),
    )  # fmt: skip


@pytest.fixture
def pool() -> Iterator[ProcessPoolExecutor]:
    # As bot/app.py builds it: spawned workers, each prepared by its initializer.
    executor = make_parse_pool(1, TextAnalyser(PolicyConfig()))
    try:
        yield executor
    finally:
        executor.shutdown(wait=True, cancel_futures=True)


async def test_a_worker_reads_and_parses_a_committed_row_and_says_none_for_a_missing_one(db: str) -> None:
    row = await store(make_email(subject="Касса не печатает чеки"), uid=1)
    read_and_parse = stored_mail_parser(db, parse_message)
    assert read_and_parse is not None

    # On a thread, as in a worker: the PostgreSQL reader drives its own event loop.
    parsed = await asyncio.to_thread(read_and_parse, row.id)
    assert isinstance(parsed, InboundMessage) and parsed.subject == "Касса не печатает чеки"
    assert await asyncio.to_thread(read_and_parse, row.id + 1000) is None


async def test_workers_reading_rows_themselves_turn_every_stored_mail_into_a_ticket_in_order(
    db: str, pool: ProcessPoolExecutor
) -> None:
    subjects = [f"Обращение номер {n}" for n in range(12)]
    for uid, subject in enumerate(subjects, start=1):
        await store(make_email(sender=f"user{uid}@example.org", subject=subject), uid=uid)
    async with Desk.open() as desk:
        desk.processor.pool.executor = pool
        desk.processor.pool.parse_stored = stored_mail_parser(db, desk.processor.parser)
        while await desk.processor.process_stored(batch=5):
            pass
    assert [t.subject for t in await Ticket.all().order_by("arrived_at")] == subjects
    assert not await RawMail.filter(status=RawMailStatus.STORED).exists()
    # One inbound message per mail (each request also has its outbound acknowledgement).
    assert await Message.filter(direction="in").count() == len(subjects)


async def test_a_row_the_worker_cannot_see_is_handed_over_as_bytes(db: str, pool: ProcessPoolExecutor) -> None:
    # A worker's connection may not see a batch the main process sees (not yet committed): simulated by
    # a reader that never finds the row; the mail must still become its ticket, parsed from the bytes.
    for uid in (1, 2, 3):
        await store(make_email(sender=f"user{uid}@example.org", subject=f"Тема {uid}"), uid=uid)
    async with Desk.open() as desk:
        desk.processor.pool.executor = pool
        desk.processor.pool.parse_stored = functools.partial(_never_visible, parser=desk.processor.parser)
        while await desk.processor.process_stored():
            pass
    assert sorted(t.subject for t in await Ticket.all()) == ["Тема 1", "Тема 2", "Тема 3"]
    assert not await RawMail.filter(status=RawMailStatus.STORED).exists()


def _never_visible(raw_mail_id: int, *, parser: object) -> None:
    """A worker-side reader whose connection never sees the row (module level: it is pickled)."""
    return None


def test_a_worker_is_ready_before_its_first_mail() -> None:
    from bot.workers import prepare_parse_worker
    from models.policy.analyser import _engine

    _engine.cache_clear()
    analyser = TextAnalyser(PolicyConfig())
    prepare_parse_worker(analyser)
    assert _engine.cache_info().currsize == 1  # the data files and dictionaries are loaded
    analyser(parse_message(make_email()))
    assert _engine.cache_info().hits >= 1  # and used by the first mail, not loaded again


async def test_on_postgres_the_main_process_never_reads_the_bytes_of_a_mail(db: str, pool: ProcessPoolExecutor) -> None:
    # The main process runs as a role that may not read raw_mail_content at all; the workers connect
    # as the owner. Every mail still becomes its ticket: only the workers read the bytes.
    if not db.startswith("postgres"):
        pytest.skip("PostgreSQL roles; on SQLite the workers' reads are proven above")
    subjects = [f"Заявка {n}" for n in range(8)]
    rows = [await store(make_email(sender=f"user{uid}@example.org", subject=subject), uid=uid)
            for uid, subject in enumerate(subjects, start=1)]
    role = f"bridge_main_{secrets.token_hex(4)}"
    await get_connection("default").execute_script(
        f"CREATE ROLE {role} LOGIN; GRANT ALL ON ALL TABLES IN SCHEMA public TO {role};"
        f" GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO {role}; REVOKE SELECT ON raw_mail_content FROM {role};")
    await database.close_db()
    await database.init_db(db.replace("postgres@", f"{role}@", 1))
    try:
        with pytest.raises(Exception, match="permission denied"):
            await load_content(rows[0].id)  # the main process cannot load the bytes
        async with Desk.open() as desk:
            desk.processor.pool.executor = pool
            desk.processor.pool.parse_stored = stored_mail_parser(db, desk.processor.parser)
            while await desk.processor.process_stored(batch=3):
                pass
        assert [t.subject for t in await Ticket.all().order_by("arrived_at")] == subjects
        assert not await RawMail.exclude(status=RawMailStatus.PROCESSED).exists()
    finally:
        await database.close_db()
        await database.init_db(db)
        await get_connection("default").execute_script(f"DROP OWNED BY {role}; DROP ROLE {role};")


async def test_a_worker_that_cannot_reach_postgres_hands_the_mail_back_instead_of_failing_it(
    db: str, pool: ProcessPoolExecutor
) -> None:
    # A worker whose server is unreachable (a closed port) says "not read here": the main process hands
    # the bytes over and the mail becomes its ticket, not a quarantined parse failure.
    for uid in (1, 2):
        await store(make_email(sender=f"user{uid}@example.org", subject=f"Вопрос {uid}"), uid=uid)
    async with Desk.open() as desk:
        desk.processor.pool.executor = pool
        desk.processor.pool.parse_stored = stored_mail_parser(
            "postgres://postgres@127.0.0.1:1/nowhere", desk.processor.parser)
        assert desk.processor.pool.parse_stored is not None
        while await desk.processor.process_stored():
            pass
    assert sorted(t.subject for t in await Ticket.all()) == ["Вопрос 1", "Вопрос 2"]
    assert not await RawMail.exclude(status=RawMailStatus.PROCESSED).exists()
