"""The disclosure intake's rate limit, kept in the store so that every worker and process shares it.

At most ``FleetLimits.disclosure_per_ip_per_hour`` reports per client address in any sliding hour,
whichever worker or server process receives them. Admissions are counted in the table
``intake_counters``, one row per (client key, minute)::

    client_key   the address (IPv4; IPv6 by /64, one host usually holds a whole /64)
    bucket       the minute of the admissions: unix time // BUCKET_S
    count        admissions in that minute

One admission, in one transaction (:func:`admit`)::

    lock      PostgreSQL pg_advisory_xact_lock(key of the client) · SQLite BEGIN IMMEDIATE
    prune     delete every row whose minute left the window, all clients' (the table stays small);
              on PostgreSQL only if no other admission is pruning (pg_try_advisory_xact_lock)
    count     sum of the client's rows in the window (the hour before now, to the minute)
    refuse    at the limit: the seconds until the oldest minute leaves the window (Retry-After)
    admit     INSERT ... ON CONFLICT (client_key, bucket) DO UPDATE SET count = count + 1

The lock makes check-and-increment atomic across processes (two workers cannot both admit the
last report), and holds only the client's own key on PostgreSQL, so different clients do not wait
for each other. Refused requests are not counted. The window slides by the minute: a report is
forgotten between 59 and 60 minutes after it came. The table holds at most one row per client and
minute of the last hour. The client address is the TCP peer's; forwarding headers are never trusted.
"""

from __future__ import annotations

import ipaddress
import math
from datetime import datetime, timedelta
from typing import Final

from sqlalchemy import BigInteger, Index, Integer, String, delete, func, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, Session, mapped_column

from trustroot.errors import UsageError
from trustroot.fleet.store._locks import lock_key, serialize_writers
from trustroot.fleet.store.db import Store
from trustroot.fleet.store.models import Base

__all__ = ["BUCKET_S", "MAX_KEY_CHARS", "WINDOW", "IntakeCounter", "admit", "client_key", "tracked_clients"]

#: The sliding window of the limit.
WINDOW: Final = timedelta(hours=1)
#: The granularity of the window (seconds).
BUCKET_S: Final = 60
#: The longest client key stored (an IPv6 /64 network is 22 characters; an unparsable peer is cut).
MAX_KEY_CHARS: Final = 64
_BUCKETS: Final = int(WINDOW.total_seconds()) // BUCKET_S
_PRUNE_LOCK: Final = lock_key("trustroot.fleet.intake.prune")


class IntakeCounter(Base):
    """Admissions to the disclosure intake of one client in one minute (revision 0006)."""

    __tablename__ = "intake_counters"
    __table_args__ = (Index(None, "bucket"),)

    client_key: Mapped[str] = mapped_column(String(MAX_KEY_CHARS), primary_key=True)
    bucket: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    count: Mapped[int] = mapped_column(Integer)


def client_key(host: str | None) -> str:
    """The rate limit key of a client address (IPv6 by /64; an IPv4-mapped address as the IPv4 one)."""
    if not host:
        return "unknown"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host[:MAX_KEY_CHARS]
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


def _bucket(now: datetime) -> int:
    if now.tzinfo is None:
        raise UsageError("the intake rate limit needs an aware time")
    return math.floor(now.timestamp()) // BUCKET_S


def _increment(session: Session, key: str, bucket: int) -> None:
    dialect = session.get_bind().dialect.name
    values = {"client_key": key, "bucket": bucket, "count": 1}
    if dialect == "postgresql":
        pg = postgresql.insert(IntakeCounter).values(values)
        statement = pg.on_conflict_do_update(
            index_elements=[IntakeCounter.client_key, IntakeCounter.bucket],
            set_={"count": IntakeCounter.count + 1},
        )
        session.execute(statement)
    else:
        lite = sqlite.insert(IntakeCounter).values(values)
        session.execute(
            lite.on_conflict_do_update(
                index_elements=[IntakeCounter.client_key, IntakeCounter.bucket],
                set_={"count": IntakeCounter.count + 1},
            )
        )


def _prune(session: Session, oldest: int) -> None:
    """Delete the rows that left the window, by one transaction at a time (no two deleters, no deadlock)."""
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        took = connection.execute(text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": _PRUNE_LOCK}).scalar()
        if not took:
            return  # another admission is pruning now
    session.execute(delete(IntakeCounter).where(IntakeCounter.bucket < oldest))


def admit(store: Store, key: str, per_window: int, now: datetime) -> int | None:
    """Admit one report of client ``key`` at ``now``: ``None`` if admitted, else the seconds to wait (>= 1)."""
    if per_window < 1:
        return math.ceil(WINDOW.total_seconds())
    key = key[:MAX_KEY_CHARS]
    current = _bucket(now)
    oldest = current - _BUCKETS + 1  # the minutes still in the window
    with store.transaction() as session:
        serialize_writers(session.connection(), lock_key(f"trustroot.fleet.intake:{key}"))
        _prune(session, oldest)
        rows: list[tuple[int, int]] = [
            (int(bucket), int(count))
            for bucket, count in session.execute(
                select(IntakeCounter.bucket, IntakeCounter.count)
                .where(IntakeCounter.client_key == key, IntakeCounter.bucket >= oldest)
                .order_by(IntakeCounter.bucket)
            )
        ]
        used = sum(count for _bucket_, count in rows)
        if used >= per_window:
            freed = 0
            for bucket, count in rows:  # wait until enough of the oldest minutes leave the window
                freed += count
                if used - freed < per_window:
                    leaves = (bucket + _BUCKETS) * BUCKET_S
                    return max(1, math.ceil(leaves - now.timestamp()))
            return math.ceil(WINDOW.total_seconds())  # pragma: no cover - the loop frees every row
        _increment(session, key, current)
    return None


def tracked_clients(store: Store) -> int:
    """How many client keys have admissions in the table (expired rows included until the next prune)."""
    with store.transaction() as session:
        return int(session.scalar(select(func.count(func.distinct(IntakeCounter.client_key)))) or 0)
