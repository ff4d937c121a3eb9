"""Provisioning with keys on a real SoftHSM2 token: the same passwords as the file store, a station key on a token."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from trustroot.keys._interface import Algorithm, KeyRole
from trustroot.keys.filestore import FileBackend
from trustroot.keys.passphrase import fixed_secrets
from trustroot.keys.pkcs11store import Pkcs11Backend
from trustroot.pki.certificates import dump_pem_certificate
from trustroot.product import ISSUING_CA_CERT, ROOT_CA_CERT, open_product
from trustroot.provision.bundle import (
    OPEN_FAILED,
    BundleError,
    DeviceMaterial,
    context_excerpt,
    make_bundle,
    open_bundle,
)
from trustroot.provision.claim import generate_claim_code
from trustroot.provision.device_dir import load_device_identity, program
from trustroot.provision.identity import format_serial, generate_device_key, issue_device_certificate, private_key_der
from trustroot.provision.passwords import derive_device_password

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
VECTORS = json.loads((REPO / "tests" / "vectors" / "passwords.json").read_text(encoding="utf-8"))


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def test_same_passwords_from_the_file_store_and_the_token(pkcs11_backend: Pkcs11Backend, tmp_path: Path) -> None:
    """The factory secret imported in both backends: handle.mac is HMAC in Python vs C_Sign(CKM_SHA256_HMAC)."""
    secret = bytes.fromhex(VECTORS["secret_hex"])
    files = FileBackend(tmp_path, fixed_secrets("file store passphrase"))
    on_file = files.unlock(
        files.import_key("factory-secret-1", KeyRole.FACTORY_SECRET, Algorithm.HMAC_SHA256, secret, domain="store")
    )
    on_token = pkcs11_backend.unlock(
        pkcs11_backend.import_key(
            unique("factory"), KeyRole.FACTORY_SECRET, Algorithm.HMAC_SHA256, secret, domain="store"
        )
    )
    assert on_file.info.fingerprint == on_token.info.fingerprint
    for vector in VECTORS["vectors"]:
        settings = {"alphabet": vector["alphabet"], "length": vector["length"], "min_entropy_bits": 0}
        from_file = derive_device_password(on_file, vector["product"], vector["serial"], **settings)
        from_token = derive_device_password(on_token, vector["product"], vector["serial"], **settings)
        assert from_file == from_token == vector["password"]
    for seq in range(200):
        serial = format_serial("ACMEPL-", 8, seq)
        assert derive_device_password(on_file, "Acme Plug", serial, alphabet="base32", length=16) == (
            derive_device_password(on_token, "Acme Plug", serial, alphabet="base32", length=16)
        )


def test_station_key_on_the_token(pkcs11_backend: Pkcs11Backend, product_template: Path, tmp_path: Path) -> None:
    """A bundle sealed to a P-256 station key made on the token opens through C_DeriveKey(ECDH1)."""
    product = open_product(
        product_template / "security-context.toml",
        secrets=fixed_secrets("test-store-passphrase", "test-root-passphrase"),
    )
    model = product.context.model
    issuing_cert, root_cert = product.certificate(ISSUING_CA_CERT), product.certificate(ROOT_CA_CERT)
    key = generate_device_key("ecdsa-p256")
    serial = "ACMEPL-00000007"
    cert = issue_device_certificate(
        product.keys.unlock(product.keys.active(KeyRole.ISSUING_CA).name),
        issuing_cert,
        key.public_key(),
        serial,
        model=model.product.model,
        manufacturer=model.product.manufacturer,
        settings=model.identity.certificate,
        now=datetime.now(UTC),
    )
    material = DeviceMaterial(
        serial=serial,
        private_key_der=private_key_der(key),
        chain_pem=tuple(dump_pem_certificate(c).decode() for c in (cert, issuing_cert, root_cert)),
        password="WGOJSDIFP4OEZ6P2",
        claim_code=generate_claim_code(),
        service_url=model.communication.service_url,
        context=context_excerpt(model),
    )
    station = pkcs11_backend.unlock(
        pkcs11_backend.generate(unique("station"), KeyRole.OTHER, Algorithm.ECIES_P256, domain="store")
    )
    other = pkcs11_backend.unlock(
        pkcs11_backend.generate(unique("station"), KeyRole.OTHER, Algorithm.ECIES_P256, domain="store")
    )
    bundle = make_bundle(station.public_key(), material)
    assert open_bundle(station, bundle) == material
    for wrong_station, data in ((other, bundle), (station, bundle[:-1] + bytes([bundle[-1] ^ 1]))):
        with pytest.raises(BundleError) as info:
            open_bundle(wrong_station, data)
        assert str(info.value) == OPEN_FAILED
    secret = b"device-secret-from-the-hardware-0001"
    done = program(bundle, station, tmp_path / "dev", device_secret=secret, trust_anchor=root_cert)
    assert done.label.password == material.password
    loaded_key, chain = load_device_identity(done.directory, secret)
    assert private_key_der(loaded_key) == material.private_key_der
    assert chain[0] == cert
