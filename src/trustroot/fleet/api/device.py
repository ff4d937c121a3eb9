"""Device routes: ``/api/v1/device/*``, reached only with a verified device certificate.

``POST /api/v1/device/check-in`` (:mod:`trustroot.fleet.checkin`): the device reports version,
security counter, install results and health; the answer holds the next check-in time, an update
offer, queued commands and the support period (with the end-of-life notice after it).

Authentication is :func:`trustroot.fleet.auth.require_device` on the whole router, behind the
:class:`~trustroot.fleet.auth.DeviceAuthMiddleware` that guards the prefix.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from trustroot.fleet.auth import (
    DEVICE_PATH_PREFIX,
    PROVISION,
    DeviceAuthError,
    DeviceIdentity,
    refusal_response,
    require_device,
)
from trustroot.fleet.checkin import CheckinRequest, CheckinResponse, check_in_async, checkin_rng
from trustroot.fleet.service import FleetService, get_service

__all__ = ["router"]

_REFUSED: dict[int | str, dict[str, Any]] = {
    401: {"description": f"No verified device certificate (EN 303 645 provision {PROVISION})."},
    503: {"description": "Overloaded: retry after the Retry-After header's seconds."},
}

router = APIRouter(prefix=DEVICE_PATH_PREFIX, tags=["device"], dependencies=[Depends(require_device)])


@router.post("/check-in", response_model=CheckinResponse, responses=_REFUSED)
async def post_check_in(
    body: CheckinRequest,
    device: Annotated[DeviceIdentity, Depends(require_device)],
    request: Request,
) -> Response:
    """Check in: report state, receive the next check-in time, an update offer and commands."""
    service: FleetService = get_service(request)  # called, not a dependency: no thread hop
    try:
        answer = await check_in_async(service, device, body, now=service.clock(), rng=checkin_rng(service))
    except DeviceAuthError as error:  # revoked or removed in the store since the connection's first request
        return refusal_response(error, path="/api/v1/device/check-in")
    # the answer is a CheckinResponse already: serialised once, not validated again by FastAPI
    return Response(answer.model_dump_json(), media_type="application/json")
