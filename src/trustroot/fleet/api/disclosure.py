"""The public vulnerability disclosure intake (EN 303 645 provision 5.2-1): no certificate, no token.

::

    POST /api/v1/disclosures     {"summary": "...", "details": "...", "affected_versions": ["1.2.0"],
                                  "reporter_contact": "mailto:..."}          (the last two optional)
        201  {"id": "VD-...", "received_at": "...Z", "acknowledge_by": "...Z"}
        413  body larger than FleetLimits.max_disclosure_bytes
        422  malformed report (unknown fields refused)
        429  more than FleetLimits.disclosure_per_ip_per_hour reports from this client address in
             the last hour (Retry-After: seconds until one more is admitted)

The rate limit counts every admitted POST from an address (the malformed ones too) in the store
(:mod:`trustroot.fleet.intake_limit`), so it holds across every worker and server process on one
store. The client address is the TCP peer's (IPv6 counted per /64); forwarding headers are never
trusted. Operators handle reports through :mod:`trustroot.fleet.api.operator_api`.
"""

from __future__ import annotations

from typing import Annotated, Final

import anyio.to_thread
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, ValidationError

from trustroot.fleet import disclosures, intake_limit
from trustroot.fleet.service import FleetService, get_service

__all__ = ["INTAKE_PATH", "IntakeReceipt", "router"]

#: Where reports are posted (public).
INTAKE_PATH: Final = "/api/v1/disclosures"


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
    key = intake_limit.client_key(request.client.host if request.client else None)
    per_hour = service.config.limits.disclosure_per_ip_per_hour
    wait = await anyio.to_thread.run_sync(intake_limit.admit, service.store, key, per_hour, service.clock())
    if wait is not None:
        raise HTTPException(
            429, "too many reports from this address; try again later", headers={"Retry-After": str(wait)}
        )
    body = await _bounded_body(request, service.config.limits.max_disclosure_bytes)
    try:
        report = disclosures.DisclosureReport.model_validate_json(body)
    except ValidationError as exc:
        problems = [
            {"loc": ["body", *error["loc"]], "msg": error["msg"], "type": error["type"]} for error in exc.errors()
        ]
        raise HTTPException(422, problems) from None
    view = await anyio.to_thread.run_sync(disclosures.receive, service, report)
    receipt = IntakeReceipt(
        id=view.id,
        received_at=disclosures.rfc3339(view.received_at) or "",
        acknowledge_by=disclosures.rfc3339(view.acknowledge_due) or "",
        message="Thank you. Keep the id to refer to this report.",
    )
    return JSONResponse(receipt.model_dump(), status_code=201)
