"""Batch manifests (signed, streamed, tamper-evident) and device revocation with the next CRL."""

from __future__ import annotations

import base64
import csv
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from trustroot.errors import ChainValidationError, PolicyRefusal, StateError, UsageError
from trustroot.pki.certificates import validate_chain
from trustroot.pki.crl import load_pem_crl
from trustroot.product import Product, open_product
from trustroot.provision import batch, manifest, revoke, tokens
from trustroot.provision.store import ProductionStore


@pytest.fixture
def made(product_dir: Path) -> Iterator[tuple[Product, ProductionStore, manifest.CloseResult]]:
    product = open_product(product_dir / "security-context.toml")
    store = tokens.production_store(product)
    record = tokens.authorize_here(product, store, factory="f1", count=4)
    opened = batch.open_batch(product, store, record.token_id, count=4)
    batch.run_batch(product, store, opened.batch_id, count=3, chunk=2)
    closed = manifest.close_batch(product, store, opened.batch_id)
    yield product, store, closed
    store.close()


def _authority(product: Product) -> object:
    return product.keys.public_key(tokens.AUTHORITY_KEY)


def test_the_manifest_verifies_and_lists_every_device(
    made: tuple[Product, ProductionStore, manifest.CloseResult],
) -> None:
    product, store, closed = made
    assert (closed.devices, closed.released, closed.voided) == (3, 1, 0)
    verified = manifest.verify_manifest(closed.manifest.read_bytes(), _authority(product))  # type: ignore[arg-type]
    assert [d.serial for d in verified.devices] == ["ACMEPL-00000001", "ACMEPL-00000002", "ACMEPL-00000003"]
    record = store.device("ACMEPL-00000002")
    assert record is not None
    assert verified.devices[1].certificate_sha256 == record.cert_fingerprint
    assert verified.devices[1].claim_code_hash == record.claim_hash
    token = store.token(verified.token)
    assert token is not None and (token.reserved, token.spent) == (3, 3)  # the unused device went back


def test_the_csv_carries_no_secret(made: tuple[Product, ProductionStore, manifest.CloseResult]) -> None:
    _, _, closed = made
    rows = list(csv.DictReader(closed.csv.read_text().splitlines()))
    assert tuple(rows[0]) == manifest.CSV_COLUMNS
    assert [r["serial"] for r in rows] == ["ACMEPL-00000001", "ACMEPL-00000002", "ACMEPL-00000003"]
    text = closed.csv.read_text()
    assert "claim" not in text and "password" not in text


def _edited(data: bytes, edit: object) -> bytes:
    document = json.loads(data)
    edit(document["signed"])  # type: ignore[operator]
    return json.dumps(document).encode()


@pytest.mark.parametrize(
    "edit",
    [
        lambda s: s["devices"].pop(),
        lambda s: s["devices"][0].update(serial="ACMEPL-00000099"),
        lambda s: s["devices"][0].update(claim_code_hash="0" * 64),
        lambda s: s.update(count=2),
        lambda s: s.update(factory="elsewhere"),
        lambda s: s["devices"].append(s["devices"][0]),
    ],
    ids=["device-removed", "serial-changed", "claim-hash-changed", "count", "factory", "device-duplicated"],
)
def test_a_tampered_manifest_is_refused(
    made: tuple[Product, ProductionStore, manifest.CloseResult], edit: object
) -> None:
    product, _, closed = made
    with pytest.raises(manifest.InvalidManifest, match="manifest: the signature does not verify"):
        manifest.verify_manifest(_edited(closed.manifest.read_bytes(), edit), _authority(product))  # type: ignore[arg-type]


def test_a_manifest_resigned_by_another_key_is_refused(
    made: tuple[Product, ProductionStore, manifest.CloseResult],
) -> None:
    product, _, closed = made
    document = json.loads(closed.manifest.read_bytes())
    other = ec.generate_private_key(ec.SECP256R1())
    body = tokens.canonical_json(document["signed"])
    document["signature"]["value"] = base64.b64encode(other.sign(body, ec.ECDSA(hashes.SHA256()))).decode()
    with pytest.raises(manifest.InvalidManifest, match="the signature does not verify"):
        manifest.verify_manifest(json.dumps(document).encode(), _authority(product))  # type: ignore[arg-type]
    with pytest.raises(manifest.InvalidManifest, match="signed by an unknown key"):
        manifest.verify_manifest(closed.manifest.read_bytes(), other.public_key())


def test_a_closed_batch_takes_no_device_and_closes_once(
    made: tuple[Product, ProductionStore, manifest.CloseResult],
) -> None:
    product, store, closed = made
    with pytest.raises(StateError, match="is closed: no device is added to it"):
        batch.run_batch(product, store, closed.batch.batch_id)
    with pytest.raises(StateError, match="is closed already"):
        manifest.close_batch(product, store, closed.batch.batch_id)


def test_revocation_publishes_a_crl_the_chain_check_refuses(
    made: tuple[Product, ProductionStore, manifest.CloseResult],
) -> None:
    product, store, closed = made
    verified = manifest.verify_manifest(closed.manifest.read_bytes(), _authority(product))  # type: ignore[arg-type]
    device = verified.devices[0].certificate
    root, issuing = product.certificate("root-ca.pem"), product.certificate("issuing-ca.pem")
    now = product.clock()
    validate_chain(device, [issuing], [root], now=now, purpose="client_auth")
    result = revoke.revoke_devices(product, store, serials=("ACMEPL-00000001",), reason="key compromise")
    assert (result.serials, result.crl_number, result.listed) == (("ACMEPL-00000001",), 2, 1)
    crl = load_pem_crl(product.pki_dir / "issuing-ca.crl.pem")
    entry = crl.get_revoked_certificate_by_serial_number(device.serial_number)
    assert entry is not None
    assert entry.extensions.get_extension_for_class(x509.CRLReason).value.reason is x509.ReasonFlags.key_compromise
    with pytest.raises(ChainValidationError, match=r"ACMEPL-00000001': revoked by .* reason keyCompromise"):
        validate_chain(device, [issuing], [root], now=now, purpose="client_auth", crls=[crl])
    validate_chain(verified.devices[1].certificate, [issuing], [root], now=now, purpose="client_auth", crls=[crl])
    # the next revocation keeps the earlier serial and increments the number
    again = revoke.revoke_devices(product, store, batch_id=closed.batch.batch_id, reason="cessationOfOperation")
    assert again.serials == ("ACMEPL-00000002", "ACMEPL-00000003") and again.crl_number == 3 and again.listed == 3
    types = [r.type for r in product.evidence.iter_records()]
    assert types.count("device.revoked") == 3


def test_revocation_refusals(made: tuple[Product, ProductionStore, manifest.CloseResult]) -> None:
    product, store, _ = made
    with pytest.raises(UsageError, match="--reason is required"):
        revoke.revoke_devices(product, store, serials=("ACMEPL-00000001",), reason=" ")
    with pytest.raises(UsageError, match="no device with serial ACMEPL-00000042"):
        revoke.revoke_devices(product, store, serials=("ACMEPL-00000042",), reason="superseded")
    revoke.revoke_devices(product, store, serials=("ACMEPL-00000001",), reason="superseded")
    with pytest.raises(StateError, match="nothing to revoke: the devices named are revoked already"):
        revoke.revoke_devices(product, store, serials=("ACMEPL-00000001",), reason="superseded")


def test_a_reserved_serial_cannot_be_revoked_and_is_void_after_close(product_dir: Path) -> None:
    product = open_product(product_dir / "security-context.toml")
    with tokens.production_store(product) as store:
        record = tokens.authorize_here(product, store, factory="f1", count=2)
        opened = batch.open_batch(product, store, record.token_id, count=2, flow="csr")
        serials = batch.reserve_serials(product, store, opened.batch_id, 2)
        with pytest.raises(PolicyRefusal, match="was never issued a certificate"):
            revoke.revoke_devices(product, store, serials=(serials[0],), reason="superseded")
        closed = manifest.close_batch(product, store, opened.batch_id)
        assert (closed.devices, closed.voided, closed.released) == (0, 2, 0)
        authority = product.keys.public_key(tokens.AUTHORITY_KEY)
        assert manifest.verify_manifest(closed.manifest.read_bytes(), authority).devices == ()  # type: ignore[arg-type]


def test_reason_names() -> None:
    assert revoke.reason_flag("Key Compromise (lab)") is x509.ReasonFlags.key_compromise
    assert revoke.reason_flag("superseded") is x509.ReasonFlags.superseded
    assert revoke.reason_flag("returned by customer") is x509.ReasonFlags.unspecified


def test_the_manifest_is_pem_per_device(made: tuple[Product, ProductionStore, manifest.CloseResult]) -> None:
    _, _, closed = made
    entry = json.loads(closed.manifest.read_bytes())["signed"]["devices"][0]
    cert = x509.load_pem_x509_certificate(entry["certificate"].encode())
    assert cert.public_bytes(serialization.Encoding.PEM).decode() == entry["certificate"]
