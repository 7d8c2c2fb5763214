"""Isolation per mail (issue 16, finding 1): no mail can stop intake.

Through the real process (`python -m bot run` with Dovecot, aiosmtpd and the fake Telegram server):
a client's mail with a 1,000-character In-Reply-To becomes a normal ticket (the id is kept by hash) and a
reply quoting the same long id threads to it; a mail the database refuses is quarantined with a Russian
notice naming it, and the mails after it (and beside it in its ingest group) still get their cards.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from typing import Any

from tortoise import Tortoise

from mail.classify import message_ids
from mail.parse import parse_message
from models.inbound import MAX_MESSAGE_ID, bounded_message_id, is_hashed_message_id
from models.store import db as database
from models.tables import Message, RawMail, RawMailStatus, TelegramOutbox, Ticket
from tests.fuzzing import fuzz_mail
from tests.helpers.desk import Desk, make_email, store_raw_mail
from tests.helpers.process import STAFF_CHAT_ID, BridgeProcess, bridge_env, run_cli
from tests.rig.dovecot import DovecotServer
from tests.rig.fake_telegram import FakeTelegram
from tests.rig.smtp import SmtpCapture
from tests.test_ingest_groups import DoneAtOnce

CLIENTS_CSV = "name,inn,contract,emails\nООО Ромашка,7707083893,Д-2024/117,ivanov@romashka.ru;@romashka.ru\n"
LONG_ID = "z" * 988 + "@romashka.ru"  # the 1,000-character In-Reply-To id of the report (over the 998 column)
LONG_OWN_ID = "y" * 988 + "@romashka.ru"  # the mail's own Message-ID, as long
REFUSED_MARK = "ОТКАЗ-БД"  # a subject with this text is refused by the database trigger below


def client_mail(subject: str, body: str, *, in_reply_to: str | None = None, name: str = "Иван Иванов",
                sender: str = "ivanov@romashka.ru", message_id: str | None = None,
                references: str | None = None) -> bytes:
    msg = EmailMessage()
    msg["From"] = f"{name} <{sender}>"
    msg["To"] = "support@storeolis.ru"
    msg["Subject"] = subject
    msg["Message-ID"] = f"<{message_id}>" if message_id else make_msgid(domain="romashka.ru")
    msg["Date"] = "Wed, 25 Nov 2026 10:00:00 +0300"
    if in_reply_to is not None:
        msg["In-Reply-To"] = f"<{in_reply_to}>"
    if references is not None:
        msg["References"] = references
    msg.set_content(body)
    return bytes(msg)


def card_of(telegram: FakeTelegram, needle: str) -> dict[str, Any] | None:
    for message in telegram.messages(STAFF_CHAT_ID):
        if needle in (message.get("text") or "") and message.get("reply_markup"):
            return message
    return None


def notices(telegram: FakeTelegram, needle: str = "Письмо отложено в карантин") -> list[dict[str, Any]]:
    return [m for m in telegram.messages(STAFF_CHAT_ID) if needle in (m.get("text") or "")]


async def start_bridge(tmp_path: Path, env: dict[str, str]) -> BridgeProcess:
    assert (await asyncio.to_thread(run_cli, ["migrate"], env, tmp_path)).returncode == 0
    clients = tmp_path / "clients.csv"
    clients.write_text(CLIENTS_CSV, encoding="utf-8")
    imported = await asyncio.to_thread(run_cli, ["clients", "import", str(clients)], env, tmp_path)
    assert imported.returncode == 0, imported.stderr
    process = BridgeProcess(env, tmp_path, tmp_path / "bridge.log")
    process.start()
    return process


async def raw_statuses(database_url: str) -> dict[int, tuple[str, str | None, int]]:
    """raw mail id -> (status, error, inbound messages linked), read after the process stopped."""
    await database.init_db(database_url)
    try:
        rows = await RawMail.all().order_by("id")
        return {r.id: (str(r.status), r.error, await Message.filter(raw_mail_id=r.id).count()) for r in rows}
    finally:
        await database.close_db()


# ------------------------------------------------------------------------------- a database refusal


SQLITE_TRIGGER = f"""
CREATE TRIGGER refuse_marked_subject BEFORE INSERT ON message
WHEN NEW.subject LIKE '%{REFUSED_MARK}%'
BEGIN SELECT RAISE(ABORT, 'CHECK constraint failed: refuse_marked_subject'); END;
"""
POSTGRES_TRIGGER = f"""
CREATE FUNCTION refuse_marked_subject() RETURNS trigger AS $$
BEGIN
  IF NEW.subject LIKE '%{REFUSED_MARK}%' THEN
    RAISE EXCEPTION 'new row violates check constraint refuse_marked_subject' USING ERRCODE = 'check_violation';
  END IF;
  RETURN NEW;
END $$ LANGUAGE plpgsql;
CREATE TRIGGER refuse_marked_subject BEFORE INSERT ON message
FOR EACH ROW EXECUTE FUNCTION refuse_marked_subject();
"""


async def refuse_marked_mail(database_url: str, *, connected: bool = False) -> None:
    """A constraint the database enforces on one mail's data (as a CHECK would): inserting its message
    fails with an integrity error, on SQLite and on PostgreSQL, inside whatever transaction holds it."""
    if not connected:
        await database.init_db(database_url)
    try:
        conn = Tortoise.get_connection("default")
        script = POSTGRES_TRIGGER if conn.capabilities.dialect == "postgres" else SQLITE_TRIGGER
        await conn.execute_script(script)
    finally:
        if not connected:
            await database.close_db()


# ------------------------------------------------------------------------------------------ parse


def test_a_long_message_id_is_kept_by_a_stable_hash_in_every_header() -> None:
    long_id = "a" * 3000 + "@example.org"
    hashed = bounded_message_id(long_id)
    assert is_hashed_message_id(hashed) and len(hashed) <= MAX_MESSAGE_ID
    assert hashed == "sha256." + hashlib.sha256(long_id.encode()).hexdigest() + "@hashed.invalid"
    assert bounded_message_id("short@example.org") == "short@example.org"
    assert message_ids(f"<short@x> <{long_id}>") == ["short@x", hashed]  # not dropped, not cut

    msg = EmailMessage()
    msg["From"] = "Иван <ivanov@romashka.ru>"
    msg["Subject"] = "тема"
    msg["Message-ID"] = f"<{long_id}>"
    msg["In-Reply-To"] = f"<{long_id}>"
    msg["References"] = f"<root@x> <{long_id}>"
    msg.set_content("текст")
    parsed = parse_message(bytes(msg))
    assert parsed.message_id == parsed.in_reply_to == hashed
    assert parsed.references == ["root@x", hashed]


def test_header_fields_are_bounded_to_their_columns() -> None:
    raw = (
        "From: " + "Я" * 5000 + " <ivanov@romashka.ru>\r\n"
        "To: " + "x" * 400 + "@romashka.ru, ok@romashka.ru\r\n"
        "Subject: " + "тема " * 600 + "\r\n"
        "Message-ID: <m1@romashka.ru>\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
        "--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nтекст\r\n"
        "--b\r\nContent-Type: application/" + "q" * 500 + '; name="' + "ф" * 400 + '.pdf"\r\n'
        "Content-Disposition: attachment\r\n\r\nabc\r\n--b--\r\n"
    ).encode()
    parsed = parse_message(raw)
    assert len(parsed.from_name) <= 300 and parsed.from_address == "ivanov@romashka.ru"
    assert parsed.to == ["ok@romashka.ru"]  # a 400-character address is nobody's
    assert len(parsed.subject) <= 1000
    (attachment,) = parsed.attachments
    assert attachment.content_type == "application/octet-stream" and len(attachment.filename) <= 200


# ------------------------------------------------------------------------- groups, in process (Desk)


async def test_a_failure_of_one_mail_in_a_group_quarantines_only_that_mail(db: str) -> None:
    await refuse_marked_mail(db, connected=True)
    start = datetime.now(UTC) - timedelta(hours=1)
    for uid in range(1, 7):
        subject = f"Тема {uid} <{REFUSED_MARK}> & ко" if uid == 3 else f"Тема {uid}"
        raw = make_email(sender=f"user{uid}@example.org", subject=subject)
        await store_raw_mail(raw, mailbox="INBOX", uidvalidity=1, uid=uid, internal_date=start + timedelta(minutes=uid),
                             sha256=hashlib.sha256(raw).hexdigest(), size=len(raw))
    groups: list[int] = []
    async with Desk.open(language="en") as desk:
        desk.processor.pool.executor = DoneAtOnce()  # every parse done at once: the six form one group
        original = desk.ingest._ingest_new_requests

        async def recording(group: Any) -> None:
            groups.append(len(group))
            await original(group)

        desk.ingest._ingest_new_requests = recording  # type: ignore[method-assign]
        await desk.processor.process_stored(batch=50)
        assert groups[0] == 6  # the group was tried whole, then mail by mail
        assert sorted(t.subject for t in await Ticket.all()) == [f"Тема {n}" for n in (1, 2, 4, 5, 6)]
        rows = {r.uid: r for r in await RawMail.all()}
        assert rows[3].status == RawMailStatus.QUARANTINED and "refuse_marked_subject" in (rows[3].error or "")
        assert all(rows[n].status == RawMailStatus.PROCESSED for n in (1, 2, 4, 5, 6))
        assert await TelegramOutbox.filter(idempotency_key=f"quarantine:{rows[3].id}").count() == 1
        await desk.settled()
    (notice,) = [m for m in desk.fake.sent if "quarantined" in (m.get("plain_text") or "")]
    # English with LANGUAGE=en, the mail named, client text escaped for Telegram HTML.
    assert f"raw #{rows[3].id}" in notice["plain_text"]
    assert "could not be registered (IntegrityError" in notice["plain_text"] and "user3@example.org" in notice["plain_text"]
    assert f"Тема 3 &lt;{REFUSED_MARK}&gt; &amp; ко" in notice["text"]


# ------------------------------------------------------------------------------ the real process


async def test_a_1000_character_in_reply_to_does_not_stop_intake_and_its_reply_threads(
    tmp_path: Path, database_url: str, mailbox: DovecotServer, smtp_server: SmtpCapture, telegram: FakeTelegram
) -> None:
    env = bridge_env(database_url=database_url, mailbox=mailbox, smtp=smtp_server, telegram=telegram)
    process = await start_bridge(tmp_path, env)
    try:
        long_one = client_mail("Вопрос с длинным заголовком", "Здравствуйте! Не открывается отчёт по кассе.",
                               in_reply_to=LONG_ID, message_id=LONG_OWN_ID)
        assert len(LONG_ID) == 1000
        normal = client_mail("Обычный вопрос после него", "Здравствуйте! Не печатается чек на кассе.")
        await asyncio.to_thread(mailbox.append_many, [long_one, normal], datetime.now(UTC))
        await telegram.wait_for(lambda: card_of(telegram, "Обычный вопрос после него"), timeout=60)
        card = await telegram.wait_for(lambda: card_of(telegram, "Вопрос с длинным заголовком"), timeout=30)

        # A reply quoting its long Message-ID in In-Reply-To joins that ticket (the same hash).
        reply = client_mail("Дополнение", "Прикладываю номер кассы: 17.", in_reply_to=LONG_OWN_ID,
                            references=f"<{LONG_ID}> <{LONG_OWN_ID}>")
        await asyncio.to_thread(mailbox.append, reply, internal_date=datetime.now(UTC))

        def followup() -> dict[str, Any] | None:
            for message in telegram.messages(STAFF_CHAT_ID):
                replied = (message.get("reply_to_message") or {}).get("message_id")
                if replied == card["message_id"] and "номер кассы" in (message.get("text") or ""):
                    return message
            return None

        await telegram.wait_for(followup, timeout=60)
    finally:
        code = await process.stop()
    log = process.output()
    assert code == 0, log[-3000:]
    assert "Traceback" not in log and "crashed" not in log, log[-3000:]
    statuses = await raw_statuses(database_url)
    assert [s[0] for s in statuses.values()] == ["processed"] * 3
    assert not notices(telegram)


async def test_a_mail_the_database_refuses_is_quarantined_with_a_notice_and_intake_goes_on(
    tmp_path: Path, database_url: str, mailbox: DovecotServer, smtp_server: SmtpCapture, telegram: FakeTelegram
) -> None:
    # Parse workers: a burst is ingested in groups, so the refused mail also fails the group it is in.
    env = bridge_env(database_url=database_url, mailbox=mailbox, smtp=smtp_server, telegram=telegram,
                     PARSE_WORKERS="2", TELEGRAM_RATE_SCALE="0.01")
    assert (await asyncio.to_thread(run_cli, ["migrate"], env, tmp_path)).returncode == 0
    await refuse_marked_mail(database_url)
    process = await start_bridge(tmp_path, env)
    try:
        burst = [client_mail(f"Запрос №{n:02d}", f"Здравствуйте! Вопрос номер {n} по кассе.") for n in range(1, 13)]
        burst[5] = client_mail(f"Счёт <{REFUSED_MARK}> & акт", "Здравствуйте! Пришлите акт сверки.")
        await asyncio.to_thread(mailbox.append_many, burst, datetime.now(UTC))
        await telegram.wait_for(lambda: notices(telegram), timeout=60)
        later = client_mail("Запрос после отложенного письма", "Здравствуйте! Ещё вопрос по кассе.")
        await asyncio.to_thread(mailbox.append, later, internal_date=datetime.now(UTC))
        await telegram.wait_for(lambda: card_of(telegram, "Запрос после отложенного письма"), timeout=60)
        for n in (1, 2, 3, 4, 5, 7, 8, 9, 10, 11, 12):  # the refused mail's neighbours too
            await telegram.wait_for(lambda n=n: card_of(telegram, f"Запрос №{n:02d}"), timeout=30)
    finally:
        code = await process.stop()
    log = process.output()
    assert code == 0, log[-3000:]
    assert "crashed" not in log, log[-3000:]
    (notice,) = notices(telegram)
    text = notice["text"]  # as staff see it
    assert "Письмо отложено в карантин" in text and "не удалось зарегистрировать" in text
    assert "Иван Иванов <ivanov@romashka.ru>" in text and f"«Счёт <{REFUSED_MARK}> & акт»" in text
    assert "Остальные письма обрабатываются дальше" in text
    (sent,) = [s for s in telegram.sent if "Письмо отложено в карантин" in (s.get("plain_text") or "")]
    assert f"Счёт &lt;{REFUSED_MARK}&gt; &amp; акт" in sent["text"]  # escaped for Telegram HTML
    statuses = await raw_statuses(database_url)
    quarantined = [raw_id for raw_id, (status, _, _) in statuses.items() if status == "quarantined"]
    assert len(quarantined) == 1 and f"raw #{quarantined[0]}" in text
    assert statuses[quarantined[0]][2] == 0 and "refuse_marked_subject" in (statuses[quarantined[0]][1] or "")
    assert all(status == "processed" and linked == 1
               for raw_id, (status, _, linked) in statuses.items() if raw_id not in quarantined)
    assert len(statuses) == 13


# ------------------------------------------------------------------------------------ header fuzzing


async def test_header_fuzz_through_the_real_process_never_stops_intake(
    tmp_path: Path, database_url: str, mailbox: DovecotServer, smtp_server: SmtpCapture, telegram: FakeTelegram
) -> None:
    """Batches of mails with mutated headers (tests/fuzzing.py: long values and ids, broken and nested
    encoded words, 8-bit bytes, NULs, duplicated, missing and odd header lines, hostile attachment names
    and types), each followed by a sentinel mail that must get its card; at the end every raw mail is a
    ticket message or quarantined, none left waiting. INTAKE_FUZZ_SEED=<seed> replays a run."""
    seed = int(os.environ.get("INTAKE_FUZZ_SEED") or random.SystemRandom().randrange(2**31))
    batches, per_batch = int(os.environ.get("INTAKE_FUZZ_BATCHES") or 5), 14
    print(f"\nheader fuzz seed: INTAKE_FUZZ_SEED={seed} ({batches} batches of {per_batch})")
    rng = random.Random(seed)
    env = bridge_env(database_url=database_url, mailbox=mailbox, smtp=smtp_server, telegram=telegram,
                     PARSE_WORKERS="2", TELEGRAM_RATE_SCALE="0.01")
    process = await start_bridge(tmp_path, env)
    senders = ["ivanov@romashka.ru", "buh@romashka.ru", "stranger@example.org"]
    total = 0
    try:
        for batch in range(batches):
            when = datetime.now(UTC) - timedelta(hours=1) + timedelta(minutes=batch)
            mails = [(fuzz_mail(total + i, rng, rng.choice(senders)), when) for i in range(per_batch)]
            sentinel = f"Контрольное письмо {seed}-{batch}"
            mails.append((client_mail(sentinel, "Здравствуйте! Проверка связи."), when + timedelta(seconds=30)))
            total += len(mails)
            await asyncio.to_thread(mailbox.bulk_import, mails)  # byte-exact, NULs included (no APPEND rules)
            await telegram.wait_for(lambda s=sentinel: card_of(telegram, s), timeout=90)
            assert process.alive(), process.output()[-3000:]
    finally:
        code = await process.stop()
    log = process.output()
    assert code == 0, log[-3000:]
    assert "crashed" not in log, log[-3000:]
    statuses = await raw_statuses(database_url)
    assert len(statuses) == total, f"{len(statuses)} stored of {total} (seed {seed})"
    outcome = {raw_id: (status, linked) for raw_id, (status, _, linked) in statuses.items()}
    assert all(o in {("processed", 1), ("quarantined", 0)} for o in outcome.values()), (seed, outcome)
    reasons = Counter((error or "")[:60] for status, error, _ in statuses.values() if status == "quarantined")
    print(f"  {sum(reasons.values())} of {total} quarantined: {dict(reasons)}")
