"""Ownership and personal data through the fleet API, in process, on SQLite and PostgreSQL.

Claim once with the one-time code, transfer (authorised by the owner's key) and release, each a
signed link that verifies offline; personal data encrypted per owner, kept for its retention; "delete
my data" crypto-shreds, queues factory resets and answers with a signed receipt.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from service_fixtures import InProcess, copy_product, in_process
from sqlalchemy import func, select

from trustroot.context.schema import PersonalDataCategory
from trustroot.fleet.operators import add_operator
from trustroot.fleet.ownership import (
    OwnerRef,
    set_claim_code_hash,
    transfer_authorization,
    verify_ownership_chain,
)
from trustroot.fleet.ownership_models import OwnerDataKey, PersonalDatum
from trustroot.fleet.personal_data import purge_expired
from trustroot.fleet.receipts import verify_deletion_receipt
from trustroot.fleet.store.audit import audit_log
from trustroot.fleet.store.models import DeviceCommand
from trustroot.provision.claim import claim_code_hash, generate_claim_code

pytest_plugins = ["service_fixtures"]
pytestmark = pytest.mark.integration

CATEGORIES = [
    PersonalDataCategory(name="home-address", description="Where the device is.", in_service=True, retention_days=30),
    PersonalDataCategory(name="voice", description="Voice clips.", in_service=True, retention_days=7),
    PersonalDataCategory(name="wifi-credentials", description="Only on the device.", in_service=False),
]


@pytest.fixture(scope="module")
def owner_product(product_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_product(product_template, tmp_path_factory.mktemp("ownership") / "acme")


def with_categories(running: InProcess, *, delete_on_transfer: bool = True) -> None:
    """Give the running service's context the test's personal-data categories."""
    context = running.service.context
    data = context.data.model_copy(update={"personal": CATEGORIES, "delete_on_transfer": delete_on_transfer})
    running.service.context = context.model_copy(update={"data": data})


@pytest.fixture
def app(owner_product: Path, migrated_store_url: str) -> Iterator[InProcess]:
    with in_process(owner_product, migrated_store_url) as running:
        with_categories(running)
        yield running


@dataclass
class OwnerClient:
    owner_id: str
    api_key: str
    key: Ed25519PrivateKey

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}

    @property
    def ref(self) -> OwnerRef:
        return OwnerRef(self.owner_id, self.key.public_key().public_bytes_raw().hex())


def call(running: InProcess, method: str, path: str, **options: Any) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=running.app)
        async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as client:
            return await client.request(method, path, **options)

    return asyncio.run(go())


def new_owner(running: InProcess) -> OwnerClient:
    key = Ed25519PrivateKey.generate()
    answer = call(running, "POST", "/api/v1/owners", json={"public_key": key.public_key().public_bytes_raw().hex()})
    assert answer.status_code == 201, answer.text
    return OwnerClient(answer.json()["owner_id"], answer.json()["api_key"], key)


def arm_claim(running: InProcess) -> str:
    code = generate_claim_code()
    set_claim_code_hash(running.service, running.device.serial, claim_code_hash(code))
    return code


def service_key(running: InProcess) -> Ed25519PublicKey:
    pem = call(running, "GET", "/api/v1/ownership/key").json()["service_key"]
    key = serialization.load_pem_public_key(pem.encode())
    assert isinstance(key, Ed25519PublicKey)
    return key


def chain_of(running: InProcess, owner: OwnerClient) -> list[dict[str, Any]]:
    answer = call(running, "GET", f"/api/v1/owners/me/devices/{running.device.serial}/ownership", headers=owner.headers)
    assert answer.status_code == 200, answer.text
    links: list[dict[str, Any]] = answer.json()["links"]
    return links


def claimed(running: InProcess) -> OwnerClient:
    owner = new_owner(running)
    answer = call(
        running, "POST", "/api/v1/owners/claim", json={"claim_code": arm_claim(running)}, headers=owner.headers
    )
    assert answer.status_code == 200, answer.text
    return owner


def test_claim_once_transfer_release_and_verify_offline(app: InProcess) -> None:
    serial = app.device.serial
    alice, bob, mallory = new_owner(app), new_owner(app), new_owner(app)
    code = arm_claim(app)
    assert call(app, "POST", "/api/v1/owners/claim", json={"claim_code": code}).status_code == 401
    first = call(app, "POST", "/api/v1/owners/claim", json={"claim_code": code.lower()}, headers=alice.headers)
    assert first.status_code == 200, first.text
    again = call(app, "POST", "/api/v1/owners/claim", json={"claim_code": code}, headers=mallory.headers)
    assert again.status_code == 403 and "used already" in again.json()["message"]
    typo = call(app, "POST", "/api/v1/owners/claim", json={"claim_code": "0000-0000"}, headers=mallory.headers)
    assert typo.status_code == 422
    assert call(app, "GET", "/api/v1/owners/me/devices", headers=alice.headers).json()["devices"] == [serial]

    links = chain_of(app, alice)
    assert verify_ownership_chain(links, service_key(app)) == alice.ref

    # mallory can neither transfer nor read the chain; a transfer signed by the wrong key is refused
    forged = base64.b64encode(mallory.key.sign(transfer_authorization(serial, "0" * 64, bob.ref))).decode()
    path = f"/api/v1/owners/me/devices/{serial}/transfer"
    body = {"new_owner_id": bob.owner_id, "authorization": forged}
    assert call(app, "POST", path, json=body, headers=mallory.headers).status_code == 403
    assert call(app, "POST", path, json=body, headers=alice.headers).status_code == 403
    own_path = f"/api/v1/owners/me/devices/{serial}/ownership"
    assert call(app, "GET", own_path, headers=mallory.headers).status_code == 403

    import hashlib

    from trustroot.fleet.receipts import canonical_json

    prev = hashlib.sha256(canonical_json(links[-1]["body"])).hexdigest()
    signed = base64.b64encode(alice.key.sign(transfer_authorization(serial, prev, bob.ref))).decode()
    moved = call(app, "POST", path, json={"new_owner_id": bob.owner_id, "authorization": signed}, headers=alice.headers)
    assert moved.status_code == 200, moved.text
    assert moved.json()["receipt"]["receipt"]["reason"] == "transfer"
    assert verify_ownership_chain(chain_of(app, bob), service_key(app)) == bob.ref

    released = call(app, "POST", f"/api/v1/owners/me/devices/{serial}/release", headers=bob.headers)
    assert released.status_code == 200
    assert call(app, "POST", f"/api/v1/owners/me/devices/{serial}/release", headers=bob.headers).status_code == 403
    assert verify_ownership_chain(chain_of(app, alice), service_key(app)) is None

    # operators read the chain with device-admin, nothing less
    token = add_operator(app.service, "admin", "device-admin", actor="test").token
    reader = add_operator(app.service, "reader", "read", actor="test").token
    op_path = f"/api/v1/devices/{serial}/ownership"
    assert call(app, "GET", op_path).status_code == 401
    assert call(app, "GET", op_path, headers={"Authorization": f"Bearer {reader}"}).status_code == 403
    seen = call(app, "GET", op_path, headers={"Authorization": f"Bearer {token}"})
    assert seen.status_code == 200 and len(seen.json()["links"]) == 3

    kinds = [r.data["kind"] for r in audit_log(app.service).iter_records() if r.type == "ownership.changed"]
    assert kinds == ["claim", "transfer", "release"]


def test_personal_data_is_encrypted_kept_for_its_retention_and_deleted_with_a_receipt(app: InProcess) -> None:
    serial = app.device.serial
    owner = claimed(app)
    base = f"/api/v1/owners/me/devices/{serial}/data"
    put = call(app, "PUT", f"{base}/home-address", json={"value": "1 Secret Lane"}, headers=owner.headers)
    assert put.status_code == 200, put.text
    assert call(app, "PUT", f"{base}/voice", json={"value": "hello"}, headers=owner.headers).status_code == 200
    assert call(app, "PUT", f"{base}/wifi-credentials", json={"value": "x"}, headers=owner.headers).status_code == 422
    assert call(app, "PUT", f"{base}/voice", json={"value": "x" * 5000}, headers=owner.headers).status_code == 422
    stranger = new_owner(app)
    assert call(app, "GET", base, headers=stranger.headers).status_code == 403
    assert call(app, "GET", base, headers=owner.headers).json()["data"] == {
        "home-address": "1 Secret Lane",
        "voice": "hello",
    }
    with app.service.store.transaction() as session:
        stored = session.scalars(select(PersonalDatum.ciphertext)).all()
    assert stored and all(b"Secret" not in blob and b"hello" not in blob for blob in stored)

    # retention: voice (7 days) goes at day 8, the address (30 days) stays
    assert purge_expired(app.service, now=app.now[0] + timedelta(days=8)) == 1
    assert call(app, "GET", base, headers=owner.headers).json()["data"] == {"home-address": "1 Secret Lane"}

    answer = call(app, "POST", "/api/v1/owners/me/delete", headers=owner.headers)
    assert answer.status_code == 200, answer.text
    body = verify_deletion_receipt(answer.json(), service_key(app))
    assert body["categories"] == {"home-address": 1}
    assert body["data_key_destroyed"] is True
    assert body["factory_reset_queued"] == [serial]
    assert owner.owner_id not in answer.text
    with app.service.store.transaction() as session:
        assert session.scalar(select(func.count()).select_from(PersonalDatum)) == 0
        assert session.scalar(select(func.count()).select_from(OwnerDataKey)) == 0
        assert session.scalars(select(DeviceCommand.kind)).all() == ["factory_reset"]
    deleted = [r for r in audit_log(app.service).iter_records() if r.type == "data.deleted"]
    assert [r.data["reason"] for r in deleted] == ["retention", "owner-request"]
    assert "Secret" not in str([r.data for r in deleted])
    # the factory reset reaches the device at its next check-in
    checkin = app.check_in()
    assert checkin.status_code == 200
    assert "factory_reset" in checkin.text
