"""Device reset reports (POST /api/v1/device/reports/reset): the receipt links the service's side and the device's.

In process (the application ``trustroot serve`` runs; devices authenticate through forwarded-certificate
mode, the full certificate validation) on SQLite.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from service_fixtures import (
    PROXY_SECRET,
    DeviceCredentials,
    InProcess,
    copy_product,
    in_process,
    issue_device,
    next_serial_number,
    register_device,
)
from sqlalchemy import select

from trustroot.fleet.api.agent_reports import RESET_RECEIPT_DOMAIN
from trustroot.fleet.ownership import set_claim_code_hash
from trustroot.fleet.receipts import canonical_json
from trustroot.fleet.store.models import AuditRecord, CommandState, DeviceCommand
from trustroot.provision.claim import claim_code_hash, generate_claim_code

pytestmark = pytest.mark.integration
pytest_plugins = ["service_fixtures"]

PATH = "/api/v1/device/reports/reset"


@pytest.fixture(scope="module")
def reports_product(product_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_product(product_template, tmp_path_factory.mktemp("reports") / "acme")


@pytest.fixture
def app(reports_product: Path, sqlite_store: str) -> Iterator[InProcess]:
    with in_process(reports_product, sqlite_store) as running:
        yield running


def call(
    app: InProcess, method: str, path: str, device: DeviceCredentials | None = None, **options: Any
) -> httpx.Response:
    headers = dict(options.pop("headers", {}))
    if device is not None:
        pem = device.certificate.public_bytes(serialization.Encoding.PEM).decode()
        headers |= {"X-Trustroot-Client-Cert": quote(pem), "X-Trustroot-Proxy-Secret": PROXY_SECRET}

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app.app)
        async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as client:
            return await client.request(method, path, headers=headers, **options)

    return asyncio.run(go())


def _owner_deletes(app: InProcess) -> str:
    """An owner claims the app's device and deletes all its data; the receipt's SHA-256."""
    key = Ed25519PrivateKey.generate().public_key().public_bytes_raw().hex()
    made = call(app, "POST", "/api/v1/owners", json={"public_key": key})
    auth = {"Authorization": f"Bearer {made.json()['api_key']}"}
    code = generate_claim_code()
    set_claim_code_hash(app.service, app.device.serial, claim_code_hash(code))
    assert call(app, "POST", "/api/v1/owners/claim", json={"claim_code": code}, headers=auth).status_code == 200
    receipt = call(app, "POST", "/api/v1/owners/me/delete", headers=auth)
    assert receipt.status_code == 200, receipt.text
    assert receipt.json()["receipt"]["factory_reset_queued"] == [app.device.serial]
    return hashlib.sha256(canonical_json(receipt.json())).hexdigest()


def test_a_commanded_reset_is_acknowledged_and_linked_to_the_deletion_receipt(app: InProcess) -> None:
    receipt_sha256 = _owner_deletes(app)
    commands = app.check_in().json()["commands"]
    assert [c["kind"] for c in commands] == ["factory_reset"]
    body = {"command_id": commands[0]["id"], "status": "completed", "categories_wiped": ["wifi-credentials"]}
    answer = call(app, "POST", PATH, app.device, json=body)
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert result["state"] == "acknowledged" and result["deletion_receipt_sha256"] == receipt_sha256
    signed = result["receipt"]
    public = serialization.load_pem_public_key(call(app, "GET", "/api/v1/ownership/key").json()["service_key"].encode())
    assert isinstance(public, Ed25519PublicKey)
    public.verify(base64.b64decode(signed["signature"]), RESET_RECEIPT_DOMAIN + canonical_json(signed["receipt"]))
    assert signed["receipt"]["serial"] == app.device.serial
    with app.service.store.transaction() as session:
        command = session.get(DeviceCommand, commands[0]["id"])
        assert command is not None and command.state == CommandState.ACKNOWLEDGED.value
        record = session.scalars(select(AuditRecord).where(AuditRecord.type == "device.reset")).one()
        data = json.loads(record.data)
    assert data["deletion_receipt_sha256"] == receipt_sha256 and record.actor == f"device:{app.device.serial}"
    # delivered no more, and a repeated report changes nothing
    assert app.check_in().json()["commands"] == []
    assert call(app, "POST", PATH, app.device, json=body).json() == result


def test_a_device_cannot_report_another_devices_command(app: InProcess) -> None:
    _owner_deletes(app)
    command_id = app.check_in().json()["commands"][0]["id"]
    other = issue_device(Path(app.service.config.state_dir).parent, next_serial_number())
    register_device(app.url, other)
    app.now[0] = datetime.now(UTC)  # the injected clock: after the new certificate's start
    body = {"command_id": command_id, "status": "completed", "categories_wiped": []}
    refused = call(app, "POST", PATH, other, json=body)
    assert refused.status_code == 404, refused.text
    with app.service.store.transaction() as session:
        command = session.get(DeviceCommand, command_id)
        assert command is not None and command.state == CommandState.DELIVERED.value  # untouched


@pytest.mark.parametrize(
    "body",
    [
        {"command_id": 1, "status": "done", "categories_wiped": []},
        {"command_id": 0, "status": "completed"},
        {"status": "completed", "categories_wiped": ["../etc"]},
        {"status": "completed", "serial": "ACMEPL-00000001"},
        {"status": "completed", "categories_wiped": ["x"] * 65},
    ],
)
def test_malformed_reports_are_refused(app: InProcess, body: dict[str, Any]) -> None:
    assert call(app, "POST", PATH, app.device, json=body).status_code == 422


def test_without_a_device_certificate_the_report_is_refused(app: InProcess) -> None:
    answer = call(app, "POST", PATH, json={"status": "completed"})
    assert answer.status_code == 401 and "5.5-1" in answer.text
