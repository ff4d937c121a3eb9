"""Operator routes listing the fleet's registered devices (scope ``devices``).

::

    GET /api/v1/devices[?status=active&batch=&group=&channel=&limit=100&offset=0]
                                       {"total": N, "devices": [...]} ordered by serial
    GET /api/v1/devices/{serial}       one device

Devices are registered only by importing a closed batch's signed manifest
(``trustroot fleet import-batch``), never through the API. The answers carry no personal data:
serial, status, batch, certificate fingerprint, what the device last reported.

Errors: 401/403 no or insufficient operator token, 404 no such device, 422 malformed query.

Operator authentication is :func:`trustroot.fleet.auth.require_operator` (bearer tokens with scopes)
when that exists; until then every request is refused with 401 (deny by default). Tests override the
dependency :data:`require_devices_operator`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, HTTPException, Path, Query
from pydantic import BaseModel, ConfigDict

from trustroot.fleet.devices import MAX_PAGE, DeviceUnknown, count_devices, get_device, list_devices
from trustroot.fleet.operators import require_operator
from trustroot.fleet.service import FleetService, get_service
from trustroot.fleet.store.models import Device, DeviceStatus

__all__ = ["SCOPE", "DeviceList", "DeviceView", "require_devices_operator", "router"]

#: The operator scope these routes need.
SCOPE: Final = "read"
_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"


#: The dependency that authenticates the operator (``app.dependency_overrides`` key in tests).
require_devices_operator: Final = require_operator(SCOPE)

Operator = Annotated[str, Depends(require_devices_operator)]
Service = Annotated[FleetService, Depends(get_service)]


class DeviceView(BaseModel):
    """A registered device as operators see it."""

    model_config = ConfigDict(frozen=True)

    serial: str
    status: DeviceStatus
    batch: str
    factory: str
    model: str | None
    certificate_fingerprint: str
    group: str
    channel: str
    registered_at: datetime
    revoked_at: datetime | None
    last_checkin_at: datetime | None
    reported_version: str | None
    security_counter: int | None
    health: dict[str, Any] | None

    @classmethod
    def of(cls, device: Device) -> DeviceView:
        return cls(
            serial=device.serial,
            status=DeviceStatus(device.status),
            batch=device.batch_id,
            factory=device.factory,
            model=device.model,
            certificate_fingerprint=device.certificate_fingerprint,
            group=device.group_name,
            channel=device.channel,
            registered_at=device.registered_at,
            revoked_at=device.revoked_at,
            last_checkin_at=device.last_checkin_at,
            reported_version=device.reported_version,
            security_counter=device.security_counter,
            health=device.health,
        )


class DeviceList(BaseModel):
    """One page of devices and how many match in all."""

    model_config = ConfigDict(frozen=True)

    total: int
    devices: list[DeviceView]


_ERRORS: Final[dict[int | str, dict[str, Any]]] = {
    401: {"description": "No valid operator token."},
    403: {"description": f"The token lacks the {SCOPE!r} scope."},
}

router = APIRouter(prefix="/api/v1", tags=["devices"], responses=_ERRORS)


@router.get("/devices")
def get_devices(
    service: Service,
    operator: Operator,
    *,
    status: DeviceStatus | None = None,
    batch: Annotated[str | None, Query(pattern=_NAME)] = None,
    group: Annotated[str | None, Query(pattern=_NAME)] = None,
    channel: Annotated[str | None, Query(pattern=_NAME)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    offset: Annotated[int, Query(ge=0, le=2**31)] = 0,
) -> DeviceList:
    """Registered devices matching every filter given, ordered by serial."""
    found = list_devices(service, status=status, batch=batch, group=group, channel=channel, limit=limit, offset=offset)
    total = count_devices(service, status=status, batch=batch, group=group, channel=channel)
    return DeviceList(total=total, devices=[DeviceView.of(device) for device in found])


@router.get("/devices/{serial}", responses={404: {"description": "No such device."}})
def get_one_device(service: Service, operator: Operator, serial: Annotated[str, Path(pattern=_NAME)]) -> DeviceView:
    """One registered device."""
    try:
        return DeviceView.of(get_device(service, serial))
    except DeviceUnknown as error:
        raise HTTPException(404, error.message) from error
