"""Schemathesis against the running service's own OpenAPI document, over real TLS (issue 5).

A private ``trustroot serve`` (its own copy of the test product, so that the requests generated here
change no state another test of the worker relies on: rollouts, reports, check-ins, owners) publishes
``/openapi.json``; schemathesis loads it from there, verifying the server against the product's root
CA, and generates requests for EVERY operation in it, each with the credentials its route asks for::

    /api/v1/device/*                the registered test device's certificate (TLS client authentication)
    /api/v1/owners/{claim,me/...}   an owner API key (an owner registered through the public route)
    every other non-public /api/v1  an operator token with every scope (trustroot.fleet.operators)
    public routes                   nothing

Every answer must be: no 5xx; a documented status code, content type and body (schemathesis'
``not_a_server_error``, ``status_code_conformance``, ``content_type_conformance``,
``response_schema_conformance``); no stack trace in the body. Requests are generated in positive
(schema-valid) and negative (schema-violating) mode. Findings are collected over all operations (no
shrinking: the run is bounded) and reported together: operation, request as a curl command, response.

There are no exceptions: every finding fails the test (error answers have the one documented body,
:class:`trustroot.fleet.api.error_body.ErrorBody`, and every route declares the statuses it can answer).

Bounded: ``MAX_EXAMPLES`` per operation and mode, a fixed seed (``derandomize``), no example database,
a 10 s timeout per request and a ``BUDGET_S`` deadline for the whole run; about 25-35 s on loopback.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, Phase, example, given, settings
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
from trustroot.fleet.auth import is_device_path
from trustroot.fleet.config import FleetConfig
from trustroot.fleet.operators import SCOPES, add_operator
from trustroot.fleet.service import FleetService
from trustroot.fleet.store.db import Store, make_engine

#: A generated request (schemathesis' Case; its type parameters are not needed here).
CaseT = schemathesis.Case[Any]

pytest_plugins = ["service_fixtures"]
pytestmark = [pytest.mark.integration, pytest.mark.slow]

#: Generated requests per operation, by generation mode (the service answers in about 45 ms a request).
MAX_EXAMPLES = {GenerationMode.POSITIVE: 8, GenerationMode.NEGATIVE: 4}
REQUEST_TIMEOUT_S = 10.0
#: The whole run stops (and fails) past this, whatever the service does.
BUDGET_S = 120.0
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
#: Signs of a stack trace leaking into a response body.
TRACE_MARKERS = ("Traceback", 'File "')
OWNER_PREFIXES = ("/api/v1/owners/me", "/api/v1/owners/claim")
#: Public routes under /api/v1 (the public disclosure intake POST shares its path with an operator GET).
PUBLIC_API = frozenset({"/api/v1/owners", "/api/v1/ownership/key"})
#: Deletes the owner whose key the other owner routes use: run last.
LAST = "POST /api/v1/owners/me/delete"
SQLITE_INT_MAX = 2**63 - 1


@dataclass
class Target:
    """The private service and the credentials of each kind of route."""

    running: RunningService
    operator_token: str
    owner_key: str


@dataclass
class Findings:
    """What the run found, one example per distinct (operation, problem)."""

    new: dict[tuple[str, str], str] = field(default_factory=dict)
    calls: int = 0

    def add(self, operation: str, problem: str, detail: str) -> None:
        self.new.setdefault((operation, problem), detail)

    @staticmethod
    def report(entries: dict[tuple[str, str], str]) -> str:
        return "\n\n".join(f"[{op}] {problem}\n{detail}" for (op, problem), detail in sorted(entries.items()))


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
    if is_device_path(path):
        device = target.running.device
        return {}, (str(device.cert_path), str(device.key_path))
    if path.startswith(OWNER_PREFIXES):
        return {"Authorization": f"Bearer {target.owner_key}"}, None
    if path.startswith("/api/v1/") and path not in PUBLIC_API:
        return {"Authorization": f"Bearer {target.operator_token}"}, None
    return {}, None


def _describe(case: CaseT, headers: dict[str, str], response: requests.Response | None) -> str:
    request = case.as_curl_command(headers={**headers, "Authorization": "Bearer <redacted>"} if headers else None)
    if response is None:
        return f"  request:  {request}"
    body = response.text if len(response.text) <= 2000 else response.text[:2000] + "..."
    return f"  request:  {request}\n  response: {response.status_code} {response.headers.get('content-type')}\n  {body}"


def _boundary_probes(operation: Any) -> list[CaseT]:
    """Explicit cases: each unbounded integer parameter at 2**63 (past every 64-bit column)."""
    parameters = list(operation.path_parameters) + list(operation.query)
    path = {p.name: p for p in operation.path_parameters}
    if any(p.definition.get("schema", {}).get("type") != "integer" for p in path.values()):
        return []  # other path parameters: left to generation
    probes = []
    for parameter in parameters:
        declared = parameter.definition.get("schema", {})
        if declared.get("type") == "integer" and "maximum" not in declared:
            values = dict.fromkeys(path, 1) | {parameter.name: SQLITE_INT_MAX + 1}
            in_path = {k: v for k, v in values.items() if k in path}
            query = {k: v for k, v in values.items() if k not in path}
            probes.append(operation.Case(path_parameters=in_path or None, query=query or None))
    return probes


def _fuzz(
    target: Target,
    operation: Any,
    *,
    mode: GenerationMode,
    session: requests.Session,
    findings: Findings,
    deadline: float,
) -> None:
    headers, cert = _credentials(target, operation.path)
    label = operation.label
    transport: dict[str, Any] = {"verify": str(target.running.root_ca), "timeout": REQUEST_TIMEOUT_S}
    if cert is not None:
        transport["cert"] = cert

    @settings(
        max_examples=MAX_EXAMPLES[mode],
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: CaseT) -> None:
        if time.monotonic() > deadline:
            return
        findings.calls += 1
        try:
            response = case.call(session=session, headers=headers, **transport)
        except requests.RequestException as exc:
            findings.add(label, f"no answer: {type(exc).__name__}", f"{_describe(case, headers, None)}\n  {exc}")
            return
        raw: requests.Response = response  # type: ignore[assignment]
        for marker in TRACE_MARKERS:
            if marker in response.text:
                findings.add(label, f"stack trace in the body ({marker!r})", _describe(case, headers, raw))
        try:
            case.validate_response(response, checks=CHECKS, headers=headers)
        except (Failure, FailureGroup) as exc:
            for failure in exc.exceptions if isinstance(exc, FailureGroup) else [exc]:
                problem = f"{mode.value}: {failure.code} {failure.title} ({response.status_code})"
                detail = f"{_describe(case, headers, raw)}\n  check: {failure.message}"
                findings.add(label, problem, detail)

    if mode is GenerationMode.POSITIVE:
        for probe in _boundary_probes(operation):
            run = example(case=probe)(run)
    try:
        run()
    except Unsatisfiable:
        if mode is not GenerationMode.NEGATIVE:
            raise
        # an operation without parameters or body has no schema-violating request to make


def test_every_operation_conforms_over_tls(target: Target, record_property: Callable[[str, object], None]) -> None:
    running = target.running
    schema = schemathesis.openapi.from_url(f"{running.url}/openapi.json", verify=str(running.root_ca))
    found = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
    operations = sorted(found, key=lambda op: op.label == LAST)
    labels = [op.label for op in operations]
    assert len(operations) > 20 and "POST /api/v1/device/check-in" in labels and LAST in labels, labels
    findings = Findings()
    started = time.monotonic()
    deadline = started + BUDGET_S
    with requests.Session() as session:
        for operation in operations:
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                _fuzz(target, operation, mode=mode, session=session, findings=findings, deadline=deadline)
    elapsed = time.monotonic() - started
    summary = f"{len(operations)} operations, {findings.calls} requests over TLS in {elapsed:.1f} s"
    record_property("schemathesis", summary)
    print(f"schemathesis: {summary}")
    assert elapsed <= BUDGET_S, f"over the {BUDGET_S} s budget ({summary}): requests were cut short"
    assert not findings.new, f"{len(findings.new)} finding(s), {summary}:\n\n{Findings.report(findings.new)}"
