"""The production store: tokens, batches, devices and the serial allocator in one SQLite file.

``.trustroot/production/production.sqlite`` (WAL, ``PRAGMA secure_delete=ON``, foreign keys on,
``synchronous=FULL``; ``PRAGMA user_version`` is the schema version, 1)::

    meta            name -> value: format, store id (random), product, CRL number
    allocator       one row: next_sequence (the next device sequence number; serial = prefix + seq)
    authorizations  tokens this store's holder ISSUED (authorize): id, factory, count, expires,
                    station key, issued, document           -- what reconcile compares against
    tokens          tokens this station SPENDS: id, factory, count, expires, station key, issued,
                    document, reserved, spent, last_seen, state signature, state key
                    CHECK 0 <= spent <= reserved <= count
    batches         id, token -> tokens, factory, state open|closed, requested, provisioned,
                    out_dir, opened, closed, manifest_sha256; CHECK provisioned <= requested
    devices         sequence PRIMARY KEY, serial UNIQUE, status reserved|active|revoked|void,
                    cert_fingerprint UNIQUE, cert_serial, certificate (DER), claim_hash,
                    password_verifier, batch -> batches, token -> tokens, factory, time,
                    bundle (file name), evidence_pending, revoked_at, revocation_reason

Every change is one :meth:`ProductionStore.transaction` (``BEGIN IMMEDIATE``), and the rules that
make production safe are checked inside it (:mod:`trustroot.provision.batch`): a batch reserves its
count of a token's quota when it opens; each chunk of devices allocates its sequence numbers, checks
the token (not expired, clock not rolled back, quota left) and the batch (open, room left), and
inserts the device records, all in one transaction. A
crash or an error rolls the whole chunk back: its sequence numbers are not consumed, so the serials
of recorded devices have no gap and no duplicate (``UNIQUE`` and ``CHECK`` constraints stand
behind the code).

The station's spent counter of each token (``state_signature``) is signed by the station's
``station-signing`` key; :mod:`trustroot.provision.tokens` makes and checks that signature.

Evidence is appended after the commit (the *outbox*: ``evidence_pending`` = 1 until the
``device.provisioned`` record is in the log); ``run`` names the process run that made the device,
which holds ``runs/<run>.lock`` while it lives, so a later run flushes only what a dead run left.

Errors::

    StateError (trustroot.errors)
    └── ProductionStateError     the store is damaged, of an unknown schema, or inconsistent
    PolicyRefusal (trustroot.errors)
    └── QuotaExceededError       a token or batch has no room for the devices asked for
"""

from __future__ import annotations

import contextlib
import secrets
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final, Literal

from trustroot._fsutil import exclusive_lock
from trustroot.errors import ProductionStateError, QuotaExceededError
from trustroot.evidence import format_time

__all__ = [
    "DB_FILE",
    "SCHEMA_VERSION",
    "STORE_FORMAT",
    "Authorization",
    "BatchRecord",
    "BatchState",
    "DeviceRecord",
    "DeviceStatus",
    "NewDevice",
    "ProductionStateError",
    "ProductionStore",
    "QuotaExceededError",
    "TokenRecord",
    "Transaction",
    "parse_time",
]

DB_FILE: Final = "production.sqlite"
STORE_FORMAT: Final = "trustroot.production-store"
SCHEMA_VERSION: Final = 1
#: How long a writer waits for another process's transaction before giving up, in seconds.
BUSY_TIMEOUT_S: Final = 300.0
#: How far the clock may go back behind the latest time a token was used (NTP steps, VM resume).
CLOCK_TOLERANCE_S: Final = 300

BatchState = Literal["open", "closed"]
DeviceStatus = Literal["reserved", "active", "revoked", "void"]


_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS allocator (
    id            INTEGER PRIMARY KEY CHECK (id = 1),
    next_sequence INTEGER NOT NULL CHECK (next_sequence >= 1)
) STRICT;
CREATE TABLE IF NOT EXISTS authorizations (
    id          TEXT PRIMARY KEY,
    factory     TEXT NOT NULL,
    count       INTEGER NOT NULL CHECK (count > 0),
    expires     TEXT NOT NULL,
    station_key TEXT,
    issued      TEXT NOT NULL,
    document    BLOB NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS tokens (
    id              TEXT PRIMARY KEY,
    factory         TEXT NOT NULL,
    count           INTEGER NOT NULL CHECK (count > 0),
    expires         TEXT NOT NULL,
    station_key     TEXT,
    issued          TEXT NOT NULL,
    document        BLOB NOT NULL,
    reserved        INTEGER NOT NULL DEFAULT 0,
    spent           INTEGER NOT NULL DEFAULT 0,
    last_seen       TEXT NOT NULL,
    state_signature BLOB,
    state_key       TEXT,
    CHECK (0 <= spent AND spent <= reserved AND reserved <= count)
) STRICT;
CREATE TABLE IF NOT EXISTS batches (
    id              TEXT PRIMARY KEY,
    token           TEXT NOT NULL REFERENCES tokens(id),
    factory         TEXT NOT NULL,
    state           TEXT NOT NULL CHECK (state IN ('open', 'closed')),
    requested       INTEGER NOT NULL CHECK (requested >= 0),
    provisioned     INTEGER NOT NULL DEFAULT 0,
    out_dir         TEXT,
    opened          TEXT NOT NULL,
    closed          TEXT,
    manifest_sha256 TEXT,
    CHECK (0 <= provisioned AND provisioned <= requested)
) STRICT;
CREATE TABLE IF NOT EXISTS devices (
    sequence          INTEGER PRIMARY KEY,
    serial            TEXT NOT NULL UNIQUE,
    status            TEXT NOT NULL CHECK (status IN ('reserved', 'active', 'revoked', 'void')),
    cert_fingerprint  TEXT UNIQUE,
    cert_serial       TEXT,
    certificate       BLOB,
    claim_hash        TEXT,
    password_verifier TEXT,
    batch             TEXT NOT NULL REFERENCES batches(id),
    token             TEXT NOT NULL REFERENCES tokens(id),
    factory           TEXT NOT NULL,
    time              TEXT NOT NULL,
    bundle            TEXT,
    run               TEXT,
    evidence_pending  INTEGER NOT NULL DEFAULT 1 CHECK (evidence_pending IN (0, 1)),
    revoked_at        TEXT,
    revocation_reason TEXT,
    CHECK (status IN ('reserved', 'void') OR cert_fingerprint IS NOT NULL)
) STRICT;
CREATE INDEX IF NOT EXISTS devices_batch ON devices(batch, sequence);
CREATE INDEX IF NOT EXISTS devices_pending ON devices(evidence_pending) WHERE evidence_pending = 1;
"""


# ------------------------------------------------------------------------------------------ records


@dataclass(frozen=True)
class Authorization:
    """A token this store's holder issued."""

    token_id: str
    factory: str
    count: int
    expires: datetime
    station_key: str | None
    issued: datetime


@dataclass(frozen=True)
class TokenRecord:
    """A token this station spends, with its counters."""

    token_id: str
    factory: str
    count: int
    expires: datetime
    station_key: str | None
    issued: datetime
    reserved: int
    spent: int
    last_seen: datetime
    state_signature: bytes | None
    state_key: str | None

    @property
    def remaining(self) -> int:
        """Devices not yet reserved by a batch."""
        return self.count - self.reserved


@dataclass(frozen=True)
class BatchRecord:
    batch_id: str
    token_id: str
    factory: str
    state: BatchState
    requested: int
    provisioned: int
    out_dir: str | None
    opened: datetime
    closed: datetime | None
    manifest_sha256: str | None

    @property
    def room(self) -> int:
        return self.requested - self.provisioned


@dataclass(frozen=True)
class DeviceRecord:
    sequence: int
    serial: str
    status: DeviceStatus
    cert_fingerprint: str | None
    cert_serial: str | None
    certificate: bytes | None
    claim_hash: str | None
    password_verifier: str | None
    batch_id: str
    token_id: str
    factory: str
    time: datetime
    bundle: str | None
    run: str | None
    evidence_pending: bool
    revoked_at: datetime | None
    revocation_reason: str | None


@dataclass(frozen=True)
class NewDevice:
    """What a transaction records for one device made (certificate as DER)."""

    sequence: int
    serial: str
    cert_fingerprint: str
    cert_serial: str
    certificate: bytes
    claim_hash: str | None
    password_verifier: str | None
    bundle: str | None


def parse_time(text: str) -> datetime:
    """An aware UTC datetime from the stored ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` form."""
    if not text.endswith("Z"):
        raise ProductionStateError(f"production store: time {text!r} is not in UTC")
    return datetime.fromisoformat(text[:-1]).replace(tzinfo=UTC)


def _time(text: str | None) -> datetime | None:
    return None if text is None else parse_time(text)


def _token(row: sqlite3.Row) -> TokenRecord:
    return TokenRecord(
        token_id=row["id"],
        factory=row["factory"],
        count=row["count"],
        expires=parse_time(row["expires"]),
        station_key=row["station_key"],
        issued=parse_time(row["issued"]),
        reserved=row["reserved"],
        spent=row["spent"],
        last_seen=parse_time(row["last_seen"]),
        state_signature=row["state_signature"],
        state_key=row["state_key"],
    )


def _batch(row: sqlite3.Row) -> BatchRecord:
    return BatchRecord(
        batch_id=row["id"],
        token_id=row["token"],
        factory=row["factory"],
        state=row["state"],
        requested=row["requested"],
        provisioned=row["provisioned"],
        out_dir=row["out_dir"],
        opened=parse_time(row["opened"]),
        closed=_time(row["closed"]),
        manifest_sha256=row["manifest_sha256"],
    )


def _device(row: sqlite3.Row) -> DeviceRecord:
    return DeviceRecord(
        sequence=row["sequence"],
        serial=row["serial"],
        status=row["status"],
        cert_fingerprint=row["cert_fingerprint"],
        cert_serial=row["cert_serial"],
        certificate=row["certificate"],
        claim_hash=row["claim_hash"],
        password_verifier=row["password_verifier"],
        batch_id=row["batch"],
        token_id=row["token"],
        factory=row["factory"],
        time=parse_time(row["time"]),
        bundle=row["bundle"],
        run=row["run"],
        evidence_pending=bool(row["evidence_pending"]),
        revoked_at=_time(row["revoked_at"]),
        revocation_reason=row["revocation_reason"],
    )


# -------------------------------------------------------------------------------------- transactions


class Transaction:
    """The writes of one ``BEGIN IMMEDIATE`` transaction (only :meth:`ProductionStore.transaction` makes one)."""

    def __init__(self, conn: sqlite3.Connection, store_id: str) -> None:
        self._conn = conn
        self.store_id = store_id

    # reading inside the transaction sees its own writes
    def token(self, token_id: str) -> TokenRecord | None:
        row = self._conn.execute("SELECT * FROM tokens WHERE id = ?", (token_id,)).fetchone()
        return None if row is None else _token(row)

    def batch(self, batch_id: str) -> BatchRecord | None:
        row = self._conn.execute("SELECT * FROM batches WHERE id = ?", (batch_id,)).fetchone()
        return None if row is None else _batch(row)

    def device(self, serial: str) -> DeviceRecord | None:
        row = self._conn.execute("SELECT * FROM devices WHERE serial = ?", (serial,)).fetchone()
        return None if row is None else _device(row)

    def next_sequence(self) -> int:
        row = self._conn.execute("SELECT next_sequence FROM allocator WHERE id = 1").fetchone()
        return int(row[0])

    def allocate(self, count: int) -> int:
        """Take ``count`` consecutive sequence numbers; return the first (consumed only on commit)."""
        first = self.next_sequence()
        self._conn.execute("UPDATE allocator SET next_sequence = ? WHERE id = 1", (first + count,))
        return first

    def add_authorization(self, auth: Authorization, document: bytes) -> None:
        self._conn.execute(
            "INSERT INTO authorizations (id, factory, count, expires, station_key, issued, document) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                auth.token_id,
                auth.factory,
                auth.count,
                format_time(auth.expires),
                auth.station_key,
                format_time(auth.issued),
                document,
            ),
        )

    def add_token(self, record: TokenRecord, document: bytes) -> None:
        self._conn.execute(
            "INSERT INTO tokens (id, factory, count, expires, station_key, issued, document, reserved, spent, "
            "last_seen, state_signature, state_key) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                record.token_id,
                record.factory,
                record.count,
                format_time(record.expires),
                record.station_key,
                format_time(record.issued),
                document,
                record.reserved,
                record.spent,
                format_time(record.last_seen),
                record.state_signature,
                record.state_key,
            ),
        )

    def set_token_state(self, record: TokenRecord) -> None:
        self._conn.execute(
            "UPDATE tokens SET reserved = ?, spent = ?, last_seen = ?, state_signature = ?, state_key = ? WHERE id = ?",
            (
                record.reserved,
                record.spent,
                format_time(record.last_seen),
                record.state_signature,
                record.state_key,
                record.token_id,
            ),
        )

    def add_batch(self, record: BatchRecord) -> None:
        self._conn.execute(
            "INSERT INTO batches (id, token, factory, state, requested, provisioned, out_dir, opened) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                record.batch_id,
                record.token_id,
                record.factory,
                record.state,
                record.requested,
                record.provisioned,
                record.out_dir,
                format_time(record.opened),
            ),
        )

    def set_batch_provisioned(self, batch_id: str, provisioned: int) -> None:
        self._conn.execute("UPDATE batches SET provisioned = ? WHERE id = ?", (provisioned, batch_id))

    def close_batch(self, batch_id: str, *, requested: int, closed: datetime, manifest_sha256: str) -> None:
        self._conn.execute(
            "UPDATE batches SET state = 'closed', requested = ?, closed = ?, manifest_sha256 = ? WHERE id = ?",
            (requested, format_time(closed), manifest_sha256, batch_id),
        )

    def add_devices(
        self,
        devices: Sequence[NewDevice],
        *,
        batch_id: str,
        token_id: str,
        factory: str,
        time: datetime,
        run: str,
    ) -> None:
        """Record devices made (status active, evidence pending) by ``run``."""
        stamp = format_time(time)
        try:
            self._conn.executemany(
                "INSERT INTO devices (sequence, serial, status, cert_fingerprint, cert_serial, certificate, "
                "claim_hash, password_verifier, batch, token, factory, time, bundle, run) "
                "VALUES (?, ?, 'active', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        d.sequence,
                        d.serial,
                        d.cert_fingerprint,
                        d.cert_serial,
                        d.certificate,
                        d.claim_hash,
                        d.password_verifier,
                        batch_id,
                        token_id,
                        factory,
                        stamp,
                        d.bundle,
                        run,
                    )
                    for d in devices
                ],
            )
        except sqlite3.IntegrityError as exc:
            raise ProductionStateError(
                f"production store: a device record would duplicate a serial, sequence or certificate ({exc})"
            ) from exc

    def reserve_devices(
        self, first: int, serials: Sequence[str], *, batch_id: str, token_id: str, factory: str, time: datetime
    ) -> None:
        """Record allocated-but-unissued serials (flow (a): the device makes its key later)."""
        stamp = format_time(time)
        try:
            self._conn.executemany(
                "INSERT INTO devices (sequence, serial, status, batch, token, factory, time, evidence_pending) "
                "VALUES (?, ?, 'reserved', ?, ?, ?, ?, 0)",
                [(first + i, s, batch_id, token_id, factory, stamp) for i, s in enumerate(serials)],
            )
        except sqlite3.IntegrityError as exc:
            raise ProductionStateError(f"production store: a reserved serial would be a duplicate ({exc})") from exc

    def issue_reserved(self, device: NewDevice, *, time: datetime, run: str) -> None:
        """Turn a reserved serial into an active device with its certificate."""
        try:
            cursor = self._conn.execute(
                "UPDATE devices SET status = 'active', cert_fingerprint = ?, cert_serial = ?, certificate = ?, "
                "claim_hash = ?, password_verifier = ?, time = ?, bundle = ?, run = ?, evidence_pending = 1 "
                "WHERE serial = ? AND status = 'reserved'",
                (
                    device.cert_fingerprint,
                    device.cert_serial,
                    device.certificate,
                    device.claim_hash,
                    device.password_verifier,
                    format_time(time),
                    device.bundle,
                    run,
                    device.serial,
                ),
            )
        except sqlite3.IntegrityError as exc:
            raise ProductionStateError(f"production store: the certificate would be a duplicate ({exc})") from exc
        if cursor.rowcount != 1:
            raise ProductionStateError(f"production store: serial {device.serial} is not reserved")

    def void_reserved(self, batch_id: str) -> int:
        """Mark a batch's still-reserved serials void (never issued); return how many."""
        cursor = self._conn.execute(
            "UPDATE devices SET status = 'void' WHERE batch = ? AND status = 'reserved'", (batch_id,)
        )
        return cursor.rowcount

    def revoke(self, serial: str, *, time: datetime, reason: str) -> None:
        self._conn.execute(
            "UPDATE devices SET status = 'revoked', revoked_at = ?, revocation_reason = ? "
            "WHERE serial = ? AND status = 'active'",
            (format_time(time), reason, serial),
        )

    def mark_evidence_done(self, sequences: Sequence[int]) -> None:
        self._conn.executemany("UPDATE devices SET evidence_pending = 0 WHERE sequence = ?", [(s,) for s in sequences])

    def iter_revoked(self) -> Iterator[DeviceRecord]:
        for row in self._conn.execute("SELECT * FROM devices WHERE status = 'revoked' ORDER BY sequence"):
            yield _device(row)

    def meta(self, name: str) -> str | None:
        row = self._conn.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, name: str, value: str) -> None:
        self._conn.execute(
            "INSERT INTO meta (name, value) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET value = excluded.value",
            (name, value),
        )


# ---------------------------------------------------------------------------------------------- store


class ProductionStore:
    """One product's production store (open with :meth:`open`; close, or use as a context manager)."""

    def __init__(self, path: Path, conn: sqlite3.Connection, store_id: str) -> None:
        self.path = path
        self._conn = conn
        self.store_id = store_id

    def __repr__(self) -> str:
        return f"ProductionStore({str(self.path)!r})"

    @classmethod
    def open(cls, directory: Path, *, product: str) -> ProductionStore:
        """Open (or create) the store in ``directory`` for ``product``; refuse another product's store."""
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = directory / DB_FILE
        with exclusive_lock(directory / ".production.lock"):  # creation and WAL switch: one process at a time
            fresh = not path.exists()
            try:
                conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=True)
            except sqlite3.Error as exc:
                raise ProductionStateError(f"production store {path}: cannot be opened ({exc})") from exc
            try:
                if fresh:
                    path.chmod(0o600)
                store_id = cls._prepare(conn, path, product)
            except BaseException:
                conn.close()
                raise
        return cls(path, conn, store_id)

    @staticmethod
    def _prepare(conn: sqlite3.Connection, path: Path, product: str) -> str:
        conn.row_factory = sqlite3.Row
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA secure_delete = ON")
            conn.execute("PRAGMA foreign_keys = ON")
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            if version == 0:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    for statement in _SCHEMA.split(";"):
                        if statement.strip():
                            conn.execute(statement)
                    conn.execute("INSERT OR IGNORE INTO allocator (id, next_sequence) VALUES (1, 1)")
                    for name, value in (
                        ("format", STORE_FORMAT),
                        ("store_id", secrets.token_hex(16)),
                        ("product", product),
                        ("crl_number", "1"),
                    ):
                        conn.execute("INSERT OR IGNORE INTO meta (name, value) VALUES (?, ?)", (name, value))
                    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
            elif version != SCHEMA_VERSION:
                raise ProductionStateError(
                    f"production store {path} has schema version {version}; this trustroot reads version "
                    f"{SCHEMA_VERSION} only",
                    hint="use the trustroot version that wrote it",
                )
            meta = dict(conn.execute("SELECT name, value FROM meta").fetchall())
        except sqlite3.DatabaseError as exc:
            raise ProductionStateError(f"production store {path} is damaged or not a production store ({exc})") from exc
        if meta.get("format") != STORE_FORMAT or "store_id" not in meta:
            raise ProductionStateError(f"production store {path} is not a trustroot production store")
        if meta.get("product") != product:
            raise ProductionStateError(
                f"production store {path} belongs to product {meta.get('product')!r}, not {product!r}"
            )
        return str(meta["store_id"])

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> ProductionStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """One ``BEGIN IMMEDIATE`` transaction: committed if the block ends, rolled back if it raises."""
        try:
            self._conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise ProductionStateError(f"production store {self.path}: cannot start a transaction ({exc})") from exc
        try:
            yield Transaction(self._conn, self.store_id)
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute("ROLLBACK")
            raise
        try:
            self._conn.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute("ROLLBACK")
            raise ProductionStateError(f"production store {self.path}: the commit failed ({exc})") from exc

    # --- reading ---------------------------------------------------------------------------------

    def token(self, token_id: str) -> TokenRecord | None:
        row = self._conn.execute("SELECT * FROM tokens WHERE id = ?", (token_id,)).fetchone()
        return None if row is None else _token(row)

    def token_document(self, token_id: str) -> bytes | None:
        row = self._conn.execute("SELECT document FROM tokens WHERE id = ?", (token_id,)).fetchone()
        return None if row is None else bytes(row[0])

    def tokens(self) -> list[TokenRecord]:
        return [_token(r) for r in self._conn.execute("SELECT * FROM tokens ORDER BY issued, id")]

    def authorizations(self) -> list[Authorization]:
        return [
            Authorization(
                token_id=r["id"],
                factory=r["factory"],
                count=r["count"],
                expires=parse_time(r["expires"]),
                station_key=r["station_key"],
                issued=parse_time(r["issued"]),
            )
            for r in self._conn.execute("SELECT * FROM authorizations ORDER BY issued, id")
        ]

    def batch(self, batch_id: str) -> BatchRecord | None:
        row = self._conn.execute("SELECT * FROM batches WHERE id = ?", (batch_id,)).fetchone()
        return None if row is None else _batch(row)

    def batches(self, *, token_id: str | None = None) -> list[BatchRecord]:
        if token_id is None:
            rows = self._conn.execute("SELECT * FROM batches ORDER BY opened, id")
        else:
            rows = self._conn.execute("SELECT * FROM batches WHERE token = ? ORDER BY opened, id", (token_id,))
        return [_batch(r) for r in rows]

    def device(self, serial: str) -> DeviceRecord | None:
        row = self._conn.execute("SELECT * FROM devices WHERE serial = ?", (serial,)).fetchone()
        return None if row is None else _device(row)

    @staticmethod
    def _where(
        batch_id: str | None, token_id: str | None, status: DeviceStatus | None, issued: bool
    ) -> tuple[str, list[str]]:
        clauses: list[str] = []
        params: list[str] = []
        for column, value in (("batch", batch_id), ("token", token_id), ("status", status)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        if issued:
            clauses.append("status IN ('active', 'revoked')")
        return (f" WHERE {' AND '.join(clauses)}" if clauses else ""), params

    def iter_devices(
        self,
        *,
        batch_id: str | None = None,
        token_id: str | None = None,
        status: DeviceStatus | None = None,
        issued: bool = False,
    ) -> Iterator[DeviceRecord]:
        """Devices in sequence order, streamed from the database (never all in memory).

        ``issued`` keeps the devices that received a certificate (active or revoked).
        """
        where, params = self._where(batch_id, token_id, status, issued)
        cursor = self._conn.cursor()
        try:
            cursor.execute(f"SELECT * FROM devices{where} ORDER BY sequence", params)  # noqa: S608 - fixed clauses
            while rows := cursor.fetchmany(256):
                for row in rows:
                    yield _device(row)
        finally:
            cursor.close()

    def count_devices(
        self,
        *,
        batch_id: str | None = None,
        token_id: str | None = None,
        status: DeviceStatus | None = None,
        issued: bool = False,
    ) -> int:
        where, params = self._where(batch_id, token_id, status, issued)
        row = self._conn.execute(f"SELECT COUNT(*) FROM devices{where}", params).fetchone()  # noqa: S608
        return int(row[0])

    def serial_range(self, batch_id: str) -> tuple[str | None, str | None]:
        row = self._conn.execute(
            "SELECT (SELECT serial FROM devices WHERE batch = ? ORDER BY sequence LIMIT 1), "
            "(SELECT serial FROM devices WHERE batch = ? ORDER BY sequence DESC LIMIT 1)",
            (batch_id, batch_id),
        ).fetchone()
        return row[0], row[1]

    def pending_evidence(self) -> list[DeviceRecord]:
        """Device records committed whose evidence record was not yet appended (a crash in between)."""
        return [
            _device(r) for r in self._conn.execute("SELECT * FROM devices WHERE evidence_pending = 1 ORDER BY sequence")
        ]

    def next_sequence(self) -> int:
        return int(self._conn.execute("SELECT next_sequence FROM allocator WHERE id = 1").fetchone()[0])

    def meta(self, name: str) -> str | None:
        row = self._conn.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        return None if row is None else str(row[0])

    def check_consistency(self) -> list[str]:
        """Problems found by a full check of the rules (an empty list when the store is sound)."""
        problems: list[str] = []
        next_seq = self.next_sequence()
        row = self._conn.execute("SELECT COUNT(*), MIN(sequence), MAX(sequence) FROM devices").fetchone()
        count, low, high = int(row[0]), row[1], row[2]
        if count and (low != 1 or high != count):
            problems.append(f"device sequences are not contiguous from 1: {count} records span {low}..{high}")
        if count != next_seq - 1:
            problems.append(f"the allocator is at {next_seq} but {count} sequence numbers are recorded")
        for record in self.tokens():
            used = self._conn.execute("SELECT COUNT(*) FROM devices WHERE token = ?", (record.token_id,)).fetchone()
            if int(used[0]) != record.spent:
                problems.append(f"token {record.token_id}: spent {record.spent} but {used[0]} devices recorded")
        for batch in self.batches():
            used = self.count_devices(batch_id=batch.batch_id)
            if used != batch.provisioned:
                problems.append(f"batch {batch.batch_id}: provisioned {batch.provisioned} but {used} devices recorded")
        return problems
