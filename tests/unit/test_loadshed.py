"""Load shedding and request body bounds, driven as plain ASGI (held-open requests, no network)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from trustroot.fleet.loadshed import BodyLimitMiddleware, LoadShedMiddleware

Message = dict[str, Any]


def _scope(headers: list[tuple[bytes, bytes]] | None = None) -> dict[str, Any]:
    return {"type": "http", "method": "POST", "path": "/api/v1/device/check-in", "headers": headers or []}


class Client:
    """One request: feeds ``messages`` to receive() (then blocks, like a client that waits), records send()."""

    def __init__(self, messages: list[Message] | None = None) -> None:
        self.incoming = list(messages or [{"type": "http.request", "body": b"", "more_body": False}])
        self.sent: list[Message] = []
        self.receive_calls = 0

    async def receive(self) -> Message:
        self.receive_calls += 1
        if self.incoming:
            return self.incoming.pop(0)
        await asyncio.Event().wait()  # nothing more from this client
        raise AssertionError("unreachable")

    async def send(self, message: Message) -> None:
        self.sent.append(message)

    @property
    def status(self) -> int:
        return int(self.sent[0]["status"])

    @property
    def headers(self) -> dict[bytes, bytes]:
        return dict(self.sent[0]["headers"])

    @property
    def json(self) -> Any:
        return json.loads(self.sent[1]["body"])


class HeldApp:
    """Reads the body, then waits for ``release`` before answering 200."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.started = 0
        self.bodies: list[bytes] = []

    async def __call__(self, scope: Any, receive: Callable[[], Awaitable[Message]], send: Any) -> None:
        self.started += 1
        message = await receive()
        self.bodies.append(message.get("body", b""))
        await self.release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_requests_over_the_limit_are_shed_at_once_with_retry_after() -> None:
    async def scenario() -> None:
        inner = HeldApp()
        app = LoadShedMiddleware(inner, max_inflight=2, retry_after_s=7)
        held = [Client(), Client()]
        tasks = [asyncio.create_task(app(_scope(), c.receive, c.send)) for c in held]
        await _settle()
        assert app.inflight == 2

        extra = Client()
        await asyncio.wait_for(app(_scope(), extra.receive, extra.send), timeout=1)  # answered, not queued
        assert extra.status == 503
        assert extra.headers[b"retry-after"] == b"7"
        assert extra.json == {
            "error": "overloaded",
            "message": "the service is at its limit of 2 requests in flight; retry after 7 seconds",
            "retry_after_s": 7,
            "provision": "5.9-1",
        }
        assert extra.receive_calls == 0  # shed before any work: not even the body was read
        assert inner.started == 2 and app.shed == 1

        inner.release.set()
        await asyncio.gather(*tasks)
        assert [c.status for c in held] == [200, 200]
        assert app.inflight == 0
        after = Client()
        await app(_scope(), after.receive, after.send)
        assert after.status == 200

    asyncio.run(scenario())


def test_a_failing_request_frees_its_slot() -> None:
    async def boom(scope: Any, receive: Any, send: Any) -> None:
        raise RuntimeError("the handler failed")

    async def scenario() -> None:
        app = LoadShedMiddleware(boom, max_inflight=1, retry_after_s=1)
        client = Client()
        with pytest.raises(RuntimeError):
            await app(_scope(), client.receive, client.send)
        assert app.inflight == 0

    asyncio.run(scenario())


def test_other_scopes_pass_untouched() -> None:
    calls: list[str] = []

    async def lifespan(scope: Any, receive: Any, send: Any) -> None:
        calls.append(scope["type"])

    async def scenario() -> None:
        app = LoadShedMiddleware(lifespan, max_inflight=1, retry_after_s=1)
        app.inflight = 1  # full: a lifespan or websocket scope is still passed on
        await app({"type": "lifespan"}, Client().receive, Client().send)
        body_limit = BodyLimitMiddleware(lifespan, max_bytes=1)
        await body_limit({"type": "lifespan"}, Client().receive, Client().send)

    asyncio.run(scenario())
    assert calls == ["lifespan", "lifespan"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_inflight": 0, "retry_after_s": 1}, "max_inflight"),
        ({"max_inflight": 1, "retry_after_s": 0}, "retry_after_s"),
    ],
)
def test_load_shedding_settings_are_checked(kwargs: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        LoadShedMiddleware(HeldApp(), **kwargs)


# ----------------------------------------------------------------------------------- body bounds


def _run_body_limit(client: Client, headers: list[tuple[bytes, bytes]] | None = None, **kwargs: Any) -> HeldApp:
    inner = HeldApp()
    inner.release.set()
    app = BodyLimitMiddleware(inner, **{"max_bytes": 10, **kwargs})
    asyncio.run(app(_scope(headers), client.receive, client.send))
    return inner


@pytest.mark.parametrize("length", [b"11", b"-1", b"ten", b"99999999999999999999"])
def test_a_declared_length_over_the_bound_is_413_before_reading(length: bytes) -> None:
    client = Client()
    inner = _run_body_limit(client, [(b"content-length", length)])
    assert client.status == 413
    assert client.json["error"] == "request_too_large"
    assert client.receive_calls == 0 and inner.started == 0


def test_a_streamed_body_over_the_bound_is_413() -> None:
    chunks = [{"type": "http.request", "body": b"123456", "more_body": True}] * 2
    client = Client(chunks)
    inner = _run_body_limit(client)
    assert client.status == 413 and inner.started == 0


def test_a_body_that_does_not_arrive_in_time_is_408() -> None:
    client = Client([{"type": "http.request", "body": b"12", "more_body": True}])  # then nothing more
    inner = _run_body_limit(client, body_timeout_s=0.05)
    assert client.status == 408
    assert client.json["error"] == "request_timeout"
    assert inner.started == 0


def test_a_body_within_the_bound_reaches_the_app_in_one_message() -> None:
    chunks = [
        {"type": "http.request", "body": b"12345", "more_body": True},
        {"type": "http.request", "body": b"67890", "more_body": False},
    ]
    client = Client(chunks)
    inner = _run_body_limit(client, [(b"content-length", b"10")])
    assert inner.bodies == [b"1234567890"]
    assert client.status == 200


def test_a_client_that_leaves_gets_no_answer() -> None:
    client = Client([{"type": "http.disconnect"}])
    inner = _run_body_limit(client)
    assert client.sent == [] and inner.started == 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"max_bytes": 0}, "max_bytes"), ({"max_bytes": 1, "body_timeout_s": 0}, "body_timeout_s")],
)
def test_body_limit_settings_are_checked(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BodyLimitMiddleware(HeldApp(), **kwargs)  # type: ignore[arg-type]
