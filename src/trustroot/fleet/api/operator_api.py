"""Operator routes for vulnerability reports (scope ``disclosure``).

::

    GET  /api/v1/disclosures[?state=received&limit=100&offset=0]     reports, newest first
    GET  /api/v1/disclosures/overdue                                 missed deadlines, earliest first
    GET  /api/v1/disclosures/{id}                                    one report, with its CRA clock
    POST /api/v1/disclosures/{id}/acknowledge
    POST /api/v1/disclosures/{id}/triage           {"severity": "high", "actively_exploited": true}
    POST /api/v1/disclosures/{id}/corrective-measure   {"available_at": "2026-03-04T00:00:00Z"} (optional)
    POST /api/v1/disclosures/{id}/submitted        {"obligation": "early_warning", "sent_at": null}
    POST /api/v1/disclosures/{id}/close            {"resolution": "fixed"}

Every change is recorded as ``disclosure.changed`` in the service's audit chain, naming the operator
(:mod:`trustroot.fleet.disclosures`). The public intake ``POST /api/v1/disclosures`` is in
:mod:`trustroot.fleet.api.disclosure`.

Errors: 401/403 no or insufficient operator token, 404 no such report, 409 a change the report's
state does not allow, 422 malformed input.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, HTTPException, Path, Query
from pydantic import BaseModel, ConfigDict

from trustroot.errors import StateError
from trustroot.fleet import disclosures
from trustroot.fleet.disclosures import DisclosureNotFound, DisclosureView, Obligation, Resolution
from trustroot.fleet.operators import require_operator
from trustroot.fleet.operators_models import DisclosureSeverity, DisclosureState
from trustroot.fleet.service import FleetService, get_service

__all__ = ["SCOPE", "DisclosureOut", "OverdueOut", "router"]

#: The operator scope these routes need.
SCOPE: Final = "disclosure"

Operator = Annotated[str, Depends(require_operator(SCOPE))]
Service = Annotated[FleetService, Depends(get_service)]
ReportId = Annotated[str, Path(pattern=r"^VD-[0-9A-F]{16}$", description="The report's tracking id.")]


#: The response model of every disclosure route: the domain view itself (FastAPI reads dataclasses).
DisclosureOut = DisclosureView


class OverdueOut(BaseModel):
    """One missed deadline."""

    model_config = ConfigDict(frozen=True)

    id: str
    obligation: Obligation
    due: datetime


class TriageIn(BaseModel):
    """Triage of a report."""

    model_config = ConfigDict(extra="forbid")

    severity: DisclosureSeverity
    actively_exploited: bool = False


class CorrectiveIn(BaseModel):
    """When a corrective or mitigating measure became available (default: now)."""

    model_config = ConfigDict(extra="forbid")

    available_at: datetime | None = None


class SubmittedIn(BaseModel):
    """A CRA Art. 14 submission that was sent."""

    model_config = ConfigDict(extra="forbid")

    obligation: Obligation
    sent_at: datetime | None = None


class CloseIn(BaseModel):
    """How a report was closed."""

    model_config = ConfigDict(extra="forbid")

    resolution: Resolution


_ERRORS: Final[dict[int | str, dict[str, Any]]] = {
    401: {"description": "No valid operator token."},
    403: {"description": f"The token lacks the {SCOPE!r} scope."},
}

_NOT_FOUND: Final[dict[int | str, dict[str, Any]]] = {404: {"description": "No report has this id."}}
_CHANGE: Final[dict[int | str, dict[str, Any]]] = {
    **_NOT_FOUND,
    409: {"description": "The report's state does not allow this change."},
}

router = APIRouter(prefix="/api/v1/disclosures", tags=["disclosure"], responses=_ERRORS)


def _refused(exc: StateError) -> HTTPException:
    if isinstance(exc, DisclosureNotFound):
        return HTTPException(404, exc.message)
    return HTTPException(409, exc.message)


def _aware(moment: datetime | None, name: str) -> None:
    if moment is not None and moment.tzinfo is None:
        raise HTTPException(422, f"{name} must name its time zone (RFC 3339, e.g. ...Z)")


@router.get("")
def get_disclosures(
    service: Service,
    operator: Operator,
    state: Annotated[DisclosureState | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=2**31)] = 0,
) -> list[DisclosureOut]:
    """Reports, newest first."""
    del operator
    return list(disclosures.list_disclosures(service, state=state, limit=limit, offset=offset))


@router.get("/overdue")
def get_overdue(service: Service, operator: Operator) -> list[OverdueOut]:
    """Missed deadlines: acknowledgement, and the CRA Art. 14 early warning, notification and final report."""
    del operator
    return [OverdueOut(id=i.id, obligation=i.obligation, due=i.due) for i in disclosures.overdue(service)]


@router.get("/{disclosure_id}", responses=_NOT_FOUND)
def get_disclosure(disclosure_id: ReportId, service: Service, operator: Operator) -> DisclosureOut:
    """One report."""
    del operator
    try:
        return disclosures.get_disclosure(service, disclosure_id)
    except StateError as exc:
        raise _refused(exc) from exc


@router.post("/{disclosure_id}/acknowledge", responses=_CHANGE)
def post_acknowledge(disclosure_id: ReportId, service: Service, operator: Operator) -> DisclosureOut:
    """Acknowledge a report."""
    try:
        return disclosures.acknowledge(service, disclosure_id, actor=operator)
    except StateError as exc:
        raise _refused(exc) from exc


@router.post("/{disclosure_id}/triage", responses=_CHANGE)
def post_triage(disclosure_id: ReportId, body: TriageIn, service: Service, operator: Operator) -> DisclosureOut:
    """Set severity and the actively exploited flag (starts the CRA Art. 14 clock)."""
    try:
        view = disclosures.triage(
            service, disclosure_id, severity=body.severity, actively_exploited=body.actively_exploited, actor=operator
        )
    except StateError as exc:
        raise _refused(exc) from exc
    return view


@router.post("/{disclosure_id}/corrective-measure", responses=_CHANGE)
def post_corrective_measure(
    disclosure_id: ReportId, body: CorrectiveIn, service: Service, operator: Operator
) -> DisclosureOut:
    """Record when a corrective or mitigating measure became available (sets the final report's due time)."""
    _aware(body.available_at, "available_at")
    try:
        view = disclosures.record_corrective_measure(
            service, disclosure_id, available_at=body.available_at, actor=operator
        )
    except StateError as exc:
        raise _refused(exc) from exc
    return view


@router.post("/{disclosure_id}/submitted", responses=_CHANGE)
def post_submitted(disclosure_id: ReportId, body: SubmittedIn, service: Service, operator: Operator) -> DisclosureOut:
    """Record that a CRA Art. 14 early warning, notification or final report was sent."""
    _aware(body.sent_at, "sent_at")
    if body.obligation is Obligation.ACKNOWLEDGE:
        raise HTTPException(422, "use POST .../acknowledge to acknowledge a report")
    try:
        view = disclosures.record_submission(
            service, disclosure_id, body.obligation, sent_at=body.sent_at, actor=operator
        )
    except StateError as exc:
        raise _refused(exc) from exc
    return view


@router.post("/{disclosure_id}/close", responses=_CHANGE)
def post_close(disclosure_id: ReportId, body: CloseIn, service: Service, operator: Operator) -> DisclosureOut:
    """Close a report with a resolution (final)."""
    try:
        return disclosures.close(service, disclosure_id, body.resolution, actor=operator)
    except StateError as exc:
        raise _refused(exc) from exc
