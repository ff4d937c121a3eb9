"""The web console in the service's own application: sign-in, sessions, CSRF, CSP, scopes, refusals.

Runs in process (:func:`service_fixtures.in_process`, injected clock); the browser tests in
``tests/e2e/test_console_browser.py`` drive the same pages in a real Chromium over TLS.
"""

from __future__ import annotations

import asyncio
import html
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from service_fixtures import InProcess, in_process, open_test_product
from sqlalchemy import select

from trustroot.compliance.assess import assess
from trustroot.compliance.outputs import write_assessment
from trustroot.fleet import totp
from trustroot.fleet.alerts import list_alerts, raise_alerts
from trustroot.fleet.console_models import ConsoleLogin
from trustroot.fleet.console_users import LOCKOUT, MAX_FAILED_ATTEMPTS, create_console_user
from trustroot.fleet.operators import revoke_operator
from trustroot.fleet.operators_models import Operator
from trustroot.fleet.store.audit import audit_log
from trustroot.monitor.detect import Finding
from trustroot.web.console.security import CONTENT_SECURITY_POLICY, LOGIN_COOKIE, SESSION_COOKIE

pytestmark = pytest.mark.integration
pytest_plugins = ["service_fixtures"]

PASSWORD = "tr-console-test-passphrase-1"
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@dataclass
class Browser:
    """A cookie-keeping client of the in-process application."""

    running: InProcess
    cookies: httpx.Cookies = field(default_factory=httpx.Cookies)

    def request(self, method: str, path: str, **options: Any) -> httpx.Response:
        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.running.app)
            async with httpx.AsyncClient(
                transport=transport, base_url="https://testserver", cookies=self.cookies
            ) as client:
                answer = await client.request(method, path, **options)
                self.cookies = client.cookies
                return answer

        return asyncio.run(go())

    def get(self, path: str) -> httpx.Response:
        return self.request("GET", path)

    def post(self, path: str, data: dict[str, str], **options: Any) -> httpx.Response:
        headers = {"Origin": "https://testserver", **options.pop("headers", {})}
        return self.request("POST", path, data=data, headers=headers, **options)

    def csrf(self, path: str = "/console/") -> str:
        found = _CSRF.search(self.get(path).text)
        assert found, "no CSRF token on the page"
        return found.group(1)

    def sign_in(self, name: str, password: str, code: str) -> httpx.Response:
        page = self.get("/console/login")
        token = _CSRF.search(page.text)
        assert token
        return self.post("/console/login", {"csrf": token.group(1), "name": name, "password": password, "code": code})


@pytest.fixture
def app(product_template: Path, sqlite_store: str) -> Iterator[InProcess]:
    with in_process(product_template, sqlite_store) as running:
        yield running


def enrol(running: InProcess, name: str = "alice", scopes: str = "read,release,device-admin,disclosure") -> str:
    made = create_console_user(running.service, name, scopes, actor="cli:test", password=PASSWORD)
    return made.totp_secret


def code(running: InProcess, secret: str, steps: int = 0) -> str:
    return totp.totp(secret, running.now[0] + timedelta(seconds=30 * steps))


def signed_in(running: InProcess, name: str = "alice", scopes: str = "read,release,device-admin,disclosure") -> Browser:
    secret = enrol(running, name, scopes)
    browser = Browser(running)
    answer = browser.sign_in(name, PASSWORD, code(running, secret))
    assert answer.status_code == 303, answer.text
    return browser


def test_sign_in_sets_a_host_only_secure_strict_cookie_and_pages_carry_the_csp(app: InProcess) -> None:
    browser = signed_in(app)
    page = browser.get("/console/")
    assert page.status_code == 200
    assert "Fleet" in page.text and app.device.serial in page.text
    assert page.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert "script-src 'self'" in CONTENT_SECURITY_POLICY and "unsafe-inline" not in CONTENT_SECURITY_POLICY
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["cache-control"] == "no-store"
    assert "<script>" not in page.text, "no inline script (the CSP would block it)"
    # the raw Set-Cookie of a fresh sign-in
    secret = enrol(app, "bob", "read")
    other = Browser(app)
    answer = other.sign_in("bob", PASSWORD, code(app, secret))
    cookie = next(v for k, v in answer.headers.multi_items() if k == "set-cookie" and SESSION_COOKIE in v)
    lowered = cookie.lower()
    assert "secure" in lowered and "httponly" in lowered and "samesite=strict" in lowered and "path=/" in lowered
    assert "domain=" not in lowered
    for path in (
        "/console/releases",
        "/console/alerts",
        "/console/disclosures",
        "/console/compliance",
        "/console/settings",
        f"/console/devices/{app.device.serial}",
    ):
        assert browser.get(path).status_code == 200, path


def test_no_console_page_answers_without_a_session(app: InProcess) -> None:
    anonymous = Browser(app)
    for path in (
        "/console/",
        "/console/releases",
        "/console/alerts",
        "/console/disclosures",
        "/console/compliance",
        "/console/settings",
        f"/console/devices/{app.device.serial}",
        "/console/rollouts/1.json",
        "/console/compliance/report.html",
    ):
        answer = anonymous.get(path)
        assert answer.status_code in (303, 401), path
        assert app.device.serial not in answer.text
    for path in (
        "/console/rollouts/1/pause",
        "/console/alerts/1/acknowledge",
        "/console/settings/tls",
        "/console/owners/o-1/delete-data",
        "/console/rollouts",
    ):
        answer = anonymous.post(path, {"csrf": "x"})
        assert answer.status_code == 303 and answer.headers["location"] == "/console/login", path


def test_wrong_password_wrong_code_and_unknown_name_get_one_refusal(app: InProcess) -> None:
    secret = enrol(app)
    browser = Browser(app)
    answers = [
        browser.sign_in("alice", PASSWORD + "x", code(app, secret)),
        browser.sign_in("alice", PASSWORD, "000000" if code(app, secret) != "000000" else "111111"),
        browser.sign_in("mallory", PASSWORD, code(app, secret)),
    ]
    for answer in answers:
        assert answer.status_code == 401
        assert "wrong name, password or code, or the login is locked" in answer.text
        assert SESSION_COOKIE not in answer.headers.get("set-cookie", "")


def test_a_totp_code_is_not_accepted_twice(app: InProcess) -> None:
    secret = enrol(app)
    first = Browser(app)
    now_code = code(app, secret)
    assert first.sign_in("alice", PASSWORD, now_code).status_code == 303
    replay = Browser(app).sign_in("alice", PASSWORD, now_code)
    assert replay.status_code == 401, "a replayed TOTP code must be refused"
    app.now[0] += timedelta(seconds=30)
    assert Browser(app).sign_in("alice", PASSWORD, code(app, secret)).status_code == 303


def test_brute_force_locks_the_login_for_a_while(app: InProcess) -> None:
    secret = enrol(app)
    browser = Browser(app)
    for attempt in range(MAX_FAILED_ATTEMPTS):
        assert browser.sign_in("alice", f"guess-number-{attempt}", code(app, secret)).status_code == 401
    locked = browser.sign_in("alice", PASSWORD, code(app, secret))
    assert locked.status_code == 401, "the right password is refused while locked (5.1-5)"
    with app.service.store.transaction() as session:
        operator_id = session.scalar(select(Operator.id).where(Operator.name == "alice"))
        login = session.get(ConsoleLogin, operator_id)
        assert login is not None and login.locked_until is not None
    app.now[0] += LOCKOUT + timedelta(seconds=31)
    assert browser.sign_in("alice", PASSWORD, code(app, secret)).status_code == 303


def test_forms_without_the_csrf_token_or_from_another_origin_are_refused(app: InProcess) -> None:
    browser = signed_in(app)
    missing = browser.post("/console/settings/tls", {"min_tls_version": "1.3"})
    assert missing.status_code == 403 and "security token" in missing.text
    wrong = browser.post("/console/settings/tls", {"min_tls_version": "1.3", "csrf": "A" * 43})
    assert wrong.status_code == 403
    token = browser.csrf()
    cross = browser.post(
        "/console/settings/tls", {"min_tls_version": "1.3", "csrf": token}, headers={"Origin": "https://evil.example"}
    )
    assert cross.status_code == 403 and "another site" in cross.text
    ok = browser.post("/console/settings/tls", {"min_tls_version": "1.3", "csrf": token})
    assert ok.status_code == 200 and "min_tls_version 1.3" in ok.text
    # the sign-in form has its own double-submit token
    login = Browser(app).request(
        "POST",
        "/console/login",
        data={"csrf": "forged", "name": "alice", "password": PASSWORD, "code": "123456"},
        headers={"Origin": "https://testserver"},
    )
    assert login.status_code == 401 and "security token" in login.text
    assert LOGIN_COOKIE  # the cookie the double-submit compares against


def test_weakening_tls_is_refused_with_the_provision(app: InProcess) -> None:
    browser = signed_in(app)
    token = browser.csrf()
    for version in ("1.0", "1.1"):
        refused = browser.post("/console/settings/tls", {"min_tls_version": version, "csrf": token})
        assert refused.status_code == 409
        assert "5.5-1" in refused.text and f"TLS {version}" in refused.text
    odd = browser.post("/console/settings/tls", {"min_tls_version": "9.9", "csrf": token})
    assert odd.status_code == 400


def test_each_action_needs_the_scope_the_api_needs(app: InProcess) -> None:
    reader = signed_in(app, "reader", "read")
    token = reader.csrf()
    for path, form in (
        ("/console/rollouts", {"release": "1"}),
        ("/console/rollouts/1/pause", {}),
        ("/console/alerts/1/acknowledge", {}),
        ("/console/settings/tls", {"min_tls_version": "1.3"}),
        ("/console/owners/o-1/delete-data", {}),
    ):
        answer = reader.post(path, {**form, "csrf": token})
        assert answer.status_code == 403 and "lacks the scope" in answer.text, path
    assert reader.get("/console/disclosures").status_code == 403
    page = reader.get("/console/releases").text
    assert "Start staged rollout" not in page, "actions a scope cannot take are not offered"


def test_sessions_end_when_idle_signed_out_or_the_operator_is_revoked(app: InProcess) -> None:
    browser = signed_in(app)
    app.now[0] += timedelta(minutes=31)
    assert browser.get("/console/").status_code == 303, "an idle session ends"
    app.now[0] += timedelta(minutes=1)
    browser = signed_in(app, "carol", "read")
    assert browser.get("/console/").status_code == 200
    token = browser.csrf()
    assert browser.post("/console/logout", {"csrf": token}).status_code == 303
    assert browser.get("/console/").status_code == 303, "signed out"
    browser = Browser(app)
    app.now[0] += timedelta(seconds=30)
    secret_row = None
    with app.service.store.transaction() as session:
        operator_id = session.scalar(select(Operator.id).where(Operator.name == "carol"))
        secret_row = session.get(ConsoleLogin, operator_id)
        assert secret_row is not None
        secret = secret_row.totp_secret
    assert browser.sign_in("carol", PASSWORD, code(app, secret)).status_code == 303
    revoke_operator(app.service, "carol", actor="cli:test")
    assert browser.get("/console/").status_code == 303, "a revoked operator's session ends"


def test_alert_acknowledged_from_the_console(app: InProcess) -> None:
    finding = Finding(
        device=None,
        kind="fleet_outlier",
        severity="critical",
        time=app.now[0].timestamp(),
        score=12.0,
        rule="update_failures > 3 sigma of the fleet",
        evidence={"devices": 12},
    )
    with app.service.store.transaction() as session:
        (raised,) = raise_alerts(app.service, session, [finding], {}, now=app.now[0])
    browser = signed_in(app)
    page = browser.get("/console/alerts")
    assert "fleet_outlier on the fleet" in page.text and "update_failures" in page.text
    token = browser.csrf("/console/alerts")
    assert browser.post("/console/alerts/999999/acknowledge", {"csrf": token}).status_code == 404
    assert browser.post(f"/console/alerts/{raised.id}/acknowledge", {"csrf": token}).status_code == 303
    assert "no open alerts" in browser.get("/console/alerts").text
    assert "acknowledged" in browser.get("/console/alerts?all=1").text
    (view,) = [a for a in list_alerts(app.service) if a.id == raised.id]
    assert view.acknowledged and view.acknowledged_by == "operator:alice"
    assert any(r.type == "alert.raised" for r in audit_log(app.service).iter_records())


def test_enrolment_leaves_evidence_and_never_the_secrets(app: InProcess) -> None:
    secret = enrol(app, "dave", "read")
    records = [r for r in audit_log(app.service).iter_records() if r.type == "operator.console_enrolled"]
    assert [r.subject for r in records] == ["dave"]
    assert secret not in str(records[0].data) and PASSWORD not in str(records[0].data)
    with app.service.store.transaction() as session:
        stored = session.scalars(select(ConsoleLogin)).one()
        assert PASSWORD not in stored.password_hash and stored.password_hash.startswith("scrypt$")


def test_the_compliance_page_shows_the_newest_real_assessment(
    product_dir: Path, sqlite_store: str, tmp_path: Path
) -> None:
    with in_process(product_dir, sqlite_store) as running:
        browser = signed_in(running)
        assert "No assessment yet" in browser.get("/console/compliance").text
        product = open_test_product(product_dir)
        written = write_assessment(
            product, assess(product, now=product.clock()), out_dir=tmp_path / "assessment", fail_on="mandatory"
        )
        page = browser.get("/console/compliance").text
        guidelines = written.report["guidelines"]
        assert len(guidelines) >= 10
        for entry in guidelines:
            counts = entry["verdicts"]
            cells = re.search(
                rf"<tr><td>{entry['number']}\. {re.escape(html.escape(entry['title']))}</td>(.*?)</tr>", page, re.S
            )
            assert cells is not None, entry["title"]
            shown = [int(n) for n in re.findall(r">(\d+)</td>", cells.group(1))]
            assert shown == [
                counts["pass"],
                counts["fail"],
                counts["declared"],
                counts["not_applicable"],
                counts["inconclusive"],
            ]
        gate = written.report["summary"]["gate"]
        assert ("passed" if gate["passed"] else "blocked") in page
        full = browser.get("/console/compliance/report.html")
        assert full.status_code == 200 and full.content == (written.out_dir / "report.html").read_bytes()
