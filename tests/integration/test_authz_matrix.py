"""The authorisation matrix: EVERY route of the assembled application, against every kind of credential.

Routes come from ``app.routes`` of ``trustroot.web.app.create_app`` (inside the service middleware), so
a route added later is checked without anyone editing this file; a route that answers 2xx to nobody in
particular and is not on the public allow-list FAILS here, which is the point. Each route is one of::

    public     the allow-list below: security.txt, the disclosure intake POST, /tuf/*, /openapi.json
    device     under /api/v1/device: a device certificate, the device id never from the path or body
    operator   carries an OperatorDependency: 403 to every other scope, not 401/403 to its own
    owner      carries a dependency named require_owner* (device owners' accounts; their own tests)
    console    under /console: the web console's pages, behind a signed-in session (a redirect to the
               sign-in page without one); only CONSOLE_PUBLIC answers without it, and the static
               assets mounted at /console/static

Most of it runs in process (fast); one request goes through real TLS to a ``trustroot serve``.
"""

from __future__ import annotations

import asyncio
import inspect
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from pydantic import BaseModel
from service_fixtures import PROXY_SECRET, InProcess, RunningService, in_process
from starlette.routing import Mount, Route

from trustroot.context.load import load_context
from trustroot.fleet.auth import DEVICE_PATH_PREFIX, is_device_path
from trustroot.fleet.config import FleetConfig
from trustroot.fleet.operators import SCOPES, OperatorDependency, add_operator
from trustroot.fleet.service import FleetService
from trustroot.fleet.store.db import Store, make_engine

pytest_plugins = ["service_fixtures"]
pytestmark = pytest.mark.integration

#: (method, path template) answered without credentials. Nothing else may answer 2xx to nobody.
PUBLIC: frozenset[tuple[str, str]] = frozenset(
    {
        ("GET", "/.well-known/security.txt"),
        ("POST", "/api/v1/disclosures"),
        ("GET", "/openapi.json"),
    }
)
#: Public routes of device owners' onboarding (another capability): account creation with the owner's own
#: public key, and the service's ownership public key. Listed apart so that a review sees them.
PUBLIC_OWNER_ONBOARDING: frozenset[tuple[str, str]] = frozenset(
    {("POST", "/api/v1/owners"), ("GET", "/api/v1/ownership/key")}
)
PUBLIC_PREFIXES = ("/tuf/",)
#: Console routes that answer without a session: the sign-in form and its post, sign-out, the bare prefix.
CONSOLE_PUBLIC: frozenset[tuple[str, str]] = frozenset(
    {("GET", "/console/login"), ("POST", "/console/login"), ("POST", "/console/logout"), ("GET", "/console")}
)
CONSOLE_STATIC = "/console/static"
#: Names a device route must never take from its path, query or body: the device is its certificate.
DEVICE_ID_NAMES = frozenset({"device", "device_id", "serial", "device_serial", "id", "fingerprint"})


@dataclass(frozen=True)
class Endpoint:
    method: str
    template: str
    path: str
    kind: str
    scope: str | None = None


def _dependencies(dependant: Dependant) -> Iterator[Any]:
    for sub in dependant.dependencies:
        yield sub.call
        yield from _dependencies(sub)


def _is_public(method: str, template: str) -> bool:
    return (method, template) in PUBLIC | PUBLIC_OWNER_ONBOARDING or template.startswith(PUBLIC_PREFIXES)


@dataclass(frozen=True)
class Flat:
    """One route as the application serves it (FastAPI may keep included routers lazily)."""

    path: str
    methods: frozenset[str]
    dependant: Dependant | None
    param_convertors: dict[str, Any]


def flat_routes(routes: list[Any]) -> Iterator[Flat]:
    """Every route of ``routes``, included routers flattened, each with its effective dependencies."""
    for route in routes:
        if isinstance(route, Route):
            dependant = route.dependant if isinstance(route, APIRoute) else None
            yield Flat(route.path, frozenset(route.methods or ()), dependant, dict(route.param_convertors))
        elif type(route).__name__ == "_IncludedRouter":
            for candidate in route.effective_candidates():
                if type(candidate).__name__ == "_IncludedRouter":
                    yield from flat_routes([candidate])
                else:
                    yield Flat(
                        candidate.path,
                        frozenset(candidate.methods or ()),
                        candidate.dependant,
                        dict(candidate.param_convertors),
                    )
        elif isinstance(route, Mount) and route.path == CONSOLE_STATIC:
            continue  # the console's stylesheet and script (public files; checked in test_console.py)
        else:  # another Mount, WebSocketRoute: none yet; a new kind fails loudly
            raise TypeError(f"unchecked route type {type(route).__name__}: extend the matrix")


def _fill(route: Flat) -> str:
    path = route.path
    for name, convertor in route.param_convertors.items():
        kind = type(convertor).__name__
        value = {"IntegerConvertor": "1", "PathConvertor": "x/y"}.get(kind, "VD-0000000000000000")
        path = re.sub(r"\{" + name + r"(:[a-z]+)?\}", value, path)
    return path


def endpoints(app: Any) -> list[Endpoint]:
    found: list[Endpoint] = []
    for route in flat_routes(app.routes):
        for method in sorted(route.methods - {"HEAD"}):
            scopes: list[str] = []
            owner = False
            if route.dependant is not None:
                calls = list(_dependencies(route.dependant))
                scopes = [c.scope for c in calls if isinstance(c, OperatorDependency)]
                owner = any(getattr(c, "__name__", "").startswith("require_owner") for c in calls)
            if _is_public(method, route.path):
                kind = "public"
            elif route.path == "/console" or route.path.startswith("/console/"):
                kind = "console-public" if (method, route.path) in CONSOLE_PUBLIC else "console"
            elif is_device_path(route.path):
                kind = "device"
            elif scopes:
                assert len(set(scopes)) == 1, f"{method} {route.path}: one scope per route, found {scopes}"
                kind = "operator"
            elif owner:
                kind = "owner"
            else:
                raise AssertionError(f"{method} {route.path} is neither public, device, operator nor owner")
            found.append(Endpoint(method, route.path, _fill(route), kind, scopes[0] if scopes else None))
    return found


def call(fleet: InProcess, endpoint: Endpoint, headers: dict[str, str] | None = None) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=fleet.app)
        async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as http:
            body = {"json": {}} if endpoint.method in {"POST", "PUT", "PATCH"} else {}
            return await http.request(endpoint.method, endpoint.path, headers=headers or {}, **body)  # type: ignore[arg-type]

    return asyncio.run(go())


@pytest.fixture
def fleet(product_dir: Path, sqlite_store: str) -> Iterator[InProcess]:
    with in_process(product_dir, sqlite_store) as running:
        yield running


def test_every_route_is_classified_and_denies_anonymous_callers(fleet: InProcess) -> None:
    table = endpoints(fleet.app)
    kinds = {e.kind for e in table}
    assert {"public", "device", "operator"} <= kinds
    denied = 0
    for endpoint in table:
        if endpoint.kind in {"public", "console-public"}:
            continue
        answer = call(fleet, endpoint)
        if endpoint.kind == "console":
            # a page or form without a session: sent to the sign-in page (the JSON progress feed: 401)
            assert answer.status_code in (303, 401), f"{endpoint.method} {endpoint.template}: {answer.status_code}"
            if answer.status_code == 303:
                assert answer.headers["location"] == "/console/login", endpoint
            denied += 1
            continue
        assert answer.status_code == 401, f"{endpoint.method} {endpoint.template} answered {answer.status_code}"
        assert "www-authenticate" in answer.headers, endpoint
        denied += 1
    assert denied == sum(1 for e in table if e.kind not in {"public", "console-public"})
    assert {(e.method, e.template) for e in table if e.kind == "console-public"} == CONSOLE_PUBLIC
    # The allow-list itself: only these answer without credentials (the intake takes a real report).
    public = {(e.method, e.template) for e in table if e.kind == "public" and not e.template.startswith("/tuf/")}
    assert PUBLIC <= public <= PUBLIC | PUBLIC_OWNER_ONBOARDING


def test_operator_routes_deny_every_other_scope(fleet: InProcess) -> None:
    tokens = {s: add_operator(fleet.service, f"op-{s}", s, actor="user:admin").token for s in SCOPES}
    operator_routes = [e for e in endpoints(fleet.app) if e.kind == "operator"]
    assert operator_routes
    denials = expected = 0
    for endpoint in operator_routes:
        for scope, token in tokens.items():
            answer = call(fleet, endpoint, {"Authorization": f"Bearer {token}"})
            if scope == endpoint.scope:
                assert answer.status_code not in (401, 403), (endpoint, answer.text)
                assert answer.status_code < 500, (endpoint, answer.text)
            else:
                expected += 1
                assert answer.status_code == 403, (endpoint, scope, answer.status_code)
                denials += 1
    assert denials == expected == len(operator_routes) * (len(SCOPES) - 1)


def test_device_credentials_open_no_operator_route_and_name_no_other_device(fleet: InProcess) -> None:
    cert = fleet.device.certificate.public_bytes(serialization.Encoding.PEM).decode()
    as_device = {"X-Trustroot-Client-Cert": quote(cert), "X-Trustroot-Proxy-Secret": PROXY_SECRET}
    table = endpoints(fleet.app)
    refused = 0
    for endpoint in (e for e in table if e.kind in {"operator", "owner"}):
        assert call(fleet, endpoint, as_device).status_code == 401, endpoint
        refused += 1
    assert refused == sum(1 for e in table if e.kind in {"operator", "owner"})
    device_routes = [r for r in flat_routes(fleet.app.routes) if is_device_path(r.path)]
    assert device_routes
    for route in device_routes:
        assert route.path.startswith(DEVICE_PATH_PREFIX + "/")
        assert not route.param_convertors, f"{route.path} takes {list(route.param_convertors)} from the path"
        dependant = route.dependant
        assert dependant is not None, route.path
        params = [*dependant.path_params, *dependant.query_params, *dependant.header_params, *dependant.cookie_params]
        assert not {p.name for p in params} & DEVICE_ID_NAMES, route.path
        for body in dependant.body_params:
            annotation = body.field_info.annotation
            fields = (
                set(annotation.model_fields)
                if inspect.isclass(annotation) and issubclass(annotation, BaseModel)
                else {body.name}
            )
            assert not fields & DEVICE_ID_NAMES, f"{route.path} reads a device id from its body: {fields}"
    # and the device itself gets through to its own route
    check_in = next(e for e in table if e.kind == "device" and e.template.endswith("/check-in"))
    assert fleet.check_in().status_code == 200, check_in


def test_real_tls_operator_route(service: RunningService, product_template: Path) -> None:
    store = Store(make_engine(service.database_url))
    try:
        writer = FleetService(
            store=store,
            config=FleetConfig(database_url=service.database_url, state_dir=service.product_dir / ".trustroot"),
            context=load_context(product_template / "security-context.toml").model,
            pki_dir=service.product_dir / ".trustroot" / "pki",
        )
        token = add_operator(writer, "tls-operator", "disclosure", actor="user:admin").token
    finally:
        store.dispose()
    with service.client() as client:
        anonymous = client.get("/api/v1/disclosures")
        assert anonymous.status_code == 401 and anonymous.headers["www-authenticate"].startswith("Bearer")
        assert client.get("/api/v1/disclosures", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    with service.client(service.device) as client:
        assert client.get("/api/v1/disclosures").status_code == 401
        assert client.get("/api/v1/devices").status_code == 401
