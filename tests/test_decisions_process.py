"""One decision per request, through the real bridge (`python -m bot run`, Dovecot, aiosmtpd, the fake
Bot API): a stale or racing Refuse never follows an acceptance, the second agent is told who accepted and
when, and refusing an accepted request is its own confirmed action whose email withdraws the acceptance.

(a) and (c) run one long-polling process; (b) runs two webhook processes on one database and posts the
two presses to different processes at the same moment, as Telegram would deliver them to a deployment."""

from __future__ import annotations

import asyncio
import re
import secrets
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import aiohttp

from models.tables import Decision, EmailOutbox, OutboxStatus, StaffMember, Ticket, TicketStatus
from tests.helpers.process import STAFF_CHAT_ID, STAFF_USER_ID, BridgeProcess, bridge_env, run_cli
from tests.rig.dovecot import DovecotServer
from tests.rig.fake_telegram import FakeTelegram
from tests.rig.net import free_port
from tests.rig.smtp import SmtpCapture
from tests.test_process import button_data, request_mail

BORIS = 5002
TZ = ZoneInfo("Europe/Moscow")
# Passed explicitly: tortoise's init in this test process (the `db` fixture) sets os.environ["TIMEZONE"]
# to "UTC", and bridge_env copies the environment, so the bridge would otherwise run on UTC.
# About the decisions' emails: the acknowledgement every request gets on arrival is tested on its own
# (tests/test_acknowledgement.py, tests/test_process.py).
ZONE = {"TIMEZONE": "Europe/Moscow", "ACKNOWLEDGE_REQUESTS": "false"}
WEBHOOK_URL = "https://bridge.storeolis.test/telegram"
SECRET = "test-webhook-secret-" + secrets.token_hex(8)
DECISIONS = ("accepted", "refused", "refused_after_acceptance", "answered_faq")

async def showing(telegram: FakeTelegram, message_id: int, label_part: str) -> dict:
    """The staff-chat message once its keyboard has a button `label_part`: a press answers at once, and
    the keyboard it swaps in goes through the Telegram outbox, paced with the chat's other posts."""

    def has_button() -> dict | None:
        message = telegram.message(STAFF_CHAT_ID, message_id)
        return message if label_part in str(message.get("reply_markup")) else None

    return await telegram.wait_for(has_button, timeout=60)



async def prepared(tmp_path: Path, env: dict[str, str], telegram: FakeTelegram) -> None:
    """Migrated database, the client registered (no findings: Accept needs no confirmation), a second
    staff member in the group."""
    assert (await asyncio.to_thread(run_cli, ["migrate"], env, tmp_path)).returncode == 0
    clients = tmp_path / "clients.csv"
    clients.write_text("name,inn,contract,emails\nООО Ромашка,7707083893,Д-2024/117,@romashka.ru\n", encoding="utf-8")
    imported = await asyncio.to_thread(run_cli, ["clients", "import", str(clients)], env, tmp_path)
    assert imported.returncode == 0, imported.stderr
    telegram.add_user(BORIS, "Борис", username="boris_support")
    telegram.set_member_status(STAFF_CHAT_ID, BORIS, "member")


def card_of(telegram: FakeTelegram, subject: str) -> dict | None:
    for message in telegram.messages(STAFF_CHAT_ID):
        text = message.get("text") or ""
        if subject in text and text.startswith(("🆕", "✅", "⛔")) and message.get("reply_markup"):
            return message
    return None


def reply_after(telegram: FakeTelegram, message_id: int, needle: str) -> dict | None:
    """The bot's newest message in reply to `message_id` that says `needle`."""
    for message in reversed(telegram.messages(STAFF_CHAT_ID)):
        replied = (message.get("reply_to_message") or {}).get("message_id")
        if replied == message_id and needle in (message.get("text") or ""):
            return message
    return None


async def answered(telegram: FakeTelegram, query_id: str) -> dict:
    return await telegram.wait_for(lambda: telegram.callback_answers().get(query_id), timeout=30)


async def decisions_of(ticket_id: int) -> list[Decision]:
    return await Decision.filter(ticket_id=ticket_id, action__in=DECISIONS).order_by("id")


async def already_text(ticket_id: int, verb: str) -> str:
    """"Уже принято: Анна в 14:05": the name and time of the Decision that won, in TIMEZONE."""
    decision = (await decisions_of(ticket_id))[-1]
    staff = await StaffMember.get(id=decision.staff_id)
    at = decision.created_at if decision.created_at.tzinfo else decision.created_at.replace(tzinfo=UTC)
    return f"{verb}: {staff.name} в {at.astimezone(TZ):%H:%M}"


async def open_refusal_prompt(telegram: FakeTelegram, card: dict, user_id: int) -> dict:
    """A member starts refusing: Refuse, a reason; the bot posts the prompt with "no comment"."""
    card_id = card["message_id"]
    await answered(telegram, telegram.press_button(STAFF_CHAT_ID, card_id, user_id, button_data(card, "Отказать")))
    reasons = await showing(telegram, card_id, "Вне рамок")
    await answered(telegram, telegram.press_button(STAFF_CHAT_ID, card_id, user_id,
                                                   button_data(reasons, "Вне рамок")))
    return await telegram.wait_for(lambda: reply_after(telegram, card_id, "Ответьте (reply)"), timeout=30)


async def test_refuse_pressed_after_accept_is_answered_already_accepted_and_sends_nothing(
    tmp_path: Path, db: str, mailbox: DovecotServer, smtp_server: SmtpCapture, telegram: FakeTelegram
) -> None:
    env = bridge_env(database_url=db, mailbox=mailbox, smtp=smtp_server, telegram=telegram, **ZONE)
    await prepared(tmp_path, env, telegram)
    process = BridgeProcess(env, tmp_path, tmp_path / "bridge.log")
    process.start()
    try:
        subject = "Не работает выгрузка заказов"
        await asyncio.to_thread(mailbox.append, request_mail(subject, "Ошибка 500 при выгрузке. ООО Ромашка."),
                                internal_date=datetime.now(UTC))
        card = await telegram.wait_for(lambda: card_of(telegram, subject), timeout=60)
        # Борис starts a refusal (the prompt waits for his comment) while Анна accepts.
        prompt = await open_refusal_prompt(telegram, card, BORIS)
        card = telegram.message(STAFF_CHAT_ID, card["message_id"])
        accept = telegram.press_button(STAFF_CHAT_ID, card["message_id"], STAFF_USER_ID, button_data(card, "Принять"))
        assert (await answered(telegram, accept))["text"].startswith("Принято")
        await smtp_server.wait_for_count(1, timeout=60)
        ticket = await Ticket.get(card_message_id=card["message_id"])
        expected = await already_text(ticket.id, "Уже принято")

        # The same card, the plain Refuse button as Борис still sees it: no reason picker, who accepted.
        stale = telegram.press_button(STAFF_CHAT_ID, card["message_id"], BORIS, button_data(card, "Отказать"),
                                      check_markup=False)
        assert (await answered(telegram, stale))["text"] == expected
        # His prompt's "Refuse without a comment": nothing is refused, nothing is emailed.
        no_comment = telegram.press_button(STAFF_CHAT_ID, prompt["message_id"], BORIS,
                                           button_data(prompt, "без комментария"))
        assert (await answered(telegram, no_comment))["text"] == expected
        await asyncio.sleep(2.0)  # a second email (REFUSAL_GRACE_SECONDS=0) would have left by now
        assert len(smtp_server.messages) == 1
        assert (await Ticket.get(id=ticket.id)).status == TicketStatus.ACCEPTED
        assert [d.action for d in await decisions_of(ticket.id)] == ["accepted"]
        assert [e.event for e in await EmailOutbox.filter(ticket_id=ticket.id)] == ["accepted"]
    finally:
        code = await process.stop()
    assert code == 0, process.output()[-3000:]
    assert "Traceback" not in process.output()


async def test_accept_and_refuse_at_the_same_moment_on_two_processes_send_one_email_per_request(
    tmp_path: Path, db: str, mailbox: DovecotServer, smtp_server: SmtpCapture, telegram: FakeTelegram
) -> None:
    ports = [free_port(), free_port()]
    # Pacing is not this test's subject: at Telegram's real 20 a minute per group, the eight cards with their
    # prompts and edits fill each process's minute and a prompt could wait past its deadline (seen in CI).
    # The fake does not enforce flood control here, so the windows are shrunk tenfold.
    base = bridge_env(database_url=db, mailbox=mailbox, smtp=smtp_server, telegram=telegram, MONTHLY_LIMIT="1000",
                      TELEGRAM_MODE="webhook", WEBHOOK_URL=WEBHOOK_URL, WEBHOOK_SECRET=SECRET,
                      TELEGRAM_RATE_SCALE="0.1", **ZONE)
    await prepared(tmp_path, base, telegram)
    processes = [
        BridgeProcess(dict(base, INSTANCE_NAME=f"bridge-{i}", WEBHOOK_LISTEN_PORT=str(port)), tmp_path,
                      tmp_path / f"bridge-{i}.log")
        for i, port in enumerate(ports)
    ]
    posted: set[int] = set()
    requests = 8
    subjects = [f"Запрос {n} {secrets.token_hex(3)}" for n in range(requests)]
    answers: list[tuple[str, str]] = []  # (accept query, no-comment query) per request

    async def post(session: aiohttp.ClientSession, update: dict, port: int) -> None:
        for _ in range(300):  # a process may not listen yet: Telegram retries too
            try:
                async with session.post(f"http://127.0.0.1:{port}/telegram", json=update,
                                        headers={"X-Telegram-Bot-Api-Secret-Token": SECRET},
                                        timeout=aiohttp.ClientTimeout(total=60)) as response:
                    assert response.status == 200
                    break
            except aiohttp.ClientConnectorError:
                await asyncio.sleep(0.1)
        posted.add(update["update_id"])

    async def deliver(session: aiohttp.ClientSession) -> None:
        for update in telegram.pending_updates:
            if update["update_id"] not in posted:
                await post(session, update, ports[update["update_id"] % 2])

    for process in processes:
        process.start()
    try:
        await telegram.wait_for(lambda: telegram.webhook_url == WEBHOOK_URL, timeout=60)
        for n, subject in enumerate(subjects):
            mail = request_mail(subject, f"Не работает выгрузка, случай {n}. ООО Ромашка.", sender=f"u{n}@romashka.ru")
            await asyncio.to_thread(mailbox.append, mail, internal_date=datetime.now(UTC))
        async with aiohttp.ClientSession() as session:
            for n, subject in enumerate(subjects):
                card = await telegram.wait_for(lambda s=subject: card_of(telegram, s), timeout=90)
                card_id = card["message_id"]
                # Борис opens a refusal prompt (delivered one press at a time)...
                query = telegram.press_button(STAFF_CHAT_ID, card_id, BORIS, button_data(card, "Отказать"))
                await deliver(session)
                await answered(telegram, query)
                reasons = await showing(telegram, card_id, "Вне рамок")
                query = telegram.press_button(STAFF_CHAT_ID, card_id, BORIS, button_data(reasons, "Вне рамок"))
                await deliver(session)
                await answered(telegram, query)
                prompt = await telegram.wait_for(lambda c=card_id: reply_after(telegram, c, "Ответьте (reply)"),
                                                 timeout=30)
                card = await showing(telegram, card_id, "Принять")
                # ...then Анна's Accept and his "no comment" reach the two processes at the same moment.
                accept = telegram.press_button(STAFF_CHAT_ID, card_id, STAFF_USER_ID, button_data(card, "Принять"))
                refuse = telegram.press_button(STAFF_CHAT_ID, prompt["message_id"], BORIS,
                                               button_data(prompt, "без комментария"))
                updates = {u["update_id"]: u for u in telegram.pending_updates if u["update_id"] not in posted}
                pair = sorted(updates.values(), key=lambda u: u["update_id"])
                assert len(pair) == 2
                first, second = (pair[0], pair[1]) if n % 2 == 0 else (pair[1], pair[0])
                await asyncio.gather(post(session, first, ports[0]), post(session, second, ports[1]))
                answers.append((accept, refuse))

            async def all_sent() -> bool:
                return not await EmailOutbox.exclude(status=OutboxStatus.SENT).exists() and (
                    await EmailOutbox.all().count() >= requests
                )

            await telegram.wait_for(all_sent, timeout=90)
            await asyncio.sleep(2.0)  # a second email per request would show up now
    finally:
        codes = [await p.stop() for p in processes]
    assert codes == [0, 0], [p.output()[-3000:] for p in processes]
    assert not any("Traceback" in p.output() for p in processes)

    tickets = await Ticket.all().order_by("id")
    assert len(tickets) == requests
    per_ticket = {t.id: [d.action for d in await decisions_of(t.id)] for t in tickets}
    assert all(len(actions) == 1 for actions in per_ticket.values()), per_ticket
    emails = {t.id: await EmailOutbox.filter(ticket_id=t.id).count() for t in tickets}
    assert emails == {t.id: 1 for t in tickets}
    assert len(smtp_server.messages) == requests
    replies = telegram.callback_answers()
    for accept, refuse in answers:
        texts = sorted([replies[accept]["text"], replies[refuse]["text"]])
        winners = [t for t in texts if t.startswith(("Принято", "Отказ оформлен"))]
        losers = [t for t in texts if re.match(r"Уже (принято|отказано): (Анна|Борис) в \d\d:\d\d$", t)]
        assert len(winners) == 1 and len(losers) == 1, texts


async def test_refusing_an_accepted_request_is_confirmed_and_its_email_withdraws_the_acceptance(
    tmp_path: Path, db: str, mailbox: DovecotServer, smtp_server: SmtpCapture, telegram: FakeTelegram
) -> None:
    env = bridge_env(database_url=db, mailbox=mailbox, smtp=smtp_server, telegram=telegram, **ZONE)
    await prepared(tmp_path, env, telegram)
    process = BridgeProcess(env, tmp_path, tmp_path / "bridge.log")
    process.start()
    try:
        subject = "Доработать отчёт по складу"
        await asyncio.to_thread(mailbox.append, request_mail(subject, "Добавьте колонку в отчёт. ООО Ромашка."),
                                internal_date=datetime.now(UTC))
        card = await telegram.wait_for(lambda: card_of(telegram, subject), timeout=60)
        card_id = card["message_id"]
        await answered(telegram, telegram.press_button(STAFF_CHAT_ID, card_id, STAFF_USER_ID,
                                                       button_data(card, "Принять")))
        await smtp_server.wait_for_count(1, timeout=60)
        ticket = await Ticket.get(card_message_id=card_id)
        accepted = await already_text(ticket.id, "x")  # "x: Анна в HH:MM"
        name_time = accepted.split(": ", 1)[1]

        # Борис: "…" -> "Отказать после принятия" -> the confirmation names Анна's acceptance.
        card = await telegram.wait_for(
            lambda: (m := telegram.message(STAFF_CHAT_ID, card_id)) and "…" in str(m.get("reply_markup")) and m)
        await answered(telegram, telegram.press_button(STAFF_CHAT_ID, card_id, BORIS, button_data(card, "…")))
        menu = await showing(telegram, card_id, "после принятия")
        ask = telegram.press_button(STAFF_CHAT_ID, card_id, BORIS, button_data(menu, "после принятия"))
        confirmation = await answered(telegram, ask)
        assert confirmation["text"] == f"Заявка принята {name_time}. Отозвать принятие и отказать?"
        assert confirmation["show_alert"]
        assert (await Ticket.get(id=ticket.id)).status == TicketStatus.ACCEPTED  # nothing happens before "yes"
        confirm = await showing(telegram, card_id, "отозвать принятие")
        await answered(telegram, telegram.press_button(STAFF_CHAT_ID, card_id, BORIS,
                                                       button_data(confirm, "отозвать принятие")))
        reasons = await showing(telegram, card_id, "Вне рамок")
        await answered(telegram, telegram.press_button(STAFF_CHAT_ID, card_id, BORIS,
                                                       button_data(reasons, "Вне рамок")))
        prompt = await telegram.wait_for(lambda: reply_after(telegram, card_id, "Принятие будет отозвано"), timeout=30)
        telegram.send_user_message(STAFF_CHAT_ID, BORIS, "Доработки отчётов — по отдельному договору.",
                                   reply_to_message_id=prompt["message_id"])

        await smtp_server.wait_for_count(2, timeout=60)
        await asyncio.sleep(1.0)
        assert len(smtp_server.messages) == 2  # the acceptance, then one refusal: nothing else
        refusal = smtp_server.messages[1].message
        text = refusal.get_body(("plain",)).get_content()
        accepted_on = (await decisions_of(ticket.id))[0].created_at
        accepted_on = accepted_on if accepted_on.tzinfo else accepted_on.replace(tzinfo=UTC)
        assert f"{accepted_on.astimezone(TZ):%d.%m.%Y} мы сообщили вам, что обращение принято в работу" in text
        assert "отзываем принятие обращения" in text and "п. 2.6" in text
        assert "Доработки отчётов — по отдельному договору." in text
        assert f"[#{ticket.id}]" in refusal["Subject"]

        assert (await Ticket.get(id=ticket.id)).status == TicketStatus.REFUSED
        audit = await decisions_of(ticket.id)
        assert [d.action for d in audit] == ["accepted", "refused_after_acceptance"]
        assert audit[1].reason == "out_of_scope" and audit[1].details["previous_status"] == "accepted"
        assert [e.idempotency_key.split(":")[0] for e in await EmailOutbox.filter(ticket_id=ticket.id).order_by("id")] \
            == ["accept", "withdraw"]

        async def card_says_withdrawn() -> bool:
            return "Принятие отозвано" in (telegram.message(STAFF_CHAT_ID, card_id).get("text") or "")

        await telegram.wait_for(card_says_withdrawn, timeout=30)
    finally:
        code = await process.stop()
    assert code == 0, process.output()[-3000:]
    assert "Traceback" not in process.output()
