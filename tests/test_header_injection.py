"""Client and staff text never writes our email headers (issue 16, finding 3), through the real process:
`python -m bot run` reads the mail from Dovecot, the staff act in the fake Telegram, aiosmtpd captures what
we send. The hostile values are RFC 2047 encoded words whose decoded text is again an encoded word hiding
CR/LF: decoded a second time anywhere, they become Bcc:, Reply-To:, X-Injected: lines or end the header
block. Each must come out as one header holding the literal text."""

from __future__ import annotations

import asyncio
import base64
from datetime import UTC, datetime
from email.header import decode_header, make_header
from email.message import EmailMessage
from pathlib import Path

from tests.helpers.process import STAFF_CHAT_ID, STAFF_USER_ID, BridgeProcess, bridge_env, run_cli
from tests.rig.dovecot import DovecotServer
from tests.rig.fake_telegram import FakeTelegram
from tests.rig.smtp import CapturedMail, SmtpCapture
from tests.test_process import button_data

CLIENT = "ivanov@romashka.ru"
PAYLOAD = (
    "Hi\r\nBcc: victim@evil.example\r\nReply-To: evil@evil.example\r\nX-Injected: yes\r\n\r\n"
    "<h1>Your account is blocked</h1>"
)
BODY = "Здравствуйте! Не работает выгрузка заказов в личном кабинете, ошибка 500."

# What the acceptance email carries, in this order and nothing else.
ACCEPTED_HEADERS = [
    "From", "To", "Subject", "Date", "Message-ID", "In-Reply-To", "References", "Auto-Submitted",
    "X-Auto-Response-Suppress", "MIME-Version", "Content-Type",
]
# A staff reply with a file: written by a person, so no Auto-Submitted.
REPLY_HEADERS = [h for h in ACCEPTED_HEADERS if h != "Auto-Submitted"]
ATTACHMENT_HEADERS = ["Content-Type", "Content-Transfer-Encoding", "Content-Disposition", "MIME-Version"]


def b_word(text: str) -> str:
    return f"=?utf-8?b?{base64.b64encode(text.encode()).decode()}?="


ONCE = b_word(PAYLOAD)  # what a correct reader shows: this literal text
TWICE = b_word(ONCE)  # what the attacker puts in the header
# A staff document's name as Telegram reports it (text, never encoded): an encoded word hiding CR/LF.
FILE_NAME = b_word("a\r\nX-Injected: yes\r\n\r\n<b>x</b>") + ".txt"


def hostile_request() -> bytes:
    """Written by hand: a mail library would encode the attacker's value once more."""
    return (
        f"From: {TWICE} <{CLIENT}>\r\n"
        "To: support@storeolis.ru\r\n"
        f"Subject: {TWICE}\r\n"
        "Message-ID: <hostile-1@romashka.ru>\r\n"
        "Date: Wed, 25 Nov 2026 10:00:00 +0300\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: text/plain; charset="utf-8"\r\n'
        "Content-Transfer-Encoding: 8bit\r\n"
        "\r\n"
        f"{BODY}\r\n"
    ).encode()


def plain_request() -> bytes:
    msg = EmailMessage()
    msg["From"] = f"Иван Иванов <{CLIENT}>"
    msg["To"] = "support@storeolis.ru"
    msg["Subject"] = "Не работает выгрузка заказов"
    msg["Message-ID"] = "<plain-1@romashka.ru>"
    msg["Date"] = "Wed, 25 Nov 2026 10:00:00 +0300"
    msg.set_content(BODY)
    return bytes(msg)


def card_with_body(telegram: FakeTelegram) -> dict | None:
    for message in telegram.messages(STAFF_CHAT_ID):
        if "выгрузка заказов" in (message.get("text") or "") and message.get("reply_markup"):
            return message
    return None


def rfc2047(raw: bytes, name: str) -> str:
    """A header of the captured bytes decoded once by the legacy RFC 2047 decoder (exact: it drops the
    folding space between adjacent encoded words, as 3.11's policy.default does not in address phrases)."""
    head = raw.split(b"\r\n\r\n", 1)[0].decode("ascii").replace("\r\n ", " ")
    (line,) = [line for line in head.split("\r\n") if line.startswith(f"{name}: ")]
    return str(make_header(decode_header(line.split(": ", 1)[1])))


async def start_desk(
    tmp_path: Path, database_url: str, mailbox: DovecotServer, smtp: SmtpCapture, telegram: FakeTelegram
) -> BridgeProcess:
    env = bridge_env(database_url=database_url, mailbox=mailbox, smtp=smtp, telegram=telegram)
    migrated = await asyncio.to_thread(run_cli, ["migrate"], env, tmp_path)
    assert migrated.returncode == 0, migrated.stderr
    clients = tmp_path / "clients.csv"
    clients.write_text(
        "name,inn,contract,emails\nООО Ромашка,7707083893,Д-2024/117,ivanov@romashka.ru\n", encoding="utf-8"
    )
    imported = await asyncio.to_thread(run_cli, ["clients", "import", str(clients)], env, tmp_path)
    assert imported.returncode == 0, imported.stderr
    process = BridgeProcess(env, tmp_path, tmp_path / "bridge.log")
    process.start()
    return process


def acknowledgement_first(mails: list[CapturedMail]) -> list[CapturedMail]:
    """The request's acknowledgement (sent on arrival), then the decision's email."""
    assert len(mails) == 2, [str(m.message["Subject"]) for m in mails]
    return sorted(mails, key=lambda m: "зарегистрировано" not in str(m.message["Subject"]))


def assert_only_to_the_client(mail: CapturedMail, headers: list[str]) -> EmailMessage:
    message = mail.message
    assert mail.rcpt_tos == [CLIENT]
    assert list(message.keys()) == headers
    assert [a.addr_spec for a in message["To"].addresses] == [CLIENT]
    assert b"victim@evil.example" not in mail.data and b"evil@evil.example" not in mail.data
    return message


async def test_a_double_encoded_subject_and_name_stay_literal_in_the_acceptance_email(
    tmp_path: Path, database_url: str, mailbox: DovecotServer, smtp_server: SmtpCapture, telegram: FakeTelegram
) -> None:
    process = await start_desk(tmp_path, database_url, mailbox, smtp_server, telegram)
    try:
        await asyncio.to_thread(mailbox.append, hostile_request(), internal_date=datetime.now(UTC))
        card = await telegram.wait_for(lambda: card_with_body(telegram), timeout=60)
        telegram.press_button(STAFF_CHAT_ID, card["message_id"], STAFF_USER_ID, button_data(card, "Принять"))
        ack, mail = acknowledgement_first(await smtp_server.wait_for_count(2, timeout=60))
    finally:
        code = await process.stop()
    assert code == 0, process.output()[-3000:]

    # The acknowledgement quotes the client's subject too: literal, one line, only to the client.
    acknowledged = assert_only_to_the_client(ack, ACCEPTED_HEADERS)
    assert acknowledged["Subject"] == f"Обращение [#1] зарегистрировано: {ONCE}"
    assert acknowledged["In-Reply-To"] == "<hostile-1@romashka.ru>"
    message = assert_only_to_the_client(mail, ACCEPTED_HEADERS)
    # The subject is the client's, decoded once: the literal encoded word, with our ticket tag.
    assert message["Subject"] == f"Re: {ONCE} [#1]"
    assert rfc2047(mail.data, "To") == f"{ONCE} <{CLIENT}>"
    assert message["In-Reply-To"] == "<hostile-1@romashka.ru>"
    text = message.get_body(("plain",))
    assert text is not None and text.get_content().startswith("Здравствуйте, ООО Ромашка!")
    assert "Traceback" not in process.output()


async def test_a_staff_document_with_an_encoded_word_name_and_telegrams_mime_parameters_is_sent_sanely(
    tmp_path: Path, database_url: str, mailbox: DovecotServer, smtp_server: SmtpCapture, telegram: FakeTelegram
) -> None:
    process = await start_desk(tmp_path, database_url, mailbox, smtp_server, telegram)
    try:
        await asyncio.to_thread(mailbox.append, plain_request(), internal_date=datetime.now(UTC))
        card = await telegram.wait_for(lambda: card_with_body(telegram), timeout=60)
        telegram.send_user_document(
            STAFF_CHAT_ID, STAFF_USER_ID, FILE_NAME, b"report line 1\nreport line 2\n", caption="Отчёт во вложении",
            reply_to_message_id=card["message_id"], mime_type="text/plain; charset=utf-8",
        )
        _, mail = acknowledgement_first(await smtp_server.wait_for_count(2, timeout=60))
    finally:
        code = await process.stop()
    assert code == 0, process.output()[-3000:]

    message = assert_only_to_the_client(mail, REPLY_HEADERS)
    assert message.get_content_type() == "multipart/mixed"
    body, attachment = message.get_payload()
    assert body.get_body(("plain",)).get_content().startswith("Здравствуйте, ООО Ромашка!")
    assert "Отчёт во вложении" in body.get_body(("plain",)).get_content()
    assert list(attachment.keys()) == ATTACHMENT_HEADERS
    assert attachment.get_content_type() == "text/plain"
    assert attachment.get_content_disposition() == "attachment"
    # Telegram's file name is text, never decoded: it arrives literally.
    assert attachment.get_filename() == FILE_NAME
    assert attachment.get_payload(decode=True) == b"report line 1\nreport line 2\n"
    assert "Traceback" not in process.output()
