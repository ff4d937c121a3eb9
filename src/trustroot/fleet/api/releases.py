"""Operator routes for releases and rollouts (scope ``release``).

::

    GET  /api/v1/releases[?channel=stable]          published releases, newest first
    GET  /api/v1/rollouts[?channel=&active=true]    rollouts, newest first
    GET  /api/v1/rollouts/{id}                      one rollout: state, stage, counts, failure share
    POST /api/v1/rollouts                           {"release_id": 3, "group": null}: start (supersedes)
    POST /api/v1/rollouts/{id}/pause                {"reason": "..."} (optional)
    POST /api/v1/rollouts/{id}/resume
    POST /api/v1/rollouts/{id}/abort                {"reason": "..."} (optional)
    POST /api/v1/rollouts/{id}/advance              the next stage now

Every state change is recorded as ``rollout.changed`` in the service's audit chain, naming the
operator. Publishing is not a route: it needs the product's keys and is done with
``trustroot release publish`` (recorded as ``release.published`` in the product's evidence log).

Errors: 400 malformed input, 401/403 no or insufficient operator token, 404 no such release or
rollout, 409 an action the rollout's state does not allow.

Operator authentication: :func:`trustroot.fleet.operators.require_operator` (bearer tokens with scopes).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, HTTPException, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from trustroot.errors import StateError, UsageError
from trustroot.fleet import rollouts
from trustroot.fleet.operators import require_operator
from trustroot.fleet.service import FleetService, get_service

__all__ = ["SCOPE", "router"]

#: The operator scope these routes need.
SCOPE: Final = "release"
Operator = Annotated[str, Depends(require_operator(SCOPE))]
Service = Annotated[FleetService, Depends(get_service)]
#: A rollout id as the store can hold it (SQLite and PostgreSQL integers are 64-bit signed).
RolloutId = Annotated[int, Path(ge=1, le=2**63 - 1)]


# --- bodies and errors ------------------------------------------------------------------------------


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StartRollout(_Body):
    release_id: int = Field(ge=1, le=2**63 - 1, description="The release to roll out (see GET /api/v1/releases).")
    group: str | None = Field(
        default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$", description="Only this device group."
    )


class Reason(_Body):
    reason: str | None = Field(default=None, max_length=300, description="Why (kept in the audit record).")


_ERRORS: Final[dict[int | str, dict[str, Any]]] = {
    401: {"description": "No valid operator token."},
    403: {"description": "The token lacks the 'release' scope."},
}
_ONE: Final[dict[int | str, dict[str, Any]]] = {404: {"description": "No such release or rollout."}}
_CHANGE: Final[dict[int | str, dict[str, Any]]] = {
    **_ONE,
    400: {"description": "Malformed input."},
    409: {"description": "The rollout's state does not allow the action."},
}


def _http(error: StateError | UsageError) -> HTTPException:
    if isinstance(error, rollouts.NotFound):
        return HTTPException(404, error.message)
    return HTTPException(409 if isinstance(error, StateError) else 400, error.message)


def _call(function: Callable[[], rollouts.RolloutView]) -> dict[str, Any]:
    try:
        return function().as_dict()
    except (StateError, UsageError) as error:
        raise _http(error) from error


# --- routes ----------------------------------------------------------------------------------------

router = APIRouter(prefix="/api/v1", tags=["releases"], responses=_ERRORS)


@router.get("/releases")
def get_releases(
    service: Service, operator: Operator, channel: Annotated[str | None, Query(max_length=64)] = None
) -> list[dict[str, Any]]:
    """Published releases, newest first."""
    return [view.as_dict() for view in rollouts.list_releases(service, channel=channel)]


@router.get("/rollouts")
def get_rollouts(
    service: Service,
    operator: Operator,
    channel: Annotated[str | None, Query(max_length=64)] = None,
    active: bool = False,
) -> list[dict[str, Any]]:
    """Rollouts, newest first (only active and paused ones with ``active=true``)."""
    return [view.as_dict() for view in rollouts.list_rollouts(service, channel=channel, active_only=active)]


@router.get("/rollouts/{rollout_id}", responses=_ONE)
def get_rollout(rollout_id: RolloutId, service: Service, operator: Operator) -> dict[str, Any]:
    """One rollout."""
    return _call(lambda: rollouts.get_rollout(service, rollout_id))


@router.post("/rollouts", status_code=201, responses=_CHANGE)
def post_rollout(body: StartRollout, service: Service, operator: Operator) -> dict[str, Any]:
    """Start a staged rollout of a release (an active one on the same channel and group is superseded)."""
    return _call(lambda: rollouts.start_rollout(service, body.release_id, actor=operator, group=body.group))


@router.post("/rollouts/{rollout_id}/pause", responses=_CHANGE)
def post_pause(
    rollout_id: RolloutId, service: Service, operator: Operator, body: Reason | None = None
) -> dict[str, Any]:
    """Pause a rollout."""
    reason = body.reason if body is not None else None
    return _call(lambda: rollouts.pause_rollout(service, rollout_id, actor=operator, reason=reason))


@router.post("/rollouts/{rollout_id}/resume", responses=_CHANGE)
def post_resume(rollout_id: RolloutId, service: Service, operator: Operator) -> dict[str, Any]:
    """Resume a paused rollout (its failure window starts again)."""
    return _call(lambda: rollouts.resume_rollout(service, rollout_id, actor=operator))


@router.post("/rollouts/{rollout_id}/abort", responses=_CHANGE)
def post_abort(
    rollout_id: RolloutId, service: Service, operator: Operator, body: Reason | None = None
) -> dict[str, Any]:
    """Abort a rollout for good."""
    reason = body.reason if body is not None else None
    return _call(lambda: rollouts.abort_rollout(service, rollout_id, actor=operator, reason=reason))


@router.post("/rollouts/{rollout_id}/advance", responses=_CHANGE)
def post_advance(rollout_id: RolloutId, service: Service, operator: Operator) -> dict[str, Any]:
    """Start the rollout's next stage now."""
    return _call(lambda: rollouts.advance_rollout(service, rollout_id, actor=operator))
