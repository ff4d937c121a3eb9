"""One writer at a time: the transaction-scoped lock behind audit appends and migrations.

:func:`serialize_writers` makes the current transaction the only one, among those that take the
same lock, until it commits or rolls back. Reads after it see everything the previous holder
committed (READ COMMITTED on PostgreSQL; a fresh snapshot on SQLite)::

    PostgreSQL   SELECT pg_advisory_xact_lock(key)      waits; released at COMMIT / ROLLBACK
    SQLite       BEGIN IMMEDIATE                        takes the database's one write lock now,
                                                        waiting up to the busy timeout

On SQLite ``key`` does not matter: the write lock is database-wide. The Python driver (Python 3.11,
legacy transaction control) issues a deferred ``BEGIN`` only before the first INSERT, UPDATE or
DELETE, so a transaction that has written already holds the write lock; one that has not yet
written gets ``BEGIN IMMEDIATE`` here, before it reads what it will extend.
"""

from __future__ import annotations

import hashlib
from typing import Final

from sqlalchemy import Connection, text

from trustroot.errors import UsageError

__all__ = ["AUDIT_LOCK_KEY", "MIGRATION_LOCK_KEY", "lock_key", "serialize_writers"]


def lock_key(name: str) -> int:
    """A stable signed 64-bit advisory-lock key for ``name`` (the first 8 bytes of its SHA-256)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


#: Serialises appends to the audit chain.
AUDIT_LOCK_KEY: Final = lock_key("trustroot.fleet.audit")
#: Serialises schema migrations (several workers may start at once).
MIGRATION_LOCK_KEY: Final = lock_key("trustroot.fleet.migrate")


def serialize_writers(connection: Connection, key: int) -> None:
    """Wait until the transaction of ``connection`` is the only one holding lock ``key``."""
    dialect = connection.dialect.name
    if dialect == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
    elif dialect == "sqlite":
        driver = connection.connection.driver_connection
        if driver is None:  # pragma: no cover - a checked-out connection always has one
            raise UsageError("fleet store: the SQLite connection is closed")
        if not driver.in_transaction:
            driver.execute("BEGIN IMMEDIATE")
    else:
        raise UsageError(f"fleet store: unsupported database {dialect!r} (use SQLite or PostgreSQL)")
