"""The path of a new operator on a fresh clone: the shipped .env.example, blank settings, an Excel
client registry, commands run in the wrong folder. Through the real `python -m bot` process."""

from __future__ import annotations

import asyncio
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
