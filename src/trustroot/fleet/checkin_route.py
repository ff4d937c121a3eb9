"""The check-in route's fast lane: a well-formed check-in answered without FastAPI's routing machinery.

Measured (docs/benchmarks.md): with the device verdict kept per connection and the report written
by group commit, FastAPI's routing, dependency solving and exception layers were about two thirds
of the event loop's time per check-in. :class:`CheckinFastLane` sits behind
:class:`~trustroot.fleet.auth.DeviceAuthMiddleware` and takes only what it can answer exactly as
the FastAPI route (:mod:`trustroot.fleet.api.device`) would::

    POST /api/v1/device/check-in, authenticated by the middleware (the device in the scope state),
    Content-Type application/json, a body that validates as CheckinRequest (strict)
        -> trustroot.fleet.checkin.check_in_async, answered 200 with the CheckinResponse JSON,
           or 401 naming 5.5-1 when the device was revoked or removed in the store meanwhile

Everything else, a malformed body included, goes on to the application unchanged (its body
replayed), so validation errors (422), the OpenAPI document and every other route stay FastAPI's;
before a malformed report goes on, the device's registration is checked afresh in the store (the
middleware may have answered from the connection's verdict), so a device revoked in the store gets
401, never a 422 about its report.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Final

import anyio.to_thread
from pydantic import ValidationError

from trustroot.fleet.auth import (
    DeviceAuthError,
    authenticate_request,
    authenticated_device,
    refusal_body,
    refusal_headers,
    refusal_logged,
)
from trustroot.fleet.checkin import CheckinRequest, check_in_async, checkin_rng
from trustroot.fleet.service import FleetService

__all__ = ["CHECKIN_PATH", "CheckinFastLane"]

#: The route the fast lane serves.
CHECKIN_PATH: Final = "/api/v1/device/check-in"
_MAX_BODY = 1 << 20  # the BodyLimitMiddleware in front bounds it already; a second guard

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
AsgiApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def _json_content(scope: Scope) -> bool:
    for name, value in scope.get("headers") or ():
        if name == b"content-type":
            media = value.split(b";", 1)[0].strip().lower()
            return bool(media == b"application/json")
    return False


class CheckinFastLane:
    """ASGI middleware: answers a well-formed, authenticated check-in itself (module docstring)."""

    def __init__(self, app: AsgiApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["path"] != CHECKIN_PATH
            or scope.get("method") != "POST"
            or not _json_content(scope)
        ):
            await self.app(scope, receive, send)
            return
        device = authenticated_device(scope)
        if device is None:  # not through the middleware: FastAPI's route authenticates itself
            await self.app(scope, receive, send)
            return
        body, complete = await _read(receive)
        report = None
        if complete:
            try:
                report = CheckinRequest.model_validate_json(body)
            except ValidationError:
                report = None
        service: FleetService = scope["app"].state.fleet
        if report is None:
            # the middleware answered from the connection's verdict: a device revoked in the store since
            # then is refused (401) before it learns anything about its malformed report
            try:
                await anyio.to_thread.run_sync(authenticate_request, service, scope)
            except DeviceAuthError as error:
                refusal_logged(error, CHECKIN_PATH)
                await _send(send, 401, json.dumps(refusal_body(error)).encode("utf-8"), refusal_headers())
                return
            # FastAPI answers it (422 with its usual body), from the body read here
            await self.app(scope, _replay(body, receive, complete), send)
            return
        try:
            answer = await check_in_async(service, device, report, now=service.clock(), rng=checkin_rng(service))
        except DeviceAuthError as error:
            refusal_logged(error, CHECKIN_PATH)
            await _send(send, 401, json.dumps(refusal_body(error)).encode("utf-8"), refusal_headers())
            return
        await _send(send, 200, answer.model_dump_json().encode("utf-8"), ())


async def _read(receive: Receive) -> tuple[bytes, bool]:
    """The request body and whether it is complete (False: the client left, or it is too large)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), False
        chunk = bytes(message.get("body", b""))
        size += len(chunk)
        chunks.append(chunk)
        if size > _MAX_BODY:
            return b"".join(chunks), False
        if not message.get("more_body", False):
            return b"".join(chunks), True


def _replay(body: bytes, receive: Receive, complete: bool) -> Receive:
    delivered = False

    async def replay() -> Message:
        nonlocal delivered
        if delivered:
            return await receive()
        delivered = True
        return {"type": "http.request", "body": body, "more_body": not complete}

    return replay


async def _send(send: Send, status: int, body: bytes, extra: tuple[tuple[bytes, bytes], ...]) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode("ascii")), *extra]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
