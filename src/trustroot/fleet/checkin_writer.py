"""Group commit for check-ins: one writer thread per process, one transaction for many check-ins.

A check-in that needs nothing but its report stored (the common case: no install results, no
queued command, no active rollout for the device's channel and group) is handed to the process's
:class:`CheckinWriter`. Its thread takes every check-in waiting (up to :data:`MAX_BATCH`), and in
ONE transaction::

    per check-in   UPDATE devices SET last_checkin_at, reported_version, security_counter, health
                   WHERE id = :id AND certificate_fingerprint = :fp AND serial = :serial
                     AND status = 'active'
                     AND (security_counter IS NULL OR security_counter <= :reported)
                   RETURNING channel, group_name
    per batch      which of these devices have commands queued or delivered (one SELECT)
                   which (channel, group) pairs have an active rollout (one SELECT)

(the UPDATE is compiled once per database dialect and run on the driver's cursor: SQLAlchemy's
per-statement machinery cost three times the statement itself), then commits, and only then
answers each waiting request: ``True`` (stored; the answer carries no offer and no command) or
``False`` (take the full path of :func:`trustroot.fleet.checkin.check_in`, in its own
transaction). A check-in takes the full path when its UPDATE matched no row: the
device was revoked or removed in the store since its connection was authenticated (the full path
refuses it, 401), or it reports a lower security counter (the full path raises the rollback alert);
and when it has commands or may get an offer. The full path writes the same values again
(idempotent). If the batch's transaction fails, every check-in of it takes the full path.

On SQLite each batch first waits for its turn among the writers of all workers
(:meth:`trustroot.fleet.store.db.Store.write_turn`, an ``flock``) rather than in SQLite's busy
handler, which made the check-ins' tail latency (docs/benchmarks.md).

The registration check of the device authentication (status active, the certificate's serial)
is thus repeated inside the write itself, which is why the middleware may answer check-ins from
the connection's kept verdict (:data:`trustroot.fleet.auth.REGISTRATION_RECHECKED_BY_ROUTE`).
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import weakref
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from sqlalchemy import Connection, Dialect, bindparam, or_, select, update
from sqlalchemy.exc import SQLAlchemyError

from trustroot.fleet.releases.models import Rollout, RolloutState
from trustroot.fleet.service import FleetService
from trustroot.fleet.store.models import CommandState, Device, DeviceCommand, DeviceStatus

__all__ = ["MAX_BATCH", "CheckinWrite", "CheckinWriter", "checkin_writer"]

_log = logging.getLogger(__name__)

#: Most check-ins one transaction holds.
MAX_BATCH: Final = 256
_PART = "checkin_writer"
_PENDING_STATES: Final = (CommandState.QUEUED.value, CommandState.DELIVERED.value)

_devices = Device.__table__.c
_UPDATE = (
    update(Device)
    .where(
        Device.id == bindparam("b_id"),
        Device.certificate_fingerprint == bindparam("b_fingerprint"),
        Device.serial == bindparam("b_serial"),
        Device.status == DeviceStatus.ACTIVE.value,
        or_(Device.security_counter.is_(None), Device.security_counter <= bindparam("b_counter")),
    )
    .values(
        last_checkin_at=bindparam("b_now", type_=_devices.last_checkin_at.type),
        reported_version=bindparam("b_version"),
        security_counter=bindparam("b_counter"),
        health=bindparam("b_health", type_=_devices.health.type),
    )
    .returning(Device.channel, Device.group_name)
)
_PENDING = (
    select(DeviceCommand.device_id)
    .where(DeviceCommand.device_id.in_(bindparam("b_ids", expanding=True)), DeviceCommand.state.in_(_PENDING_STATES))
    .distinct()
)
_ACTIVE_ROLLOUTS = (
    select(Rollout.channel, Rollout.group_name).where(Rollout.state == RolloutState.ACTIVE.value).distinct()
)


@dataclass(frozen=True, slots=True)
class CheckinWrite:
    """One check-in's report, as the writer stores it."""

    device_id: int
    fingerprint: str
    serial: str
    firmware_version: str
    security_counter: int
    health: dict[str, Any] | None
    now: datetime


@dataclass(slots=True)
class _Job:
    write: CheckinWrite
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[bool] = field(repr=False)


def _resolve(future: asyncio.Future[bool], value: bool) -> None:
    if not future.done():
        future.set_result(value)


class _CompiledUpdate:
    """The per-check-in UPDATE for one dialect: its SQL, parameter order and bind processors."""

    def __init__(self, dialect: Dialect) -> None:
        compiled = _UPDATE.compile(dialect=dialect)
        self.sql = str(compiled)
        self.defaults: dict[str, Any] = dict(compiled.params)  # the literal 'active' of the WHERE
        self.order = tuple(compiled.positiontup or ()) if compiled.positional else None
        self.processors: dict[str, Any] = {}
        for name, column in (("b_now", _devices.last_checkin_at), ("b_health", _devices.health)):
            processor = column.type.dialect_impl(dialect).bind_processor(dialect)
            if processor is not None:
                self.processors[name] = processor

    def parameters(self, write: CheckinWrite) -> tuple[Any, ...] | dict[str, Any]:
        values = {
            **self.defaults,
            "b_id": write.device_id,
            "b_fingerprint": write.fingerprint,
            "b_serial": write.serial,
            "b_counter": write.security_counter,
            "b_now": write.now,
            "b_version": write.firmware_version,
            "b_health": write.health,
        }
        for name, processor in self.processors.items():
            values[name] = processor(values[name])
        return values if self.order is None else tuple(values[name] for name in self.order)


_COMPILED: weakref.WeakKeyDictionary[Dialect, _CompiledUpdate] = weakref.WeakKeyDictionary()


def _compiled(dialect: Dialect) -> _CompiledUpdate:
    found = _COMPILED.get(dialect)
    if found is None:
        found = _COMPILED[dialect] = _CompiledUpdate(dialect)
    return found


def write_batch(connection: Connection, writes: list[CheckinWrite]) -> list[bool]:
    """Store ``writes`` on ``connection`` (inside the caller's transaction); which ones are complete."""
    statement = _compiled(connection.dialect)
    matched: list[tuple[int, str, str | None] | None] = []
    cursor = connection.connection.cursor()  # the driver's cursor, in the connection's transaction
    try:
        for write in writes:
            cursor.execute(statement.sql, statement.parameters(write))
            row = cursor.fetchone()
            matched.append(None if row is None else (write.device_id, row[0], row[1]))
    finally:
        cursor.close()
    ids = [m[0] for m in matched if m is not None]
    if not ids:
        return [False] * len(writes)
    with_commands = set(connection.scalars(_PENDING, {"b_ids": ids}))
    rollouts = connection.execute(_ACTIVE_ROLLOUTS).all()

    def complete(found: tuple[int, str, str | None] | None) -> bool:
        if found is None or found[0] in with_commands:
            return False
        _, channel, group = found
        return not any(ch == channel and (grp is None or grp == group) for ch, grp in rollouts)

    return [complete(found) for found in matched]


class CheckinWriter:
    """The process's check-in writer thread (started at the first check-in; a daemon)."""

    def __init__(self, service: FleetService, *, max_batch: int = MAX_BATCH) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        self._service = service
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        #: Transactions committed and check-ins they held (for the benchmark's report).
        self.batches = 0
        self.written = 0

    async def write(self, write: CheckinWrite) -> bool:
        """Store ``write`` with the next batch; True once committed and complete, False: take the full path."""
        loop = asyncio.get_running_loop()
        job = _Job(write, loop, loop.create_future())
        self._start()
        self._queue.put(job)
        return await job.future

    def _start(self) -> None:
        if self._thread is not None:
            return
        with self._lock:
            if self._thread is None:
                thread = threading.Thread(target=self._run, name="trustroot-checkin-writer", daemon=True)
                thread.start()
                self._thread = thread

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            while len(batch) < self._max_batch:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            self._commit(batch)

    def _commit(self, batch: list[_Job]) -> None:
        try:
            with self._service.store.write_turn(), self._service.store.engine.begin() as connection:
                outcome = write_batch(connection, [job.write for job in batch])
            self.batches += 1
            self.written += len(batch)
        except Exception as exc:  # noqa: BLE001 - the thread must live on: the full path reports the error
            if isinstance(exc, SQLAlchemyError | OSError):
                _log.warning("a batch of %d check-ins failed (%s): each takes the full path", len(batch), exc)
            else:
                _log.exception("a batch of %d check-ins failed: each takes the full path", len(batch))
            outcome = [False] * len(batch)
        for job, complete in zip(batch, outcome, strict=True):
            try:
                job.loop.call_soon_threadsafe(_resolve, job.future, complete)
            except RuntimeError:  # the request's event loop is gone (its client left, the server stopped)
                continue


def checkin_writer(service: FleetService) -> CheckinWriter:
    """The service's :class:`CheckinWriter` (``service.parts["checkin_writer"]``)."""
    writer = service.parts.get(_PART)
    if not isinstance(writer, CheckinWriter):
        writer = service.parts[_PART] = CheckinWriter(service)
    return writer
