"""`python -m bot explain`: the policy verdict of a raw email (dry run) or a stored ticket, for operators."""

from __future__ import annotations

import asyncio
import json
from email.message import EmailMessage
from pathlib import Path

from tests.helpers.process import bridge_env, run_cli

CLIENTS = "name,inn,contract,emails\nООО Ромашка,7707083893,Д-2024/117,info@romashka.ru;@romashka.ru\n"


def eml(sender: str, subject: str, body: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = "support@storeolis.ru"
    msg["Subject"] = subject
    msg["Message-ID"] = "<explain-1@romashka.ru>"
    msg.set_content(body)
    return bytes(msg)


async def prepare(tmp_path: Path, database_url: str) -> dict[str, str]:
    env = bridge_env(database_url=database_url)
    assert (await asyncio.to_thread(run_cli, ["migrate"], env, tmp_path)).returncode == 0
    (tmp_path / "clients.csv").write_text(CLIENTS, encoding="utf-8")
    imported = await asyncio.to_thread(run_cli, ["clients", "import", "clients.csv"], env, tmp_path)
    assert imported.returncode == 0, imported.stderr
    return env


async def test_dry_run_of_a_raw_email_prints_findings_with_codes_clauses_and_evidence(
    tmp_path: Path, database_url: str
) -> None:
    env = await prepare(tmp_path, database_url)
    (tmp_path / "rude.eml").write_bytes(
        eml("Пётр <petr@romashka.ru>", "Сайт", "Вы идиоты! Напишите мне скрипт для выгрузки на PHP.")
    )
    result = await asyncio.to_thread(run_cli, ["explain", "rude.eml", "--json"], env, tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    codes = {f["code"]: f for f in report["findings"]}
    assert "profanity" in codes and codes["profanity"]["clause"] == "2.6"
    assert "идиот" in json.dumps(codes["profanity"]["evidence"], ensure_ascii=False).lower()
    assert "out_of_scope" in codes and codes["out_of_scope"]["clause"] in ("2.4", "2.6", "2.4, 2.6")
    assert report["client"]["name"] == "ООО Ромашка"  # identified by the @romashka.ru domain

    human = await asyncio.to_thread(run_cli, ["explain", "rude.eml"], env, tmp_path)
    assert human.returncode == 0
    assert "profanity" in human.stdout and "рекомендация:" in human.stdout  # LANGUAGE=ru by default


async def test_an_unknown_sender_is_unidentified_and_nothing_is_stored(
    tmp_path: Path, database_url: str
) -> None:
    env = await prepare(tmp_path, database_url)
    (tmp_path / "who.eml").write_bytes(
        eml("x@unknown.example", "Помогите", "Не работает личный кабинет, ошибка 500.")
    )
    result = await asyncio.to_thread(run_cli, ["explain", "who.eml", "--json"], env, tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert "unidentified" in {f["code"] for f in report["findings"]}
    status = await asyncio.to_thread(run_cli, ["status", "--json"], env, tmp_path)
    assert json.loads(status.stdout)["waiting_requests"] == 0  # a dry run stores nothing


async def test_explain_of_a_missing_ticket_or_file_says_so(tmp_path: Path, database_url: str) -> None:
    env = await prepare(tmp_path, database_url)
    missing = await asyncio.to_thread(run_cli, ["explain", "42"], env, tmp_path)
    assert missing.returncode == 1 and "no ticket #42" in missing.stderr
    nofile = await asyncio.to_thread(run_cli, ["explain", "nope.eml"], env, tmp_path)
    assert nofile.returncode == 2 and "nope.eml" in nofile.stderr


async def test_explain_of_a_stored_ticket_reevaluates_it(tmp_path: Path, database_url: str) -> None:
    from models.store import db as database
    from tests.helpers.desk import Desk, make_email

    env = await prepare(tmp_path, database_url)
    await database.init_db(database_url)
    try:
        async with Desk.open() as desk:
            ticket = await desk.deliver(
                make_email(
                    sender="info@romashka.ru",
                    subject="Забыл пароль",
                    body="Забыл пароль от личного кабинета, сбросьте, пожалуйста.",
                )
            )
    finally:
        await database.close_db()
    result = await asyncio.to_thread(run_cli, ["explain", str(ticket.id), "--json"], env, tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["ticket"] == ticket.id
    assert "password_change" in {f["code"] for f in report["findings"]}
