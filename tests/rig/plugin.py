"""Pytest plugin with the real-server fixtures. Load it from tests/conftest.py:

    pytest_plugins = ["tests.rig.plugin"]

Fixtures: ``dovecot`` (session), ``mailbox`` (per test: same server, fresh unique user),
``smtp_server`` (per test), ``postgres_cluster`` (session, only started when requested) and
``database_url`` (per test; see its docstring for TEST_DATABASE_URL; a test that also asks for
``db`` gets a copy of a database migrated once per session).
"""

from __future__ import annotations

import itertools
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.rig.dovecot import DovecotServer
from tests.rig.postgres import PostgresCluster, create_database_at, drop_database_at
from tests.rig.smtp import SmtpCapture

_counter = itertools.count(1)


def _unique(prefix: str) -> str:
    # pid keeps pytest-xdist workers apart; the random part keeps reruns apart.
    return f"{prefix}{os.getpid()}_{next(_counter)}_{secrets.token_hex(3)}"


# The fixtures through which a test reaches the database TEST_DATABASE_URL chooses (or PostgreSQL itself).
DATABASE_FIXTURES = frozenset({"database_url", "postgres_cluster"})


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--database-tests-only",
        action="store_true",
        help="with TEST_DATABASE_URL set: run only the tests that reach the database through "
        f"{' or '.join(sorted(DATABASE_FIXTURES))} (CI's PostgreSQL pass; the others do not read the "
        "setting and ran already in the SQLite pass)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """CI's second pass (.ci/run) runs the suite again on PostgreSQL. A test whose fixtures include no
    database fixture runs exactly the same code whatever TEST_DATABASE_URL says (parsing, composing,
    rendering, a bridge on a SQLite file of its own): `--database-tests-only` leaves those out of that pass,
    reported as deselected, instead of running about 1,900 of them twice."""
    if not config.getoption("--database-tests-only"):
        return
    if not os.environ.get("TEST_DATABASE_URL", "").strip():
        raise pytest.UsageError("--database-tests-only is for the PostgreSQL pass: set TEST_DATABASE_URL")
    keep: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        (keep if DATABASE_FIXTURES & set(getattr(item, "fixturenames", ())) else dropped).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


def pytest_configure(config: pytest.Config) -> None:
    # SmtpCapture offers AUTH over plain TCP on purpose (no TLS in tests); aiosmtpd warns about
    # that on every session, which would bury real warnings.
    config.addinivalue_line("filterwarnings", "ignore:Requiring AUTH while not requiring TLS:UserWarning")


@pytest.fixture(scope="session")
def dovecot() -> Iterator[DovecotServer]:
    """One Dovecot per test session (per xdist worker). Prefer ``mailbox`` in tests: it isolates
    state by user, so nothing a test appends or deletes is visible to the next one."""
    server = DovecotServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def mailbox(dovecot: DovecotServer) -> Iterator[DovecotServer]:
    """The session server seen as a brand-new user (``.user``/``.password``), empty INBOX.

    ``restart()``/``reset_uidvalidity()`` are fine to call; they act on the shared server but
    keep every other user's mail. The user and its mail are deleted afterwards.
    """
    view = dovecot.with_user(f"{_unique('t')}@storeolis.ru", secrets.token_urlsafe(12))
    try:
        yield view
    finally:
        if not dovecot.running:  # a test stopped it: bring the shared server back for the others
            dovecot.start()
        dovecot.remove_user(view.user)


@pytest.fixture
def smtp_server() -> Iterator[SmtpCapture]:
    capture = SmtpCapture()
    capture.start()
    try:
        yield capture
    finally:
        capture.stop()


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    cluster = PostgresCluster()
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


# The fixture (tests/conftest.py) that asks for a migrated, empty database on top of `database_url`.
MIGRATED_FIXTURE = "db"


@dataclass(frozen=True)
class MigratedTemplate:
    """A database migrated once per session, copied for each test that asks for `db`: a SQLite file
    (`sqlite_file`) or a PostgreSQL database on `server_url` (`pg_name`). Migrating an empty database
    costs about 0.4 s on SQLite and 1 s on PostgreSQL, some 300 times per pass; a copy is a file copy or
    `CREATE DATABASE … TEMPLATE`. The `db` fixture still runs the migrations on the copy (a no-op that
    finds nothing pending), so a copy that missed one would be migrated, not passed off as migrated."""

    sqlite_file: Path | None = None
    server_url: str | None = None
    pg_name: str | None = None


def _migrate_in_child(url: str) -> None:
    # A child process, so tortoise's global state in this one is untouched by the template's migration.
    code = "import asyncio, sys; from models.store import db; asyncio.run(db.apply_migrations(sys.argv[1])); " \
           "asyncio.run(db.close_db())"
    result = subprocess.run([sys.executable, "-c", code, url], capture_output=True, text=True, timeout=300,
                            check=False, cwd=Path(__file__).resolve().parents[2])
    if result.returncode != 0:
        raise RuntimeError(f"migrating the test template failed:\n{result.stdout}{result.stderr}")


def _database_server(request: pytest.FixtureRequest) -> str | None:
    """The PostgreSQL server TEST_DATABASE_URL chooses (its maintenance URL), or None for SQLite."""
    setting = os.environ.get("TEST_DATABASE_URL", "").strip()
    if not setting:
        return None
    if setting == "postgres":
        return request.getfixturevalue("postgres_cluster").url
    if setting.startswith(("postgres://", "postgresql://")):
        return setting
    raise pytest.UsageError(f"TEST_DATABASE_URL must be 'postgres' or a postgres:// URL, not {setting!r}")


@pytest.fixture(scope="session")
def migrated_template(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
                      ) -> Iterator[MigratedTemplate]:
    server_url = _database_server(request)
    if server_url is None:
        path = tmp_path_factory.mktemp("template") / "migrated.sqlite3"
        _migrate_in_child(f"sqlite://{path}")
        # Closed cleanly, SQLite has folded its write-ahead log into the file: the file alone is the copy.
        if path.with_name(path.name + "-wal").exists():
            raise RuntimeError(f"{path}-wal left behind: the template is not one file")
        yield MigratedTemplate(sqlite_file=path)
        return
    name = _unique("template_")
    _migrate_in_child(create_database_at(server_url, name))
    try:
        yield MigratedTemplate(server_url=server_url, pg_name=name)
    finally:
        drop_database_at(server_url, name)


@pytest.fixture
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh database URL per test: empty, or, for a test that also asks for `db`, a copy of the
    session's migrated template (`MigratedTemplate`).

    * TEST_DATABASE_URL unset/empty: ``sqlite:///...`` file in tmp_path (tortoise reads
      everything after ``sqlite://`` as the path, so this is the absolute path of the file).
    * TEST_DATABASE_URL=postgres: a throwaway cluster (``postgres_cluster``) and a new database.
    * TEST_DATABASE_URL=postgres://user@host:port/anything: a new database on that server
      (the user needs CREATEDB); dropped after the test.
    """
    template: MigratedTemplate | None = None
    if MIGRATED_FIXTURE in request.fixturenames:
        template = request.getfixturevalue("migrated_template")
    server_url = _database_server(request)
    if server_url is None:
        path = tmp_path / "test.sqlite3"
        if template is not None and template.sqlite_file is not None:
            shutil.copyfile(template.sqlite_file, path)
        yield f"sqlite://{path}"
        return
    name = _unique("test_")
    url = create_database_at(server_url, name, template.pg_name if template is not None else None)
    try:
        yield url
    finally:
        drop_database_at(server_url, name)
