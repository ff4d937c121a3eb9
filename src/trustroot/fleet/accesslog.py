"""A cheap access log: every refusal and error, and one in :data:`SAMPLE_EVERY` successful requests.

uvicorn's access log writes one formatted line per request; at thousands of check-ins a second that
was about an eighth of the server's time (docs/benchmarks.md). ``trustroot serve`` switches it off
and installs :class:`AccessLogMiddleware` instead, which logs (logger ``trustroot.access``)::

    status >= 400   always, at WARNING: every refusal (401 device or operator authentication,
                    403, 413, 429, 503 load shedding, ...) and every 5xx, with client and path
    status < 400    one request in SAMPLE_EVERY, at INFO, with the count it stands for

Device authentication refusals are also logged with their reason by :mod:`trustroot.fleet.auth`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Final

__all__ = ["SAMPLE_EVERY", "AccessLogMiddleware"]

_log = logging.getLogger("trustroot.access")

#: One successful request in this many is logged.
SAMPLE_EVERY: Final = 1000

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
AsgiApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class AccessLogMiddleware:
    """ASGI middleware logging refusals and errors always, successes sampled (module docstring)."""

    def __init__(self, app: AsgiApp, *, sample_every: int = SAMPLE_EVERY) -> None:
        if sample_every < 1:
            raise ValueError(f"sample_every must be at least 1, got {sample_every}")
        self.app = app
        self.sample_every = sample_every
        self._successes = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def logged_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                self._log(scope, int(message["status"]))
            await send(message)

        await self.app(scope, receive, logged_send)

    def _log(self, scope: Scope, status: int) -> None:
        if status >= 400:
            _log.warning("%s %s %s -> %d", _client(scope), scope.get("method"), scope.get("path"), status)
            return
        self._successes += 1
        if self._successes % self.sample_every == 1 or self.sample_every == 1:
            _log.info(
                "%s %s %s -> %d (1 of every %d successful requests is logged)",
                _client(scope),
                scope.get("method"),
                scope.get("path"),
                status,
                self.sample_every,
            )


def _client(scope: Scope) -> str:
    client = scope.get("client")
    return f"{client[0]}:{client[1]}" if client else "-"
