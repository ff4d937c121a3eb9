"""The fleet's audit chain: evidence records in the store's ``audit`` table.

The records are those of the product's ``evidence.jsonl`` (:mod:`trustroot.evidence`: same fields,
canonical JSON, hash chain, signed checkpoints), built and verified by the same pure functions; only
the storage differs. Several service workers and processes append at once, so every append runs in
a transaction holding the audit lock (:func:`~trustroot.fleet.store._locks.serialize_writers`)::

    append(type, subject, data, actor, session=None)
      ├─ lock       PostgreSQL pg_advisory_xact_lock(AUDIT_LOCK_KEY) · SQLite BEGIN IMMEDIATE
      ├─ head       last row, parsed and hash-checked (a damaged head is never extended)
      └─ insert     evidence.next_record(head, ...)       seq and hash are UNIQUE besides
    COMMIT releases the lock (the caller's commit, when the append joins its transaction)
    then, if a checkpoint is due: the signer factory is called (outside the lock), and a transaction
      of its own locks, re-checks that it is still due, and appends the signed evidence.checkpoint

As in the product's log, appending never needs the evidence key: a checkpoint that cannot be made
(no signer, key locked, database error) is deferred with a warning, and every later append tries again.

``verify(public_keys)`` streams the rows through :func:`trustroot.evidence.verify_chain`;
``export_jsonl(path)`` writes them as an evidence log file that ``EvidenceLog(path).verify`` and the
assessment read exactly as they read the product's log.

Other features record through :func:`record` (one :class:`AuditLog` per service, in
``service.parts["audit"]``), passing their session to make the record part of their transaction::

    with service.store.transaction() as session:
        ...                                   # change the feature's tables
        record(service, "release.published", version, {...}, actor, session=session)

Errors (from :mod:`trustroot.evidence`): :class:`~trustroot.errors.EvidenceError` for a refused
append (unregistered type, checkpoint type, oversized data, damaged head), and
:class:`~trustroot.evidence.BrokenChainError` from :meth:`AuditLog.verify`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from collections.abc import Callable, Generator, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Final

from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from sqlalchemy import Row, event, func, insert, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from trustroot._fsutil import fsync_dir
from trustroot.errors import EvidenceError, TrustrootError
from trustroot.evidence import (
    CHECKPOINT_TYPE,
    GENESIS_PREV,
    CheckpointSigner,
    EvidenceRecord,
    Head,
    JSONValue,
    VerifyReport,
    checkpoint_due,
    make_checkpoint,
    next_record,
    verify_chain,
)
from trustroot.fleet.store._locks import AUDIT_LOCK_KEY, serialize_writers
from trustroot.fleet.store.db import Store
from trustroot.fleet.store.models import AuditRecord
from trustroot.keys._interface import KeyRole
from trustroot.limits import DEFAULT_LIMITS, Limits

if TYPE_CHECKING:
    from trustroot.fleet.service import FleetService
    from trustroot.keys.store import KeyStore

__all__ = ["SERVICE_ACTOR", "AuditLog", "audit_log", "evidence_signer_factory", "record"]

_log = logging.getLogger(__name__)

#: The actor of records the service makes on its own (checkpoints, automatic actions).
SERVICE_ACTOR: Final = "service"
#: The key of :attr:`FleetService.parts` holding the service's :class:`AuditLog`.
_PART: Final = "audit"
#: ``Session.info`` key: a checkpoint is to be tried when the session's transaction commits.
_CHECKPOINT_PENDING: Final = "trustroot.audit.checkpoint_pending"
_BATCH_ROWS = 1000
_COLUMNS = (
    AuditRecord.v,
    AuditRecord.seq,
    AuditRecord.time,
    AuditRecord.actor,
    AuditRecord.type,
    AuditRecord.subject,
    AuditRecord.data,
    AuditRecord.prev,
    AuditRecord.hash,
)


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _json_text(data: Mapping[str, JSONValue]) -> str:
    """The canonical JSON of a record's data (the form ``evidence`` hashes)."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _row_dict(row: Row[int, int, str, str, str, str, str, str, str]) -> dict[str, object]:
    """A row as the nine-field record object; unparsable data stays a string (verification names it)."""
    data: object
    try:
        data = json.loads(row.data)
    except ValueError:
        data = row.data
    return {
        "v": row.v,
        "seq": row.seq,
        "time": row.time,
        "actor": row.actor,
        "type": row.type,
        "subject": row.subject,
        "data": data,
        "prev": row.prev,
        "hash": row.hash,
    }


class AuditLog:
    """The audit chain of one fleet store.

    ``signer_factory`` gives the evidence key's signer when a checkpoint is due (every
    ``limits.evidence_checkpoint_every`` records); ``None``, a factory returning ``None`` or one
    raising a trustroot error defers the checkpoint to a later append (a warning is logged once).
    """

    def __init__(
        self,
        store: Store,
        *,
        clock: Callable[[], datetime] = _utcnow,
        signer_factory: Callable[[], CheckpointSigner | None] | None = None,
        limits: Limits = DEFAULT_LIMITS,
    ) -> None:
        self._store = store
        self._clock = clock
        self._signer_factory = signer_factory
        self._limits = limits
        self._warned_deferred = False

    # -- writing ----------------------------------------------------------------------------

    def append(
        self,
        type: str,
        subject: str,
        data: Mapping[str, object],
        actor: str,
        *,
        session: Session | None = None,
    ) -> EvidenceRecord:
        """Append one record and return it, in ``session``'s transaction or (``None``) a transaction of its own.

        Only types of :data:`trustroot.evidence.EVIDENCE_TYPES` are accepted. Inside the caller's
        transaction the record commits or rolls back with the caller's work, and the audit lock is
        held until then: keep such transactions short.
        """
        if type == CHECKPOINT_TYPE:
            raise EvidenceError("evidence.checkpoint records are appended by AuditLog.checkpoint()")
        with self._session(session) as active:
            head = self._locked_head(active)
            record = next_record(head, type, subject, data, actor, time=self._clock(), limits=self._limits)
            self._insert(active, record)
            due = checkpoint_due(record.seq, self._last_checkpoint_seq(active), self._limits.evidence_checkpoint_every)
            if due and session is not None and not session.info.get(_CHECKPOINT_PENDING):
                session.info[_CHECKPOINT_PENDING] = True  # once per transaction, after the caller commits
                event.listen(session, "after_commit", self._checkpoint_after_commit, once=True)
        if due and session is None:
            self._auto_checkpoint()
        return record

    def checkpoint(self, *, actor: str = SERVICE_ACTOR, session: Session | None = None) -> EvidenceRecord:
        """Sign the current head now and append the ``evidence.checkpoint`` record; return it."""
        if self._signer_factory is None:
            raise EvidenceError("fleet audit chain: no signer to make a checkpoint with")
        signer = self._signer_factory()
        if signer is None:
            raise EvidenceError("fleet audit chain: the evidence key is not available to sign")
        with self._session(session) as active:
            head = self._locked_head(active)
            if head.seq == 0:
                raise EvidenceError("fleet audit chain: nothing to checkpoint, the chain is empty")
            record = make_checkpoint(head, signer, time=self._clock(), actor=actor, limits=self._limits)
            self._insert(active, record)
        return record

    @contextlib.contextmanager
    def _session(self, session: Session | None) -> Iterator[Session]:
        if session is not None:
            yield session
        else:
            with self._store.transaction() as own:
                yield own

    def _locked_head(self, session: Session) -> Head:
        serialize_writers(session.connection(), AUDIT_LOCK_KEY)
        row = session.execute(select(*_COLUMNS).order_by(AuditRecord.seq.desc()).limit(1)).one_or_none()
        if row is None:
            return Head(0, GENESIS_PREV)
        try:
            last = EvidenceRecord.from_dict(_row_dict(row))
        except EvidenceError as exc:
            raise EvidenceError(
                f"fleet audit chain: the last record (seq {row.seq}) is invalid ({exc.message}); "
                "refusing to extend a broken chain",
                hint="run 'trustroot fleet audit verify' to find the damage",
            ) from exc
        return last.head

    def _last_checkpoint_seq(self, session: Session) -> int:
        found = session.execute(select(func.max(AuditRecord.seq)).where(AuditRecord.type == CHECKPOINT_TYPE))
        return found.scalar_one_or_none() or 0

    def _insert(self, session: Session, record: EvidenceRecord) -> None:
        session.execute(
            insert(AuditRecord).values(
                seq=record.seq,
                v=record.v,
                time=record.time,
                actor=record.actor,
                type=record.type,
                subject=record.subject,
                data=_json_text(record.data),
                prev=record.prev,
                hash=record.hash,
            )
        )

    def _checkpoint_after_commit(self, session: Session) -> None:
        session.info.pop(_CHECKPOINT_PENDING, None)
        self._auto_checkpoint()

    def _auto_checkpoint(self) -> None:
        """Append a checkpoint if one is still due; any failure defers it (the records are committed)."""
        signer = self._obtain_signer()
        if signer is None:
            return
        try:
            with self._store.transaction() as session:
                head = self._locked_head(session)
                if not checkpoint_due(
                    head.seq, self._last_checkpoint_seq(session), self._limits.evidence_checkpoint_every
                ):
                    return  # another writer made it meanwhile
                record = make_checkpoint(head, signer, time=self._clock(), actor=SERVICE_ACTOR, limits=self._limits)
                self._insert(session, record)
        except (TrustrootError, SQLAlchemyError) as exc:
            self._defer(f"the checkpoint failed ({exc})")
            return
        _log.info("fleet audit checkpoint at seq %d signs head seq %d", record.seq, head.seq)

    def _obtain_signer(self) -> CheckpointSigner | None:
        if self._signer_factory is None:
            _log.debug("fleet audit chain: checkpoint due, deferred to a writer with a signer")
            return None
        try:
            signer = self._signer_factory()
        except TrustrootError as exc:
            self._defer(f"the evidence key is not available ({exc})")
            return None
        if signer is None:
            self._defer("the evidence key is not available")
        return signer

    def _defer(self, why: str) -> None:
        level = logging.DEBUG if self._warned_deferred else logging.WARNING
        self._warned_deferred = True
        _log.log(level, "fleet audit chain: checkpoint due but deferred: %s", why)

    # -- reading ----------------------------------------------------------------------------

    def head(self) -> Head:
        """The seq and hash of the last record (``Head(0, GENESIS_PREV)`` for an empty chain)."""
        with self._store.engine.connect() as connection:
            row = connection.execute(
                select(AuditRecord.seq, AuditRecord.hash).order_by(AuditRecord.seq.desc()).limit(1)
            ).one_or_none()
        return Head(0, GENESIS_PREV) if row is None else Head(row.seq, row.hash)

    def _rows(self) -> Generator[dict[str, object]]:
        """Every row in seq order, streamed (one statement: one consistent snapshot)."""
        with self._store.engine.connect() as connection:
            result = connection.execution_options(stream_results=True, yield_per=_BATCH_ROWS).execute(
                select(*_COLUMNS).order_by(AuditRecord.seq)
            )
            try:
                for row in result:
                    yield _row_dict(row)
            finally:
                result.close()  # a server-side cursor (PostgreSQL) must be closed before its connection

    def iter_records(self) -> Generator[EvidenceRecord]:
        """Stream the records, each parsed and hash-checked but the chain NOT verified (call :meth:`verify`).

        The iterator holds a database connection until it is exhausted or closed.
        """
        with contextlib.closing(self._rows()) as rows:
            for row in rows:
                yield EvidenceRecord.from_dict(row)

    def verify(self, public_keys: Mapping[str, PublicKeyTypes], *, known_head: Head | None = None) -> VerifyReport:
        """Verify the whole chain and every checkpoint (see :func:`trustroot.evidence.verify_chain`).

        Raises :class:`~trustroot.evidence.BrokenChainError`; its ``line`` is the 1-based position
        of the record in seq order.
        """
        with contextlib.closing(self._rows()) as rows:  # releases the connection when verification stops early
            return verify_chain(rows, public_keys, known_head=known_head)

    def export_jsonl(self, path: Path) -> int:
        """Write the chain to ``path`` as an evidence log file (atomically); return the record count.

        Each line is the canonical encoding of one record, as in the product's ``evidence.jsonl``.
        A record that does not parse is refused (:class:`~trustroot.errors.EvidenceError`) and
        nothing is written; run :meth:`verify` to locate it.
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        tmp = Path(tmp_name)
        count = 0
        try:
            os.fchmod(fd, 0o644)
            with os.fdopen(fd, "wb") as handle, contextlib.closing(self.iter_records()) as records:
                for record in records:
                    handle.write(record.encode() + b"\n")
                    count += 1
                handle.flush()
                os.fsync(handle.fileno())
            tmp.replace(path)
            fsync_dir(path.parent)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            raise
        return count


class _KeyStoreSigner:
    """Adapts the key store's active evidence key to :class:`~trustroot.evidence.CheckpointSigner`."""

    def __init__(self, keys: KeyStore) -> None:
        self._handle = keys.unlock(keys.active(KeyRole.EVIDENCE).name)

    @property
    def key_id(self) -> str:
        return self._handle.info.fingerprint

    @property
    def algorithm(self) -> str:
        return str(self._handle.info.algorithm)

    def sign(self, data: bytes) -> bytes:
        return self._handle.sign(data)


def evidence_signer_factory(keys: KeyStore | None) -> Callable[[], CheckpointSigner | None]:
    """A signer factory over the product key store's active evidence key (``None`` without a key store)."""

    def factory() -> CheckpointSigner | None:
        return None if keys is None else _KeyStoreSigner(keys)

    return factory


def audit_log(service: FleetService) -> AuditLog:
    """The service's audit log (made once, with the service's clock and evidence key)."""
    found = service.parts.get(_PART)
    if isinstance(found, AuditLog):
        return found
    log = AuditLog(service.store, clock=service.clock, signer_factory=evidence_signer_factory(service.keys))
    service.parts[_PART] = log
    return log


def record(
    service: FleetService,
    type: str,
    subject: str,
    data: Mapping[str, object],
    actor: str,
    *,
    session: Session | None = None,
) -> EvidenceRecord:
    """Append an evidence record to the service's audit chain (in ``session``'s transaction if given)."""
    return audit_log(service).append(type, subject, data, actor, session=session)
