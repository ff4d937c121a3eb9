"""The device directory: program writes it all at once, nothing secret in clear, the agent loads it back."""

from __future__ import annotations

import json
import os
import re
import stat
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.serialization import load_der_private_key, load_pem_private_key

from trustroot.context.schema import SecurityContext
from trustroot.errors import PKIError, StateError, UnreadableInputError, UsageError, WrongSecretError
from trustroot.keys._interface import Algorithm, KeyHandle, KeyRole
from trustroot.keys.filestore import FileBackend
from trustroot.keys.passphrase import fixed_secrets
from trustroot.pki.certificates import certificate_fingerprint, create_root_ca, dump_pem_certificate
from trustroot.product import ISSUING_CA_CERT, ROOT_CA_CERT, open_product
from trustroot.provision import device_dir
from trustroot.provision.bundle import BundleError, DeviceMaterial, context_excerpt, make_bundle
from trustroot.provision.claim import generate_claim_code
from trustroot.provision.device_dir import (
    CHAIN_FILE,
    DEVICE_FILE,
    DEVICE_FORMAT,
    KEY_FILE,
    SECRET_FILE,
    DeviceDirectoryError,
    device_secret_from_env,
    load_device_config,
    load_device_identity,
    program,
    program_device,
)
from trustroot.provision.identity import generate_device_key, issue_device_certificate, private_key_der

SERIAL = "ACMEPL-00000042"
DEVICE_SECRET = b"device-secret-for-tests-0123456789"


@dataclass
class Station:
    handle: KeyHandle
    root_cert: x509.Certificate
    material: DeviceMaterial
    bundle: bytes
    ed_material: DeviceMaterial
    ed_bundle: bytes
    signer: KeyHandle


def _material(
    product_model: SecurityContext,
    issuing: KeyHandle,
    issuing_cert: x509.Certificate,
    root: x509.Certificate,
    algorithm: str,
) -> DeviceMaterial:
    key = generate_device_key(algorithm)
    cert = issue_device_certificate(
        issuing,
        issuing_cert,
        key.public_key(),
        SERIAL,
        model=product_model.product.model,
        manufacturer=product_model.product.manufacturer,
        settings=product_model.identity.certificate.model_copy(update={"algorithm": algorithm}),
        now=datetime.now(UTC),
    )
    return DeviceMaterial(
        serial=SERIAL,
        private_key_der=private_key_der(key),
        chain_pem=tuple(dump_pem_certificate(c).decode() for c in (cert, issuing_cert, root)),
        password="WGOJSDIFP4OEZ6P2",
        claim_code=generate_claim_code(),
        service_url="https://fleet.acme.example:8443",
        context=context_excerpt(product_model),
    )


@pytest.fixture(scope="module")
def station(product_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Station:
    product = open_product(
        product_template / "security-context.toml",
        secrets=fixed_secrets("test-store-passphrase", "test-root-passphrase"),
    )
    issuing = product.keys.unlock(product.keys.active(KeyRole.ISSUING_CA).name)
    issuing_cert = product.certificate(ISSUING_CA_CERT)
    root = product.certificate(ROOT_CA_CERT)
    backend = FileBackend(tmp_path_factory.mktemp("station-keys"), fixed_secrets("station passphrase"))
    handle = backend.unlock(backend.generate("station-1", KeyRole.OTHER, Algorithm.ECIES_P256, domain="store"))
    signer = backend.unlock(backend.generate("signer", KeyRole.OTHER, Algorithm.ECDSA_P256, domain="store"))
    model = product.context.model
    material = _material(model, issuing, issuing_cert, root, "ecdsa-p256")
    ed_material = _material(model, issuing, issuing_cert, root, "ed25519")
    return Station(
        handle=handle,
        root_cert=root,
        material=material,
        bundle=make_bundle(handle.public_key(), material),
        ed_material=ed_material,
        ed_bundle=make_bundle(handle.public_key(), ed_material),
        signer=signer,
    )


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# ------------------------------------------------------------------------------------------ program


def test_program_writes_the_documented_directory(station: Station, tmp_path: Path) -> None:
    out = tmp_path / "devices" / SERIAL
    result = program(station.bundle, station.handle, out, device_secret=DEVICE_SECRET, trust_anchor=station.root_cert)
    assert result.directory == out
    assert result.serial == SERIAL
    assert result.label.password == station.material.password
    assert result.label.claim_code == station.material.claim_code
    assert (result.label.product, result.label.model) == ("Acme Plug", station.material.context.model)
    assert station.material.claim_code not in repr(result)
    assert sorted(p.name for p in out.iterdir()) == sorted([DEVICE_FILE, CHAIN_FILE, KEY_FILE, SECRET_FILE])
    assert _mode(out) == 0o700
    assert _mode(out / KEY_FILE) == _mode(out / SECRET_FILE) == 0o600
    assert _mode(out / DEVICE_FILE) == _mode(out / CHAIN_FILE) == 0o644
    assert len((out / SECRET_FILE).read_bytes()) == 32
    device = json.loads((out / DEVICE_FILE).read_text())
    assert device == {
        "certificate_sha256": result.certificate_sha256,
        "context": station.material.context.to_json(),
        "format": DEVICE_FORMAT,
        "key": {"algorithm": "ecdsa-p256", "storage": "file"},
        "serial": SERIAL,
        "service_url": "https://fleet.acme.example:8443",
    }
    key_file = (out / KEY_FILE).read_bytes()
    assert key_file[:12] == b"TRDEVKEY\x01\x0a\x08\x01"  # version 1, the suite's test-only scrypt cost
    assert [c.public_bytes(serialization.Encoding.PEM).decode() for c in station.material.certificates()] == [
        dump_pem_certificate(c).decode() for c in x509.load_pem_x509_certificates((out / CHAIN_FILE).read_bytes())
    ]
    assert [p.name for p in tmp_path.joinpath("devices").iterdir()] == [SERIAL]  # no staging left behind


@pytest.mark.parametrize("which", ["p256", "ed25519"])
def test_the_agent_loads_the_identity_back(station: Station, tmp_path: Path, which: str) -> None:
    material, bundle = (
        (station.material, station.bundle) if which == "p256" else (station.ed_material, station.ed_bundle)
    )
    out = program_device(bundle, station.handle, tmp_path / "dev", device_secret=DEVICE_SECRET)
    key, chain = load_device_identity(out, DEVICE_SECRET)
    assert isinstance(key, ec.EllipticCurvePrivateKey if which == "p256" else ed25519.Ed25519PrivateKey)
    assert private_key_der(key) == material.private_key_der
    assert chain == material.certificates()
    config = load_device_config(out)
    assert config.serial == SERIAL
    assert config.key_algorithm == ("ecdsa-p256" if which == "p256" else "ed25519")
    assert config.context == material.context
    assert config.certificate_sha256 == certificate_fingerprint(chain[0])


def test_no_secret_in_clear_on_disk_after_program(station: Station, tmp_path: Path) -> None:
    """As test_cli_product.py::test_no_private_key_in_clear_after_init, for the device directory."""
    program(station.bundle, station.handle, tmp_path / "dev", device_secret=DEVICE_SECRET)
    material = station.material
    key = material.private_key()
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    scalar = key.private_numbers().private_value.to_bytes(32, "big")
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    secrets_in_clear = [material.private_key_der, scalar, pem, DEVICE_SECRET]
    texts = [material.password, material.claim_code, material.claim_code.replace("-", "")]
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(files) == 4
    for path in files:
        data = path.read_bytes()
        assert not re.search(rb"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----", data), path
        with pytest.raises((ValueError, TypeError)):
            load_der_private_key(data, None)
        with pytest.raises((ValueError, TypeError)):
            load_pem_private_key(data, None)
        for secret in secrets_in_clear:
            assert secret not in data, path
        for text in texts:
            assert str(text).encode() not in data, path
            assert str(text).lower().encode() not in data, path


def test_refuses_to_overwrite(station: Station, tmp_path: Path) -> None:
    existing = tmp_path / "dev"
    existing.mkdir()
    with pytest.raises(StateError, match="exists already; refusing to overwrite"):
        program(station.bundle, station.handle, existing, device_secret=DEVICE_SECRET)
    a_file = tmp_path / "file"
    a_file.write_text("keep me")
    with pytest.raises(StateError):
        program(station.bundle, station.handle, a_file, device_secret=DEVICE_SECRET)
    assert a_file.read_text() == "keep me"
    assert list(existing.iterdir()) == []
    done = program_device(station.bundle, station.handle, tmp_path / "dev2", device_secret=DEVICE_SECRET)
    with pytest.raises(StateError):
        program_device(station.bundle, station.handle, done, device_secret=DEVICE_SECRET)


def test_failures_leave_nothing(station: Station, tmp_path: Path) -> None:
    with pytest.raises(BundleError):
        program(station.bundle[:-1], station.handle, tmp_path / "dev", device_secret=DEVICE_SECRET)
    with pytest.raises(UsageError, match="shorter than 16 bytes"):
        program(station.bundle, station.handle, tmp_path / "dev", device_secret=b"short")
    other_root = create_root_ca(station.signer, "Other Root", "Mallory", 365, now=datetime.now(UTC))
    with pytest.raises(PKIError, match="the bundle's certificate chain is refused"):
        program(station.bundle, station.handle, tmp_path / "dev", device_secret=DEVICE_SECRET, trust_anchor=other_root)
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------------------------- load


@pytest.fixture
def programmed(station: Station, tmp_path: Path) -> Path:
    return program_device(station.bundle, station.handle, tmp_path / "dev", device_secret=DEVICE_SECRET)


def test_wrong_device_secret_or_altered_files_are_one_message(programmed: Path) -> None:
    with pytest.raises(WrongSecretError) as info:
        load_device_identity(programmed, b"another-device-secret-0123456789")
    message = str(info.value)
    assert message == f"the device secret does not unlock {programmed / KEY_FILE}, or the device directory was altered"
    original_key, original_secret = (programmed / KEY_FILE).read_bytes(), (programmed / SECRET_FILE).read_bytes()
    for position in range(12, len(original_key)):  # nonce and ciphertext: every byte
        damaged = bytearray(original_key)
        damaged[position] ^= 0x01
        (programmed / KEY_FILE).write_bytes(bytes(damaged))
        with pytest.raises(WrongSecretError) as info:
            load_device_identity(programmed, DEVICE_SECRET)
        assert str(info.value) == message
    (programmed / KEY_FILE).write_bytes(original_key)
    for damaged_secret in (bytes([original_secret[0] ^ 1]) + original_secret[1:], original_secret[:31]):
        (programmed / SECRET_FILE).write_bytes(damaged_secret)
        with pytest.raises(WrongSecretError) as info:
            load_device_identity(programmed, DEVICE_SECRET)
        assert str(info.value) == message
    (programmed / SECRET_FILE).write_bytes(original_secret)
    load_device_identity(programmed, DEVICE_SECRET)


def test_key_file_is_bound_to_the_serial(programmed: Path) -> None:
    """A key file moved to another device's directory does not open: the serial is in the AAD."""
    data = (programmed / KEY_FILE).read_bytes()
    file_secret = (programmed / SECRET_FILE).read_bytes()
    assert device_dir._decrypt_key(data, SERIAL, DEVICE_SECRET, file_secret, programmed)
    with pytest.raises(WrongSecretError):
        device_dir._decrypt_key(data, "ACMEPL-00000043", DEVICE_SECRET, file_secret, programmed)


@pytest.mark.parametrize(
    ("position", "value", "message"),
    [
        (0, 0x00, "not a trustroot device key file"),
        (8, 0x02, "key file version 2"),
        (9, 0x1F, "out of the accepted range"),
    ],
)
def test_key_file_header_damage_is_named(programmed: Path, position: int, value: int, message: str) -> None:
    data = bytearray((programmed / KEY_FILE).read_bytes())
    data[position] = value
    (programmed / KEY_FILE).write_bytes(bytes(data))
    with pytest.raises(DeviceDirectoryError, match=message):
        load_device_identity(programmed, DEVICE_SECRET)


def test_open_permissions_are_refused(programmed: Path) -> None:
    for name in (KEY_FILE, SECRET_FILE):
        os.chmod(programmed / name, 0o640)
        with pytest.raises(DeviceDirectoryError, match=r"readable by other users \(mode 0640\)") as info:
            load_device_identity(programmed, DEVICE_SECRET)
        assert info.value.hint == f"chmod 600 {programmed / name}"
        os.chmod(programmed / name, 0o600)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: {**d, "format": "trustroot.device/2"}, "this trustroot reads trustroot.device/1 only"),
        (lambda d: {**d, "extra": 1}, "expected exactly the fields"),
        (lambda d: {**d, "key": {"storage": "pkcs11", "algorithm": "ecdsa-p256"}}, "key storage 'pkcs11' is not"),
        (lambda d: {**d, "key": {"storage": "file", "algorithm": "rsa"}}, "must name the storage and an algorithm"),
        (lambda d: {**d, "key": {"storage": "file", "algorithm": "ed25519"}}, "the device key is ecdsa-p256, device"),
        (lambda d: {**d, "serial": "bad"}, "is not a device serial"),
        (lambda d: {**d, "serial": "ACMEPL-00000043"}, "names ACMEPL-00000042, not ACMEPL-00000043"),
        (lambda d: {**d, "certificate_sha256": "0" * 64}, "the first certificate is not the one"),
        (lambda d: {**d, "service_url": 5}, "'service_url' is missing or not a str"),
        (lambda d: {**d, "context": {}}, "context excerpt must be an object"),
        (lambda d: [d], "not a JSON object"),
    ],
)
def test_damaged_device_json_is_named(programmed: Path, edit: object, message: str) -> None:
    document = json.loads((programmed / DEVICE_FILE).read_text())
    (programmed / DEVICE_FILE).write_text(json.dumps(edit(document)))  # type: ignore[operator]
    with pytest.raises(DeviceDirectoryError, match=message):
        load_device_identity(programmed, DEVICE_SECRET)


def test_incomplete_directories_are_named(programmed: Path) -> None:
    (programmed / DEVICE_FILE).write_text("{not json")
    with pytest.raises(DeviceDirectoryError, match="is not JSON"):
        load_device_config(programmed)


def test_missing_secret_file(programmed: Path) -> None:
    (programmed / SECRET_FILE).unlink()
    with pytest.raises(DeviceDirectoryError, match="no such file; the device directory is incomplete"):
        load_device_identity(programmed, DEVICE_SECRET)


def test_device_secret_from_env() -> None:
    assert device_secret_from_env({"TRUSTROOT_DEVICE_SECRET": "0123456789abcdef"}) == b"0123456789abcdef"
    with pytest.raises(UsageError, match="no device secret: set TRUSTROOT_DEVICE_SECRET"):
        device_secret_from_env({})
    with pytest.raises(UsageError, match="shorter than 16 bytes"):
        device_secret_from_env({"TRUSTROOT_DEVICE_SECRET": "short"})
    with pytest.raises(UsageError, match="shorter than 16 bytes"):
        load_device_identity(Path("/nonexistent"), b"short")


def test_a_directory_made_meanwhile_is_not_overwritten(
    station: Station, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "dev"
    original = device_dir._fill

    def racing(*args: object, **kwargs: object) -> None:
        original(*args, **kwargs)  # type: ignore[arg-type]
        out.mkdir()
        (out / "theirs").write_text("keep")

    monkeypatch.setattr(device_dir, "_fill", racing)
    with pytest.raises(StateError, match="exists already"):
        program(station.bundle, station.handle, out, device_secret=DEVICE_SECRET)
    assert [p.name for p in tmp_path.iterdir()] == ["dev"]  # the staging directory is gone
    assert [p.name for p in out.iterdir()] == ["theirs"]


def test_unreadable_secret_file(programmed: Path) -> None:
    (programmed / SECRET_FILE).unlink()
    (programmed / SECRET_FILE).symlink_to(SECRET_FILE)  # a loop: stat fails, but not with "no such file"
    with pytest.raises(UnreadableInputError, match="cannot be read"):
        load_device_identity(programmed, DEVICE_SECRET)


def _replace_device_certificate(directory: Path, cert: x509.Certificate) -> None:
    """Put ``cert`` first in chain.pem and name it in device.json, as an attacker with write access would."""
    chain = x509.load_pem_x509_certificates((directory / CHAIN_FILE).read_bytes())
    (directory / CHAIN_FILE).write_bytes(b"".join(dump_pem_certificate(c) for c in [cert, *chain[1:]]))
    document = json.loads((directory / DEVICE_FILE).read_text())
    document["certificate_sha256"] = certificate_fingerprint(cert)
    (directory / DEVICE_FILE).write_text(json.dumps(document))


def _certificate(key: object, *, san: bool = True) -> x509.Certificate:
    from cryptography.hazmat.primitives import hashes

    from trustroot.provision.identity import (
        DEFAULT_HARDWARE_TYPE_OID,
        HARDWARE_MODULE_NAME_OID,
        device_subject,
        hardware_module_name_der,
    )

    signer = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(device_subject(SERIAL))
        .issuer_name(device_subject(SERIAL))
        .public_key(key.public_key())  # type: ignore[attr-defined]
        .serial_number(7)
        .not_valid_before(now)
        .not_valid_after(now.replace(year=now.year + 1))
    )
    if san:
        hmn = x509.OtherName(
            x509.ObjectIdentifier(HARDWARE_MODULE_NAME_OID), hardware_module_name_der(DEFAULT_HARDWARE_TYPE_OID, SERIAL)
        )
        builder = builder.add_extension(x509.SubjectAlternativeName([hmn]), critical=False)
    return builder.sign(signer, hashes.SHA256())


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: _certificate(ec.generate_private_key(ec.SECP256R1()), san=False), "no subjectAltName"),
        (lambda: _certificate(ec.generate_private_key(ec.SECP384R1())), "the device key is not usable"),
        (lambda: _certificate(ec.generate_private_key(ec.SECP256R1())), "does not belong to the device certificate"),
    ],
    ids=["no-hardware-module-name", "p384", "another-key"],
)
def test_a_substituted_device_certificate_is_refused(programmed: Path, make: object, message: str) -> None:
    _replace_device_certificate(programmed, make())  # type: ignore[operator]
    with pytest.raises(DeviceDirectoryError, match=message):
        load_device_identity(programmed, DEVICE_SECRET)
