"""The cheap access log: every refusal and error is logged, successes are sampled."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from trustroot.fleet.accesslog import AccessLogMiddleware


def _app(status: int) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    return app


def _call(middleware: AccessLogMiddleware, path: str = "/api/v1/device/check-in") -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": path, "client": ("192.0.2.7", 40000)}
    asyncio.run(middleware(scope, None, send))  # type: ignore[arg-type]
    return sent


@pytest.mark.parametrize("status", [401, 403, 413, 422, 503, 500])
def test_every_refusal_and_error_is_logged(status: int, caplog: pytest.LogCaptureFixture) -> None:
    middleware = AccessLogMiddleware(_app(status), sample_every=1000)
    with caplog.at_level(logging.INFO, logger="trustroot.access"):
        for _ in range(3):
            sent = _call(middleware)
    assert sent[0]["status"] == status  # the answer itself is passed on untouched
    lines = [r for r in caplog.records if r.name == "trustroot.access"]
    assert len(lines) == 3
    assert all(r.levelno == logging.WARNING for r in lines)
    assert f"192.0.2.7:40000 POST /api/v1/device/check-in -> {status}" in lines[0].getMessage()


def test_successes_are_sampled(caplog: pytest.LogCaptureFixture) -> None:
    middleware = AccessLogMiddleware(_app(200), sample_every=10)
    with caplog.at_level(logging.INFO, logger="trustroot.access"):
        for _ in range(25):
            _call(middleware)
    lines = [r for r in caplog.records if r.name == "trustroot.access"]
    assert len(lines) == 3  # the 1st, 11th and 21st
    assert all(r.levelno == logging.INFO and "1 of every 10" in r.getMessage() for r in lines)


def test_the_sampling_rate_is_validated() -> None:
    with pytest.raises(ValueError, match="sample_every"):
        AccessLogMiddleware(_app(200), sample_every=0)
