"""Alerts: monitoring findings stored with their evidence, recorded in the audit chain, listed, acknowledged.

::

    raise_alerts(service, session, findings, device_ids)      inside the ingest transaction
      ├─ alerts row       kind, severity, score, rule, observed_at, serial, data = {"evidence": {...}}
      └─ alert.raised     evidence record in the audit chain: the alert's id, kind, severity, score,
                          rule, time and the SHA-256 of its evidence (the evidence itself stays in
                          the row; the chain makes it tamper-evident)
    list_alerts(service, since=, device=, limit=)             newest first
    acknowledge(service, alert_id, operator)                  once; AlertNotFound (404) otherwise

Alerts the check-in raises (``security_counter_decreased``) live in the same table and are listed
the same way.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from trustroot.errors import StateError
from trustroot.fleet.service import FleetService
from trustroot.fleet.store.audit import SERVICE_ACTOR, record
from trustroot.fleet.store.models import Alert, Device
from trustroot.monitor.detect import Finding

__all__ = [
    "ALERT_EVIDENCE_TYPE",
    "MAX_ALERTS_PAGE",
    "AlertNotFound",
    "AlertView",
    "acknowledge",
    "alert_view",
    "list_alerts",
    "raise_alerts",
]

#: The evidence record type of a raised alert.
ALERT_EVIDENCE_TYPE: Final = "alert.raised"
#: Most alerts one listing returns.
MAX_ALERTS_PAGE: Final = 1000
_MESSAGE_CHARS: Final = 1024


class AlertNotFound(StateError):
    """No alert has that id."""


@dataclass(frozen=True)
class AlertView:
    """An alert as the API shows it."""

    id: int
    device: str | None
    kind: str
    severity: str
    time: datetime
    raised_at: datetime
    score: float | None
    rule: str | None
    message: str
    evidence: dict[str, Any]
    acknowledged: bool
    acknowledged_at: datetime | None
    acknowledged_by: str | None

    def to_json(self) -> dict[str, object]:
        """The JSON form (the webhook's payload and the API's item)."""
        return {
            "id": self.id,
            "device": self.device,
            "kind": self.kind,
            "severity": self.severity,
            "time": _rfc3339(self.time),
            "raised_at": _rfc3339(self.raised_at),
            "score": self.score,
            "rule": self.rule,
            "message": self.message,
            "evidence": self.evidence,
            "acknowledged": self.acknowledged,
            "acknowledged_at": _rfc3339(self.acknowledged_at) if self.acknowledged_at else None,
            "acknowledged_by": self.acknowledged_by,
        }


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def alert_view(row: Alert, serial: str | None = None) -> AlertView:
    """The view of ``row`` (``serial``: the device's, for rows that name only its id)."""
    data = row.data or {}
    evidence = data.get("evidence") if isinstance(data.get("evidence"), dict) else data
    return AlertView(
        id=row.id,
        device=row.serial or serial,
        kind=row.kind,
        severity=row.severity,
        time=row.observed_at or row.created_at,
        raised_at=row.created_at,
        score=row.score,
        rule=row.rule,
        message=row.message,
        evidence=dict(evidence) if isinstance(evidence, Mapping) else {},
        acknowledged=row.acknowledged_at is not None,
        acknowledged_at=row.acknowledged_at,
        acknowledged_by=row.acknowledged_by,
    )


def _message(finding: Finding) -> str:
    who = finding.device or "the fleet"
    return f"{finding.kind} on {who}: {finding.rule} (score {finding.score:g})"[:_MESSAGE_CHARS]


def raise_alerts(
    service: FleetService,
    session: Session,
    findings: Sequence[Finding],
    device_ids: Mapping[str, int],
    *,
    now: datetime,
) -> list[AlertView]:
    """Store ``findings`` as alerts and append ``alert.raised`` for each, in ``session``'s transaction."""
    rows = []
    for finding in findings:
        row = Alert(
            device_id=device_ids.get(finding.device) if finding.device else None,
            serial=finding.device,
            kind=finding.kind,
            severity=finding.severity,
            message=_message(finding),
            data={"evidence": finding.evidence},
            created_at=now,
            score=finding.score,
            rule=finding.rule[:256],
            observed_at=datetime.fromtimestamp(finding.time, UTC),
        )
        session.add(row)
        rows.append(row)
    if not rows:
        return []
    session.flush()
    for row, finding in zip(rows, findings, strict=True):
        digest = hashlib.sha256(
            json.dumps(finding.evidence, sort_keys=True, separators=(",", ":")).encode("utf-8")
        ).hexdigest()
        record(
            service,
            ALERT_EVIDENCE_TYPE,
            finding.device or "fleet",
            {
                "alert_id": row.id,
                "kind": finding.kind,
                "severity": finding.severity,
                "score": str(finding.score),
                "rule": finding.rule[:256],
                "observed_at": _rfc3339(datetime.fromtimestamp(finding.time, UTC)),
                "evidence_sha256": digest,
            },
            SERVICE_ACTOR,
            session=session,
        )
    return [alert_view(row) for row in rows]


def list_alerts(
    service: FleetService,
    *,
    since: datetime | None = None,
    device: str | None = None,
    limit: int = 100,
) -> list[AlertView]:
    """Alerts raised at or after ``since`` (service time), of ``device`` if given, newest first."""
    limit = max(1, min(limit, MAX_ALERTS_PAGE))
    query = (
        select(Alert, Device.serial)
        .outerjoin(Device, Alert.device_id == Device.id)
        .order_by(Alert.created_at.desc(), Alert.id.desc())
        .limit(limit)
    )
    if since is not None:
        query = query.where(Alert.created_at >= since)
    if device is not None:
        query = query.where(or_(Alert.serial == device, Device.serial == device))
    with service.store.transaction() as session:
        return [alert_view(row, serial) for row, serial in session.execute(query)]


def acknowledge(service: FleetService, alert_id: int, operator: str) -> AlertView:
    """Mark an alert acknowledged by ``operator`` (idempotent: the first acknowledgement stays)."""
    with service.store.transaction() as session:
        row = session.get(Alert, alert_id)
        if row is None:
            raise AlertNotFound(f"alert {alert_id}: no such alert")
        if row.acknowledged_at is None:
            row.acknowledged_at = service.clock()
            row.acknowledged_by = operator[:256]
        device = session.get(Device, row.device_id) if row.device_id is not None else None
        return alert_view(row, device.serial if device else None)
