"""Command line: `python -m bot [run|migrate|check|clients|explain|status|backup]`.

Bad settings print one line per problem and exit with code 2, never a traceback or a secret.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bot.settings import CoreSettings, SettingsError, load_core_settings, load_settings

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="storeolis-bridge",
        description="Storeolis Support Bridge: the support mailbox and the Telegram staff chat as one desk.",
        epilog="Run it as storeolis-bridge from the activated virtual environment (. .venv/bin/activate), "
        "or as .venv/bin/storeolis-bridge; `python -m bot` is the same command inside the environment. "
        "Settings come from the environment and ./.env, the SQLite database is ./data/bridge.sqlite3 by default: "
        "both relative to the current folder, so run it from the bridge's folder (or give absolute paths). "
        "Start with: storeolis-bridge migrate.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("run", help="run the bridge (the default): mail watcher, staff chat, outboxes, SLA alerts")
    sub.add_parser("migrate", help="bring the database schema up to date")
    sub.add_parser("check", help="check IMAP, SMTP, Telegram, the database and the templates; exit 0 if all OK")
    clients = sub.add_parser("clients", help="the client registry (CSV: name,inn,contract,emails)")
    clients_sub = clients.add_subparsers(dest="clients_command", metavar="ACTION", required=True)
    imp = clients_sub.add_parser("import", help="load or update clients from a CSV file (idempotent)")
    imp.add_argument("file", type=Path)
    exp = clients_sub.add_parser("export", help="print the registry as CSV")
    exp.add_argument("-o", "--output", type=Path, help="write to this file instead of standard output")
    explain = sub.add_parser("explain", help="show the policy findings for ticket N, or dry-run a raw .eml file")
    explain.add_argument("target", help="a ticket number or a path to an .eml file")
    explain.add_argument("--json", action="store_true", help="print one JSON object")
    status = sub.add_parser("status", help="state of each component, outbox depths, oldest waiting request")
    status.add_argument("--json", action="store_true", help="print one JSON object")
    backup = sub.add_parser(
        "backup", help="write a consistent copy of the database while the bridge runs (docs/operations.md)"
    )
    backup.add_argument("file", type=Path, help="the new backup file (SQLite: a database file; PostgreSQL: pg_dump -Fc)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command = args.command or "run"
    try:
        if command == "run":
            settings = load_settings()
            if _no_database(settings):
                return EXIT_USAGE
            _configure_logging(settings.LOG_LEVEL, secret_values(settings), settings.LOG_FORMAT)
            from bot.gc_freeze import pause_collection
            from bot.memory import return_large_buffers_to_os
            from bot.workers import start_parse_pool

            pause_collection()  # until run_app has built everything: bot/gc_freeze.py
            return_large_buffers_to_os()
            pool = start_parse_pool(settings)  # first: the workers get ready while the rest is imported
            try:
                from bot.app import run_app

                return asyncio.run(run_app(settings, parse_pool=pool))
            finally:
                if pool is not None:
                    pool.shutdown(wait=False, cancel_futures=True)
        if command == "check":
            settings = load_settings()
            if _no_database(settings):
                return EXIT_USAGE
            _configure_logging("WARNING", secret_values(settings), settings.LOG_FORMAT)
            from bot.checks import run_checks

            return asyncio.run(run_checks(settings))
        core = load_core_settings()
        _configure_logging("WARNING", log_format=core.LOG_FORMAT)
        if command == "migrate":
            return asyncio.run(_migrate(core))
        if command == "backup":
            from bot.backup import backup

            return asyncio.run(backup(core.DATABASE_URL, args.file, core.LANGUAGE))
        if _no_database(core):
            return EXIT_USAGE
        if command == "clients":
            if args.clients_command == "import":
                if not args.file.is_file():
                    print(f"error: {args.file}: no such file", file=sys.stderr)
                    return EXIT_USAGE
                from models.clients import ImportError_, decode_registry

                try:
                    text = decode_registry(args.file.read_bytes())
                except ImportError_ as exc:
                    print(f"error: {args.file}: {exc.problems[0]}", file=sys.stderr)
                    return EXIT_USAGE
                return asyncio.run(_with_db(core, lambda: _clients_import(args.file, text)))
            exported: list[str] = []
            code = asyncio.run(_with_db(core, lambda: _clients_export(exported)))
            if code == EXIT_OK:
                if args.output:
                    args.output.write_text(exported[0], encoding="utf-8")
                else:
                    sys.stdout.write(exported[0])
            return code
        if command == "explain":
            from bot.explain import explain

            return asyncio.run(_with_db(core, lambda: explain(core, args.target, as_json=args.json)))
        if command == "status":
            from bot.status import print_status

            return asyncio.run(_with_db(core, lambda: print_status(core, as_json=args.json)))
    except SettingsError as exc:
        for line in exc.problems:
            print(f"error: {line}", file=sys.stderr)
        print("Settings come from the environment and .env; see .env.example and the README.", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_OK
    return EXIT_USAGE


def _no_database(core: CoreSettings) -> bool:
    """Only `migrate` creates the database: any other command run in the wrong folder (the default
    DATABASE_URL is relative to it) or before the first migrate says so instead of leaving an empty file."""
    from models.store.db import missing_sqlite_file

    path = missing_sqlite_file(core.DATABASE_URL)
    if path is None:
        return False
    from bot.i18n import t

    print("error: " + t("cli.no_database", core.LANGUAGE, path=path), file=sys.stderr)
    return True


class RedactingFormatter(logging.Formatter):
    """Replaces known secrets in every formatted line, tracebacks included: libraries log what they
    like (aiohttp/aiogram errors may carry the request URL, which holds the bot token)."""

    def __init__(self, fmt: str | None, secrets: Iterable[str] = ()) -> None:
        super().__init__(fmt)
        # Longest first, so the full token is replaced before its secret part; very short values are
        # skipped (masking every "p" of a log would hide everything and protect nothing).
        self.secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, "***")
        return text

    def format(self, record: logging.LogRecord) -> str:
        return self.redact(super().format(record))


# Fields a log call may pass in `extra` that JSON lines carry (docs/operations.md, "Logs").
LOG_FIELDS = ("ticket", "uid")


class JsonFormatter(RedactingFormatter):
    """One JSON object per line: time, level, logger, message, `ticket`/`uid` when the call passed them,
    and the traceback as `exc`. Secrets are redacted in each value BEFORE encoding: in the encoded line a
    secret with a quote or a backslash in it would be escaped and slip past a text replacement."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__(None, secrets)

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": self.redact(record.getMessage()),
        }
        for name in LOG_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exc"] = self.redact(self.formatException(record.exc_info))
        elif record.exc_text:
            entry["exc"] = self.redact(record.exc_text)
        if record.stack_info:
            entry["stack"] = self.redact(self.formatStack(record.stack_info))
        return json.dumps(entry, ensure_ascii=False, default=str)


def secret_values(settings: Any) -> list[str]:
    """The values that must never reach a log: the bot token (and its secret part), the passwords."""
    values: list[str] = []
    for name in ("TELEGRAM_BOT_TOKEN", "IMAP_PASSWORD", "SMTP_PASSWORD"):
        secret = getattr(settings, name, None)
        value = secret.get_secret_value() if secret is not None and hasattr(secret, "get_secret_value") else ""
        if value:
            values.append(value)
            if name == "TELEGRAM_BOT_TOKEN" and ":" in value:
                values.append(value.split(":", 1)[1])
    return values


def _configure_logging(level: str, secrets: Iterable[str] = (), log_format: str = "text") -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    formatter: logging.Formatter = (
        JsonFormatter(secrets)
        if log_format == "json"
        else RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s", secrets)
    )
    for handler in logging.getLogger().handlers:
        handler.setFormatter(formatter)
    # aiogram logs every update at INFO; keep the operator's log about our own events.
    logging.getLogger("aiogram.event").setLevel(logging.WARNING)


async def _migrate(core: CoreSettings) -> int:
    from models.store import db

    try:
        applied = await db.apply_migrations(core.DATABASE_URL)
    except Exception as exc:
        print(f"error: could not migrate the database: {_safe(exc)}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        await db.close_db()
    print("applied: " + ", ".join(applied) if applied else "the database schema is up to date")
    return EXIT_OK


async def _with_db(core: CoreSettings, action: Callable[[], Awaitable[int]]) -> int:
    """Run `action` on an up-to-date database; always close connections (aiosqlite threads block exit)."""
    from models.store import db

    try:
        await db.init_db(core.DATABASE_URL)
        pending = await db.pending_migrations()
        if pending:
            print(
                f"error: the database schema is out of date ({len(pending)} migration(s) pending); "
                "run: python -m bot migrate",
                file=sys.stderr,
            )
            return EXIT_FAILED
        return await action()
    except Exception as exc:
        print(f"error: {_safe(exc)}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        await db.close_db()


async def _clients_import(path: Path, text: str) -> int:
    from models.clients import ImportError_, import_clients

    try:
        report = await import_clients(text)
    except ImportError_ as exc:
        for line in exc.problems:
            print(f"error: {path}: {line}", file=sys.stderr)
        print("nothing was imported", file=sys.stderr)
        return EXIT_USAGE  # the file is wrong, not the bridge: like a bad setting
    print(
        f"clients: {report.created} created, {report.updated} updated, {report.unchanged} unchanged; "
        f"{report.addresses} addresses and domains"
    )
    return EXIT_OK


async def _clients_export(into: list[str]) -> int:
    from models.clients import export_clients

    into.append(await export_clients())
    return EXIT_OK


def _safe(exc: BaseException) -> str:
    text = str(exc) or exc.__class__.__name__
    return text.splitlines()[0][:300]

