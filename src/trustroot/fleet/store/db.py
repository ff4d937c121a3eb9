"""Engines and transactions for the fleet store.

SQLite (the embedded default) runs in WAL mode with ``secure_delete`` on (deleted personal data is
overwritten in the file), foreign keys enforced and a busy timeout; PostgreSQL is used through
psycopg 3 given a ``postgresql+psycopg://`` URL. ``Store.transaction()`` is the one way to write.

SQLite has one write lock for the whole file, which the worker processes take in turn; a writer
that finds it taken sleeps in SQLite's busy handler (1, 2, 5 ... up to 100 ms a try), which made
the tail latency of check-ins and the throughput of telemetry with several workers. The hot writers
(the check-in group commit, telemetry ingest) therefore first queue in ``Store.write_turn()``: a
thread lock, then an exclusive ``flock`` of ``<database>.write-lock``, from which a waiter wakes
as soon as the holder is done. On PostgreSQL (row locks, no file lock) it does nothing.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from collections.abc import Iterator
from typing import Any, Final

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from trustroot.errors import UsageError

__all__ = ["WRITE_LOCK_SUFFIX", "Store", "make_engine"]

#: The file beside a SQLite store whose exclusive flock the hot writers of every process queue on.
WRITE_LOCK_SUFFIX: Final = ".write-lock"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    for pragma in (
        "journal_mode=WAL",
        "secure_delete=ON",
        "foreign_keys=ON",
        "busy_timeout=10000",
        "synchronous=NORMAL",
    ):
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for ``url`` (``sqlite:///path`` or ``postgresql+psycopg://...``)."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False}, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if url.startswith(("postgresql+psycopg://", "postgresql://")):
        url = url.replace("postgresql://", "postgresql+psycopg://", 1)
        return create_engine(url, pool_pre_ping=True, **kwargs)
    raise UsageError(f"--database {url!r}: use sqlite:///PATH or postgresql+psycopg://USER@HOST:PORT/DB")


class _WriteTurn:
    """Writers of all threads and processes on one SQLite file, one at a time (module docstring)."""

    def __init__(self, database: str) -> None:
        self.path = database + WRITE_LOCK_SUFFIX
        self._fd: int | None = None
        self._thread_lock = threading.Lock()

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        with self._thread_lock:  # an flock is per open file: threads of one process queue here first
            if self._fd is None:
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)


class Store:
    """The fleet store: an engine and its session factory."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        database = engine.url.database
        file_backed = engine.dialect.name == "sqlite" and bool(database) and database != ":memory:"
        self._write_turn = _WriteTurn(str(database)) if file_backed else None

    def write_turn(self) -> contextlib.AbstractContextManager[None]:
        """Wait for this writer's turn on a SQLite file (module docstring); nothing on PostgreSQL.

        Take it before :meth:`transaction` for writes that run many times a second.
        """
        return self._write_turn.held() if self._write_turn is not None else contextlib.nullcontext()

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session whose work commits at the end of the block, or rolls back on any error."""
        with self._sessions.begin() as session:
            yield session

    def dispose(self) -> None:
        self.engine.dispose()
