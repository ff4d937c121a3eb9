"""Store fixtures: a real PostgreSQL server per test session, and per-test databases on both backends.

Imported into ``tests/integration/conftest.py`` (``from conftest_postgres import *``). Fixtures::

    postgres_server      session   the running throwaway server (tests/integration/postgres.py)
    postgres_url         session   postgresql+psycopg://postgres@127.0.0.1:PORT/trustroot (empty at start)
    store_backend        test      "sqlite" or "postgres": every test using the fixtures below runs twice
    store_url            test      a fresh, EMPTY database of that backend (a new SQLite file; CREATE DATABASE)
    migrated_store_url   test      a fresh database already at the newest migration (copied from a template
                                   migrated once per session: a file copy; CREATE DATABASE ... TEMPLATE)
    store                test      a Store on migrated_store_url, disposed afterwards

The server starts once per session (per xdist worker) and only when a test needs PostgreSQL. A missing
PostgreSQL installation FAILS the tests that need it, naming scripts/setup.sh; it never skips. A test that
wants only one backend parametrizes ``store_backend`` indirectly or uses ``postgres_url`` directly.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from postgres import PostgresServer, PostgresUnavailable, start_server

from trustroot.fleet.config import sqlite_url
from trustroot.fleet.store.db import Store, make_engine
from trustroot.fleet.store.migrate import upgrade

__all__ = [
    "STORE_BACKENDS",
    "migrated_store_url",
    "postgres_migrated_template",
    "postgres_server",
    "postgres_url",
    "sqlite_migrated_template",
    "store",
    "store_backend",
    "store_url",
]

STORE_BACKENDS = ("sqlite", "postgres")
_MIGRATED_TEMPLATE = "trustroot_migrated"


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server of this test session, on 127.0.0.1 and a free port; stopped at the end."""
    server: PostgresServer | None = None
    problem = ""
    try:
        server = start_server()
    except PostgresUnavailable as exc:
        problem = str(exc)
    if server is None:  # fail, never skip: a missing PostgreSQL must not look like a green run
        pytest.fail(f"the PostgreSQL store tests cannot run: {problem}", pytrace=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def postgres_url(postgres_server: PostgresServer) -> str:
    """URL of the session's database ``trustroot`` (shared by the session's tests: clean up after you)."""
    return postgres_server.url()


@pytest.fixture(params=STORE_BACKENDS)
def store_backend(request: pytest.FixtureRequest) -> str:
    """The backend of the store fixtures: each test using them runs on SQLite and on PostgreSQL."""
    backend: str = request.param
    return backend


@pytest.fixture(scope="session")
def sqlite_migrated_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file at the newest migration, copied for each test."""
    path = tmp_path_factory.mktemp("fleet-template") / "fleet.sqlite"
    engine = make_engine(sqlite_url(path))
    try:
        upgrade(engine)
    finally:
        engine.dispose()  # the last connection checkpoints the WAL into the file
    return path


@pytest.fixture(scope="session")
def postgres_migrated_template(postgres_server: PostgresServer) -> str:
    """A database at the newest migration, the template of each test's database."""
    postgres_server.create_database(_MIGRATED_TEMPLATE)
    engine = make_engine(postgres_server.url(_MIGRATED_TEMPLATE))
    try:
        upgrade(engine)
    finally:
        engine.dispose()
    postgres_server.mark_template(_MIGRATED_TEMPLATE)
    return _MIGRATED_TEMPLATE


def _fresh_database(request: pytest.FixtureRequest, backend: str, tmp_path: Path, *, migrated: bool) -> Iterator[str]:
    if backend == "sqlite":
        path = tmp_path / ("fleet-migrated.sqlite" if migrated else "fleet-empty.sqlite")
        if migrated:
            shutil.copyfile(request.getfixturevalue("sqlite_migrated_template"), path)
        yield sqlite_url(path)
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    template = request.getfixturevalue("postgres_migrated_template") if migrated else "template0"
    name = server.create_database(template=template)
    try:
        yield server.url(name)
    finally:
        server.drop_database_later(name)


@pytest.fixture
def store_url(request: pytest.FixtureRequest, store_backend: str, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database of ``store_backend`` (dropped afterwards)."""
    yield from _fresh_database(request, store_backend, tmp_path, migrated=False)


@pytest.fixture
def migrated_store_url(request: pytest.FixtureRequest, store_backend: str, tmp_path: Path) -> Iterator[str]:
    """A fresh database of ``store_backend`` at the newest migration (dropped afterwards)."""
    yield from _fresh_database(request, store_backend, tmp_path, migrated=True)


@pytest.fixture
def store(migrated_store_url: str) -> Iterator[Store]:
    """A :class:`Store` on a fresh, migrated database of ``store_backend``."""
    fleet_store = Store(make_engine(migrated_store_url))
    try:
        yield fleet_store
    finally:
        fleet_store.dispose()
