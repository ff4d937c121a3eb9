"""Per-device bundles (flow b): a device's key and credentials, encrypted to one programming station.

The factory makes a device's key, certificate chain, password and claim code, and seals them in a
bundle that only the programming station's key can open; no device key is ever a clear file. The
station key is an ``ecies-p256`` key (file store or PKCS#11 token) or an ``ecies-x25519`` key
(file store). Format version 1, all integers big-endian::

    offset  size   field
    0       8      magic "TRBUNDLE"
    8       1      version = 1
    9       1      kem: 1 = ECDH P-256 (ephemeral = 65-byte uncompressed point), 2 = X25519 (32 bytes)
    10      1      serial length L (5..32)
    11      L      serial (ASCII)
    11+L    32     station key id = SHA-256 of the station public key's DER SubjectPublicKeyInfo
                   (the fingerprint `trustroot keys list` shows)
    43+L    E      ephemeral public key (E = 65 or 32)
    ------------   header = bytes [0, 43+L+E): clear, authenticated as AAD
    43+L+E  rest   AES-256-GCM ciphertext of the material || 16-byte tag

    shared     = ECDH(ephemeral private, station public)        (P-256 x-coordinate / X25519 output)
    okm        = HKDF-SHA256(ikm = shared, salt = none, info = "trustroot/bundle/v1" || header, L = 44)
    key, nonce = okm[0:32], okm[32:44]                           (a fresh ephemeral key per bundle)
    ciphertext = AES-256-GCM(key, nonce, plaintext, aad = header)

The plaintext is canonical JSON (sorted keys, no white space, ASCII) of :class:`DeviceMaterial`::

    {"chain": [PEM device cert, PEM issuing CA, PEM root CA], "claim_code": "7KQ2-...",
     "context": {ContextExcerpt}, "format": "trustroot.material/1", "password": "..." | null,
     "private_key": base64(PKCS#8 DER), "serial": "ACMEPL-00000042", "service_url": "https://..."}

Opening checks the station key id, derives the key through ``KeyHandle.exchange`` (so the station
key may sit on a token) and decrypts. Every failure up to and including the GCM tag check is the
one :class:`BundleError` message :data:`OPEN_FAILED` (no oracle about which byte was wrong). The
serial inside must equal the header's.

Errors::

    TrustrootError
    └── BundleError      open_bundle / bundle_header refused the bytes (one message until the tag verifies)
    UsageError           make_bundle: a station key that is not P-256 / X25519; invalid material

``BundleError`` is defined here until it moves to :mod:`trustroot.errors`.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import json
import re
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Final

from cryptography import x509
from cryptography.exceptions import InvalidTag, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, x25519
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from trustroot.context.schema import ALL_METRICS, SecurityContext
from trustroot.errors import BundleError, PKIError, UsageError
from trustroot.keys._interface import KeyHandle
from trustroot.pki._signing import spki_der
from trustroot.provision.claim import ClaimCodeError, normalize_claim_code
from trustroot.provision.identity import (
    DevicePrivateKey,
    SerialError,
    device_key_algorithm,
    device_serial_of,
    private_key_der,
    validate_serial,
)

__all__ = [
    "BUNDLE_MAGIC",
    "BUNDLE_VERSION",
    "KEM_P256",
    "KEM_X25519",
    "MATERIAL_FORMAT",
    "MAX_BUNDLE_BYTES",
    "OPEN_FAILED",
    "BundleError",
    "BundleHeader",
    "BundleSealer",
    "ContextExcerpt",
    "DeviceMaterial",
    "bundle_header",
    "context_excerpt",
    "make_bundle",
    "open_bundle",
    "station_key_id",
]

BUNDLE_MAGIC: Final = b"TRBUNDLE"
BUNDLE_VERSION: Final = 1
KEM_P256: Final = 1
KEM_X25519: Final = 2
MATERIAL_FORMAT: Final = "trustroot.material/1"
_HKDF_LABEL = b"trustroot/bundle/v1"
_KEM_NAMES = {KEM_P256: "p256", KEM_X25519: "x25519"}
_EPHEMERAL_BYTES = {KEM_P256: 65, KEM_X25519: 32}
_KEY_ID_BYTES = 32
_TAG_BYTES = 16

#: The one message of every failure to open a bundle before its content is authentic.
OPEN_FAILED: Final = (
    "the bundle cannot be opened: it is damaged, was altered, or is not addressed to this station's key"
)

# Size limits of every field (bytes or characters); the whole bundle and its plaintext are bounded too.
MAX_BUNDLE_BYTES: Final = 64 << 10
_MAX_PLAINTEXT_BYTES = 60 << 10
_MAX_PRIVATE_KEY_DER = 512
_MAX_CERT_PEM_CHARS = 16 << 10
_MIN_CHAIN, _MAX_CHAIN = 2, 4
_MAX_PASSWORD_CHARS = 128
_MAX_CLAIM_CHARS = 64
_MAX_URL_CHARS = 500
_MAX_PRODUCT_CHARS = 200
_MAX_MODEL_CHARS = 64
_MAX_CATEGORIES = 50
_SLUG = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}", re.ASCII)
_MODEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._/-]{0,63}", re.ASCII)
_URL = re.compile(r"https://[^\s/$.?#][^\s]*", re.ASCII)
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
_TLS_VERSIONS = ("1.0", "1.1", "1.2", "1.3")


# --------------------------------------------------------------------------------------- the material


def _text(value: object, what: str, limit: int) -> str:
    if not isinstance(value, str) or not value or len(value) > limit or _CONTROL.search(value):
        raise UsageError(f"{what} must be 1 to {limit} printable characters")
    return value


def _int(value: object, what: str, low: int, high: int) -> int:
    if type(value) is not int or not low <= value <= high:
        raise UsageError(f"{what} must be an integer from {low} to {high}")
    return value


def _str_tuple(value: object, what: str, limit: int) -> tuple[str, ...]:
    if not isinstance(value, tuple | list) or len(value) > limit or not all(isinstance(v, str) for v in value):
        raise UsageError(f"{what} must be a list of at most {limit} strings")
    items = tuple(value)
    if len(set(items)) != len(items):
        raise UsageError(f"{what} names an entry twice")
    return items


@dataclass(frozen=True)
class ContextExcerpt:
    """The part of the Security Context a device needs (copied into its bundle and device directory)."""

    product: str
    model: str
    min_tls_version: str
    checkin_interval_s: int
    checkin_jitter_s: tuple[int, int]
    telemetry_metrics: tuple[str, ...]
    personal_data: tuple[str, ...]
    support_period_end: date | None

    def __post_init__(self) -> None:
        _text(self.product, "context product", _MAX_PRODUCT_CHARS)
        model: object = self.model
        if not isinstance(model, str) or _MODEL.fullmatch(model) is None:
            raise UsageError(f"context model {self.model!r} is not a model designation")
        if self.min_tls_version not in _TLS_VERSIONS:
            raise UsageError(
                f"context min_tls_version {self.min_tls_version!r} is not one of {', '.join(_TLS_VERSIONS)}"
            )
        _int(self.checkin_interval_s, "context checkin_interval_s", 10, 7 * 86400)
        jitter: object = self.checkin_jitter_s
        if not isinstance(jitter, tuple | list) or len(jitter) != 2:
            raise UsageError("context checkin_jitter_s must be [min, max]")
        low = _int(jitter[0], "context checkin_jitter_s min", 0, 86400)
        _int(jitter[1], "context checkin_jitter_s max", low, 86400)
        object.__setattr__(self, "checkin_jitter_s", (jitter[0], jitter[1]))
        metrics = _str_tuple(self.telemetry_metrics, "context telemetry_metrics", len(ALL_METRICS))
        unknown = [m for m in metrics if m not in ALL_METRICS]
        if unknown:
            raise UsageError(f"context telemetry_metrics: unknown metric {unknown[0]!r}")
        object.__setattr__(self, "telemetry_metrics", metrics)
        categories = _str_tuple(self.personal_data, "context personal_data", _MAX_CATEGORIES)
        if not all(_SLUG.fullmatch(c) for c in categories):
            raise UsageError("context personal_data: a category name is not a slug")
        object.__setattr__(self, "personal_data", categories)
        if self.support_period_end is not None and type(self.support_period_end) is not date:
            raise UsageError("context support_period_end must be a date or None")

    @classmethod
    def from_context(cls, model: SecurityContext) -> ContextExcerpt:
        """The excerpt of a loaded Security Context."""
        return cls(
            product=model.product.name,
            model=model.product.model,
            min_tls_version=model.communication.min_tls_version,
            checkin_interval_s=model.update.checkin_interval_s,
            checkin_jitter_s=(model.update.checkin_jitter_s[0], model.update.checkin_jitter_s[1]),
            telemetry_metrics=tuple(model.telemetry.metrics) if model.telemetry.enabled else (),
            personal_data=tuple(category.name for category in model.data.personal),
            support_period_end=model.product.support_period_end,
        )

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready object (the ``context`` of the material and of ``device.json``)."""
        return {
            "checkin_interval_s": self.checkin_interval_s,
            "checkin_jitter_s": list(self.checkin_jitter_s),
            "min_tls_version": self.min_tls_version,
            "model": self.model,
            "personal_data": list(self.personal_data),
            "product": self.product,
            "support_period_end": None if self.support_period_end is None else self.support_period_end.isoformat(),
            "telemetry_metrics": list(self.telemetry_metrics),
        }

    @classmethod
    def from_json(cls, value: object) -> ContextExcerpt:
        """Parse :meth:`to_json` output strictly (exact keys); ``UsageError`` if malformed."""
        if not isinstance(value, dict) or set(value) != _EXCERPT_KEYS:
            raise UsageError(
                f"a context excerpt must be an object with exactly the keys {', '.join(sorted(_EXCERPT_KEYS))}"
            )
        end = value["support_period_end"]
        end_date: date | None = None
        if end is not None:
            try:
                end_date = date.fromisoformat(end) if isinstance(end, str) else None
            except ValueError:
                end_date = None
            if end_date is None or end_date.isoformat() != end:
                raise UsageError(f"context support_period_end {end!r} is not an ISO date (YYYY-MM-DD)")
        return cls(
            product=value["product"],
            model=value["model"],
            min_tls_version=value["min_tls_version"],
            checkin_interval_s=value["checkin_interval_s"],
            checkin_jitter_s=value["checkin_jitter_s"],
            telemetry_metrics=value["telemetry_metrics"],
            personal_data=value["personal_data"],
            support_period_end=end_date,
        )


_EXCERPT_KEYS = frozenset(
    {
        "product",
        "model",
        "min_tls_version",
        "checkin_interval_s",
        "checkin_jitter_s",
        "telemetry_metrics",
        "personal_data",
        "support_period_end",
    }
)


def context_excerpt(model: SecurityContext) -> ContextExcerpt:
    """Shorthand for :meth:`ContextExcerpt.from_context`."""
    return ContextExcerpt.from_context(model)


def _load_private_key(der: object) -> DevicePrivateKey:
    if not isinstance(der, bytes) or not der or len(der) > _MAX_PRIVATE_KEY_DER:
        raise UsageError(f"the device private key must be PKCS#8 DER of at most {_MAX_PRIVATE_KEY_DER} bytes")
    try:
        key = serialization.load_der_private_key(der, password=None)
    except (ValueError, TypeError, UnicodeError, UnsupportedAlgorithm) as exc:
        raise UsageError("the device private key is not clear PKCS#8 DER") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey):
        raise UsageError(f"the device private key is a {type(key).__name__.removeprefix('_')}, not P-256 or Ed25519")
    try:
        device_key_algorithm(key.public_key())
    except PKIError as exc:
        raise UsageError(f"the device private key: {exc.message}") from exc
    return key


def _chain_entry(position: int, pem: object) -> x509.Certificate:
    if not isinstance(pem, str) or len(pem) > _MAX_CERT_PEM_CHARS:
        raise UsageError(f"device material: chain entry {position} is not a PEM string of at most 16 KiB")
    try:
        found = x509.load_pem_x509_certificates(pem.encode("ascii"))
    except (ValueError, UnicodeError) as exc:
        raise UsageError(f"device material: chain entry {position} is not a PEM certificate") from exc
    if len(found) != 1:
        raise UsageError(f"device material: chain entry {position} holds {len(found)} certificates, not 1")
    return found[0]


@functools.lru_cache(maxsize=8)
def _check_ca_chain(ca_chain_pem: tuple[str, ...]) -> None:
    """The CA part of a chain (after the device certificate): 1 to 3 PEM certificates, parsed once per chain."""
    if not _MIN_CHAIN - 1 <= len(ca_chain_pem) <= _MAX_CHAIN - 1:
        raise UsageError(f"device material: the chain must hold {_MIN_CHAIN} to {_MAX_CHAIN} PEM certificates")
    for position, pem in enumerate(ca_chain_pem, start=1):
        _chain_entry(position, pem)


@dataclass(frozen=True)
class DeviceMaterial:
    """Everything one device receives in flow (b). Validated on construction; ``repr`` hides the secrets.

    ``private_key_der`` (clear PKCS#8 DER), ``password`` and ``claim_code`` exist only in memory and
    inside the encrypted bundle; the password and claim code are for the device label.
    """

    serial: str
    private_key_der: bytes = field(repr=False)
    #: PEM certificates: the device's first, then the issuing CA, the root CA last.
    chain_pem: tuple[str, ...]
    #: None when the context's password mode generates no password (user-set, none).
    password: str | None = field(repr=False)
    claim_code: str = field(repr=False)
    service_url: str
    context: ContextExcerpt

    def __post_init__(self) -> None:
        try:
            validate_serial(self.serial)
        except SerialError as exc:
            raise UsageError(f"device material: {exc.message}") from exc
        key = _load_private_key(self.private_key_der)
        chain: object = self.chain_pem
        if not isinstance(chain, tuple | list) or not _MIN_CHAIN <= len(chain) <= _MAX_CHAIN:
            raise UsageError(f"device material: the chain must hold {_MIN_CHAIN} to {_MAX_CHAIN} PEM certificates")
        object.__setattr__(self, "chain_pem", tuple(chain))
        certs = self.certificates()
        try:
            certified = spki_der(certs[0].public_key())
        except (ValueError, UnsupportedAlgorithm) as exc:
            raise UsageError("device material: the device certificate's key cannot be read") from exc
        if certified != spki_der(key.public_key()):
            raise UsageError("device material: the device certificate is not for the device private key")
        try:
            named = device_serial_of(certs[0])
        except (PKIError, UsageError) as exc:
            raise UsageError(f"device material: the device certificate: {exc.message}") from exc
        if named != self.serial:
            raise UsageError(f"device material: the device certificate names {named}, not {self.serial}")
        self._check_texts()

    @classmethod
    def for_new_device(
        cls,
        *,
        serial: str,
        private_key: DevicePrivateKey,
        certificate: x509.Certificate,
        ca_chain_pem: tuple[str, ...],
        password: str | None,
        claim_code: str,
        service_url: str,
        context: ContextExcerpt,
    ) -> DeviceMaterial:
        """The material of a device a factory batch has just made: the key, and the certificate issued for it.

        Checks what the constructor checks, without parsing again what the caller holds as objects:
        the certificate must certify ``private_key`` (public keys compared), ``ca_chain_pem`` (the
        issuing CA, then the root) is parsed once per process and chain, and the certificate names
        ``serial`` because it was issued for it (:class:`~trustroot.provision.identity.DeviceCertificateIssuer`).
        """
        try:
            validate_serial(serial)
        except SerialError as exc:
            raise UsageError(f"device material: {exc.message}") from exc
        if not isinstance(private_key, ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey):
            raise UsageError("device material: the device private key must be P-256 or Ed25519")
        if certificate.public_key() != private_key.public_key():
            raise UsageError("device material: the device certificate is not for the device private key")
        _check_ca_chain(ca_chain_pem)
        material = object.__new__(cls)
        values = {
            "serial": serial,
            "private_key_der": private_key_der(private_key),
            "chain_pem": (certificate.public_bytes(serialization.Encoding.PEM).decode("ascii"), *ca_chain_pem),
            "password": password,
            "claim_code": claim_code,
            "service_url": service_url,
            "context": context,
        }
        for name, value in values.items():
            object.__setattr__(material, name, value)
        material._check_texts()
        return material

    def _check_texts(self) -> None:
        if self.password is not None:
            _text(self.password, "device material password", _MAX_PASSWORD_CHARS)
        _text(self.claim_code, "device material claim code", _MAX_CLAIM_CHARS)
        try:
            normalize_claim_code(self.claim_code)
        except ClaimCodeError as exc:
            raise UsageError(f"device material: {exc.message}") from exc
        url: object = self.service_url
        if not isinstance(url, str) or len(url) > _MAX_URL_CHARS or not _URL.fullmatch(url):
            raise UsageError(f"device material: service URL {self.service_url!r} is not an https URL")
        if not isinstance(self.context, ContextExcerpt):
            raise UsageError("device material: context must be a ContextExcerpt")

    def private_key(self) -> DevicePrivateKey:
        """The device private key object (memory only)."""
        return _load_private_key(self.private_key_der)

    def certificates(self) -> list[x509.Certificate]:
        """The chain as certificate objects, the device certificate first."""
        return [_chain_entry(position, pem) for position, pem in enumerate(self.chain_pem)]

    def to_json(self) -> dict[str, Any]:
        return {
            "chain": list(self.chain_pem),
            "claim_code": self.claim_code,
            "context": self.context.to_json(),
            "format": MATERIAL_FORMAT,
            "password": self.password,
            "private_key": base64.b64encode(self.private_key_der).decode("ascii"),
            "serial": self.serial,
            "service_url": self.service_url,
        }

    @classmethod
    def from_json(cls, value: object) -> DeviceMaterial:
        if not isinstance(value, dict) or set(value) != _MATERIAL_KEYS:
            raise UsageError("the material must be an object with exactly the keys of trustroot.material/1")
        if value["format"] != MATERIAL_FORMAT:
            raise UsageError(f"the material format {value['format']!r} is not {MATERIAL_FORMAT}")
        if not isinstance(value["private_key"], str) or not isinstance(value["chain"], list):
            raise UsageError("the material's private_key must be base64 text and chain a list")
        try:
            der = base64.b64decode(value["private_key"], validate=True)
        except (binascii.Error, ValueError) as exc:
            raise UsageError("the material's private_key is not base64") from exc
        return cls(
            serial=value["serial"],
            private_key_der=der,
            chain_pem=tuple(value["chain"]),
            password=value["password"],
            claim_code=value["claim_code"],
            service_url=value["service_url"],
            context=ContextExcerpt.from_json(value["context"]),
        )


_MATERIAL_KEYS = frozenset(
    {"chain", "claim_code", "context", "format", "password", "private_key", "serial", "service_url"}
)


# ------------------------------------------------------------------------------------------ the bundle


def station_key_id(public_key: PublicKeyTypes) -> bytes:
    """SHA-256 of the station public key's DER SubjectPublicKeyInfo (32 bytes)."""
    return hashlib.sha256(spki_der(public_key)).digest()


@dataclass(frozen=True)
class BundleHeader:
    """The clear header of a bundle. Unauthenticated until :func:`open_bundle` succeeds: for messages only."""

    serial: str
    #: Hex SHA-256 of the station public key (as ``trustroot keys list`` shows the key's fingerprint).
    station_key_id: str
    #: ``"p256"`` or ``"x25519"``.
    kem: str


class _Malformed(Exception):
    """Internal: the bytes are not a version-1 bundle."""


def _parse_header(data: bytes) -> tuple[int, str, bytes, bytes, int]:
    """(kem, serial, key id, ephemeral public bytes, header length)."""
    if len(data) > MAX_BUNDLE_BYTES or len(data) < 11 or data[:8] != BUNDLE_MAGIC or data[8] != BUNDLE_VERSION:
        raise _Malformed
    kem, serial_length = data[9], data[10]
    if kem not in _EPHEMERAL_BYTES or not 5 <= serial_length <= 32:
        raise _Malformed
    position = 11 + serial_length
    try:
        serial = validate_serial(data[11:position].decode("ascii"))
    except (UnicodeDecodeError, SerialError) as exc:
        raise _Malformed from exc
    key_id = data[position : position + _KEY_ID_BYTES]
    position += _KEY_ID_BYTES
    ephemeral = data[position : position + _EPHEMERAL_BYTES[kem]]
    position += _EPHEMERAL_BYTES[kem]
    if len(data) < position + _TAG_BYTES:
        raise _Malformed
    return kem, serial, key_id, ephemeral, position


def bundle_header(data: bytes) -> BundleHeader:
    """Read the clear header (serial, station key id): unauthenticated, for diagnostics only."""
    try:
        kem, serial, key_id, _, _ = _parse_header(bytes(data))
    except _Malformed:
        raise BundleError("not a trustroot device bundle of format version 1") from None
    return BundleHeader(serial=serial, station_key_id=key_id.hex(), kem=_KEM_NAMES[kem])


def _keys(shared: bytes, header: bytes) -> tuple[bytes, bytes]:
    okm = HKDF(algorithm=hashes.SHA256(), length=44, salt=None, info=_HKDF_LABEL + header).derive(shared)
    return okm[:32], okm[32:]


class BundleSealer:
    """Seals many devices' material to one station key (the key's type and id worked out once)."""

    def __init__(self, station_public_key: PublicKeyTypes) -> None:
        if isinstance(station_public_key, ec.EllipticCurvePublicKey) and isinstance(
            station_public_key.curve, ec.SECP256R1
        ):
            self._kem = KEM_P256
        elif isinstance(station_public_key, x25519.X25519PublicKey):
            self._kem = KEM_X25519
            try:  # a small-order point gives an all-zero secret: refused here, before any device
                x25519.X25519PrivateKey.generate().exchange(station_public_key)
            except ValueError as exc:
                raise UsageError("the station's X25519 public key is invalid (a small-order point)") from exc
        else:
            raise UsageError("the station key must be a P-256 (ecies-p256) or X25519 (ecies-x25519) public key")
        self._station = station_public_key
        self._key_id = station_key_id(station_public_key)

    def _ephemeral(self) -> tuple[bytes, bytes]:
        """(shared secret, ephemeral public bytes) of a new ephemeral key."""
        station = self._station
        if isinstance(station, ec.EllipticCurvePublicKey):
            ephemeral = ec.generate_private_key(ec.SECP256R1())
            public = ephemeral.public_key().public_bytes(
                serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
            )
            return ephemeral.exchange(ec.ECDH(), station), public
        if not isinstance(station, x25519.X25519PublicKey):  # pragma: no cover - checked in __init__
            raise UsageError("the station key must be a P-256 or X25519 public key")
        x_ephemeral = x25519.X25519PrivateKey.generate()
        try:
            shared = x_ephemeral.exchange(station)
        except ValueError as exc:  # pragma: no cover - checked in __init__
            raise UsageError("the station's X25519 public key is invalid (a small-order point)") from exc
        return shared, x_ephemeral.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)

    def seal(self, material: DeviceMaterial) -> bytes:
        """The bundle of ``material``: a fresh ephemeral key per bundle."""
        if not isinstance(material, DeviceMaterial):
            raise UsageError("make_bundle needs a DeviceMaterial")
        plaintext = json.dumps(material.to_json(), sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()
        if len(plaintext) > _MAX_PLAINTEXT_BYTES:
            raise UsageError(f"the device material is larger than the limit of {_MAX_PLAINTEXT_BYTES} bytes")
        shared, ephemeral_public = self._ephemeral()
        serial = material.serial.encode("ascii")
        prefix = BUNDLE_MAGIC + bytes([BUNDLE_VERSION, self._kem, len(serial)])
        header = prefix + serial + self._key_id + ephemeral_public
        key, nonce = _keys(shared, header)
        return header + AESGCM(key).encrypt(nonce, plaintext, header)


def make_bundle(station_public_key: PublicKeyTypes, material: DeviceMaterial) -> bytes:
    """Seal ``material`` to the station whose public key is given (P-256 or X25519)."""
    if not isinstance(material, DeviceMaterial):
        raise UsageError("make_bundle needs a DeviceMaterial")
    return BundleSealer(station_public_key).seal(material)


def _peer(kem: int, ephemeral: bytes) -> PublicKeyTypes:
    if kem == KEM_P256:
        if ephemeral[0] != 0x04:
            raise _Malformed
        return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), ephemeral)
    return x25519.X25519PublicKey.from_public_bytes(ephemeral)


def _decrypt(station: KeyHandle, data: bytes) -> tuple[str, bytes]:
    """The header's serial and the plaintext; raises _Malformed, ValueError, InvalidTag or UsageError."""
    kem, serial, key_id, ephemeral, header_length = _parse_header(data)
    if not hmac.compare_digest(key_id, station_key_id(station.public_key())):
        raise _Malformed
    shared = station.exchange(_peer(kem, ephemeral))
    header = data[:header_length]
    key, nonce = _keys(shared, header)
    return serial, AESGCM(key).decrypt(nonce, data[header_length:], header)


def open_bundle(station: KeyHandle, data: bytes) -> DeviceMaterial:
    """Open a bundle with the station's key (``station.exchange``: file store or PKCS#11 token).

    Raises :class:`BundleError` with :data:`OPEN_FAILED` for every failure up to the GCM tag, a
    :class:`BundleError` naming the problem when authentic content is invalid, and ``UsageError``
    when ``station`` is not a key-agreement key. Key state errors of the station key pass through.
    """
    if not station.info.algorithm.is_agreement:
        raise UsageError(
            f"key '{station.info.name}' is a {station.info.algorithm} key; a station key is ecies-p256 or ecies-x25519"
        )
    if not isinstance(data, bytes | bytearray):
        raise BundleError(OPEN_FAILED)
    try:
        serial, plaintext = _decrypt(station, bytes(data))
    except (_Malformed, ValueError, InvalidTag, UsageError):
        raise BundleError(OPEN_FAILED) from None
    try:
        material = DeviceMaterial.from_json(json.loads(plaintext.decode("utf-8")))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError, UsageError) as exc:
        raise BundleError(f"the bundle is authentic but its content is not valid {MATERIAL_FORMAT}: {exc}") from None
    if material.serial != serial:
        raise BundleError(f"the bundle's header names {serial} but its content is for {material.serial}")
    return material
