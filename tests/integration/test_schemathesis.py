"""Schemathesis against the running service's own OpenAPI document, over real TLS (issue 5).

A private ``trustroot serve`` (its own copy of the test product, so that the requests generated here
change no state another test of the worker relies on) publishes ``/openapi.json``; schemathesis loads
it from there, verifying the server against the product's root CA, and generates requests for EVERY
operation in it, each with the credentials its route asks for::

    /api/v1/device/*              the registered test device's certificate (TLS client authentication)
    /api/v1/owners/{claim,me/...} an owner API key (an owner registered through the public route)
    every other /api/v1/ route    an operator token with every scope (trustroot.fleet.operators)
    public routes                 nothing

Every answer must be: no 5xx; a documented status code, content type and body (schemathesis'
``status_code_conformance``, ``content_type_conformance``, ``response_schema_conformance``); no stack
trace in the body. Findings are collected over all operations (no shrinking: the run is bounded) and
reported together, each with its operation, the request (as a curl command) and the response.

Bounded: ``MAX_EXAMPLES`` per operation and generation mode, a fixed seed (``derandomize``), no
example database, a 10 s timeout per request; about 10-20 s on loopback.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.failures import Failure, FailureGroup
from service_fixtures import RunningService, copy_product, service_for

from trustroot.context.load import load_context
from trustroot.fleet.auth import DEVICE_PATH_PREFIX
from trustroot.fleet.config import FleetConfig
from trustroot.fleet.operators import SCOPES, add_operator
from trustroot.fleet.service import FleetService
from trustroot.fleet.store.db import Store, make_engine

pytest_plugins = ["service_fixtures"]
pytestmark = [pytest.mark.integration, pytest.mark.slow]

#: Generated requests per operation and generation mode (positive and negative).
MAX_EXAMPLES = 12
REQUEST_TIMEOUT_S = 10.0
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
#: Signs of a stack trace leaking into a response body.
TRACE_MARKERS = ("Traceback", 'File "')
OWNER_PREFIXES = ("/api/v1/owners/me", "/api/v1/owners/claim")


@dataclass
class Target:
    """The private service and the credentials of each kind of route."""

    running: RunningService
    operator_token: str
    owner_key: str


@dataclass
class Findings:
    """What the run found, one entry per distinct (operation, problem), with one example each."""

    entries: dict[tuple[str, str], str] = field(default_factory=dict)
    calls: int = 0

    def add(self, operation: str, problem: str, detail: str) -> None:
        self.entries.setdefault((operation, problem), detail)

    def report(self) -> str:
        return "\n\n".join(f"[{op}] {problem}\n{detail}" for (op, problem), detail in sorted(self.entries.items()))


def _operator_token(running: RunningService) -> str:
    store = Store(make_engine(running.database_url))
    try:
        writer = FleetService(
            store=store,
            config=FleetConfig(database_url=running.database_url, state_dir=running.product_dir / ".trustroot"),
            context=load_context(running.product_dir / "security-context.toml").model,
            pki_dir=running.product_dir / ".trustroot" / "pki",
        )
        return add_operator(writer, "schemathesis", sorted(SCOPES), actor="user:test").token
    finally:
        store.dispose()


def _owner_key(running: RunningService) -> str:
    public = Ed25519PrivateKey.generate().public_key()
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    with running.client() as client:
        answer = client.post("/api/v1/owners", json={"public_key": raw.hex()})
    assert answer.status_code == 201, answer.text
    return str(answer.json()["api_key"])


@pytest.fixture(scope="module")
def target(product_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    running = service_for(copy_product(product_template, tmp_path_factory.mktemp("schemathesis") / "acme"))
    try:
        yield Target(running=running, operator_token=_operator_token(running), owner_key=_owner_key(running))
    finally:
        running.stop()


def _credentials(target: Target, path: str) -> tuple[dict[str, str], tuple[str, str] | None]:
    """(headers, client certificate) for an operation's path template."""
    if path.startswith(DEVICE_PATH_PREFIX):
        device = target.running.device
        return {}, (str(device.cert_path), str(device.key_path))
    if path.startswith(OWNER_PREFIXES):
        return {"Authorization": f"Bearer {target.owner_key}"}, None
    if path.startswith("/api/v1/") and path not in ("/api/v1/owners", "/api/v1/ownership/key"):
        return {"Authorization": f"Bearer {target.operator_token}"}, None
    return {}, None


def _describe(case: schemathesis.Case, headers: dict[str, str], response: requests.Response | None) -> str:
    request = case.as_curl_command(headers={**headers, "Authorization": "Bearer <redacted>"} if headers else None)
    if response is None:
        return f"  request:  {request}"
    body = response.text if len(response.text) <= 2000 else response.text[:2000] + "..."
    return f"  request:  {request}\n  response: {response.status_code} {response.headers.get('content-type')}\n  {body}"


def _fuzz(target: Target, operation: Any, mode: GenerationMode, session: requests.Session, findings: Findings) -> None:
    headers, cert = _credentials(target, operation.path)
    label = operation.label

    @settings(
        max_examples=MAX_EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
        report_multiple_bugs=False,
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: schemathesis.Case) -> None:
        findings.calls += 1
        kwargs: dict[str, Any] = {"verify": str(target.running.root_ca), "timeout": REQUEST_TIMEOUT_S}
        if cert is not None:
            kwargs["cert"] = cert
        try:
            response = case.call(session=session, headers=headers, **kwargs)
        except requests.RequestException as exc:
            findings.add(label, f"no answer: {type(exc).__name__}", f"{_describe(case, headers, None)}\n  {exc}")
            return
        raw = response.request  # noqa: F841 - kept for debugging
        text = response.text if hasattr(response, "text") else ""
        for marker in TRACE_MARKERS:
            if marker in text:
                findings.add(label, f"stack trace in body ({marker!r})", _describe(case, headers, response))  # type: ignore[arg-type]
        try:
            case.validate_response(response, checks=CHECKS, headers=headers)
        except (Failure, FailureGroup) as exc:
            failures = list(exc.exceptions) if isinstance(exc, FailureGroup) else [exc]
            for failure in failures:
                findings.add(
                    label,
                    f"{mode.value}: {failure.code} {failure.title}",
                    f"{_describe(case, headers, response)}\n  check: {failure.message}",  # type: ignore[arg-type]
                )

    try:
        run()
    except Unsatisfiable:
        if mode is not GenerationMode.NEGATIVE:
            raise
        # an operation without parameters or body has no schema-violating request to make


def test_every_operation_conforms_over_tls(target: Target) -> None:
    running = target.running
    schema = schemathesis.openapi.from_url(f"{running.url}/openapi.json", verify=str(running.root_ca))
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 20, [op.label for op in operations]
    findings = Findings()
    started = time.monotonic()
    with requests.Session() as session:
        for operation in operations:
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                _fuzz(target, operation, mode, session, findings)
    elapsed = time.monotonic() - started
    print(f"schemathesis: {len(operations)} operations, {findings.calls} requests, {elapsed:.1f} s")
    if findings.entries:
        print(findings.report())
    assert not findings.entries, f"{len(findings.entries)} finding(s) over real TLS:\n\n{findings.report()}"
