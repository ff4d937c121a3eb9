"""Load shedding and request size bounds: the service says "not now" instead of slowing for everyone.

:class:`LoadShedMiddleware` counts the HTTP requests in flight in this worker. A request that
arrives when ``FleetLimits.max_inflight_requests`` are already in flight is answered at once with
``503 Service Unavailable`` and ``Retry-After`` (``FleetLimits.retry_after_seconds``), before any
work is done for it: no body read, no authentication, no database. Devices back off with jitter
and come back (EN 303 645 provision 5.9-1: the back end anticipates overload; 5.9-3 on the device
side). Installed outermost, it bounds the work the worker holds; the count is per worker process.

:class:`BodyLimitMiddleware` refuses a request body over ``FleetLimits.max_request_bytes`` with
413: at once when Content-Length says so, and as soon as a streamed body passes the bound. It
reads the body before the application runs, so a body that takes longer than ``body_timeout_s``
to arrive is answered 408: a client that trickles its body cannot hold an admitted request slot
for ever.

Both are plain ASGI middleware (no threads, no locks: an ASGI app runs on one event loop).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any, Final

__all__ = ["DEFAULT_BODY_TIMEOUT_S", "BodyLimitMiddleware", "LoadShedMiddleware", "RequestBodyTooLarge"]

_log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
AsgiApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: The provision load shedding serves (resilience of the back end).
PROVISION: Final = "5.9-1"


async def _json_response(
    send: Send, status: int, body: dict[str, Any], extra_headers: Sequence[tuple[bytes, bytes]] = ()
) -> None:
    data = json.dumps(body).encode("utf-8")
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(data)).encode("ascii")),
        *extra_headers,
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})


class LoadShedMiddleware:
    """Admit at most ``max_inflight`` HTTP requests at once; answer the rest 503 + Retry-After."""

    def __init__(self, app: AsgiApp, *, max_inflight: int, retry_after_s: int) -> None:
        if max_inflight < 1:
            raise ValueError(f"max_inflight must be at least 1, got {max_inflight}")
        if retry_after_s < 1:
            raise ValueError(f"retry_after_s must be at least 1, got {retry_after_s}")
        self.app = app
        self.max_inflight = max_inflight
        self.retry_after_s = retry_after_s
        #: Requests being handled now.
        self.inflight = 0
        #: Requests shed since start.
        self.shed = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.inflight >= self.max_inflight:
            self.shed += 1
            if self.shed == 1 or self.shed % 1000 == 0:
                _log.warning("overloaded: %d requests in flight, %d shed so far", self.inflight, self.shed)
            await _json_response(
                send,
                503,
                {
                    "error": "overloaded",
                    "message": f"the service is at its limit of {self.max_inflight} requests in flight; "
                    f"retry after {self.retry_after_s} seconds",
                    "retry_after_s": self.retry_after_s,
                    "provision": PROVISION,
                },
                [(b"retry-after", str(self.retry_after_s).encode("ascii"))],
            )
            return
        self.inflight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.inflight -= 1


class RequestBodyTooLarge(Exception):
    """Raised inside :class:`BodyLimitMiddleware` when a body passes the bound."""


#: Seconds a client has to send its whole request body.
DEFAULT_BODY_TIMEOUT_S: Final = 30.0


class BodyLimitMiddleware:
    """Read the request body first: over ``max_bytes`` is 413, slower than ``body_timeout_s`` is 408.

    The application then receives the body in one message (at most ``max_bytes`` held per request).
    """

    def __init__(self, app: AsgiApp, *, max_bytes: int, body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S) -> None:
        if max_bytes < 1:
            raise ValueError(f"max_bytes must be at least 1, got {max_bytes}")
        if body_timeout_s <= 0:
            raise ValueError(f"body_timeout_s must be positive, got {body_timeout_s}")
        self.app = app
        self.max_bytes = max_bytes
        self.body_timeout_s = body_timeout_s

    async def _read(self, receive: Receive) -> bytes | None:
        """The whole body, or None if the client went away first."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = bytes(message.get("body", b""))
            size += len(chunk)
            if size > self.max_bytes:
                raise RequestBodyTooLarge
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_large = f"the request body is larger than {self.max_bytes} bytes"
        for name, value in scope.get("headers") or ():
            if name == b"content-length" and not (value.isdigit() and int(value) <= self.max_bytes):
                await _json_response(send, 413, {"error": "request_too_large", "message": too_large}, _CLOSE)
                return
        try:
            body = await asyncio.wait_for(self._read(receive), self.body_timeout_s)
        except RequestBodyTooLarge:
            await _json_response(send, 413, {"error": "request_too_large", "message": too_large}, _CLOSE)
            return
        except TimeoutError:
            message = f"the request body did not arrive within {self.body_timeout_s:g} s"
            await _json_response(send, 408, {"error": "request_timeout", "message": message}, _CLOSE)
            return
        if body is None:
            return
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if delivered:
                return await receive()  # after the body: the disconnect, whenever it comes
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


_CLOSE: Final = ((b"connection", b"close"),)
