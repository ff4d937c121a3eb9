"""The public vulnerability disclosure intake (EN 303 645 provision 5.2-1): no certificate, no token.

::

    POST /api/v1/disclosures     {"summary": "...", "details": "...", "affected_versions": ["1.2.0"],
                                  "reporter_contact": "mailto:..."}          (the last two optional)
        201  {"id": "VD-...", "received_at": "...Z", "acknowledge_by": "...Z"}
        413  body larger than FleetLimits.max_disclosure_bytes
        422  malformed report (unknown fields refused)
        429  more than FleetLimits.disclosure_per_ip_per_hour reports from this client address in
             the last hour (Retry-After: seconds until one more is admitted)

The rate limit counts every POST from an address (the malformed ones too), is kept in memory per
serving process, and is bounded: at most :data:`MAX_TRACKED_CLIENTS` addresses (IPv6 counted per
/64), the least recently seen forgotten first. The client address is the TCP peer's; forwarding
headers are never trusted. Operators handle reports through :mod:`trustroot.fleet.api.operator_api`.
"""

from __future__ import annotations

import ipaddress
import math
import threading
from collections import OrderedDict, deque
from datetime import datetime, timedelta
from typing import Annotated, Final

import anyio.to_thread
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, ValidationError

from trustroot.fleet import disclosures
from trustroot.fleet.service import FleetService, get_service

__all__ = ["INTAKE_PATH", "MAX_TRACKED_CLIENTS", "IntakeLimiter", "IntakeReceipt", "router"]

#: Where reports are posted (public).
INTAKE_PATH: Final = "/api/v1/disclosures"
#: How many client addresses the rate limiter remembers at most.
MAX_TRACKED_CLIENTS: Final = 4096
_WINDOW: Final = timedelta(hours=1)
_PART: Final = "disclosure_intake_limiter"


class IntakeLimiter:
    """At most ``per_window`` admissions per client key in any ``window``; bounded memory, thread-safe."""

    def __init__(self, per_window: int, *, window: timedelta = _WINDOW, max_clients: int = MAX_TRACKED_CLIENTS):
        self.per_window = per_window
        self.window = window
        self.max_clients = max_clients
        self._seen: OrderedDict[str, deque[datetime]] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def key(host: str | None) -> str:
        """The rate limit key of a client address (IPv6 by /64: one host usually holds a whole /64)."""
        if not host:
            return "unknown"
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return host[:64]
        if isinstance(address, ipaddress.IPv6Address):
            if address.ipv4_mapped is not None:
                return str(address.ipv4_mapped)
            return str(ipaddress.IPv6Network((address, 64), strict=False))
        return str(address)

    def admit(self, key: str, now: datetime) -> int | None:
        """Admit one request of ``key`` at ``now``: None if admitted, else the seconds to wait."""
        with self._lock:
            times = self._seen.pop(key, None) or deque(maxlen=max(1, self.per_window))
            while times and now - times[0] >= self.window:
                times.popleft()
            self._seen[key] = times  # most recently seen last
            if len(times) >= self.per_window:
                wait = (times[0] + self.window - now).total_seconds()
                return max(1, math.ceil(wait))
            times.append(now)
            while len(self._seen) > self.max_clients:
                self._seen.popitem(last=False)
            return None

    def tracked(self) -> int:
        """How many client keys are remembered."""
        with self._lock:
            return len(self._seen)


def _limiter(service: FleetService) -> IntakeLimiter:
    found = service.parts.get(_PART)
    if not isinstance(found, IntakeLimiter):
        found = service.parts.setdefault(_PART, IntakeLimiter(service.config.limits.disclosure_per_ip_per_hour))
    assert isinstance(found, IntakeLimiter)  # noqa: S101 - set just above
    return found


class IntakeReceipt(BaseModel):
    """What the reporter gets back."""

    model_config = ConfigDict(frozen=True)

    id: str
    received_at: str
    acknowledge_by: str
    message: str


router = APIRouter(tags=["disclosure"])


async def _bounded_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"a report may have at most {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise HTTPException(413, f"a report may have at most {limit} bytes")
    return bytes(body)


@router.post(
    INTAKE_PATH,
    status_code=201,
    response_model=IntakeReceipt,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": disclosures.DisclosureReport.model_json_schema()}},
        }
    },
    responses={
        413: {"description": "The report is too large."},
        422: {"description": "The report is malformed."},
        429: {"description": "Too many reports from this address; see Retry-After."},
    },
)
async def post_disclosure(request: Request, service: Annotated[FleetService, Depends(get_service)]) -> JSONResponse:
    """Report a vulnerability (no account needed); answers a tracking id and the acknowledgement deadline."""
    wait = _limiter(service).admit(IntakeLimiter.key(request.client.host if request.client else None), service.clock())
    if wait is not None:
        raise HTTPException(
            429, "too many reports from this address; try again later", headers={"Retry-After": str(wait)}
        )
    body = await _bounded_body(request, service.config.limits.max_disclosure_bytes)
    try:
        report = disclosures.DisclosureReport.model_validate_json(body)
    except ValidationError as exc:
        problems = [{"loc": list(error["loc"]), "msg": error["msg"], "type": error["type"]} for error in exc.errors()]
        raise HTTPException(422, problems) from None
    view = await anyio.to_thread.run_sync(disclosures.receive, service, report)
    receipt = IntakeReceipt(
        id=view.id,
        received_at=disclosures.rfc3339(view.received_at) or "",
        acknowledge_by=disclosures.rfc3339(view.acknowledge_due) or "",
        message="Thank you. Keep the id to refer to this report.",
    )
    return JSONResponse(receipt.model_dump(), status_code=201)
