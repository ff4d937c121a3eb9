"""Device reports: a device says it wiped its personal data (factory reset, ownership change).

::

    POST /api/v1/device/reports/reset   (mutual TLS: the device itself)
         {"command_id": 17 | null, "status": "completed" | "failed" | "unsupported",
          "categories_wiped": ["wifi-credentials", ...], "reason": "owner-request" | null}
         -> 200 {"command_id", "state", "audit_seq", "deletion_receipt_sha256", "receipt"}

``command_id`` names the ``factory_reset`` command the check-in delivered (queued by "delete my
data" or a transfer, :mod:`trustroot.fleet.personal_data`); null is a reset the owner did on the
device itself. The command is marked ``acknowledged`` (``failed`` unless completed) with the report
as its result; a repeated report of an acknowledged command changes nothing and answers the same.

**Both sides linked.** The service's deletion receipt (signed, ``factory_reset_queued`` lists the
device) covers what the service deleted; this report covers the device. The service records a
``device.reset`` evidence record in its audit chain that names the command, the categories the
device wiped, the categories the context declares on the device, and the SHA-256 of the deletion
receipt that queued the reset (from that deletion's ``data.deleted`` record), and answers a
receipt signed with the same service key (domain ``trustroot/reset-receipt/v1``), so anyone holding
the deletion receipt can check that the device completed it (EN 303 645 provision 5.11-1/5.11-4).

Errors: 401 no device certificate (5.5-1); 404 no such command for this device; 422 malformed.
"""

from __future__ import annotations

import base64
import json
from datetime import datetime
from typing import Annotated, Any, Final, Literal

import anyio.to_thread
from fastapi import APIRouter, Depends, HTTPException
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from trustroot.fleet.auth import DEVICE_PATH_PREFIX, DeviceIdentity, require_device
from trustroot.fleet.receipts import canonical_json, service_signing_key
from trustroot.fleet.service import FleetService, get_service
from trustroot.fleet.store.audit import record
from trustroot.fleet.store.models import AuditRecord, CommandState, DeviceCommand
from trustroot.keys._interface import public_key_fingerprint

__all__ = ["RESET_RECEIPT_DOMAIN", "RESET_RECEIPT_TYPE", "ResetReport", "router"]

#: What a reset receipt's signature covers before the body.
RESET_RECEIPT_DOMAIN: Final = b"trustroot/reset-receipt/v1\n"
RESET_RECEIPT_TYPE: Final = "trustroot.reset-receipt"
#: How many recent ``data.deleted`` records are searched for the deletion that queued a reset.
_DELETION_LOOKBACK: Final = 500
_SLUG = r"^[a-z0-9][a-z0-9-]{0,63}$"

router = APIRouter(prefix=DEVICE_PATH_PREFIX, tags=["device"], dependencies=[Depends(require_device)])


class ResetReport(BaseModel):
    """A device's report of a factory reset."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    command_id: Annotated[int, Field(ge=1, le=2**63 - 1)] | None = Field(
        default=None, description="The factory_reset command handled, or null for a reset done on the device."
    )
    status: Literal["completed", "failed", "unsupported"]
    categories_wiped: list[Annotated[str, Field(pattern=_SLUG)]] = Field(default_factory=list, max_length=64)
    reason: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")] | None = None


def _deletion_for(session: Any, serial: str) -> tuple[str | None, int | None]:
    """(receipt SHA-256, audit seq) of the newest deletion that queued a reset of ``serial``."""
    rows = session.execute(
        select(AuditRecord.seq, AuditRecord.data)
        .where(AuditRecord.type == "data.deleted")
        .order_by(AuditRecord.seq.desc())
        .limit(_DELETION_LOOKBACK)
    ).all()
    for seq, data in rows:
        try:
            body = json.loads(data)
        except ValueError:
            continue
        if serial in (body.get("factory_reset_queued") or []):
            digest = body.get("receipt_sha256")
            return (digest if isinstance(digest, str) else None), seq
    return None, None


def _report(service: FleetService, device: DeviceIdentity, report: ResetReport) -> dict[str, Any]:
    if device.record is None:
        raise HTTPException(404, "the device is not in the fleet store")
    declared = sorted(c.name for c in service.context.data.personal if c.on_device)
    now: datetime = service.clock()
    with service.store.transaction() as session:
        command: DeviceCommand | None = None
        if report.command_id is not None:
            command = session.get(DeviceCommand, report.command_id)
            if command is None or command.device_id != device.record.id:
                raise HTTPException(404, f"no command {report.command_id} for this device")
            if command.state in (CommandState.ACKNOWLEDGED.value, CommandState.FAILED.value) and command.result:
                return dict(command.result)
        receipt_sha256, deletion_seq = _deletion_for(session, device.device_id)
        trigger = "service" if command is not None else "local"
        reason = report.reason or ((command.payload or {}).get("reason") if command is not None else None)
        missing = sorted(set(declared) - set(report.categories_wiped))
        data = {
            "serial": device.device_id,
            "command_id": report.command_id,
            "trigger": trigger,
            "reason": reason,
            "status": report.status,
            "categories_wiped": sorted(set(report.categories_wiped)),
            "categories_declared_on_device": declared,
            "categories_missing": missing,
            "deletion_receipt_sha256": receipt_sha256 if trigger == "service" else None,
            "deletion_audit_seq": deletion_seq if trigger == "service" else None,
        }
        evidence = record(
            service, "device.reset", device.device_id, data, f"device:{device.device_id}", session=session
        )
        body = {"v": 1, "type": RESET_RECEIPT_TYPE, **data, "audit_seq": evidence.seq, "time": now.isoformat()}
        handle = service_signing_key(service.keys) if service.keys is not None else None
        signed: dict[str, Any] = {"receipt": body}
        if handle is not None:
            signed["signature"] = base64.b64encode(handle.sign(RESET_RECEIPT_DOMAIN + canonical_json(body))).decode()
            signed["key_id"] = public_key_fingerprint(handle.public_key())
            signed["algorithm"] = "ed25519"
        state = CommandState.ACKNOWLEDGED.value if report.status == "completed" else CommandState.FAILED.value
        answer: dict[str, Any] = {
            "command_id": report.command_id,
            "state": state,
            "audit_seq": evidence.seq,
            "deletion_receipt_sha256": data["deletion_receipt_sha256"],
            "complete": report.status == "completed" and not missing,
            "receipt": signed,
        }
        if command is not None:
            command.state = state
            command.acknowledged_at = now
            command.result = answer
    return answer


_RESPONSES: Final[dict[int | str, dict[str, Any]]] = {
    401: {"description": "No verified device certificate (EN 303 645 provision 5.5-1)."},
    404: {"description": "No such command for this device."},
    503: {"description": "Overloaded: retry after the Retry-After header's seconds."},
}


@router.post("/reports/reset", responses=_RESPONSES)
async def post_reset_report(
    body: ResetReport,
    device: Annotated[DeviceIdentity, Depends(require_device)],
    service: Annotated[FleetService, Depends(get_service)],
) -> dict[str, Any]:
    """Report a factory reset (personal data wiped on the device); answers a signed reset receipt."""
    result: dict[str, Any] = await anyio.to_thread.run_sync(_report, service, device, body)
    return result
