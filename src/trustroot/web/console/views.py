"""Read-only queries behind the console's pages (the fleet's domain functions do every change)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any, Final

from cryptography import x509
from sqlalchemy import func, select

from trustroot.fleet import alerts
from trustroot.fleet.alerts import AlertView
from trustroot.fleet.ownership_models import DeviceOwnership
from trustroot.fleet.releases.models import InstallResult, Release
from trustroot.fleet.service import FleetService
from trustroot.fleet.store.models import AuditRecord, Device, DeviceCommand, DeviceStatus

__all__ = [
    "DeviceDetail",
    "FleetOverview",
    "device_detail",
    "guideline_rows",
    "latest_assessment",
    "list_alerts",
    "overview",
]

PAGE: Final = 100
_HISTORY: Final = 50


@dataclass(frozen=True)
class FleetOverview:
    total: int
    active: int
    revoked: int
    never_checked_in: int
    by_model: list[tuple[str, int]]
    by_version: list[tuple[str, int]]
    devices: list[Device]
    offset: int
    support_period_end: date | None
    end_of_life: bool


def overview(service: FleetService, *, offset: int = 0) -> FleetOverview:
    """Counts by status, model and version, and one page of devices by serial."""
    with service.store.transaction() as session:
        by_status = dict(session.execute(select(Device.status, func.count()).group_by(Device.status)).all())
        never = int(session.scalar(select(func.count()).where(Device.last_checkin_at.is_(None))) or 0)
        by_model = [
            (model or "(unknown)", int(count))
            for model, count in session.execute(
                select(Device.model, func.count()).group_by(Device.model).order_by(func.count().desc())
            )
        ]
        by_version = [
            (version or "(not reported)", int(count))
            for version, count in session.execute(
                select(Device.reported_version, func.count())
                .group_by(Device.reported_version)
                .order_by(func.count().desc())
            )
        ]
        devices = list(session.scalars(select(Device).order_by(Device.serial).limit(PAGE).offset(max(0, offset))))
    end = service.context.product.support_period_end
    today = service.clock().date()
    return FleetOverview(
        total=sum(int(v) for v in by_status.values()),
        active=int(by_status.get(DeviceStatus.ACTIVE.value, 0)),
        revoked=int(by_status.get(DeviceStatus.REVOKED.value, 0)),
        never_checked_in=never,
        by_model=by_model,
        by_version=by_version,
        devices=devices,
        offset=max(0, offset),
        support_period_end=end,
        end_of_life=end is not None and today > end,
    )


@dataclass(frozen=True)
class DeviceDetail:
    device: Device
    subject: str
    issuer: str
    not_after: datetime
    owner_id: str | None
    owner_since: datetime | None
    installs: list[tuple[InstallResult, Release]]
    commands: list[DeviceCommand]
    history: list[AuditRecord]


def device_detail(service: FleetService, serial: str) -> DeviceDetail | None:
    """Everything the console shows of one device, or ``None`` for an unknown serial."""
    with service.store.transaction() as session:
        device = session.scalar(select(Device).where(Device.serial == serial))
        if device is None:
            return None
        ownership = session.get(DeviceOwnership, device.id)
        installs = list(
            session.execute(
                select(InstallResult, Release)
                .join(Release, Release.id == InstallResult.release_id)
                .where(InstallResult.device_id == device.id)
                .order_by(InstallResult.reported_at.desc())
                .limit(_HISTORY)
            )
        )
        commands = list(
            session.scalars(
                select(DeviceCommand)
                .where(DeviceCommand.device_id == device.id)
                .order_by(DeviceCommand.created_at.desc())
                .limit(_HISTORY)
            )
        )
        history = list(
            session.scalars(
                select(AuditRecord)
                .where(AuditRecord.subject == serial)
                .order_by(AuditRecord.seq.desc())
                .limit(_HISTORY)
            )
        )
    cert = x509.load_pem_x509_certificate(device.certificate_pem.encode("ascii"))
    return DeviceDetail(
        device=device,
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        not_after=cert.not_valid_after_utc,
        owner_id=ownership.owner_id if ownership else None,
        owner_since=ownership.since if ownership else None,
        installs=[(result, release) for result, release in installs],
        commands=commands,
        history=history,
    )


def list_alerts(service: FleetService, *, include_acknowledged: bool = False) -> list[AlertView]:
    """Alerts, newest first (those not yet acknowledged unless ``include_acknowledged``)."""
    views = alerts.list_alerts(service, limit=PAGE * 4)
    return views if include_acknowledged else [view for view in views if not view.acknowledged]


def latest_assessment(state_dir: Path) -> tuple[Path, dict[str, Any]] | None:
    """The newest assessment kept under ``.trustroot/assessments/<time>/`` and its report.json, if any."""
    root = state_dir / "assessments"
    if not root.is_dir():
        return None
    for folder in sorted((p for p in root.iterdir() if p.is_dir()), reverse=True):
        report = folder / "report.json"
        if report.is_file():
            try:
                data = json.loads(report.read_text("utf-8"))
            except (OSError, ValueError):
                continue
            if isinstance(data, dict):
                return folder, data
    return None


#: The verdict columns of the compliance page, in the report's words.
VERDICT_COLUMNS: Final = ("pass", "fail", "declared", "not_applicable", "inconclusive")


def guideline_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per guideline of a report.json (its ``guidelines``: number, title, verdict counts).

    A malformed entry is skipped, not guessed: the page shows what the report says or nothing.
    """
    entries = report.get("guidelines")
    rows: list[dict[str, Any]] = []
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict) or not isinstance(entry.get("verdicts"), dict):
            continue
        number, title = entry.get("number"), entry.get("title")
        if not isinstance(number, int) or not isinstance(title, str):
            continue
        counts = {v: n for v, n in entry["verdicts"].items() if isinstance(n, int) and n >= 0}
        row: dict[str, Any] = {"number": number, "title": title[:200]}
        row.update({column: counts.get(column, 0) for column in VERDICT_COLUMNS})
        row["total"] = sum(counts.values())
        rows.append(row)
    return rows
