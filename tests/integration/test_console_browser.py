"""The console in a real browser: Chromium (Debian's package) driven by Playwright over real TLS.

An operator made with ``trustroot operator console-user`` signs in with password and TOTP, starts a
staged rollout, watches it pause itself when devices report failed installs over mutual TLS,
acknowledges an alert, and deletes an owner's personal data. Screenshots of each step are kept
under ``test-artifacts/console/``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import ssl
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from playwright.sync_api import Page, expect, sync_playwright
from service_fixtures import (
    DeviceCredentials,
    RunningService,
    copy_product,
    issue_device,
    migrate,
    open_test_product,
    register_device,
    start_service,
)
from service_fixtures import database_url as product_database_url

from trustroot.fleet import totp
from trustroot.fleet.alerts import raise_alerts
from trustroot.fleet.config import FleetConfig
from trustroot.fleet.ownership import claim_device, register_owner, set_claim_code_hash
from trustroot.fleet.ownership_models import PersonalDatum
from trustroot.fleet.personal_data import store_personal_data
from trustroot.fleet.releases.models import Release
from trustroot.fleet.service import FleetService
from trustroot.fleet.store.db import Store, make_engine
from trustroot.fleet.store.models import Device
from trustroot.monitor.detect import Finding
from trustroot.provision.claim import claim_code_hash, generate_claim_code

pytestmark = pytest.mark.integration
pytest_plugins = ["service_fixtures"]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "console"
PASSWORD = "browser-test-passphrase-42"
DEVICES = 60
_FAST_STAGES = """[[update.rollout_stages]]
percent = 50
min_hours = 24

[[update.rollout_stages]]
percent = 100
"""


@dataclass
class Console:
    running: RunningService
    devices: list[DeviceCredentials]
    totp_secret: str
    service: FleetService


def _fast_rollout_stages(product_dir: Path) -> None:
    """Two stages (50 %, 100 %) so that a few dozen devices reach the rollout's minimum sample."""
    path = product_dir / "security-context.toml"
    text = path.read_text()
    head, _, tail = text.partition("[[update.rollout_stages]]")
    rest = tail[tail.index("[communication]") :]
    path.write_text(head + _FAST_STAGES + "\n" + rest)


def _spki_pin(port: int) -> str:
    """Base64 SHA-256 of the server certificate's public key (Chromium trusts exactly that key)."""
    pem = ssl.get_server_certificate(("127.0.0.1", port))
    cert = x509.load_pem_x509_certificate(pem.encode())
    spki = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


@pytest.fixture(scope="module")
def console(product_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian's chromium is not installed: run scripts/setup.sh")
    product_dir = copy_product(product_template, tmp_path_factory.mktemp("console") / "acme")
    _fast_rollout_stages(product_dir)
    url = migrate(product_database_url(product_dir))
    devices = [issue_device(product_dir, 5000 + n) for n in range(DEVICES)]
    for device in devices:
        register_device(url, device)
    made = subprocess.run(
        [
            sys.executable,
            "-m",
            "trustroot.cli",
            "operator",
            "console-user",
            "alice",
            "--scope",
            "read,release,device-admin,disclosure",
            "--password-stdin",
            "--json",
            "--context",
            str(product_dir),
        ],
        input=PASSWORD + "\n",
        capture_output=True,
        text=True,
        check=True,
        env=os.environ,
        timeout=120,
    )
    secret = json.loads(made.stdout)["totp_secret"]
    product = open_test_product(product_dir)
    service = FleetService(
        store=Store(make_engine(url)),
        config=FleetConfig(database_url=url, state_dir=product.state_dir),
        context=product.context.model,
        pki_dir=product.pki_dir,
        keys=product.keys,
    )
    with service.store.transaction() as session:
        session.add(
            Release(
                channel="stable",
                name="acme-plug",
                version="1.1.0",
                security_counter=2,
                sha256="ab" * 32,
                size=4096,
                target_path="stable/acme-plug-1.1.0.img",
                published_at=datetime.now(UTC),
                published_by="cli:test",
                support_period_end=None,
            )
        )
    running = start_service(product_dir, devices[0])
    try:
        yield Console(running=running, devices=devices, totp_secret=secret, service=service)
    finally:
        running.stop()
        service.store.dispose()


@pytest.fixture(scope="module")
def browser_page(console: Console) -> Iterator[Page]:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as driver:
        browser = driver.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", f"--ignore-certificate-errors-spki-list={_spki_pin(console.running.port)}"],
        )
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        try:
            yield page
        finally:
            context.close()
            browser.close()


def _shot(page: Page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def _check_in(console: Console, device: DeviceCredentials, report: dict[str, object]) -> dict[str, object]:
    with console.running.client(device) as client:
        answer = client.post("/api/v1/device/check-in", json=report)
    assert answer.status_code == 200, answer.text
    body: dict[str, object] = answer.json()
    return body


def test_an_operator_runs_the_fleet_from_the_browser(console: Console, browser_page: Page) -> None:
    page = browser_page
    base = console.running.url
    page.goto(f"{base}/console/")
    expect(page.locator("h1")).to_have_text("Sign in")
    page.fill("#name", "alice")
    page.fill("#password", PASSWORD)
    page.fill("#code", totp.totp(console.totp_secret, datetime.now(UTC)))
    _shot(page, "01-sign-in")
    page.click("#sign-in")
    expect(page.locator("#count-total")).to_have_text(str(DEVICES))
    _shot(page, "02-fleet")

    # start a staged rollout of 1.1.0
    page.click("text=Releases")
    page.click("button[id^=start-rollout-]")
    state = page.locator("tr.rollout td.state").first
    expect(state).to_have_text("active")
    _shot(page, "03-rollout-started")

    # devices check in over mutual TLS; those offered the image report a failed install
    offered = []
    for device in console.devices:
        answer = _check_in(console, device, {"firmware_version": "1.0.0", "security_counter": 1})
        if answer.get("offer"):
            offered.append(device)
    assert len(offered) >= 20, f"only {len(offered)} of {DEVICES} devices were offered the image"
    for device in offered:
        _check_in(
            console,
            device,
            {
                "firmware_version": "1.0.0",
                "security_counter": 1,
                "install_results": [
                    {"version": "1.1.0", "security_counter": 2, "status": "rolled_back", "error": "health check failed"}
                ],
            },
        )
    # the page polls the rollout and shows it paused by itself
    expect(state).to_have_text("paused", timeout=15_000)
    expect(page.locator("button.resume").first).to_be_visible()
    _shot(page, "04-rollout-paused")

    # an alert, acknowledged
    finding = Finding(
        device=None,
        kind="fleet_outlier",
        severity="critical",
        time=datetime.now(UTC).timestamp(),
        score=float(len(offered)),
        rule="devices rolled back 1.1.0",
        evidence={"devices": len(offered)},
    )
    with console.service.store.transaction() as session:
        raise_alerts(console.service, session, [finding], {}, now=datetime.now(UTC))
    page.click("text=Alerts")
    expect(page.locator("#alerts")).to_contain_text("rolled back 1.1.0")
    _shot(page, "05-alert")
    page.click("button.ack")
    expect(page.locator("#alerts")).to_contain_text("no open alerts")

    # an owner's personal data, deleted from the device page
    owner, _ = register_owner(console.service, "11" * 32)
    target = console.devices[-1]
    code = generate_claim_code()
    set_claim_code_hash(console.service, target.serial, claim_code_hash(code))
    claim_device(console.service, owner, code)
    _with_category(console)
    store_personal_data(console.service, owner, target.serial, "wifi-credentials", b"ssid=home;psk=secret")
    page.goto(f"{base}/console/devices/{target.serial}")
    expect(page.locator("#owner")).to_contain_text(owner.id)
    page.on("dialog", lambda dialog: dialog.accept())
    page.click("#delete-owner-data")
    expect(page.locator("#deleted")).to_contain_text("1 row deleted")
    _shot(page, "06-data-deleted")
    with console.service.store.transaction() as session:
        row = session.query(Device).filter(Device.serial == target.serial).one()
        left = session.query(PersonalDatum).filter(PersonalDatum.device_id == row.id).count()
    assert left == 0, "the owner's personal data is gone from the store, the device stays registered"

    # weakening TLS is refused with the provision
    page.goto(f"{base}/console/settings")
    page.select_option("#min-tls-version", "1.1")
    page.click("#set-tls")
    expect(page.locator("#refusal")).to_contain_text("5.5-1")
    _shot(page, "07-tls-refused")


def _with_category(console: Console) -> None:
    """Declare a personal-data category kept by the service (the test product declares none)."""
    from trustroot.context.schema import PersonalDataCategory

    context = console.service.context
    categories = [
        PersonalDataCategory(name="wifi-credentials", description="Wi-Fi network name and key", in_service=True)
    ]
    console.service.context = context.model_copy(
        update={"data": context.data.model_copy(update={"personal": categories})}
    )


def test_the_console_loads_nothing_from_outside(console: Console) -> None:
    """Every asset a console page references is served by the service itself."""
    with httpx.Client(base_url=console.running.url, verify=console.running.ssl_context()) as client:
        page = client.get("/console/login").text
    for marker in ("http://", "https://", "//cdn", "googleapis"):
        assert marker not in page.replace(console.running.url, ""), marker
