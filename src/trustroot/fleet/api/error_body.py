"""The one error body of the fleet API, the handlers that answer with it, and its place in the OpenAPI document.

Every error answer of the service, whoever makes it, has this JSON body (:class:`ErrorBody`)::

    {"error": "not_found", "message": "no vulnerability report 'VD-...'",
     "provision": null, "retry_after_s": null, "problems": null}

    error          a stable machine-readable code (:data:`ERROR_CODES` by status, or the middleware's own:
                   ``device_authentication_failed``, ``overloaded``, ``request_too_large``, ``request_timeout``)
    message        one sentence for a person
    provision      the EN 303 645 provision at stake, if any (``5.5-1`` for a refused device certificate)
    retry_after_s  with 429 and 503: the seconds of the Retry-After header
    problems       with 422 from input validation: each field's location, message and type

Who answers errors::

    LoadShedMiddleware      503 overloaded                              (trustroot.fleet.loadshed)
    BodyLimitMiddleware     413 request_too_large, 408 request_timeout  (trustroot.fleet.loadshed)
    DeviceAuthMiddleware    401 device_authentication_failed            (trustroot.fleet.auth)
    install_error_handlers  HTTPException, request validation (422), a body that does not parse (422),
                            anything unexpected (500 without a trace)

:func:`document_errors` declares, on every route of the application, each status it can answer with
:class:`ErrorBody` as its schema: what a route declares itself (404, 409, 429, ...) plus what the
middleware and its dependencies add (503, 413 and 408 everywhere; 422 where there is input;
401/403 behind an operator token, 401 behind an owner key or a device certificate).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any, Final

from fastapi import FastAPI, Request
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

__all__ = [
    "ERROR_CODES",
    "INFRASTRUCTURE_STATUSES",
    "ErrorBody",
    "Problem",
    "document_errors",
    "error_response",
    "install_error_handlers",
]

_log = logging.getLogger(__name__)

#: The ``error`` code of an answer made from an HTTP status.
ERROR_CODES: Final[dict[int, str]] = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    409: "conflict",
    413: "request_too_large",
    422: "invalid_request",
    429: "rate_limited",
    500: "internal_error",
    503: "overloaded",
}
#: Statuses the service's middleware can answer on every route (load shedding; the request body's bound and deadline).
INFRASTRUCTURE_STATUSES: Final = (408, 413, 503)
#: FastAPI's text when a body cannot be decoded at all (e.g. not UTF-8): answered 422 like any malformed input.
_UNPARSEABLE: Final = "There was an error parsing the body"
_DESCRIPTIONS: Final[dict[int, str]] = {
    400: "Malformed input.",
    401: "No valid credentials.",
    403: "The credentials do not allow this.",
    404: "Not found.",
    408: "The request body did not arrive in time.",
    409: "The resource's state does not allow this.",
    413: "The request body is too large.",
    422: "The input is malformed.",
    429: "Too many requests; see Retry-After.",
    503: "Overloaded; retry after the Retry-After header's seconds.",
}
_MAX_PROBLEMS: Final = 50
_REF: Final = "#/components/schemas/"


class Problem(BaseModel):
    """One malformed input field."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    loc: list[str | int] = Field(description="Where: 'body', 'query', 'path' or 'header', then the field path.")
    msg: str
    type: str


class ErrorBody(BaseModel):
    """The body of every error answer of the service."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    error: str = Field(description="A stable machine-readable code, e.g. not_found, invalid_request, overloaded.")
    message: str = Field(description="What was refused and why, in one sentence.")
    provision: str | None = Field(default=None, description="The EN 303 645 provision at stake, e.g. 5.5-1.")
    retry_after_s: int | None = Field(default=None, description="With 429 and 503: seconds to wait.")
    problems: list[Problem] | None = Field(default=None, description="With 422: each malformed field.")


def error_response(
    status: int,
    message: str,
    *,
    error: str | None = None,
    provision: str | None = None,
    problems: list[Problem] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """An answer with :class:`ErrorBody` (``retry_after_s`` taken from a Retry-After header)."""
    retry = (headers or {}).get("Retry-After") or (headers or {}).get("retry-after")
    body = ErrorBody(
        error=error or ERROR_CODES.get(status, "error"),
        message=message,
        provision=provision,
        retry_after_s=int(retry) if retry is not None and retry.isdigit() else None,
        problems=problems,
    )
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


def _problems(errors: Any) -> list[Problem]:
    found: list[Problem] = []
    for error in list(errors)[:_MAX_PROBLEMS]:
        if not isinstance(error, dict):
            continue
        loc = [part if isinstance(part, int) else str(part) for part in error.get("loc", ())]
        found.append(Problem(loc=loc, msg=str(error.get("msg", "invalid")), type=str(error.get("type", "invalid"))))
    return found


async def _http_exception(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)  # noqa: S101 - registered for this type only
    detail: Any = exc.detail
    headers = dict(exc.headers) if exc.headers else None
    status = exc.status_code
    if status == 400 and detail == _UNPARSEABLE:
        return error_response(422, "the request body cannot be decoded (UTF-8 JSON expected)")
    if isinstance(detail, dict):
        return error_response(
            status,
            str(detail.get("message", ERROR_CODES.get(status, "error"))),
            error=str(detail["error"]) if "error" in detail else None,
            provision=str(detail["provision"]) if detail.get("provision") else None,
            headers=headers,
        )
    if isinstance(detail, list):
        return error_response(status, "the request is malformed", problems=_problems(detail), headers=headers)
    return error_response(status, str(detail), headers=headers)


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)  # noqa: S101 - registered for this type only
    problems = _problems(exc.errors())
    where = ", ".join(".".join(str(part) for part in problem.loc) for problem in problems[:3])
    return error_response(422, f"the request is malformed ({where or 'input'})", problems=problems)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    _log.error("unexpected error answering %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "the request could not be completed")


def install_error_handlers(app: FastAPI) -> None:
    """Make every error the application answers itself an :class:`ErrorBody` (never a stack trace)."""
    app.add_exception_handler(StarletteHTTPException, _http_exception)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected)


def _dependencies(dependant: Dependant) -> Iterator[Any]:
    for sub in dependant.dependencies:
        yield sub.call
        yield from _dependencies(sub)


def _has_input(dependant: Dependant) -> bool:
    if dependant.path_params or dependant.query_params or dependant.header_params or dependant.cookie_params:
        return True
    if dependant.body_params:
        return True
    return any(_has_input(sub) for sub in dependant.dependencies)


def _credential_statuses(dependant: Dependant) -> set[int]:
    from trustroot.fleet.api.owner import require_owner
    from trustroot.fleet.auth import require_device
    from trustroot.fleet.operators import OperatorDependency

    statuses: set[int] = set()
    for call in _dependencies(dependant):
        if isinstance(call, OperatorDependency):
            statuses |= {401, 403}
        elif call is require_device or call is require_owner:
            statuses.add(401)
    return statuses


def _statuses(route: Any) -> set[int]:
    """What the middleware and the route's dependencies can answer (the route declares its own besides)."""
    statuses = set(INFRASTRUCTURE_STATUSES) | _credential_statuses(route.dependant)
    if _has_input(route.dependant) or getattr(route, "body_field", None) is not None or route.openapi_extra:
        statuses.add(422)
    return statuses


def _schemas() -> dict[str, Any]:
    schema = ErrorBody.model_json_schema(ref_template=_REF + "{model}", mode="serialization")
    found: dict[str, Any] = schema.pop("$defs", {})
    found["ErrorBody"] = schema
    return found


def _patch(app: FastAPI, document: dict[str, Any]) -> None:
    from fastapi.routing import APIRoute, iter_route_contexts

    paths = document.get("paths", {})
    for context in iter_route_contexts(app.routes):
        if not isinstance(context.original_route, APIRoute) or not context.include_in_schema:
            continue
        item = paths.get(context.path_format, {})
        for method in sorted(context.methods or ()):
            operation = item.get(method.lower())
            if operation is None:
                continue  # e.g. HEAD, kept out of the document
            responses = operation.setdefault("responses", {})
            for status in _statuses(context):
                responses.setdefault(str(status), {})
            for key, entry in responses.items():
                if not key.isdigit() or int(key) < 400:
                    continue
                if entry.get("description") in (None, "", "Validation Error"):
                    entry["description"] = _DESCRIPTIONS.get(int(key), "Error.")
                entry["content"] = {"application/json": {"schema": {"$ref": f"{_REF}ErrorBody"}}}
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    schemas.update(_schemas())
    text = json.dumps(paths)
    for unused in ("HTTPValidationError", "ValidationError"):
        if f"{_REF}{unused}" not in text and unused in schemas:
            del schemas[unused]
    if f"{_REF}ValidationError" not in json.dumps(schemas):
        schemas.pop("ValidationError", None)


def document_errors(app: FastAPI) -> None:
    """Declare in the OpenAPI document, on every operation, each error status it can answer with :class:`ErrorBody`.

    The statuses are what the route declares itself (``responses=``: 404, 409, 429, ...) and what the
    middleware and the route's dependencies add (:func:`_statuses`); FastAPI's default 422
    (``HTTPValidationError``) is replaced, as the handlers answer :class:`ErrorBody` instead.
    """
    make = app.openapi

    def openapi() -> dict[str, Any]:
        fresh = app.openapi_schema is None
        document = make()
        if fresh:
            _patch(app, document)
        return document

    app.openapi = openapi  # type: ignore[method-assign]
