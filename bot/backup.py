"""`python -m bot backup FILE`: a consistent copy of the database while the bridge keeps running.

SQLite: the online backup API copies every page under one read transaction, so the copy is one
moment of the database even while the bridge writes (WAL readers do not block the writer). The
source is opened read-only by path: a backup must never create or change the database.
PostgreSQL: `pg_dump -Fc` (one snapshot transaction by design); the URL's credentials go to pg_dump
through PG* environment variables, never on its command line (visible to every user in `ps`).
Both write into FILE.partial first and rename it at the end: a cut-off backup never looks finished.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import shutil
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlsplit

from bot.i18n import t
from models.store.db import normalise_url

EXIT_OK = 0
EXIT_FAILED = 2


class BackupError(Exception):
    """A backup that was not written; the message is for the operator, already in their language."""


@dataclass(frozen=True)
class PgTarget:
    """Where pg_dump connects: the environment it needs and a copy-pasteable command without secrets."""

    env: dict[str, str]
    database: str


async def backup(database_url: str, target: Path, lang: str = "ru") -> int:
    """In a thread: the copy takes seconds to minutes and must not stall an event loop it shares."""
    return await asyncio.to_thread(run_backup, database_url, target, lang)


def run_backup(database_url: str, target: Path, lang: str = "ru") -> int:
    """Write the backup to `target`; prints one line saying what happened. Returns the exit code."""
    url = normalise_url(database_url)
    try:
        _check_target(target, lang)
        if url.startswith("sqlite://"):
            sqlite_backup(sqlite_path(url, lang), target, lang)
        elif url.startswith("postgres://"):
            pg_dump = shutil.which("pg_dump")
            if pg_dump is None:
                print(t("backup.no_pg_dump", lang), file=sys.stderr)
                print(pg_dump_hint(url, target), file=sys.stderr)
                print(t("backup.pg_password", lang), file=sys.stderr)
                return EXIT_FAILED
            postgres_backup(pg_dump, url, target, lang)
        else:
            raise BackupError(t("backup.unsupported", lang, scheme=url.split(":", 1)[0] + "://"))
    except BackupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    mb = f"{target.stat().st_size / 1_000_000:.1f}"
    print(t("backup.done", lang, file=target, mb=mb.replace(".", ",") if lang == "ru" else mb))
    return EXIT_OK


def _check_target(target: Path, lang: str) -> None:
    if target.exists():
        raise BackupError(t("backup.exists", lang, file=target))
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir():
        raise BackupError(t("backup.no_dir", lang, dir=parent))


def sqlite_path(url: str, lang: str) -> Path:
    """The file of a `sqlite://PATH` URL, parsed as models/store/db.py does (everything after the scheme,
    up to `?`, is the path: `sqlite://./data/x` is relative, `sqlite:///srv/x` absolute)."""
    raw = url.removeprefix("sqlite://").split("?", 1)[0]
    if not raw or ":memory:" in raw:
        raise BackupError(t("backup.memory", lang))
    path = Path(raw)
    if not path.is_file():
        raise BackupError(t("backup.no_source", lang, path=path))
    return path


def sqlite_backup(source: Path, target: Path, lang: str) -> None:
    """Copy `source` into `target` with the online backup API, then check the copy."""
    partial = target.with_name(target.name + ".partial")
    partial.unlink(missing_ok=True)
    # mode=ro: a missing or moved file is an error here, not a new empty database.
    src = sqlite3.connect(f"file:{quote(str(source.resolve()))}?mode=ro", uri=True, timeout=30)
    try:
        dst = sqlite3.connect(partial)
        try:
            src.backup(dst)  # all pages in one step: one read transaction, one moment
            # The copy is a single file: the rollback journal, not WAL (no -wal/-shm beside a backup).
            dst.execute("PRAGMA journal_mode=DELETE")
            verdict = dst.execute("PRAGMA quick_check").fetchone()[0]
        finally:
            dst.close()
    except sqlite3.Error as exc:
        partial.unlink(missing_ok=True)
        raise BackupError(t("backup.failed", lang, error=exc)) from exc
    finally:
        src.close()
    if verdict != "ok":
        partial.unlink(missing_ok=True)
        raise BackupError(t("backup.check_failed", lang, error=verdict))
    os.replace(partial, target)


def pg_target(url: str) -> PgTarget:
    """libpq's environment for a `postgres://user:password@host:port/db?sslmode=...` URL."""
    parts = urlsplit(url)
    env: dict[str, str] = {}
    if parts.hostname:
        env["PGHOST"] = parts.hostname
    if parts.port:
        env["PGPORT"] = str(parts.port)
    if parts.username:
        env["PGUSER"] = unquote(parts.username)
    if parts.password:
        env["PGPASSWORD"] = unquote(parts.password)
    database = unquote(parts.path.lstrip("/"))
    if database:
        env["PGDATABASE"] = database
    query = parse_qs(parts.query)
    if "sslmode" in query:
        env["PGSSLMODE"] = query["sslmode"][-1]
    return PgTarget(env=env, database=database)


def postgres_backup(pg_dump: str, url: str, target: Path, lang: str) -> None:
    partial = target.with_name(target.name + ".partial")
    partial.unlink(missing_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")} | pg_target(url).env
    # --no-password: never stop to ask on a terminal (cron has none); the database comes from PGDATABASE.
    command = [pg_dump, "--format=custom", "--no-password", "--file", str(partial)]
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        partial.unlink(missing_ok=True)
        detail = (result.stderr.strip().splitlines() or [f"pg_dump exit code {result.returncode}"])[-1]
        raise BackupError(t("backup.failed", lang, error=detail))
    os.replace(partial, target)


def pg_dump_hint(url: str, target: Path) -> str:
    """The command to run by hand, with every connection setting but the password."""
    env = pg_target(url).env
    shown = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items() if k != "PGPASSWORD")
    return f"  PGPASSWORD=… {shown} pg_dump --format=custom --no-password --file {shlex.quote(str(target))}"
