"""Device telemetry over HTTPS: ``POST /api/v1/device/telemetry`` (mutual TLS; the device is its certificate).

::

    POST /api/v1/device/telemetry     {"points": [{...}, ...]}      (trustroot.monitor.points: 1-1000 points)
        202  {"accepted": N, "duplicates": M}    points already stored under the same (device, seq) are
                                                 dropped and counted as duplicates
        401  no verified device certificate (5.5-1)
        413  body larger than FleetLimits.max_request_bytes
        422  a malformed point (names the point, the field and provision 5.13-1)

The device comes from :func:`trustroot.fleet.auth.require_device` (never from the body); its address
(the TCP peer) goes to the detectors, which notice one identity streaming from several hosts.
"""

from __future__ import annotations

from typing import Annotated, Any, Final

import anyio.to_thread
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse

from trustroot.fleet.auth import DEVICE_PATH_PREFIX, PROVISION, DeviceIdentity, require_device
from trustroot.fleet.service import FleetService, get_service
from trustroot.fleet.telemetry import DeviceBatch, telemetry_ingest
from trustroot.monitor.points import TelemetryError
from trustroot.monitor.wire import batch_json_schema, parse_batch_json

__all__ = ["TELEMETRY_PATH", "router"]

#: Where devices post telemetry batches.
TELEMETRY_PATH: Final = "/telemetry"

_RESPONSES: dict[int | str, dict[str, Any]] = {
    202: {
        "description": "Stored (new points) and dropped (duplicates).",
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["accepted", "duplicates"],
                    "properties": {
                        "accepted": {"type": "integer", "minimum": 0},
                        "duplicates": {"type": "integer", "minimum": 0},
                    },
                }
            }
        },
    },
    401: {"description": f"No verified device certificate (EN 303 645 provision {PROVISION})."},
    413: {"description": "The batch is too large."},
    422: {"description": "A malformed point (EN 303 645 provision 5.13-1)."},
    503: {"description": "Overloaded: retry after the Retry-After header's seconds."},
}

router = APIRouter(prefix=DEVICE_PATH_PREFIX, tags=["device"], dependencies=[Depends(require_device)])


async def _body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"a telemetry batch may have at most {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise HTTPException(413, f"a telemetry batch may have at most {limit} bytes")
    return bytes(body)


def _ingest(service: FleetService, device: DeviceIdentity, body: bytes, source: str | None) -> dict[str, int]:
    points = parse_batch_json(body)
    if device.record is None:  # pragma: no cover - require_device always sets it
        raise HTTPException(401, "device record missing")
    batch = DeviceBatch(device_id=device.record.id, serial=device.device_id, points=points, source=source)
    result = telemetry_ingest(service).ingest([batch], channels={device.device_id: device.record.channel})[0]
    return {"accepted": result.accepted, "duplicates": result.duplicates}


@router.post(
    TELEMETRY_PATH,
    status_code=202,
    responses=_RESPONSES,
    openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": batch_json_schema()}}}},
)
async def post_telemetry(
    request: Request,
    device: Annotated[DeviceIdentity, Depends(require_device)],
    service: Annotated[FleetService, Depends(get_service)],
) -> JSONResponse:
    """Send a batch of telemetry points (security metrics of the device); answers what was stored."""
    body = await _body(request, service.config.limits.max_request_bytes)
    source = request.client.host if request.client else None
    try:
        answer = await anyio.to_thread.run_sync(_ingest, service, device, body, source)
    except TelemetryError as exc:
        raise HTTPException(422, {"message": exc.message, "provision": exc.provision}) from None
    return JSONResponse(answer, status_code=202)
