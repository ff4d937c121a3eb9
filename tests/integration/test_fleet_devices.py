"""Importing closed production batches into the fleet (SQLite and PostgreSQL), looking devices up, the
``trustroot fleet`` commands and the operator device routes."""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import func, select, update

from trustroot.cli.main import main
from trustroot.evidence import EvidenceLog
from trustroot.fleet.api.operator_devices import require_devices_operator
from trustroot.fleet.config import FleetConfig
from trustroot.fleet.devices import (
    BatchImportRefused,
    DeviceUnknown,
    count_devices,
    get_device,
    get_device_by_certificate,
    import_batch,
    list_devices,
)
from trustroot.fleet.service import FleetService
from trustroot.fleet.store.audit import audit_log
from trustroot.fleet.store.db import Store
from trustroot.fleet.store.models import AuditRecord, Batch, Device, DeviceStatus
from trustroot.product import Product, open_product
from trustroot.provision import batch, manifest, tokens
from trustroot.web.app import create_app


@dataclass(frozen=True)
class Made:
    """A product with two closed batches (3 and 2 devices) and their manifests."""

    product_dir: Path
    first: bytes
    second: bytes
    first_path: Path


@pytest.fixture(scope="module")
def made(product_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Made:
    target = tmp_path_factory.mktemp("fleet-devices") / "acme"
    shutil.copytree(product_template, target, symlinks=True)
    product = open_product(target / "security-context.toml")
    store = tokens.production_store(product)
    try:
        record = tokens.authorize_here(product, store, factory="f1", count=5)
        closed = []
        for count in (3, 2):
            opened = batch.open_batch(product, store, record.token_id, count=count)
            batch.run_batch(product, store, opened.batch_id, count=count)
            closed.append(manifest.close_batch(product, store, opened.batch_id))
    finally:
        store.close()
    return Made(target, closed[0].manifest.read_bytes(), closed[1].manifest.read_bytes(), closed[0].manifest)


@pytest.fixture
def product(made: Made) -> Product:
    return open_product(made.product_dir / "security-context.toml")


@pytest.fixture
def service(product: Product, store: Store) -> FleetService:
    return FleetService(
        store=store,
        config=FleetConfig(database_url=str(store.engine.url), state_dir=product.state_dir),
        context=product.context.model,
        pki_dir=product.pki_dir,
        keys=product.keys,
        clock=product.clock,
    )


def _resigned(product: Product, data: bytes, edit: Callable[[dict[str, Any]], None]) -> bytes:
    """The manifest edited and signed again by the product's own production-authority key."""
    signed = json.loads(data)["signed"]
    edit(signed)
    return tokens.sign_envelope(signed, tokens.unlock_authority(product))


def _counts(service: FleetService) -> tuple[int, int, int]:
    with service.store.transaction() as session:
        return (
            session.scalar(select(func.count()).select_from(Batch)) or 0,
            session.scalar(select(func.count()).select_from(Device)) or 0,
            session.scalar(select(func.count()).select_from(AuditRecord)) or 0,
        )


def test_a_closed_batch_is_imported_once_with_evidence(service: FleetService, made: Made) -> None:
    result = import_batch(service, made.first, actor="cli:alice@host", source="m1.json")
    assert (result.devices, result.revoked, result.already_imported) == (3, 0, False)
    assert result.record is not None and result.record.type == "batch.imported"
    assert result.record.data["manifest_sha256"] == result.manifest_sha256
    assert result.record.data["devices"] == 3
    devices = list_devices(service)
    assert [d.serial for d in devices] == ["ACMEPL-00000001", "ACMEPL-00000002", "ACMEPL-00000003"]
    assert {d.batch_id for d in devices} == {result.batch}
    assert {(d.status, d.factory, d.model, d.group_name, d.channel) for d in devices} == {
        ("active", "f1", service.context.product.model, "default", "stable")
    }

    again = import_batch(service, made.first, actor="cli:bob@host")
    assert again.already_imported and again.record is None
    assert _counts(service) == (1, 3, 1)

    second = import_batch(service, made.second, actor="cli:alice@host")
    assert second.devices == 2
    assert _counts(service) == (2, 5, 2)
    assert audit_log(service).verify({}).records == 2


@pytest.mark.parametrize(
    "tamper",
    [
        lambda data: data.replace(b'"factory":"f1"', b'"factory":"f2"'),
        lambda data: data.replace(b"ACMEPL-00000002", b"ACMEPL-00000009"),
        lambda data: data[:-40] + b"}",
        lambda data: b"",
    ],
    ids=["factory-edited", "serial-edited", "truncated", "empty"],
)
def test_a_tampered_manifest_is_refused_and_nothing_is_written(
    service: FleetService, made: Made, tamper: Callable[[bytes], bytes]
) -> None:
    with pytest.raises(manifest.InvalidManifest, match=r"m1\.json: "):
        import_batch(service, tamper(made.first), actor="cli:mallory@host", source="m1.json")
    assert _counts(service) == (0, 0, 0)


def test_a_manifest_signed_by_another_key_is_refused(service: FleetService, made: Made) -> None:
    other = ec.generate_private_key(ec.SECP256R1())
    document = json.loads(made.first)
    body = tokens.canonical_json(document["signed"])
    document["signature"]["value"] = base64.b64encode(other.sign(body, ec.ECDSA(hashes.SHA256()))).decode()
    with pytest.raises(manifest.InvalidManifest, match="the signature does not verify"):
        import_batch(service, json.dumps(document).encode(), actor="cli:mallory@host")
    assert _counts(service) == (0, 0, 0)


def test_a_device_registered_from_another_manifest_is_refused(
    service: FleetService, product: Product, made: Made
) -> None:
    import_batch(service, made.first, actor="cli:alice@host")

    def add_a_first_batch_device(signed: dict[str, Any]) -> None:
        signed["devices"].append(json.loads(made.first)["signed"]["devices"][1])
        signed["count"] = 3

    duplicate = _resigned(product, made.second, add_a_first_batch_device)
    with pytest.raises(BatchImportRefused, match=r"lists 1 device\(s\) registered already.*ACMEPL-00000002"):
        import_batch(service, duplicate, actor="cli:alice@host")
    assert _counts(service) == (1, 3, 1)  # nothing of the second batch


def test_the_same_batch_from_another_manifest_is_refused(service: FleetService, product: Product, made: Made) -> None:
    import_batch(service, made.first, actor="cli:alice@host")

    def drop_the_last_device(signed: dict[str, Any]) -> None:
        signed["devices"].pop()
        signed["count"] = 2

    shorter = _resigned(product, made.first, drop_the_last_device)
    with pytest.raises(BatchImportRefused, match="imported already from another manifest"):
        import_batch(service, shorter, actor="cli:alice@host")
    assert _counts(service) == (1, 3, 1)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda s: s.update(product="Other Plug"), "was made for 'Other Plug', not 'Acme Plug'"),
        (lambda s: s.update(root_ca="ab" * 32), "names root CA abababab"),
    ],
    ids=["product", "root-ca"],
)
def test_a_manifest_of_another_product_is_refused(
    service: FleetService, product: Product, made: Made, edit: Callable[[dict[str, Any]], None], message: str
) -> None:
    with pytest.raises(BatchImportRefused, match=message):
        import_batch(service, _resigned(product, made.first, edit), actor="cli:alice@host")
    assert _counts(service) == (0, 0, 0)


def test_devices_are_found_by_certificate_and_unknown_ones_refused(
    service: FleetService, made: Made, product: Product
) -> None:
    import_batch(service, made.first, actor="cli:alice@host")
    entry = json.loads(made.first)["signed"]["devices"][1]
    cert = x509.load_pem_x509_certificate(entry["certificate"].encode())
    device = get_device_by_certificate(service, cert)
    assert (device.serial, device.status) == ("ACMEPL-00000002", "active")
    assert get_device(service, "ACMEPL-00000002").id == device.id

    with service.store.transaction() as session:
        session.execute(update(Device).where(Device.id == device.id).values(status=DeviceStatus.REVOKED.value))
    assert get_device_by_certificate(service, cert).status == "revoked"  # the caller refuses it

    unknown = x509.load_pem_x509_certificate(json.loads(made.second)["signed"]["devices"][0]["certificate"].encode())
    with pytest.raises(DeviceUnknown, match="no registered device has the certificate") as caught:
        get_device_by_certificate(service, unknown)
    assert caught.value.provision == "5.5-1"
    with pytest.raises(DeviceUnknown, match="no registered device 'ACMEPL-00000004'"):
        get_device(service, "ACMEPL-00000004")

    assert count_devices(service) == 3
    assert count_devices(service, status=DeviceStatus.REVOKED) == 1
    assert [d.serial for d in list_devices(service, status=DeviceStatus.ACTIVE, limit=1, offset=1)] == [
        "ACMEPL-00000003"
    ]
    assert list_devices(service, batch="no-such-batch") == []


# --- the command line ---------------------------------------------------------------------------


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, Any]:
    code = main([*args])
    captured = capsys.readouterr()
    try:
        return code, json.loads(captured.out)
    except ValueError:
        return code, captured.out + captured.err


def test_the_fleet_commands(
    made: Made, product: Product, migrated_store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["--context", str(made.product_dir / "security-context.toml"), "--database", migrated_store_url]
    code, out = _cli(capsys, "fleet", "migrate", *base, "--json")
    assert (code, out["changed"], out["to"]) == (0, False, out["head"])

    code, out = _cli(capsys, "fleet", "import-batch", str(made.first_path), *base, "--json")
    assert (code, out["devices"], out["already_imported"], out["audit_seq"]) == (0, 3, False, 1)
    code, out = _cli(capsys, "fleet", "import-batch", str(made.first_path), *base, "--json")
    assert (code, out["already_imported"]) == (0, True)

    tampered = tmp_path / "tampered.json"
    tampered.write_bytes(made.second.replace(b'"factory":"f1"', b'"factory":"f9"'))
    code, text = _cli(capsys, "fleet", "import-batch", str(tampered), *base)
    assert code == 1 and "the signature does not verify" in text

    code, out = _cli(capsys, "fleet", "devices", *base, "--json", "--limit", "2")
    assert code == 0 and out["total"] == 3
    assert [d["serial"] for d in out["devices"]] == ["ACMEPL-00000001", "ACMEPL-00000002"]
    code, text = _cli(capsys, "fleet", "devices", *base, "--status", "lost")
    assert code == 2 and "--status 'lost': use active or revoked" in text

    code, out = _cli(capsys, "fleet", "audit", "verify", *base, "--json")
    assert (code, out["records"], out["ok"]) == (0, 1, True)
    exported = tmp_path / "fleet-audit.jsonl"
    code, out = _cli(capsys, "fleet", "audit", "export", "--out", str(exported), *base, "--json")
    assert (code, out["records"]) == (0, 1)
    assert EvidenceLog(exported).verify(product.evidence_public_keys()).records == 1
    assert json.loads(exported.read_text())["type"] == "batch.imported"


def test_migrate_reports_a_fresh_database(made: Made, store_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["--context", str(made.product_dir / "security-context.toml"), "--database", store_url]
    code, out = _cli(capsys, "fleet", "migrate", *base, "--json")
    assert (code, out["from"], out["changed"]) == (0, None, True)
    code, text = _cli(capsys, "fleet", "migrate", *base)
    assert code == 0 and "already at the newest revision" in text


# --- the operator routes ------------------------------------------------------------------------


class _Client:
    """Requests to the application in this process (no network)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def get(self, path: str, **params: Any) -> httpx.Response:
        async def run() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as client:
                return await client.get(path, params=params)

        return asyncio.run(run())


@pytest.fixture
def client(service: FleetService) -> _Client:
    return _Client(create_app(service))


def test_operator_routes_refuse_without_authentication(client: _Client) -> None:
    answer = client.get("/api/v1/devices")
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"].startswith("Bearer")  # RFC 6750, with the realm


def test_operator_routes_list_and_show_devices(client: _Client, service: FleetService, made: Made) -> None:
    client.app.dependency_overrides[require_devices_operator] = lambda: "operator:test"
    import_batch(service, made.first, actor="cli:alice@host")
    answer = client.get("/api/v1/devices", status="active", limit=2, offset=1)
    assert answer.status_code == 200
    body = answer.json()
    assert body["total"] == 3
    assert [d["serial"] for d in body["devices"]] == ["ACMEPL-00000002", "ACMEPL-00000003"]
    one = client.get("/api/v1/devices/ACMEPL-00000001").json()
    assert (one["serial"], one["status"], one["group"], one["last_checkin_at"]) == (
        "ACMEPL-00000001",
        "active",
        "default",
        None,
    )
    assert client.get("/api/v1/devices/ACMEPL-00000042").status_code == 404
    assert client.get("/api/v1/devices", status="lost").status_code == 422
    assert client.get("/api/v1/devices", limit=5000).status_code == 422


def test_imported_devices_carry_their_claim_code_hashes(service: FleetService, made: Made) -> None:
    """The owner claim (fleet/ownership.py) needs each device's claim-code hash from the manifest."""
    from sqlalchemy import func, select

    from trustroot.fleet.ownership_models import DeviceClaimCode

    import_batch(service, made.first, actor="cli:alice@host")
    with service.store.transaction() as session:
        stored = session.scalar(select(func.count()).select_from(DeviceClaimCode))
    with_hash = [d for d in json.loads(made.first)["signed"]["devices"] if d.get("claim_code_hash")]
    assert with_hash and stored == len(with_hash)
