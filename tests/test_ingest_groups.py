"""New requests ingested in groups (one transaction per group of parsed mail) behave exactly as if each
had been committed on its own: the policy of each mail sees the tickets of the mails before it in the
same group, replies join the ticket they answer even when it was created a moment before, rows another
processor claimed are left alone, and every stored mail ends as one ticket message or in quarantine."""

from __future__ import annotations

import concurrent.futures
import functools
import hashlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from models.analysed import parse_and_analyse
from models.policy import PolicyConfig
from models.policy.analyser import TextAnalyser
from models.tables import (
    Client,
    ClientAddress,
    EmailOutbox,
    Message,
    MessageDirection,
    RawMail,
    RawMailStatus,
    TelegramOutbox,
    Ticket,
    TicketStatus,
)
from tests.helpers.desk import Desk, make_email, store_raw_mail

START = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)


class DoneAtOnce(concurrent.futures.Executor):
    """A pool whose every parse has finished by the time ingestion starts: the largest groups form."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[Any]:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as exc:  # noqa: BLE001 - delivered to the processor as a failed parse
            future.set_exception(exc)
        return future


async def store(raw: bytes, uid: int) -> RawMail:
    return await store_raw_mail(
        raw, mailbox="INBOX", uidvalidity=1, uid=uid, internal_date=START + timedelta(minutes=uid),
        sha256=hashlib.sha256(raw + bytes([uid])).hexdigest(), size=len(raw),
    )  # fmt: skip


def use_groups(desk: Desk, groups: list[int]) -> None:
    """Parse through a pool with the policy's text analyses, and record the size of every group."""
    desk.processor.pool.executor = DoneAtOnce()
    desk.processor.pool.analyser = TextAnalyser(PolicyConfig())
    original = desk.ingest._ingest_new_requests

    async def recording(group: Any) -> None:
        groups.append(len(group))
        await original(group)

    desk.ingest._ingest_new_requests = recording  # type: ignore[method-assign]


async def test_a_group_sees_its_own_earlier_tickets_and_replies_join_them(db: str) -> None:
    client = await Client.create(name="ООО «Ромашка»", inn="7707083893")
    await ClientAddress.create(client=client, value="@romashka.ru", is_domain=True)
    first = make_email(subject="Не работает выгрузка", message_id="first@romashka.ru")
    mails = [
        first,
        # the same request again, another Message-ID: an exact duplicate of the ticket made just before
        make_email(subject="Не работает выгрузка", message_id="again@romashka.ru"),
        make_email(subject="Ошибка в отчёте", body="Отчёт за октябрь показывает нули по всем складам.",
                   sender="olga@romashka.ru"),
        make_email(subject="Счёт не пришёл", body="Счёт на оплату за декабрь не пришёл на почту бухгалтерии.",
                   sender="buh@romashka.ru"),
        # a reply to the first mail: it must join that ticket even though it was created in this batch
        make_email(subject="Re: Не работает выгрузка", body="Добавлю: ошибка 502 и в мобильном приложении.",
                   in_reply_to="first@romashka.ru"),
        # the client's fourth request this month (the duplicate does not count): over the limit of 3
        make_email(subject="Нет доступа к API", body="Ключ API перестал работать после смены тарифа сегодня.",
                   sender="dev@romashka.ru"),
        b"this is not an email at all",
        # NUL characters (PostgreSQL cannot store them): dropped before anything is stored
        make_email(subject="Символ\x00 ноль", body="Текст\x00 с нулевым символом внутри, касса не печатает чеки.",
                   sender="kassa@romashka.ru"),
        make_email(subject="Вопрос от нового клиента", body="Подскажите, как подключить маркетплейс к кабинету?",
                   sender="someone@example.org"),
    ]
    for uid, raw in enumerate(mails, start=1):
        await store(raw, uid)
    groups: list[int] = []
    async with Desk.open() as desk:
        use_groups(desk, groups)
        while await desk.processor.process_stored(batch=50):
            pass

    assert max(groups) >= 4, groups  # really ingested together, not one by one
    tickets = await Ticket.all().order_by("arrived_at", "id")
    by_subject = {t.subject: t for t in tickets}
    copies = [t for t in tickets if t.subject == "Не работает выгрузка"]
    assert len(copies) == 2
    original = copies[0]
    assert original.duplicate_of_id is None
    assert copies[1].duplicate_of_id == original.id
    assert "duplicate" in [f["code"] for f in copies[1].verdict["findings"]]
    assert not copies[1].counts_toward_limit

    reply = await Message.get(message_id__contains="@", subject="Re: Не работает выгрузка")
    assert reply.ticket_id == original.id and reply.kind == "followup"
    assert "Re: Не работает выгрузка" not in by_subject  # no request of its own

    over = by_subject["Нет доступа к API"]
    assert over.verdict["month_count"] == 4  # after "Не работает выгрузка", "Ошибка в отчёте", "Счёт не пришёл"
    assert "monthly_limit" in [f["code"] for f in over.verdict["findings"]]
    assert by_subject["Счёт не пришёл"].verdict["month_count"] == 3

    assert by_subject["Вопрос от нового клиента"].client_id is None
    assert "Символ ноль" in by_subject
    assert not [m for m in await Message.all() if "\x00" in m.text + m.subject + m.new_text]
    assert (await RawMail.filter(status=RawMailStatus.QUARANTINED).count()) == 1
    assert not await RawMail.filter(status=RawMailStatus.STORED).exists()
    for row in await RawMail.filter(status=RawMailStatus.PROCESSED):
        assert await Message.filter(raw_mail_id=row.id).count() == 1
    new_tickets = [t for t in tickets if t.status == TicketStatus.NEW]
    cards = await TelegramOutbox.filter(idempotency_key__startswith="card:").values_list("idempotency_key", flat=True)
    assert sorted(cards) == sorted(f"card:{t.id}" for t in new_tickets)


async def test_rows_another_processor_claimed_are_left_to_it(db: str) -> None:
    rows = [await store(make_email(sender=f"user{uid}@example.org", subject=f"Тема {uid}"), uid) for uid in range(1, 7)]
    groups: list[int] = []
    async with Desk.open() as desk:
        use_groups(desk, groups)
        # Another process claims rows 2 and 5 after this one has read them as STORED.
        original_claim = desk.ingest._claim_raws

        async def racing(conn: Any, ids: list[int]) -> set[int]:
            await RawMail.filter(id__in=[rows[1].id, rows[4].id]).using_db(conn).update(status=RawMailStatus.PROCESSED)
            return await original_claim(conn, ids)

        desk.ingest._claim_raws = racing  # type: ignore[method-assign]
        await desk.processor.process_stored(batch=50)
    assert groups == [6]
    assert sorted(t.subject for t in await Ticket.all()) == ["Тема 1", "Тема 3", "Тема 4", "Тема 6"]
    assert await Message.filter(direction=MessageDirection.INBOUND).count() == 4
    assert await EmailOutbox.filter(event="acknowledged").count() == 4  # one each, in the same transactions


async def test_a_failure_inside_a_group_commits_nothing_of_it(db: str) -> None:
    for uid in range(1, 5):
        await store(make_email(sender=f"user{uid}@example.org", subject=f"Тема {uid}"), uid)
    groups: list[int] = []
    async with Desk.open() as desk:
        use_groups(desk, groups)
        calls = 0
        evaluate = desk.ingest.policy.evaluate

        async def failing_third(req: Any, repository: Any = None) -> Any:
            nonlocal calls
            calls += 1
            if calls == 3:
                raise OSError("disk I/O error")
            return await evaluate(req, repository)

        desk.ingest.policy.evaluate = failing_third  # type: ignore[method-assign]
        try:
            await desk.processor.process_stored(batch=50)
        except OSError:
            pass
        assert await Ticket.all().count() == 0  # the whole group rolled back
        assert await RawMail.filter(status=RawMailStatus.STORED).count() == 4
        desk.ingest.policy.evaluate = evaluate  # type: ignore[method-assign]
        while await desk.processor.process_stored(batch=50):
            pass
    assert sorted(t.subject for t in await Ticket.all()) == [f"Тема {n}" for n in range(1, 5)]
    assert await Message.filter(direction=MessageDirection.INBOUND).count() == 4
    assert await EmailOutbox.filter(event="acknowledged").count() == 4  # one each, in the same transactions


def test_the_pool_function_is_picklable_with_the_analyser() -> None:
    import pickle

    from mail.parse import parse_message

    work = functools.partial(parse_and_analyse, parser=parse_message, analyser=TextAnalyser(PolicyConfig()))
    assert pickle.loads(pickle.dumps(work))(make_email()).analyses


class Counting(DoneAtOnce):
    def __init__(self) -> None:
        self.submitted = 0

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[Any]:
        self.submitted += 1
        return super().submit(fn, *args, **kwargs)


async def test_parses_started_ahead_are_used_by_the_next_batch_and_each_mail_is_parsed_once(db: str) -> None:
    rows = [await store(make_email(sender=f"user{uid}@example.org", subject=f"Тема {uid}"), uid) for uid in range(1, 13)]
    async with Desk.open() as desk:
        pool = Counting()
        desk.processor.pool.executor = pool
        desk.processor.pool.parse_ahead = 4
        assert await desk.processor.process_stored(batch=5) == 5
        assert pool.submitted == 9  # this batch and the next four
        # Another processor takes a row whose parse was started ahead: that parse is dropped, not used.
        await RawMail.filter(id=rows[6].id).update(status=RawMailStatus.PROCESSED)
        while await desk.processor.process_stored(batch=5):
            pass
    assert pool.submitted == 12
    subjects = [t.subject for t in await Ticket.all().order_by("arrived_at")]
    assert subjects == [f"Тема {n}" for n in range(1, 13) if n != 7]
