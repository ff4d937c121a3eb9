"""Production tokens: how the root-of-trust holder authorizes a station to make N devices.

The holder (``trustroot provision authorize``) signs a *production token* with the dedicated
``production-authority`` key (ecdsa-p256, role ``other``, made at first use; see
docs/provisioning.md for why it is not the issuing CA key: the station holds the issuing CA key to
issue certificates, so a token signed with it would be a token the station could write itself).
The station (``trustroot provision batch --token FILE``) verifies it and spends it.

A token file, a signed envelope (canonical JSON: sorted keys, no whitespace, UTF-8, no floats)::

    {
      "signed": {                                   <- the canonical bytes of this object are signed
        "type": "trustroot.production-token",
        "version": 1,                               <- an unknown major version is refused
        "token": "tok-3f9c0a1b2c3d4e5f",
        "product": "Acme Plug",
        "root_ca": "<sha256 of the product's root CA certificate>",
        "factory": "shenzhen-1",
        "count": 5000,
        "expires": "2026-12-31T23:59:59.000000Z",
        "station_key": "<sha256 of the station's public key>" | null,
        "issued": "2026-11-22T09:00:00.000000Z"
      },
      "signature": {"key_id": "<sha256 of the authority public key>",
                    "algorithm": "ecdsa-p256", "value": "<base64>"}
    }

A *station report* (``trustroot provision report``, read by ``trustroot provision reconcile``)
is the same envelope with ``type`` ``trustroot.station-report``, signed by the station's
``station-signing`` key whose public key it carries::

    signed: {type, version: 1, product, root_ca, store, station_key, signing_key (PEM),
             generated, tokens: [{token, factory, count, expires, reserved, spent,
                                  batches: [{batch, state, requested, provisioned,
                                             first_serial, last_serial}]}]}

Verification checks the signature over the canonical bytes BEFORE it reads any field of
``signed`` (a forged token is refused as forged, not as malformed), then the version, the
fields, the product and the expiry against an injected ``now``. Every refusal of a token is one
:class:`InvalidProductionToken` carrying the reason; of a report, :class:`InvalidStationReport`::

    PolicyRefusal (trustroot.errors)
    ├── InvalidProductionToken     forged, malformed, expired, other product, other station
    └── InvalidStationReport       forged or malformed station report
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import re
import secrets
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Final

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from trustroot.errors import (
    InvalidProductionToken,
    InvalidSignature,
    InvalidStationReport,
    KeyExistsError,
    KeyFileCorruptError,
    KeyNotFoundError,
    PolicyRefusal,
    StateError,
    TrustrootError,
    UnreadableInputError,
    UsageError,
)
from trustroot.evidence import format_time
from trustroot.keys._interface import Algorithm, KeyHandle, KeyInfo, KeyRole, KeyStatus, public_key_fingerprint
from trustroot.keys.store import verify_signature
from trustroot.pki.certificates import certificate_fingerprint
from trustroot.product import ROOT_CA_CERT, Product
from trustroot.provision.store import (
    CLOCK_TOLERANCE_S,
    Authorization,
    ProductionStateError,
    ProductionStore,
    TokenRecord,
)

__all__ = [
    "AUTHORITY_KEY",
    "FACTORY_PATTERN",
    "MAX_REPORT_BYTES",
    "MAX_TOKEN_BYTES",
    "MAX_TOKEN_COUNT",
    "REPORT_TYPE",
    "STATE_TYPE",
    "STATION_KEY",
    "STATION_SIGNING_KEY",
    "TOKEN_TYPE",
    "TOKEN_VERSION",
    "InvalidProductionToken",
    "InvalidStationReport",
    "ProductionToken",
    "ReconcileLine",
    "Reconciliation",
    "ReportBatch",
    "ReportToken",
    "StationReport",
    "TrustedKey",
    "authority_keys",
    "authorize",
    "authorize_here",
    "canonical_json",
    "check_clock",
    "check_token_state",
    "ensure_key",
    "ensure_station_keys",
    "evidence_records",
    "import_token",
    "issue_token",
    "make_station_report",
    "new_token_id",
    "open_envelope",
    "parse_expiry",
    "parse_strict_json",
    "parse_time",
    "production_store",
    "reconcile",
    "root_ca_fingerprint",
    "sign_envelope",
    "sign_token_state",
    "station_report",
    "token_state_message",
    "unlock_authority",
    "validate_factory",
    "verify_station_report",
    "verify_token",
]

TOKEN_TYPE: Final = "trustroot.production-token"  # noqa: S105 - a format name, not a secret
REPORT_TYPE: Final = "trustroot.station-report"
#: The major version of tokens and reports this code writes and reads.
TOKEN_VERSION: Final = 1
#: A token is a few hundred bytes; anything far larger is refused before parsing.
MAX_TOKEN_BYTES: Final = 16 << 10
#: A station report lists every token and batch of the station.
MAX_REPORT_BYTES: Final = 16 << 20
#: Upper bound on the devices one token may authorize.
MAX_TOKEN_COUNT: Final = 10_000_000
#: Factory names: what production records, manifests and evidence carry.
FACTORY_PATTERN: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_TOKEN_ID = re.compile(r"tok-[0-9a-f]{16}")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z", re.ASCII)
_MAX_DEPTH = 16


# --------------------------------------------------------------------------------- canonical JSON


def canonical_json(value: object) -> bytes:
    """Canonical JSON: sorted keys, no whitespace, UTF-8; floats are refused (``UsageError``)."""
    _refuse_floats(value, 0)
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


def _refuse_floats(value: object, depth: int) -> None:
    if depth > _MAX_DEPTH * 4:
        raise UsageError("JSON value nested too deeply")
    if isinstance(value, float):
        raise UsageError("floats are not allowed in signed JSON")
    if isinstance(value, dict):
        for item in value.values():
            _refuse_floats(item, depth + 1)
    elif isinstance(value, list | tuple):
        for item in value:
            _refuse_floats(item, depth + 1)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


def _no_float(text: str) -> object:
    raise ValueError(f"a float ({text}) where only integers are allowed")


def parse_strict_json(data: bytes, *, what: str, limit: int, error: type[TrustrootError]) -> object:
    """Parse ``data`` as UTF-8 JSON of at most ``limit`` bytes: no floats, no duplicate keys."""
    if len(data) > limit:
        raise error(f"{what}: larger than the limit of {limit} bytes")
    try:
        return json.loads(
            data.decode("utf-8"),
            object_pairs_hook=_no_duplicates,
            parse_float=_no_float,
            parse_constant=_no_float,
        )
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise error(f"{what}: not valid JSON ({exc})") from exc


# ---------------------------------------------------------------------------------- signed envelopes


@dataclass(frozen=True)
class TrustedKey:
    """A public key trusted to sign envelopes of some kind, with its algorithm."""

    public_key: PublicKeyTypes
    algorithm: Algorithm

    @property
    def key_id(self) -> str:
        return public_key_fingerprint(self.public_key)


def sign_envelope(signed: Mapping[str, object], handle: KeyHandle) -> bytes:
    """The envelope ``{"signed": ..., "signature": ...}`` over ``signed``, as canonical JSON + newline."""
    body = dict(signed)
    signature = handle.sign(canonical_json(body))
    envelope = {
        "signed": body,
        "signature": {
            "key_id": handle.info.fingerprint,
            "algorithm": handle.info.algorithm.value,
            "value": base64.b64encode(signature).decode("ascii"),
        },
    }
    return canonical_json(envelope) + b"\n"


def open_envelope(
    data: bytes,
    trusted: Sequence[TrustedKey],
    *,
    what: str,
    type_: str,
    limit: int,
    error: type[TrustrootError],
) -> dict[str, Any]:
    """Verify an envelope's signature by one of ``trusted``, then its type and major version.

    Returns the ``signed`` object. The signature is checked before any field of ``signed`` is read.
    """
    document = parse_strict_json(data, what=what, limit=limit, error=error)
    if not isinstance(document, dict) or set(document) != {"signed", "signature"}:
        raise error(f"{what}: not a signed envelope (expected exactly the fields 'signed' and 'signature')")
    signed, signature = document["signed"], document["signature"]
    if not isinstance(signed, dict) or not isinstance(signature, dict):
        raise error(f"{what}: 'signed' and 'signature' must be objects")
    if set(signature) != {"key_id", "algorithm", "value"} or not all(isinstance(v, str) for v in signature.values()):
        raise error(f"{what}: the signature must have the string fields key_id, algorithm and value")
    key = next((k for k in trusted if k.key_id == signature["key_id"]), None)
    if key is None:
        raise error(f"{what}: signed by an unknown key {signature['key_id'][:16]}, not by a trusted key")
    if signature["algorithm"] != key.algorithm.value:
        raise error(f"{what}: the signature claims {signature['algorithm']}, the key is {key.algorithm.value}")
    try:
        raw = base64.b64decode(signature["value"], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise error(f"{what}: the signature value is not base64") from exc
    try:
        verify_signature(key.public_key, key.algorithm, canonical_json(signed), raw)
    except (InvalidSignature, UsageError) as exc:
        raise error(f"{what}: the signature does not verify (forged or altered)") from exc
    if signed.get("type") != type_:
        raise error(f"{what}: not a {type_} (type {signed.get('type')!r})")
    version = signed.get("version")
    if type(version) is not int or version != TOKEN_VERSION:
        raise error(f"{what}: version {version!r} of {type_}; this trustroot reads version {TOKEN_VERSION} only")
    return signed


# ------------------------------------------------------------------------------------------ fields


def validate_factory(name: str) -> str:
    """Return ``name`` if it is a valid factory name, else raise :class:`UsageError`."""
    if FACTORY_PATTERN.fullmatch(name) is None:
        raise UsageError(
            f"factory {name!r} is not allowed: use 1 to 64 of A-Z, a-z, 0-9, '.', '_', '-', "
            "starting with a letter or digit"
        )
    return name


def parse_time(text: str) -> datetime:
    """An aware UTC datetime from the ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` form (``ValueError`` otherwise)."""
    if _TIME.fullmatch(text) is None:
        raise ValueError(f"time {text!r} is not of the form YYYY-MM-DDTHH:MM:SS.ffffffZ")
    return datetime.fromisoformat(text[:-1]).replace(tzinfo=UTC)


def parse_expiry(text: str) -> datetime:
    """``--expires``: a date (valid to the end of that day, UTC) or an ISO 8601 time with a zone."""
    value = text.strip()
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            return datetime.combine(date.fromisoformat(value), time(23, 59, 59), tzinfo=UTC)
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise UsageError(f"--expires {text!r}: use a date (2026-12-31) or a time with a zone") from None
    if moment.tzinfo is None:
        raise UsageError(f"--expires {text!r}: a time needs a zone (e.g. 2026-12-31T18:00:00+00:00)")
    return moment.astimezone(UTC)


def new_token_id() -> str:
    return f"tok-{secrets.token_hex(8)}"


# ------------------------------------------------------------------------------------------- tokens


@dataclass(frozen=True)
class ProductionToken:
    """The signed content of a production token; invalid values cannot be constructed."""

    token_id: str
    product: str
    root_ca: str
    factory: str
    count: int
    expires: datetime
    station_key: str | None
    issued: datetime

    def __post_init__(self) -> None:
        if _TOKEN_ID.fullmatch(self.token_id) is None:
            raise ValueError(f"token id {self.token_id!r} is not of the form tok-<16 hex>")
        if not self.product or len(self.product) > 200:
            raise ValueError("product must be 1 to 200 characters")
        if _HEX64.fullmatch(self.root_ca) is None:
            raise ValueError("root_ca must be a SHA-256 fingerprint (64 lower-case hex)")
        if FACTORY_PATTERN.fullmatch(self.factory) is None:
            raise ValueError(f"factory {self.factory!r} is not a valid factory name")
        if type(self.count) is not int or not 1 <= self.count <= MAX_TOKEN_COUNT:
            raise ValueError(f"count must be an integer from 1 to {MAX_TOKEN_COUNT}")
        if self.station_key is not None and _HEX64.fullmatch(self.station_key) is None:
            raise ValueError("station_key must be a SHA-256 fingerprint or null")
        for name in ("expires", "issued"):
            moment = getattr(self, name)
            if not isinstance(moment, datetime) or moment.tzinfo is None:
                raise ValueError(f"{name} must be a timezone-aware time")
        if self.expires <= self.issued:
            raise ValueError("expires must be after issued")

    def signed(self) -> dict[str, object]:
        """The ``signed`` object of the envelope."""
        return {
            "type": TOKEN_TYPE,
            "version": TOKEN_VERSION,
            "token": self.token_id,
            "product": self.product,
            "root_ca": self.root_ca,
            "factory": self.factory,
            "count": self.count,
            "expires": format_time(self.expires),
            "station_key": self.station_key,
            "issued": format_time(self.issued),
        }

    def as_json(self) -> dict[str, object]:
        data = self.signed()
        del data["type"], data["version"]
        return data

    @classmethod
    def from_signed(cls, signed: Mapping[str, object]) -> ProductionToken:
        """Build from a verified ``signed`` object (``ValueError`` if a field is missing or wrong)."""
        expected = {"type", "version", "token", "product", "root_ca", "factory", "count", "expires"}
        expected |= {"station_key", "issued"}
        if set(signed) != expected:
            missing, extra = expected - set(signed), set(signed) - expected
            raise ValueError(f"fields differ (missing {sorted(missing)}, unknown {sorted(extra)})")
        strings = ("token", "product", "root_ca", "factory", "expires", "issued")
        for name in strings:
            if not isinstance(signed[name], str):
                raise ValueError(f"field {name!r} must be a string")  # noqa: TRY004 - one error for the caller
        station = signed["station_key"]
        if station is not None and not isinstance(station, str):
            raise ValueError("field 'station_key' must be a string or null")
        count = signed["count"]
        if type(count) is not int:
            raise ValueError("field 'count' must be an integer")
        return cls(
            token_id=str(signed["token"]),
            product=str(signed["product"]),
            root_ca=str(signed["root_ca"]),
            factory=str(signed["factory"]),
            count=count,
            expires=parse_time(str(signed["expires"])),
            station_key=station,
            issued=parse_time(str(signed["issued"])),
        )


def issue_token(
    authority: KeyHandle,
    *,
    product: str,
    root_ca: str,
    factory: str,
    count: int,
    expires: datetime,
    station_key: str | None,
    now: datetime,
) -> tuple[ProductionToken, bytes]:
    """Make and sign a production token; returns the token and the bytes of its file."""
    validate_factory(factory)
    if expires <= now:
        raise UsageError(f"--expires {format_time(expires)} is not in the future")
    try:
        token = ProductionToken(
            token_id=new_token_id(),
            product=product,
            root_ca=root_ca,
            factory=factory,
            count=count,
            expires=expires,
            station_key=station_key,
            issued=now,
        )
    except ValueError as exc:
        raise UsageError(f"production token: {exc}") from exc
    return token, sign_envelope(token.signed(), authority)


def verify_token(
    data: bytes,
    trusted: Sequence[TrustedKey],
    *,
    product: str,
    root_ca: str,
    now: datetime,
    source: str = "production token",
) -> ProductionToken:
    """Verify a token file's signature, format, product and expiry; return its content.

    Raises :class:`InvalidProductionToken` with the reason; the station check (``station_key``)
    is the caller's, who knows the station's keys.
    """
    signed = open_envelope(
        data, trusted, what=source, type_=TOKEN_TYPE, limit=MAX_TOKEN_BYTES, error=InvalidProductionToken
    )
    try:
        token = ProductionToken.from_signed(signed)
    except ValueError as exc:
        raise InvalidProductionToken(f"{source}: malformed ({exc})") from exc
    if token.product != product or token.root_ca != root_ca:
        raise InvalidProductionToken(
            f"{source}: {token.token_id} is for product {token.product!r} (root CA {token.root_ca[:16]}), "
            f"not for this product {product!r} (root CA {root_ca[:16]})"
        )
    if now > token.expires:
        raise InvalidProductionToken(
            f"{source}: {token.token_id} expired on {format_time(token.expires)}",
            hint="ask the root-of-trust holder for a new token (trustroot provision authorize)",
        )
    return token


# ------------------------------------------------------------------------------------ station report


@dataclass(frozen=True)
class ReportBatch:
    batch: str
    state: str
    requested: int
    provisioned: int
    first_serial: str | None
    last_serial: str | None


@dataclass(frozen=True)
class ReportToken:
    token: str
    factory: str
    count: int
    expires: str
    reserved: int
    spent: int
    batches: tuple[ReportBatch, ...]


@dataclass(frozen=True)
class StationReport:
    """What a station says it spent, per token, verified under its signing key."""

    product: str
    root_ca: str
    store: str
    station_key: str
    signing_key: str
    generated: datetime
    tokens: tuple[ReportToken, ...]


def station_report(
    signing: KeyHandle,
    *,
    product: str,
    root_ca: str,
    store: str,
    station_key: str,
    tokens: Sequence[ReportToken],
    now: datetime,
) -> bytes:
    """The signed station report (the bytes of its file)."""
    public_pem = signing.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    signed: dict[str, object] = {
        "type": REPORT_TYPE,
        "version": TOKEN_VERSION,
        "product": product,
        "root_ca": root_ca,
        "store": store,
        "station_key": station_key,
        "signing_key": public_pem.decode("ascii"),
        "generated": format_time(now),
        "tokens": [
            {
                "token": t.token,
                "factory": t.factory,
                "count": t.count,
                "expires": t.expires,
                "reserved": t.reserved,
                "spent": t.spent,
                "batches": [
                    {
                        "batch": b.batch,
                        "state": b.state,
                        "requested": b.requested,
                        "provisioned": b.provisioned,
                        "first_serial": b.first_serial,
                        "last_serial": b.last_serial,
                    }
                    for b in t.batches
                ],
            }
            for t in tokens
        ],
    }
    return sign_envelope(signed, signing)


def _report_key(data: bytes, source: str) -> TrustedKey:
    """The signing key a report carries (read before verification only to know what to verify with)."""
    document = parse_strict_json(data, what=source, limit=MAX_REPORT_BYTES, error=InvalidStationReport)
    try:
        pem = document["signed"]["signing_key"]  # type: ignore[index]
        public = serialization.load_pem_public_key(pem.encode("ascii"))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise InvalidStationReport(f"{source}: no readable station signing key in the report") from exc
    return TrustedKey(public, Algorithm.ECDSA_P256)


def _int(value: object, name: str) -> int:
    if type(value) is not int or value < 0:
        raise ValueError(f"{name} must be a non-negative integer")
    return value


def _str(value: object, name: str, *, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string")  # noqa: TRY004 - one error for the caller
    return value


def _list(value: object, name: str) -> list[Any]:
    if not isinstance(value, list):
        raise ValueError(f"{name} must be a list")  # noqa: TRY004 - one error for the caller
    return value


def verify_station_report(data: bytes, *, source: str = "station report") -> StationReport:
    """Verify a station report under the signing key it carries; :class:`InvalidStationReport`."""
    key = _report_key(data, source)
    signed = open_envelope(
        data, [key], what=source, type_=REPORT_TYPE, limit=MAX_REPORT_BYTES, error=InvalidStationReport
    )
    try:
        tokens: list[ReportToken] = []
        for item in _list(signed["tokens"], "tokens"):
            batches = tuple(
                ReportBatch(
                    batch=str(_str(b["batch"], "batch")),
                    state=str(_str(b["state"], "state")),
                    requested=_int(b["requested"], "requested"),
                    provisioned=_int(b["provisioned"], "provisioned"),
                    first_serial=_str(b["first_serial"], "first_serial", optional=True),
                    last_serial=_str(b["last_serial"], "last_serial", optional=True),
                )
                for b in _list(item["batches"], "batches")
            )
            tokens.append(
                ReportToken(
                    token=str(_str(item["token"], "token")),
                    factory=str(_str(item["factory"], "factory")),
                    count=_int(item["count"], "count"),
                    expires=str(_str(item["expires"], "expires")),
                    reserved=_int(item["reserved"], "reserved"),
                    spent=_int(item["spent"], "spent"),
                    batches=batches,
                )
            )
        return StationReport(
            product=str(_str(signed["product"], "product")),
            root_ca=str(_str(signed["root_ca"], "root_ca")),
            store=str(_str(signed["store"], "store")),
            station_key=str(_str(signed["station_key"], "station_key")),
            signing_key=key.key_id,
            generated=parse_time(str(_str(signed["generated"], "generated"))),
            tokens=tuple(tokens),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidStationReport(f"{source}: malformed ({exc})") from exc


# ============================================================================ operations on a product
#
# Everything above is pure (bytes, keys and an injected time in, values out). What follows binds it
# to a product: its key store (the authority and station keys), its production store and its
# evidence log.

#: The key that signs production tokens and batch manifests (made at the first authorization).
AUTHORITY_KEY: Final = "production-authority"
#: The station's key-agreement key: device bundles are encrypted to it.
STATION_KEY: Final = "station"
#: The station's signing key: its spent counters and station reports.
STATION_SIGNING_KEY: Final = "station-signing"
#: The state-signature message's type (see :func:`token_state_message`).
STATE_TYPE: Final = "trustroot.station-state"
_IMPLICIT_VALIDITY = timedelta(days=1)


def production_store(product: Product) -> ProductionStore:
    """Open the product's production store (``.trustroot/production/production.sqlite``)."""
    return ProductionStore.open(product.state_dir / "production", product=product.context.model.product.name)


def root_ca_fingerprint(product: Product) -> str:
    """The SHA-256 fingerprint of the product's root CA certificate (tokens name the product by it)."""
    return certificate_fingerprint(product.certificate(ROOT_CA_CERT))


def ensure_key(product: Product, name: str, algorithm: Algorithm) -> KeyInfo:
    """Key ``name`` (role ``other``), made now with evidence if the store has none; safe when processes race."""
    try:
        info = product.keys.get(name)
    except KeyNotFoundError:
        try:
            info = product.keys.create(KeyRole.OTHER, algorithm, name=name)
        except KeyExistsError:  # another process made it meanwhile
            return product.keys.get(name)
        product.record(
            "key.created",
            info.name,
            {
                "role": info.role.value,
                "algorithm": info.algorithm.value,
                "backend": info.backend,
                "fingerprint": info.fingerprint,
                "generation": info.generation,
            },
        )
        return info
    if info.algorithm is not algorithm:
        raise StateError(
            f"key '{name}' is a {info.algorithm.value} key; production needs it to be {algorithm.value}",
            hint=f"revoke it and let trustroot make a new '{name}' key",
        )
    return info


def ensure_station_keys(product: Product) -> tuple[KeyInfo, KeyInfo]:
    """The station's (key-agreement, signing) keys, made at first use."""
    return ensure_key(product, STATION_KEY, Algorithm.ECIES_P256), ensure_key(
        product, STATION_SIGNING_KEY, Algorithm.ECDSA_P256
    )


def authority_keys(product: Product) -> list[TrustedKey]:
    """The public production-authority keys this product trusts (never a revoked one)."""
    found = [
        TrustedKey(serialization.load_pem_public_key(info.public_pem.encode("ascii")), info.algorithm)
        for info in product.keys.list()
        if info.name == AUTHORITY_KEY and info.status is not KeyStatus.REVOKED and info.public_pem
    ]
    if not found:
        raise InvalidProductionToken(
            f"no usable '{AUTHORITY_KEY}' key in the key store {product.keys.directory}: "
            "production tokens cannot be verified here",
            hint="copy the key index of the root-of-trust holder (its public keys) to this station",
        )
    return found


def unlock_authority(product: Product) -> KeyHandle:
    """The production-authority key, made at first use (the root-of-trust holder's key)."""
    info = ensure_key(product, AUTHORITY_KEY, Algorithm.ECDSA_P256)
    try:
        return product.keys.unlock(info.name)
    except (UnreadableInputError, KeyFileCorruptError) as exc:
        raise PolicyRefusal(
            f"the '{AUTHORITY_KEY}' key cannot be used here ({exc.message}): only the root-of-trust holder "
            "authorizes production and signs manifests",
            hint="use a token from the root-of-trust holder: trustroot provision batch --token FILE",
        ) from exc


# --- the station's signature over a token's counters ------------------------------------------------


def token_state_message(store_id: str, record: TokenRecord) -> bytes:
    """The bytes the station signs for a token's counters (binds them to this store and token)."""
    return canonical_json(
        {
            "type": STATE_TYPE,
            "version": 1,
            "store": store_id,
            "token": record.token_id,
            "count": record.count,
            "reserved": record.reserved,
            "spent": record.spent,
            "last_seen": format_time(record.last_seen),
        }
    )


def sign_token_state(store_id: str, record: TokenRecord, signing: KeyHandle) -> TokenRecord:
    """``record`` with the station's signature over its counters."""
    signature = signing.sign(token_state_message(store_id, record))
    return dataclasses.replace(record, state_signature=signature, state_key=signing.info.fingerprint)


def check_token_state(product: Product, store: ProductionStore, record: TokenRecord) -> None:
    """Refuse a token row the station did not sign (edited, or another station's), or a store older
    than the evidence log (a store file copied back over a newer one)."""
    label = f"production store {store.path}: token {record.token_id}"
    signing = product.keys.get(STATION_SIGNING_KEY)
    if record.state_signature is None or record.state_key is None:
        raise ProductionStateError(f"{label}: its spent counter is not signed by the station")
    if record.state_key != signing.fingerprint:
        raise ProductionStateError(
            f"{label}: its spent counter is signed by another station key ({record.state_key[:16]}), "
            f"not by this station's ({signing.fingerprint[:16]}): a store file copied from another station?"
        )
    try:
        verify_signature(
            product.keys.public_key(signing.name),
            Algorithm.ECDSA_P256,
            token_state_message(store.store_id, record),
            record.state_signature,
        )
    except InvalidSignature as exc:
        raise ProductionStateError(
            f"{label}: the station's signature over its spent counter does not verify "
            f"(reserved {record.reserved}, spent {record.spent}): the store was edited"
        ) from exc
    # Evidence first: a record is appended only after its device is committed, so counting the
    # evidence before the store can never find more evidence than devices while others produce.
    in_evidence = sum(1 for _ in evidence_records(product, "device.provisioned", token=record.token_id))
    issued = store.count_devices(token_id=record.token_id, issued=True)
    if in_evidence > issued:
        raise ProductionStateError(
            f"{label}: the evidence log records {in_evidence} devices of this token but the store only "
            f"{issued}: the store is older than the evidence (a copied-back store file?)",
            hint="restore the newest production store; never reuse a token's quota",
        )


def check_clock(record: TokenRecord, now: datetime) -> None:
    """Refuse a clock set back behind the last use of the token (beyond a small tolerance)."""
    if now < record.last_seen - timedelta(seconds=CLOCK_TOLERANCE_S):
        raise InvalidProductionToken(
            f"token {record.token_id}: the clock ({format_time(now)}) is behind its last use "
            f"({format_time(record.last_seen)}): refusing to spend a token with a clock set back"
        )


def evidence_records(product: Product, type_: str, *, token: str | None = None) -> Iterator[dict[str, Any]]:
    """Records of ``type_`` in the evidence log (optionally only of ``token``), parsed from complete lines.

    A fast raw scan for production's cross-checks; it does not verify the chain
    (``trustroot evidence verify`` does).
    """
    path = product.evidence.path
    marker = b'"type":"' + type_.encode("ascii") + b'"'
    needle = None if token is None else b'"token":"' + token.encode("ascii") + b'"'
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        return
    with handle:
        for line in handle:
            if not line.endswith(b"\n") or marker not in line or (needle is not None and needle not in line):
                continue
            try:
                record = json.loads(line)
            except ValueError:
                continue
            data = record.get("data") if isinstance(record, dict) else None
            if record.get("type") == type_ and isinstance(data, dict) and (token is None or data.get("token") == token):
                yield record


# --- holder: authorize ----------------------------------------------------------------------------------


def authorize(
    product: Product,
    store: ProductionStore,
    *,
    factory: str,
    count: int,
    expires: datetime,
    station_key: str | None,
) -> tuple[ProductionToken, bytes]:
    """Sign a production token (root-of-trust holder), record it and leave ``batch.authorized`` evidence."""
    if station_key is not None and _HEX64.fullmatch(station_key) is None:
        raise UsageError(f"station key fingerprint {station_key!r} is not 64 lower-case hex")
    authority = unlock_authority(product)
    now = product.clock()
    token, data = issue_token(
        authority,
        product=product.context.model.product.name,
        root_ca=root_ca_fingerprint(product),
        factory=factory,
        count=count,
        expires=expires,
        station_key=station_key,
        now=now,
    )
    with store.transaction() as txn:
        txn.add_authorization(
            Authorization(
                token_id=token.token_id,
                factory=token.factory,
                count=token.count,
                expires=token.expires,
                station_key=token.station_key,
                issued=token.issued,
            ),
            data,
        )
    product.record(
        "batch.authorized",
        token.token_id,
        {
            "token": token.token_id,
            "factory": token.factory,
            "count": token.count,
            "expires": format_time(token.expires),
            "station_key": token.station_key,
            "authority_key": authority.info.fingerprint,
        },
    )
    return token, data


def authorize_here(product: Product, store: ProductionStore, *, factory: str, count: int) -> TokenRecord:
    """One machine holds the root of trust and is the station: authorize exactly ``count`` and take the token."""
    station, _ = ensure_station_keys(product)
    token, data = authorize(
        product,
        store,
        factory=factory,
        count=count,
        expires=product.clock() + _IMPLICIT_VALIDITY,
        station_key=station.fingerprint,
    )
    return import_token(product, store, data, source=f"token {token.token_id}")


# --- station: take a token into the store ----------------------------------------------------------------


def import_token(product: Product, store: ProductionStore, data: bytes, *, source: str) -> TokenRecord:
    """Verify a token and take it into this station's store (idempotent); return its record.

    Refuses a forged, malformed or expired token, one for another product or another station, and
    a token this station spent before but its store no longer knows (a replaced store).
    """
    now = product.clock()
    token = verify_token(
        data,
        authority_keys(product),
        product=product.context.model.product.name,
        root_ca=root_ca_fingerprint(product),
        now=now,
        source=source,
    )
    station, signing = ensure_station_keys(product)
    if token.station_key is not None and token.station_key not in (station.fingerprint, signing.fingerprint):
        raise InvalidProductionToken(
            f"{source}: {token.token_id} is for the station with key {token.station_key[:16]}, "
            f"not for this station ({station.fingerprint[:16]})"
        )
    existing = store.token(token.token_id)
    if existing is None:
        handle = product.keys.unlock(signing.name)
        with store.transaction() as txn:
            if txn.token(token.token_id) is None:  # another process may have taken it meanwhile
                # Under the write lock with no row for the token, no device of it is in the store:
                # evidence of its devices can only come from a store that was replaced.
                in_evidence = sum(1 for _ in evidence_records(product, "device.provisioned", token=token.token_id))
                if in_evidence:
                    raise ProductionStateError(
                        f"{source}: {token.token_id} was spent here before ({in_evidence} devices in the evidence "
                        "log) but the production store does not know it: refusing to spend a token twice",
                        hint="restore the production store this station used",
                    )
                record = TokenRecord(
                    token_id=token.token_id,
                    factory=token.factory,
                    count=token.count,
                    expires=token.expires,
                    station_key=token.station_key,
                    issued=token.issued,
                    reserved=0,
                    spent=0,
                    last_seen=now,
                    state_signature=None,
                    state_key=None,
                )
                txn.add_token(sign_token_state(store.store_id, record, handle), data)
        existing = store.token(token.token_id)
        if existing is None:  # pragma: no cover - inserted above
            raise ProductionStateError(f"{source}: {token.token_id} was not recorded")
    else:
        known = store.token_document(token.token_id) or b""
        if _signed_bytes(known) != _signed_bytes(data):
            raise InvalidProductionToken(
                f"{source}: {token.token_id} differs from the token of that id this station already holds"
            )
    check_token_state(product, store, existing)
    return existing


def _signed_bytes(data: bytes) -> bytes:
    try:
        document = json.loads(data)
        return canonical_json(document["signed"])
    except (ValueError, KeyError, TypeError, UsageError):
        return b""


# --- station report and reconciliation -------------------------------------------------------------------


def make_station_report(product: Product, store: ProductionStore) -> bytes:
    """The signed report of what this station spent, per token and batch (for the holder's reconcile)."""
    station, signing = ensure_station_keys(product)
    handle = product.keys.unlock(signing.name)
    tokens: list[ReportToken] = []
    for record in store.tokens():
        batches = []
        for batch in store.batches(token_id=record.token_id):
            first, last = store.serial_range(batch.batch_id)
            batches.append(
                ReportBatch(
                    batch=batch.batch_id,
                    state=batch.state,
                    requested=batch.requested,
                    provisioned=batch.provisioned,
                    first_serial=first,
                    last_serial=last,
                )
            )
        tokens.append(
            ReportToken(
                token=record.token_id,
                factory=record.factory,
                count=record.count,
                expires=format_time(record.expires),
                reserved=record.reserved,
                spent=record.spent,
                batches=tuple(batches),
            )
        )
    return station_report(
        handle,
        product=product.context.model.product.name,
        root_ca=root_ca_fingerprint(product),
        store=store.store_id,
        station_key=station.fingerprint,
        tokens=tokens,
        now=product.clock(),
    )


@dataclass(frozen=True)
class ReconcileLine:
    """One token: what the holder authorized against what the station says it spent."""

    token: str
    factory: str
    authorized: int | None
    reserved: int
    spent: int
    expires: str
    problems: tuple[str, ...]


@dataclass(frozen=True)
class Reconciliation:
    station_key: str
    signing_key: str
    store: str
    generated: datetime
    lines: tuple[ReconcileLine, ...]
    #: Tokens the holder authorized that the station does not report (not taken yet).
    unreported: tuple[str, ...]

    @property
    def problems(self) -> list[str]:
        return [f"token {line.token}: {p}" for line in self.lines for p in line.problems]


def reconcile(product: Product, store: ProductionStore, data: bytes, *, source: str) -> Reconciliation:
    """Compare a station report with the tokens this holder authorized (over-spending, unknown tokens)."""
    report = verify_station_report(data, source=source)
    name = product.context.model.product.name
    if report.product != name or report.root_ca != root_ca_fingerprint(product):
        raise InvalidStationReport(f"{source}: the report is for product {report.product!r}, not for {name!r}")
    authorized = {a.token_id: a for a in store.authorizations()}
    lines: list[ReconcileLine] = []
    for item in report.tokens:
        problems: list[str] = []
        auth = authorized.get(item.token)
        if auth is None:
            problems.append("not authorized by this root of trust")
        else:
            if item.spent > auth.count or item.reserved > auth.count:
                problems.append(f"over-issuance: spent {item.spent} and reserved {item.reserved} of {auth.count}")
            if item.count != auth.count or item.factory != auth.factory:
                problems.append(
                    f"the station holds count {item.count} for {item.factory}, authorized {auth.count} for "
                    f"{auth.factory}"
                )
            if auth.station_key is not None and auth.station_key not in (report.station_key, report.signing_key):
                problems.append(
                    f"authorized for station {auth.station_key[:16]} but spent by {report.station_key[:16]}"
                )
        devices = sum(b.provisioned for b in item.batches)
        if devices != item.spent:
            problems.append(f"its batches hold {devices} devices but the spent counter says {item.spent}")
        lines.append(
            ReconcileLine(
                token=item.token,
                factory=item.factory,
                authorized=None if auth is None else auth.count,
                reserved=item.reserved,
                spent=item.spent,
                expires=item.expires,
                problems=tuple(problems),
            )
        )
    reported = {item.token for item in report.tokens}
    return Reconciliation(
        station_key=report.station_key,
        signing_key=report.signing_key,
        store=report.store,
        generated=report.generated,
        lines=tuple(lines),
        unreported=tuple(t for t in authorized if t not in reported),
    )
