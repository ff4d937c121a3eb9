"""Telemetry ingest: validated points stored, de-duplicated, scored, and alerts raised, in one transaction.

Both transports end here: the HTTPS route (:mod:`trustroot.fleet.api.telemetry`) with one device's
batch per request, and the MQTT worker (:mod:`trustroot.fleet.mqtt_ingest`) with the batches it
collected from several devices::

    TelemetryIngest(service).ingest([DeviceBatch(device_id, serial, points, source), ...])
      one transaction
      ├─ lock each device (sorted; PostgreSQL advisory lock, SQLite's write lock)
      ├─ per device
      │   ├─ seqs already stored in the batch's range: same digest -> duplicate (dropped, counted);
      │   │  other digest -> a conflict (a second stream under this identity: cloned_device)
      │   ├─ the device's monitor state: this process's cached copy if its version is the stored
      │   │  one, else rebuilt from the store (another worker moved it on), else new
      │   ├─ DeviceMonitor.observe(new points, policy, source, conflicts) -> findings
      │   ├─ INSERT the new points; UPSERT the state (version + 1)
      │   └─ update_auth_failures > 0: the fleet monitor (same scheme, row "fleet")
      ├─ alerts + alert.raised evidence records (trustroot.fleet.alerts)
      COMMIT; then the alerts go to the webhook (queued, never waited for)

The policy (context rules, allowed lists, released firmware versions per channel) and the fleet's
size are read at most every :data:`POLICY_TTL_S` seconds. The cache of monitor states is bounded
(:data:`MAX_CACHED_DEVICES`, least recently used dropped; they are in the store).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

from sqlalchemy import Connection, func, insert, select, update
from sqlalchemy.orm import Session

from trustroot.errors import TrustrootError
from trustroot.fleet.alerts import AlertView, raise_alerts
from trustroot.fleet.alerts_webhook import WEBHOOK_ENV, AlertWebhook
from trustroot.fleet.releases.models import Release
from trustroot.fleet.service import FleetService
from trustroot.fleet.store._locks import lock_key, serialize_writers
from trustroot.fleet.store.models import Device, DeviceStatus
from trustroot.fleet.telemetry_models import MonitorStateRow, TelemetryPointRow
from trustroot.monitor.detect import Conflict, DeviceMonitor, Finding, batch_canonical, point_digest
from trustroot.monitor.fleet import FleetMonitor
from trustroot.monitor.points import TelemetryPoint
from trustroot.monitor.policy import MonitorPolicy

__all__ = [
    "MAX_CACHED_DEVICES",
    "POLICY_TTL_S",
    "DeviceBatch",
    "IngestResult",
    "TelemetryIngest",
    "telemetry_ingest",
]

_log = logging.getLogger(__name__)

#: Seconds the policy (releases, context) and the fleet size are cached.
POLICY_TTL_S: Final = 5.0
#: Device monitor states kept in memory per process.
MAX_CACHED_DEVICES: Final = 100_000
_FLEET_KEY: Final = "fleet"
_PART: Final = "telemetry_ingest"


@dataclass(frozen=True)
class DeviceBatch:
    """Points of one authenticated device (``source``: the address it sent from, when known)."""

    device_id: int
    serial: str
    points: Sequence[TelemetryPoint]
    source: str | None = None


@dataclass
class IngestResult:
    """What happened to one device's batch."""

    serial: str
    accepted: int = 0
    duplicates: int = 0
    alerts: list[AlertView] = field(default_factory=list)


def _state_key(serial: str) -> str:
    return f"device:{serial}"


class TelemetryIngest:
    """The ingest of one process (HTTPS workers and MQTT workers each hold one); thread-safe."""

    def __init__(self, service: FleetService, *, webhook: AlertWebhook | None = None) -> None:
        self.service = service
        self.webhook = webhook
        self._monitors: OrderedDict[str, tuple[int, DeviceMonitor]] = OrderedDict()
        self._fleet: tuple[int, FleetMonitor] | None = None
        self._policies: dict[str, MonitorPolicy] = {}
        self._fleet_size = 0
        self._policy_read = -POLICY_TTL_S
        self._lock = threading.Lock()

    # ------------------------------------------------------------------------------------ policy

    def _refresh(self, session: Session) -> None:
        if time.monotonic() - self._policy_read < POLICY_TTL_S:
            return
        released: dict[str, list[tuple[datetime, str]]] = {}
        for channel, version, published in session.execute(
            select(Release.channel, Release.version, Release.published_at)
        ):
            released.setdefault(channel, []).append((published, version))
        versions = {version for items in released.values() for _, version in items}
        telemetry = self.service.context.telemetry
        self._policies = {
            channel: MonitorPolicy.from_context(telemetry, released_versions=versions, expected_version=max(items)[1])
            for channel, items in released.items()
        }
        self._policies[""] = MonitorPolicy.from_context(telemetry, released_versions=versions)
        self._fleet_size = int(
            session.scalar(select(func.count(Device.id)).where(Device.status == DeviceStatus.ACTIVE.value)) or 0
        )
        self._policy_read = time.monotonic()

    def policy(self, channel: str) -> MonitorPolicy:
        return self._policies.get(channel) or self._policies[""]

    def invalidate(self) -> None:
        """Read the policy again at the next batch (after a release was published)."""
        self._policy_read = -POLICY_TTL_S

    # ------------------------------------------------------------------------------------ ingest

    def ingest(self, batches: Sequence[DeviceBatch], *, channels: dict[str, str] | None = None) -> list[IngestResult]:
        """Store and score ``batches`` (see the module docstring); one result per batch, in order."""
        now = self.service.clock()
        results = [IngestResult(serial=b.serial) for b in batches]
        alerts: list[AlertView] = []
        with self._lock, self.service.store.write_turn(), self.service.store.transaction() as session:
            connection = session.connection()
            for serial in sorted({b.serial for b in batches}):
                serialize_writers(connection, lock_key(f"trustroot.monitor.{serial}"))
            self._refresh(session)
            findings: list[Finding] = []
            device_ids: dict[str, int] = {}
            for batch, result in zip(batches, results, strict=True):
                device_ids[batch.serial] = batch.device_id
                policy = self.policy((channels or {}).get(batch.serial, ""))
                found = self._one(connection, batch, result, policy, now)
                findings.extend(found)
            fleet_found = self._fleet_check(connection, batches, now)
            findings.extend(fleet_found)
            if findings:
                alerts = raise_alerts(self.service, session, findings, device_ids, now=now)
                by_serial = {r.serial: r for r in results}
                for alert in alerts:
                    if alert.device in by_serial:
                        by_serial[alert.device].alerts.append(alert)
        if self.webhook is not None:
            for alert in alerts:
                self.webhook.send(alert.to_json())
        return results

    def _one(
        self,
        connection: Connection,
        batch: DeviceBatch,
        result: IngestResult,
        policy: MonitorPolicy,
        now: datetime,
    ) -> list[Finding]:
        points = batch.points
        if not points:
            return []
        seqs = [p.seq for p in points]
        stored = dict(
            connection.execute(
                select(TelemetryPointRow.seq, TelemetryPointRow.digest).where(
                    TelemetryPointRow.device_id == batch.device_id,
                    TelemetryPointRow.seq >= min(seqs),
                    TelemetryPointRow.seq <= max(seqs),
                )
            ).all()
        )
        fresh: list[TelemetryPoint] = []
        rows: list[tuple[object, ...]] = []
        conflicts: list[Conflict] = []
        for point, text in zip(points, batch_canonical(points), strict=True):
            digest = point_digest(point, text)
            known = stored.get(point.seq)
            if known is None:
                stored[point.seq] = digest
                fresh.append(point)
                rows.append((batch.device_id, point.seq, point.time, now, digest, text))
            elif known == digest:
                result.duplicates += 1
            else:
                result.duplicates += 1
                conflicts.append(Conflict(point, known, digest))
        version, monitor = self._monitor(connection, batch.serial)
        findings = (
            monitor.observe(fresh, policy, source=batch.source, conflicts=conflicts) if fresh or conflicts else []
        )
        if rows:
            _insert_points(connection, rows)
        result.accepted = len(rows)
        self._save(connection, _state_key(batch.serial), version, monitor.to_state(), now)
        self._cache(batch.serial, version + 1, monitor)
        return findings

    def _monitor(self, connection: Connection, serial: str) -> tuple[int, DeviceMonitor]:
        key = _state_key(serial)
        row = connection.execute(select(MonitorStateRow.version).where(MonitorStateRow.key == key)).first()
        cached = self._monitors.get(serial)
        if row is None:
            return 0, DeviceMonitor(serial)
        if cached is not None and cached[0] == row.version:
            self._monitors.move_to_end(serial)
            return cached
        text = connection.execute(select(MonitorStateRow.state).where(MonitorStateRow.key == key)).scalar_one()
        try:
            return int(row.version), DeviceMonitor.from_state(json.loads(text))
        except (TrustrootError, ValueError) as exc:
            _log.warning("monitor state of %s unreadable (%s): starting afresh", serial, exc)
            return int(row.version), DeviceMonitor(serial)

    def _cache(self, serial: str, version: int, monitor: DeviceMonitor) -> None:
        self._monitors[serial] = (version, monitor)
        self._monitors.move_to_end(serial)
        while len(self._monitors) > MAX_CACHED_DEVICES:
            self._monitors.popitem(last=False)

    @staticmethod
    def _save(connection: Connection, key: str, version: int, state: dict[str, object], now: datetime) -> None:
        text = json.dumps(state, separators=(",", ":"))
        if version == 0:
            connection.execute(insert(MonitorStateRow).values(key=key, version=1, state=text, updated_at=now))
        else:
            connection.execute(
                update(MonitorStateRow)
                .where(MonitorStateRow.key == key)
                .values(version=version + 1, state=text, updated_at=now)
            )

    def _fleet_check(self, connection: Connection, batches: Sequence[DeviceBatch], now: datetime) -> list[Finding]:
        failing = [
            (b.serial, max(p.time.timestamp() for p in b.points if p.update_auth_failures > 0))
            for b in batches
            if any(p.update_auth_failures > 0 for p in b.points)
        ]
        if not failing:
            return []
        serialize_writers(connection, lock_key("trustroot.monitor.fleet"))
        row = connection.execute(
            select(MonitorStateRow.version, MonitorStateRow.state).where(MonitorStateRow.key == _FLEET_KEY)
        ).first()
        version = 0 if row is None else int(row.version)
        if self._fleet is not None and self._fleet[0] == version:
            monitor = self._fleet[1]
        elif row is not None:
            try:
                monitor = FleetMonitor.from_state(json.loads(row.state))
            except (TrustrootError, ValueError):
                monitor = FleetMonitor()
        else:
            monitor = FleetMonitor()
        found = [f for serial, moment in failing if (f := monitor.observe(serial, moment, self._fleet_size))]
        self._save(connection, _FLEET_KEY, version, monitor.to_state(), now)
        self._fleet = (version + 1, monitor)
        return found


_INSERT: Final = (
    "INSERT INTO telemetry_points (device_id, seq, time, received_at, digest, data) "
    "VALUES ({0}, {0}, {0}, {0}, {0}, {0})"
)


def _insert_points(connection: Connection, rows: list[tuple[object, ...]]) -> None:
    """Insert point rows straight through the driver's executemany (the per-row type processing of
    SQLAlchemy's Core costs more than the insert); times as the store's UTCDateTime keeps them."""
    if connection.dialect.name == "sqlite":
        rows = [
            (d, s, t.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds"),  # type: ignore[attr-defined]
             r.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds"), g, x)  # type: ignore[attr-defined]
            for d, s, t, r, g, x in rows
        ]  # fmt: skip
        connection.exec_driver_sql(_INSERT.format("?"), rows)
    else:
        connection.exec_driver_sql(_INSERT.format("%s"), rows)


def telemetry_ingest(service: FleetService) -> TelemetryIngest:
    """The service's ingest (one per process, in ``service.parts``; webhook from ``TRUSTROOT_ALERT_WEBHOOK``)."""
    found = service.parts.get(_PART)
    if isinstance(found, TelemetryIngest):
        return found
    url = os.environ.get(WEBHOOK_ENV)
    webhook = service.parts.get("alert_webhook")
    if not isinstance(webhook, AlertWebhook) and url:
        webhook = AlertWebhook(url)
    ingest = TelemetryIngest(service, webhook=webhook if isinstance(webhook, AlertWebhook) else None)
    return service.parts.setdefault(_PART, ingest)  # type: ignore[no-any-return]
