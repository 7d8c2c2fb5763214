"""A throwaway PostgreSQL cluster for tests, plus helpers to create/drop per-test databases.

Per TESTING-NOTES: as root, initdb/pg_ctl must run as the ``postgres`` user, and every parent of
the data dir must be traversable by it, hence ``mkdtemp`` + chmod rather than pytest's tmp_path.
"""

from __future__ import annotations

import asyncio
import glob
import os
import re
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from tests.rig.net import free_port

T = TypeVar("T")
_SAFE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def pg_bin(name: str) -> str:
    """Path of a PostgreSQL binary: PATH first, then Debian's versioned /usr/lib/postgresql."""
    found = shutil.which(name)
    if found:
        return found
    for candidate in sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True):
        return candidate
    raise FileNotFoundError(f"PostgreSQL binary {name!r} not found")


def _run_in_thread(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion on a private loop in another thread.

    Fixtures are synchronous and may be called while pytest-asyncio owns this thread's loop,
    so asyncio.run() here could clash with it.
    """
    box: dict[str, Any] = {}

    def runner() -> None:
        try:
            box["value"] = asyncio.run(coro)
        except BaseException as exc:  # re-raised in the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=runner, name="pg-admin")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


def _check_name(name: str) -> str:
    # Names are interpolated into DDL (it cannot take parameters), so allow only plain ones.
    if not _SAFE_NAME.match(name):
        raise ValueError(f"unsafe database name {name!r}")
    return name


async def _admin(url: str, sql: str) -> None:
    conn = await asyncpg.connect(url, timeout=30)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def create_database_at(server_url: str, name: str, template: str | None = None) -> str:
    """CREATE DATABASE on the server of ``server_url`` (a copy of the database ``template`` when given:
    PostgreSQL copies its files, about 0.15 s, where migrating an empty one takes about 1 s); returns the
    new database's URL."""
    sql = f'CREATE DATABASE "{_check_name(name)}"'
    if template is not None:
        sql += f' TEMPLATE "{_check_name(template)}"'
    _run_in_thread(_admin(_with_database(server_url, "postgres"), sql))
    return _with_database(server_url, name)


def drop_database_at(server_url: str, name: str) -> None:
    # FORCE (PostgreSQL 13+) ends connections a test left open, so the drop cannot hang.
    sql = f'DROP DATABASE IF EXISTS "{_check_name(name)}" WITH (FORCE)'
    _run_in_thread(_admin(_with_database(server_url, "postgres"), sql))


class PostgresCluster:
    host: str = "127.0.0.1"

    def __init__(self) -> None:
        self.port = free_port()
        self.root: Path | None = None

    @property
    def url(self) -> str:
        """URL of the maintenance database ``postgres`` (trust auth, user postgres)."""
        return f"postgres://postgres@{self.host}:{self.port}/postgres"

    @property
    def data_dir(self) -> Path:
        if self.root is None:
            raise RuntimeError("PostgresCluster is not started")
        return self.root / "data"

    def _as_postgres(self, *cmd: str) -> None:
        argv = list(cmd)
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root
            argv = ["runuser", "-u", "postgres", "--", *argv]
        result = subprocess.run(argv, capture_output=True, check=False, timeout=120)
        if result.returncode != 0:
            log = self.root / "postgres.log" if self.root else None
            tail = log.read_text(errors="replace")[-2000:] if log and log.exists() else ""
            raise RuntimeError(
                f"{' '.join(cmd)} failed ({result.returncode}):\n"
                f"{result.stdout.decode(errors='replace')}{result.stderr.decode(errors='replace')}\n{tail}"
            )

    def start(self) -> None:
        if self.root is not None:
            return
        self.root = Path(tempfile.mkdtemp(prefix="storeolis-pg-"))
        self.root.chmod(0o755)  # mkdtemp's 0700 would stop the postgres user at the door
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        try:
            self._as_postgres(
                pg_bin("initdb"), "-D", str(self.data_dir), "-A", "trust", "-E", "UTF8",
                "-U", "postgres", "--no-sync",
            )
            options = (
                f"-c listen_addresses={self.host} -p {self.port} -c unix_socket_directories='' "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
            )
            self._as_postgres(
                pg_bin("pg_ctl"), "-D", str(self.data_dir), "-l", str(self.root / "postgres.log"),
                "-w", "-t", "60", "-o", options, "start",
            )
        except BaseException:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None
            raise

    def stop(self) -> None:
        """Fast shutdown (pg_ctl waits for postmaster.pid to go) and remove the directory."""
        if self.root is None:
            return
        try:
            if (self.data_dir / "postmaster.pid").exists():
                self._as_postgres(pg_bin("pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None

    def create_database(self, name: str) -> str:
        """Create a database; returns ``postgres://postgres@127.0.0.1:PORT/name``."""
        return create_database_at(self.url, name)

    def drop_database(self, name: str) -> None:
        drop_database_at(self.url, name)

    def __enter__(self) -> PostgresCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
