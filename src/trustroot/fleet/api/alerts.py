"""Operator routes for monitoring alerts.

::

    GET  /api/v1/alerts?since=2026-11-22T10:00:00Z&device=SERIAL&limit=100     scope read, newest first
        {"alerts": [{"id", "device", "kind", "severity", "time", "score", "rule", "evidence": {...},
                     "acknowledged", "raised_at", "message", "acknowledged_at", "acknowledged_by"}]}
    POST /api/v1/alerts/{id}/acknowledge                                           scope device-admin

``time`` is when the telemetry behind the alert was observed (the device's clock), ``raised_at`` when
the service raised it; ``since`` filters on ``raised_at``. ``device`` is null for fleet-wide alerts.
Errors: 401/403 no or insufficient operator token, 404 no such alert, 422 malformed input.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Final

import anyio.to_thread
from fastapi import APIRouter, Depends, HTTPException, Path, Query
from fastapi.responses import JSONResponse

from trustroot.fleet import alerts
from trustroot.fleet.operators import require_operator
from trustroot.fleet.service import FleetService, get_service

__all__ = ["router"]

_ERRORS: Final[dict[int | str, dict[str, Any]]] = {
    401: {"description": "No valid operator token."},
    403: {"description": "The token lacks the route's scope."},
}
_ALERT_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "required": ["id", "device", "kind", "severity", "time", "score", "rule", "evidence", "acknowledged"],
    "properties": {
        "id": {"type": "integer"},
        "device": {"type": ["string", "null"]},
        "kind": {"type": "string"},
        "severity": {"type": "string", "enum": ["info", "warning", "critical"]},
        "time": {"type": "string", "format": "date-time"},
        "raised_at": {"type": "string", "format": "date-time"},
        "score": {"type": ["number", "null"]},
        "rule": {"type": ["string", "null"]},
        "message": {"type": "string"},
        "evidence": {"type": "object"},
        "acknowledged": {"type": "boolean"},
        "acknowledged_at": {"type": ["string", "null"], "format": "date-time"},
        "acknowledged_by": {"type": ["string", "null"]},
    },
}

router = APIRouter(prefix="/api/v1/alerts", tags=["monitoring"], responses=_ERRORS)
Service = Annotated[FleetService, Depends(get_service)]


@router.get(
    "",
    responses={
        200: {
            "description": "Alerts, newest first.",
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": ["alerts"],
                        "properties": {"alerts": {"type": "array", "items": _ALERT_SCHEMA}},
                    }
                }
            },
        }
    },
)
async def get_alerts(
    service: Service,
    _operator: Annotated[str, Depends(require_operator("read"))],
    since: Annotated[datetime | None, Query(description="Only alerts raised at or after (RFC 3339).")] = None,
    device: Annotated[
        str | None, Query(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._-]+$", description="Device serial.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=alerts.MAX_ALERTS_PAGE)] = 100,
) -> JSONResponse:
    """Monitoring alerts with their evidence."""
    if since is not None and since.tzinfo is None:
        raise HTTPException(422, "since must name its time zone (RFC 3339, e.g. ...Z)")
    found = await anyio.to_thread.run_sync(lambda: alerts.list_alerts(service, since=since, device=device, limit=limit))
    return JSONResponse({"alerts": [view.to_json() for view in found]})


@router.post(
    "/{alert_id}/acknowledge",
    responses={
        200: {"description": "The alert, acknowledged.", "content": {"application/json": {"schema": _ALERT_SCHEMA}}},
        404: {"description": "No such alert."},
    },
)
async def post_acknowledge(
    service: Service,
    operator: Annotated[str, Depends(require_operator("device-admin"))],
    alert_id: Annotated[int, Path(ge=1, le=2**62, description="The alert's id.")],
) -> JSONResponse:
    """Acknowledge an alert (the first acknowledgement and its operator are kept)."""
    try:
        view = await anyio.to_thread.run_sync(alerts.acknowledge, service, alert_id, operator)
    except alerts.AlertNotFound as exc:
        raise HTTPException(404, exc.message) from None
    return JSONResponse(view.to_json())
