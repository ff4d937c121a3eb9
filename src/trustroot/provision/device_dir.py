"""The device directory: what a programming station writes for a device and the agent reads later.

``trustroot provision program --bundle B --out DEVDIR`` opens a bundle (flow b) with the station's
key and writes, all at once (a staging directory renamed into place), format ``trustroot.device/1``::

    DEVDIR/                  0700
      device.json            0644  {"format": "trustroot.device/1", "serial": ..., "service_url": ...,
                                    "context": {ContextExcerpt}, "key": {"storage": "file",
                                    "algorithm": "ecdsa-p256" | "ed25519"}, "certificate_sha256": hex}
      chain.pem              0644  device certificate, issuing CA, root CA (PEM, in that order)
      identity.secret        0600  32 random bytes: the file secret
      identity.key.enc       0600  the device key, encrypted (below)

    identity.key.enc (all integers big-endian):
      0   8   magic "TRDEVKEY"
      8   1   version = 1
      9   1   log2 N  \
      10  1   r        > scrypt cost (N = 2^14, r = 8, p = 1: 16 MiB)
      11  1   p       /
      12  12  nonce (random)
      24  ..  AES-256-GCM(kek, nonce, PKCS#8 DER of the device key, aad = bytes[0:24] || serial)
      kek = scrypt(password = device secret, salt = identity.secret, N, r, p, dkLen = 32)

The device secret comes from ``TRUSTROOT_DEVICE_SECRET`` (at least 16 bytes; on a real device a
value bound to the hardware: eFuse, TPM, secure element). Both it and ``identity.secret`` are
needed to use the key: a copy of the flash alone does not give the key, nor does the device secret.
The password and the claim code are never written here: :func:`program` returns them for the label.

A device with a PKCS#11 token or secure element keeps its key there instead: ``"key": {"storage":
"pkcs11", ...}`` is reserved for that extension and refused by this version.

Errors::

    UsageError                a device secret shorter than 16 bytes or missing
    StateError                the output directory exists already
    └── DeviceDirectoryError  a device directory is incomplete, malformed or too open (permissions)
    WrongSecretError          the device secret does not unlock identity.key.enc (one message,
                              also for an altered key file or identity.secret)
    BundleError               (bundle.py) the bundle cannot be opened

``DeviceDirectoryError`` is defined here until it moves to :mod:`trustroot.errors`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from cryptography import x509
from cryptography.exceptions import InvalidTag, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from trustroot._fsutil import atomic_write, fsync_dir, read_bounded
from trustroot.errors import (
    DeviceDirectoryError,
    PKIError,
    StateError,
    UnreadableInputError,
    UsageError,
    WrongSecretError,
)
from trustroot.keys._interface import KeyHandle
from trustroot.limits import INSECURE_TEST_KDF_ENV
from trustroot.pki._signing import spki_der
from trustroot.pki.certificates import (
    certificate_fingerprint,
    dump_pem_certificates,
    parse_pem_certificates,
    validate_chain,
)
from trustroot.provision.bundle import ContextExcerpt, DeviceMaterial, open_bundle
from trustroot.provision.identity import DevicePrivateKey, device_key_algorithm, device_serial_of, validate_serial

__all__ = [
    "CHAIN_FILE",
    "DEVICE_FILE",
    "DEVICE_FORMAT",
    "DEVICE_SECRET_ENV",
    "KEY_FILE",
    "MIN_DEVICE_SECRET_BYTES",
    "SECRET_FILE",
    "DeviceConfig",
    "DeviceDirectoryError",
    "DeviceLabel",
    "ProgrammedDevice",
    "device_secret_from_env",
    "load_device_config",
    "load_device_identity",
    "program",
    "program_device",
]

DEVICE_FORMAT: Final = "trustroot.device/1"
DEVICE_SECRET_ENV: Final = "TRUSTROOT_DEVICE_SECRET"  # noqa: S105  (a variable name, not a secret)
MIN_DEVICE_SECRET_BYTES: Final = 16
DEVICE_FILE: Final = "device.json"
CHAIN_FILE: Final = "chain.pem"
KEY_FILE: Final = "identity.key.enc"
SECRET_FILE: Final = "identity.secret"  # noqa: S105  (a file name)

_KEY_MAGIC = b"TRDEVKEY"
_KEY_VERSION = 1
_KEY_HEADER_BYTES = 24
_FILE_SECRET_BYTES = 32
_KEY_COST = (14, 8, 1)
_TEST_KEY_COST = (10, 8, 1)
_MAX_KEY_MEMORY = 256 << 20
_MAX_DEVICE_JSON = 64 << 10
_MAX_KEY_FILE = 4 << 10
_MAX_CHAIN_FILE = 64 << 10
_UNLOCK_FAILED = "the device secret does not unlock {path}, or the device directory was altered"


@dataclass(frozen=True)
class DeviceLabel:
    """What goes on the device label (printed, never stored in the device directory). ``repr`` hides secrets."""

    serial: str
    product: str
    model: str
    password: str | None = field(repr=False)
    claim_code: str = field(repr=False)


@dataclass(frozen=True)
class ProgrammedDevice:
    """The result of :func:`program`: where the device directory is and the label data."""

    directory: Path
    serial: str
    #: SHA-256 (hex) of the device certificate's DER, for the production record and evidence.
    certificate_sha256: str
    label: DeviceLabel


@dataclass(frozen=True)
class DeviceConfig:
    """``device.json`` as read by the agent (no secret in it)."""

    serial: str
    service_url: str
    context: ContextExcerpt
    key_algorithm: str
    key_storage: str
    certificate_sha256: str


# --------------------------------------------------------------------------------------------- secrets


def device_secret_from_env(environ: Mapping[str, str] | None = None) -> bytes:
    """``TRUSTROOT_DEVICE_SECRET`` as UTF-8 bytes; ``UsageError`` when unset or shorter than 16 bytes."""
    value = (os.environ if environ is None else environ).get(DEVICE_SECRET_ENV)
    if value is None:
        raise UsageError(
            f"no device secret: set {DEVICE_SECRET_ENV}",
            hint="on a device, derive it from a hardware-bound secret (eFuse, TPM, secure element)",
        )
    secret = value.encode("utf-8")
    _check_device_secret(secret)
    return secret


def _check_device_secret(secret: bytes) -> None:
    if len(secret) < MIN_DEVICE_SECRET_BYTES:
        raise UsageError(
            f"the device secret is shorter than {MIN_DEVICE_SECRET_BYTES} bytes",
            hint="use a random value of 32 bytes or more",
        )


def _key_cost() -> tuple[int, int, int]:
    return _TEST_KEY_COST if os.environ.get(INSECURE_TEST_KDF_ENV) == "1" else _KEY_COST


def _kek(device_secret: bytes, file_secret: bytes, log_n: int, r: int, p: int) -> bytes:
    return Scrypt(salt=file_secret, length=32, n=1 << log_n, r=r, p=p).derive(device_secret)


def _encrypt_key(der: bytes, serial: str, device_secret: bytes, file_secret: bytes) -> bytes:
    log_n, r, p = _key_cost()
    header = _KEY_MAGIC + bytes([_KEY_VERSION, log_n, r, p]) + os.urandom(12)
    kek = _kek(device_secret, file_secret, log_n, r, p)
    return header + AESGCM(kek).encrypt(header[12:], der, header + serial.encode("ascii"))


def _decrypt_key(data: bytes, serial: str, device_secret: bytes, file_secret: bytes, path: Path) -> bytes:
    if len(data) < _KEY_HEADER_BYTES + 16 or data[:8] != _KEY_MAGIC:
        raise DeviceDirectoryError(f"{path} is not a trustroot device key file")
    if data[8] != _KEY_VERSION:
        raise DeviceDirectoryError(f"{path} has key file version {data[8]}; this trustroot reads version 1")
    log_n, r, p = data[9], data[10], data[11]
    if not (1 <= log_n <= 20 and 1 <= r <= 32 and 1 <= p <= 16) or 128 * r * (1 << log_n) > _MAX_KEY_MEMORY:
        raise DeviceDirectoryError(f"{path}: scrypt cost ln={log_n}, r={r}, p={p} is out of the accepted range")
    header = data[:_KEY_HEADER_BYTES]
    kek = _kek(device_secret, file_secret, log_n, r, p)
    try:
        return AESGCM(kek).decrypt(header[12:], data[_KEY_HEADER_BYTES:], header + serial.encode("ascii"))
    except InvalidTag:
        raise WrongSecretError(_UNLOCK_FAILED.format(path=path)) from None


# --------------------------------------------------------------------------------------------- program


def _device_json(material: DeviceMaterial, cert: x509.Certificate) -> bytes:
    document = {
        "certificate_sha256": certificate_fingerprint(cert),
        "context": material.context.to_json(),
        "format": DEVICE_FORMAT,
        "key": {"algorithm": device_key_algorithm(cert.public_key()), "storage": "file"},
        "serial": material.serial,
        "service_url": material.service_url,
    }
    return (json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")


def _check_against_anchor(material: DeviceMaterial, anchor: x509.Certificate, now: datetime) -> None:
    certs = material.certificates()
    try:
        validate_chain(certs[0], certs[1:], [anchor], now=now, purpose="client_auth")
    except PKIError as exc:
        raise PKIError(f"device {material.serial}: the bundle's certificate chain is refused: {exc}") from exc


def _fill(staging: Path, material: DeviceMaterial, certs: list[x509.Certificate], device_secret: bytes) -> None:
    file_secret = os.urandom(_FILE_SECRET_BYTES)
    atomic_write(staging / SECRET_FILE, file_secret, mode=0o600)
    encrypted = _encrypt_key(material.private_key_der, material.serial, device_secret, file_secret)
    atomic_write(staging / KEY_FILE, encrypted, mode=0o600)
    atomic_write(staging / CHAIN_FILE, dump_pem_certificates(certs), mode=0o644)
    atomic_write(staging / DEVICE_FILE, _device_json(material, certs[0]), mode=0o644)
    staging.chmod(0o700)


def _move_into_place(staging: Path, out_dir: Path) -> None:
    if out_dir.exists() or out_dir.is_symlink():  # someone made it while we wrote
        raise StateError(f"{out_dir} exists already; refusing to overwrite a device directory")
    staging.rename(out_dir)
    fsync_dir(out_dir.parent)


def program(
    bundle: bytes,
    station: KeyHandle,
    out_dir: Path,
    *,
    device_secret: bytes,
    trust_anchor: x509.Certificate | None = None,
    now: datetime | None = None,
) -> ProgrammedDevice:
    """Open ``bundle`` with the station key and write the device directory ``out_dir`` (module docstring).

    Refuses an existing ``out_dir`` (:class:`StateError`). With ``trust_anchor`` (the product's root
    CA the station trusts) the device chain must validate to it for client authentication at
    ``now`` (default: the current time), which a station should always ask for: a bundle is
    encrypted to the station, not signed, so its chain is what proves it came from the product's
    CA. Returns the label data (password, claim code), which is never written to the directory.
    """
    _check_device_secret(device_secret)
    out_dir = Path(out_dir)
    if out_dir.exists() or out_dir.is_symlink():
        raise StateError(
            f"{out_dir} exists already; refusing to overwrite a device directory",
            hint="choose a new directory for each device",
        )
    material = open_bundle(station, bundle)
    if trust_anchor is not None:
        _check_against_anchor(material, trust_anchor, now if now is not None else datetime.now(UTC))
    certs = material.certificates()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    try:
        _fill(staging, material, certs, device_secret)
        _move_into_place(staging, out_dir)
    except BaseException:
        with contextlib.suppress(OSError):
            shutil.rmtree(staging)
        raise
    label = DeviceLabel(
        serial=material.serial,
        product=material.context.product,
        model=material.context.model,
        password=material.password,
        claim_code=material.claim_code,
    )
    return ProgrammedDevice(
        directory=out_dir,
        serial=material.serial,
        certificate_sha256=certificate_fingerprint(certs[0]),
        label=label,
    )


def program_device(bundle: bytes, station: KeyHandle, out_dir: Path, *, device_secret: bytes) -> Path:
    """:func:`program` returning only the directory (the label data is then lost: prefer :func:`program`)."""
    return program(bundle, station, out_dir, device_secret=device_secret).directory


# ------------------------------------------------------------------------------------------------ load


def _field(document: Mapping[str, Any], key: str, kind: type[Any], path: Path) -> Any:
    value = document.get(key)
    if type(value) is not kind:
        raise DeviceDirectoryError(f"{path}: field {key!r} is missing or not a {kind.__name__}")
    return value


def load_device_config(dev_dir: Path) -> DeviceConfig:
    """Read and check ``device.json`` (no secret needed)."""
    path = Path(dev_dir) / DEVICE_FILE
    raw = read_bounded(path, _MAX_DEVICE_JSON, what="device file")
    try:
        document = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise DeviceDirectoryError(f"{path} is not JSON ({exc})") from exc
    if not isinstance(document, dict):
        raise DeviceDirectoryError(f"{path} is not a JSON object")
    if document.get("format") != DEVICE_FORMAT:
        raise DeviceDirectoryError(
            f"{path} has format {document.get('format')!r}; this trustroot reads {DEVICE_FORMAT} only"
        )
    expected = {"format", "serial", "service_url", "context", "key", "certificate_sha256"}
    if set(document) != expected:
        raise DeviceDirectoryError(f"{path}: expected exactly the fields {', '.join(sorted(expected))}")
    key = _field(document, "key", dict, path)
    if key.get("storage") != "file":
        raise DeviceDirectoryError(
            f"{path}: key storage {key.get('storage')!r} is not supported by this version (only 'file')"
        )
    if set(key) != {"storage", "algorithm"} or key["algorithm"] not in ("ecdsa-p256", "ed25519"):
        raise DeviceDirectoryError(f"{path}: 'key' must name the storage and an algorithm ecdsa-p256 or ed25519")
    try:
        serial = validate_serial(document["serial"])
        context = ContextExcerpt.from_json(document["context"])
    except UsageError as exc:
        raise DeviceDirectoryError(f"{path}: {exc.message}") from exc
    return DeviceConfig(
        serial=serial,
        service_url=_field(document, "service_url", str, path),
        context=context,
        key_algorithm=key["algorithm"],
        key_storage=key["storage"],
        certificate_sha256=_field(document, "certificate_sha256", str, path),
    )


def _read_secret_file(path: Path, limit: int, what: str) -> bytes:
    try:
        mode = path.stat().st_mode
    except FileNotFoundError as exc:
        raise DeviceDirectoryError(f"{what} {path}: no such file; the device directory is incomplete") from exc
    except OSError as exc:
        raise UnreadableInputError(f"{what} {path}: cannot be read ({exc.strerror})") from exc
    if stat.S_IMODE(mode) & 0o077:
        raise DeviceDirectoryError(
            f"{what} {path} is readable by other users (mode {stat.S_IMODE(mode):04o})",
            hint=f"chmod 600 {path}",
        )
    return read_bounded(path, limit, what=what)


def load_device_identity(dev_dir: Path, device_secret: bytes) -> tuple[DevicePrivateKey, list[x509.Certificate]]:
    """The device's private key and certificate chain (device certificate first), for the agent.

    Checks the directory's format, the secret files' permissions (no group or other access), that
    the chain's first certificate is the one ``device.json`` names and is for the serial, and that
    the key belongs to it. A wrong device secret, or an altered key or secret file, raises
    :class:`~trustroot.errors.WrongSecretError` with one message.
    """
    _check_device_secret(device_secret)
    dev_dir = Path(dev_dir)
    config = load_device_config(dev_dir)
    chain_path = dev_dir / CHAIN_FILE
    chain = parse_pem_certificates(
        read_bounded(chain_path, _MAX_CHAIN_FILE, what="certificate chain"), what=f"certificate chain {chain_path}"
    )
    if certificate_fingerprint(chain[0]) != config.certificate_sha256:
        raise DeviceDirectoryError(f"{chain_path}: the first certificate is not the one {DEVICE_FILE} names")
    try:
        named = device_serial_of(chain[0])
    except (PKIError, UsageError) as exc:
        raise DeviceDirectoryError(f"{chain_path}: {exc.message}") from exc
    if named != config.serial:
        raise DeviceDirectoryError(f"{chain_path}: the device certificate names {named}, not {config.serial}")
    try:
        algorithm = device_key_algorithm(chain[0].public_key())
    except (PKIError, ValueError, UnsupportedAlgorithm) as exc:
        raise DeviceDirectoryError(f"{chain_path}: the device key is not usable ({exc})") from exc
    if algorithm != config.key_algorithm:
        raise DeviceDirectoryError(
            f"{chain_path}: the device key is {algorithm}, {DEVICE_FILE} says {config.key_algorithm}"
        )
    file_secret = _read_secret_file(dev_dir / SECRET_FILE, _FILE_SECRET_BYTES, "file secret")
    if len(file_secret) != _FILE_SECRET_BYTES:
        raise WrongSecretError(_UNLOCK_FAILED.format(path=dev_dir / KEY_FILE))
    key_path = dev_dir / KEY_FILE
    data = _read_secret_file(key_path, _MAX_KEY_FILE, "device key file")
    der = _decrypt_key(data, config.serial, device_secret, file_secret, key_path)
    try:
        key = serialization.load_der_private_key(der, password=None)
    except (ValueError, TypeError) as exc:  # pragma: no cover - authentic content that we wrote
        raise DeviceDirectoryError(f"{key_path}: the decrypted key is not PKCS#8") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey) or spki_der(
        key.public_key()
    ) != spki_der(chain[0].public_key()):
        raise DeviceDirectoryError(f"{key_path}: the key does not belong to the device certificate")
    return key, chain
