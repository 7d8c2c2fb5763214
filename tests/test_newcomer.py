"""The path of a new operator on a fresh clone: the shipped .env.example, blank settings, an Excel
client registry, commands run in the wrong folder. Through the real `python -m bot` process."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path

import pytest

from bot.settings import EXAMPLES, PLACEHOLDERS, Settings, SettingsError, load_settings
from tests.helpers.process import REPO, bridge_env, run_cli

BARE_ENV = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)}


def _errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


async def test_readme_one_liner_on_the_shipped_example_ends_with_what_to_fill_in(tmp_path: Path) -> None:
    # `cp -n .env.example .env && python -m bot migrate && python -m bot`, exactly as a newcomer runs it.
    shutil.copy(REPO / ".env.example", tmp_path / ".env.example")
    shutil.copy(tmp_path / ".env.example", tmp_path / ".env")
    migrate = await asyncio.to_thread(run_cli, ["migrate"], BARE_ENV, tmp_path)
    assert migrate.returncode == 0, migrate.stderr
    result = await asyncio.to_thread(run_cli, [], BARE_ENV, tmp_path, 60)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = _errors(result.stderr)
    for name in PLACEHOLDERS:
        [line] = [line for line in lines if line.startswith(f"error: {name} ")]
        assert "example value from .env.example" in line and "put " in line
    assert any("@BotFather" in line for line in lines)
    assert len(lines) == len(PLACEHOLDERS), lines  # blank CONFIG_DIR= / ONCALL_ROTATION_FILE= are no error


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("CONFIG_DIR", "missing-folder", "does not exist"),
        ("CONFIG_DIR", "afile.toml", "is not a directory"),
        ("ONCALL_ROTATION_FILE", "missing.toml", "does not exist"),
        ("ONCALL_ROTATION_FILE", ".", "is a directory"),
    ],
)
async def test_a_bad_optional_path_is_a_settings_error_for_run_and_check(
    tmp_path: Path, name: str, value: str, says: str
) -> None:
    (tmp_path / "afile.toml").write_text("")
    env = bridge_env(database_url="sqlite://x.sqlite3", IMAP_HOST="127.0.0.1", IMAP_USER="u", IMAP_PASSWORD="p",
                     SMTP_HOST="127.0.0.1", **{name: value})
    for command in (["run"], ["check"]):
        result = await asyncio.to_thread(run_cli, command, env, tmp_path, 60)
        assert result.returncode == 2, (command, result.stderr)
        assert "Traceback" not in result.stderr
        assert any(line.startswith(f"error: {name} is invalid") and says in line for line in _errors(result.stderr))


def _minimal(**extra: object) -> Settings:
    base: dict[str, object] = {"TELEGRAM_BOT_TOKEN": "1:real", "STAFF_CHAT_ID": -1, "IMAP_HOST": "h",
                               "IMAP_USER": "u", "IMAP_PASSWORD": "p", "SMTP_HOST": "h"}
    return load_settings(None, **{**base, **extra})


def test_blank_optional_paths_mean_unset() -> None:
    settings = _minimal(CONFIG_DIR="", ONCALL_ROTATION_FILE="  ")
    assert settings.CONFIG_DIR is None and settings.ONCALL_ROTATION_FILE is None


def test_log_level_in_any_case() -> None:
    assert _minimal(LOG_LEVEL="debug").LOG_LEVEL == "DEBUG"
    assert _minimal(LOG_LEVEL="Warning").LOG_LEVEL == "WARNING"


def test_every_setting_has_an_example_and_every_example_is_accepted() -> None:
    assert sorted(set(Settings.model_fields) - set(EXAMPLES)) == []
    for name, value in EXAMPLES.items():
        if name in PLACEHOLDERS or "$(" in value:
            continue  # placeholders are refused on purpose; a shell expression is an instruction
        if name in ("CONFIG_DIR", "ONCALL_ROTATION_FILE"):
            continue  # must exist on this machine: covered by the path tests
        _minimal(**{name: value})


def test_every_settings_error_line_carries_an_example() -> None:
    with pytest.raises(SettingsError) as caught:
        _minimal(LOG_LEVEL="loud", IMAP_PORT="0", MONTHLY_LIMIT="0", SLA_DIGEST_TIME="25:00", HEALTH_PORT="x")
    assert len(caught.value.problems) == 5
    for line in caught.value.problems:
        assert "(example: " in line, line


async def _migrated(tmp_path: Path, database_url: str) -> dict[str, str]:
    env = bridge_env(database_url=database_url)
    migrated = await asyncio.to_thread(run_cli, ["migrate"], env, tmp_path)
    assert migrated.returncode == 0, migrated.stderr
    return env


async def test_an_excel_registry_in_windows_1251_with_semicolons_and_crlf_imports(
    tmp_path: Path, database_url: str
) -> None:
    env = await _migrated(tmp_path, database_url)
    text = 'name;inn;contract;emails\r\nООО "Ромашка";7707083893;Д-2024/117;"info@romashka.ru;@romashka.ru"\r\n'
    (tmp_path / "excel.csv").write_bytes(text.encode("cp1251"))
    result = await asyncio.to_thread(run_cli, ["clients", "import", "excel.csv"], env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "1 created" in result.stdout
    exported = await asyncio.to_thread(run_cli, ["clients", "export"], env, tmp_path)
    assert 'ООО ""Ромашка""' in exported.stdout and "@romashka.ru;info@romashka.ru" in exported.stdout


async def test_a_semicolon_registry_in_utf8_with_bom_imports(tmp_path: Path, database_url: str) -> None:
    env = await _migrated(tmp_path, database_url)
    text = "name;inn;contract;emails\nООО Ромашка;7707083893;Д-1;info@romashka.ru\nИП Лютиков;;Д-2;@lutik.ru\n"
    (tmp_path / "utf8.csv").write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    result = await asyncio.to_thread(run_cli, ["clients", "import", "utf8.csv"], env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "2 created" in result.stdout


async def test_a_registry_that_still_cannot_be_read_says_why_in_one_line(tmp_path: Path, database_url: str) -> None:
    env = await _migrated(tmp_path, database_url)
    (tmp_path / "wrong.csv").write_text("Название;ИНН\nООО Ромашка;7707083893\n", encoding="utf-8")
    (tmp_path / "binary.csv").write_bytes(b"name,inn\n\x98\x98\n")
    wrong = await asyncio.to_thread(run_cli, ["clients", "import", "wrong.csv"], env, tmp_path)
    binary = await asyncio.to_thread(run_cli, ["clients", "import", "binary.csv"], env, tmp_path)
    for result in (wrong, binary):
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert len(_errors(result.stderr)) == 1, result.stderr
    assert "'название;инн'" in wrong.stderr and "name,inn,contract,emails" in wrong.stderr
    assert "neither UTF-8 nor Windows-1251" in binary.stderr


@pytest.mark.parametrize(
    ("command", "language", "says"),
    [
        (["status"], "ru", "база данных не найдена"),
        (["status", "--json"], "en", "database not found"),
        (["check"], "ru", "сначала выполните python -m bot migrate"),
        (["explain", "1"], "en", "run python -m bot migrate first"),
        (["clients", "export"], "ru", "база данных не найдена"),
        (["run"], "en", "database not found"),
    ],
)
async def test_only_migrate_creates_the_database(tmp_path: Path, command: list[str], language: str, says: str) -> None:
    # The default DATABASE_URL is relative: run in another folder, a command must not leave a new empty database.
    env = bridge_env(database_url="sqlite://./data/bridge.sqlite3", IMAP_HOST="127.0.0.1", IMAP_USER="u",
                     IMAP_PASSWORD="p", SMTP_HOST="127.0.0.1", LANGUAGE=language)
    result = await asyncio.to_thread(run_cli, command, env, tmp_path, 60)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    [line] = _errors(result.stderr)
    assert says in line and "data/bridge.sqlite3" in line
    assert os.listdir(tmp_path) == []  # no file, not even ./data


@pytest.mark.parametrize(
    ("language", "labels", "foreign"),
    [("ru", ("отправитель:", "рекомендация:", "п. 2.6"), "suggestion:"),
     ("en", ("sender:", "suggestion:", "clause 2.6"), "рекомендация:")],
)
async def test_explain_speaks_the_desk_language_and_json_keeps_its_keys(
    tmp_path: Path, database_url: str, language: str, labels: tuple[str, ...], foreign: str
) -> None:
    from tests.test_explain import eml

    env = dict(await _migrated(tmp_path, database_url), LANGUAGE=language)
    (tmp_path / "rude.eml").write_bytes(eml("Пётр <petr@romashka.ru>", "Сайт", "Вы идиоты! Напишите скрипт на PHP."))
    human = await asyncio.to_thread(run_cli, ["explain", "rude.eml"], env, tmp_path)
    assert human.returncode == 0, human.stderr
    for label in labels:
        assert label in human.stdout, human.stdout
    assert foreign not in human.stdout
    as_json = await asyncio.to_thread(run_cli, ["explain", "rude.eml", "--json"], env, tmp_path)
    finding = json.loads(as_json.stdout)["findings"][0]
    assert {"code", "clause", "evidence"} <= set(finding)


async def test_help_names_the_console_script_and_how_to_run_it(tmp_path: Path) -> None:
    result = await asyncio.to_thread(run_cli, ["--help"], BARE_ENV, tmp_path)
    assert result.returncode == 0
    assert result.stdout.startswith("usage: storeolis-bridge")
    assert ".venv/bin/activate" in result.stdout and "storeolis-bridge migrate" in result.stdout


def test_an_audit_that_skipped_every_package_does_not_read_as_a_pass() -> None:
    from scripts.audit_summary import summarise

    skipped = {"dependencies": [{"name": n, "skip_reason": f"Dependency not found on PyPI: {n}"} for n in ("a", "b")]}
    [line] = summarise(json.dumps(skipped))
    assert "NOT DONE" in line and "not a pass" in line and "No known vulnerabilities" not in line
    mixed = {"dependencies": [{"name": "a", "version": "1", "vulns": []}, skipped["dependencies"][0]]}
    assert "1 packages audited; 1 skipped, NOT audited: a" in summarise(json.dumps(mixed))[-1]
    assert "NOT DONE" in summarise("")[0]
