"""Owners of devices and the signed chain of ownership (guideline 11; in the spirit of FIDO Device
Onboard's ownership vouchers).

An **owner** registers an Ed25519 public key and receives an API key (``tro_...``, shown once; the
service keeps its SHA-256). An owner **claims** a device with the device's ONE-TIME claim code (the
label's code; the fleet holds only :func:`trustroot.provision.claim.claim_code_hash` of it, imported
from the batch manifest by :func:`import_claim_codes`). The code is consumed in the same statement
that checks it (``UPDATE ... WHERE consumed_at IS NULL``), so of two concurrent claims one wins.
The owner may **transfer** the device to another owner (authorised by the current owner's Ed25519
signature over :func:`transfer_authorization`) or **release** it.

Each change of owner appends a **link**, signed by the service's ownership key
(:func:`trustroot.fleet.receipts.service_signing_key`)::

    {"body": {"v": 1, "serial": S, "seq": n, "prev": SHA-256 of link n-1's body (64 zeros for n = 1),
              "kind": "claim" | "transfer" | "release",
              "owner": {"id": ..., "public_key": hex Ed25519} | null (release),
              "time": ISO 8601 UTC, "authorization": base64 Ed25519 by the previous owner | null},
     "signature": base64 Ed25519(LINK_DOMAIN || canonical_json(body)), "key_id": hex}

:func:`verify_ownership_chain` is a pure function over those links and the service's public key:
it returns the current owner (``None`` when released) or raises :class:`OwnershipChainError` at the
first break (bad signature, wrong ``prev`` or ``seq``, another serial, time going back, a claim of an
owned device, a transfer without the previous owner's authorisation, a release of an unowned device).

Every change is recorded as ``ownership.changed`` in the fleet's audit chain (owner ids hashed).

Errors::

    TrustrootError
    ├── PolicyRefusal
    │   ├── OwnershipRefused       claim with a wrong or used code, transfer/release by a non-owner
    │   └── OwnerAuthError         no or unknown owner API key
    ├── UsageError
    │   └── ClaimCodeError         (trustroot.errors) a malformed or mistyped code
    └── OwnershipChainError        the chain does not verify (one type, carrying the reason)

``OwnershipRefused``, ``OwnerAuthError`` and ``OwnershipChainError`` are defined here until they
move to :mod:`trustroot.errors`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal

from cryptography.exceptions import InvalidSignature as _CryptoInvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from trustroot.errors import (
    OwnerAuthError,
    OwnershipChainError,
    OwnershipRefused,
    UsageError,
)
from trustroot.fleet.ownership_models import DeviceClaimCode, DeviceOwnership, OwnerAccount, OwnershipLink
from trustroot.fleet.receipts import canonical_json, service_signing_key
from trustroot.fleet.service import FleetService
from trustroot.fleet.store._locks import lock_key, serialize_writers
from trustroot.fleet.store.audit import record
from trustroot.fleet.store.models import Device, DeviceStatus
from trustroot.keys._interface import KeyHandle, public_key_fingerprint
from trustroot.provision.claim import claim_code_hash

__all__ = [
    "API_KEY_PREFIX",
    "GENESIS_PREV",
    "LINK_DOMAIN",
    "PROVISION",
    "TRANSFER_DOMAIN",
    "Owner",
    "OwnerAuthError",
    "OwnerRef",
    "OwnershipChainError",
    "OwnershipRefused",
    "authenticate_owner",
    "chain_owners",
    "claim_device",
    "import_claim_codes",
    "owned_devices",
    "owner_id_digest",
    "ownership_chain",
    "register_owner",
    "release_device",
    "service_public_key",
    "set_claim_code_hash",
    "transfer_authorization",
    "transfer_device",
    "verify_ownership_chain",
]

#: The EN 303 645 provision at stake: ownership changes erase personal data (5.11-1 .. 5.11-4).
PROVISION: Final = "5.11-1"
#: ``prev`` of the first link of a chain.
GENESIS_PREV: Final = "0" * 64
#: What a link signature covers before the body.
LINK_DOMAIN: Final = b"trustroot/ownership-link/v1\n"
#: What the previous owner signs to authorise a transfer, before :func:`transfer_authorization`'s JSON.
TRANSFER_DOMAIN: Final = b"trustroot/ownership-transfer/v1\n"
#: Every owner API key starts with this.
API_KEY_PREFIX: Final = "tro_"
_CHAIN_LOCK: Final = lock_key("trustroot.fleet.ownership")
_KINDS: Final = ("claim", "transfer", "release")
_BODY_FIELDS: Final = frozenset({"v", "serial", "seq", "prev", "kind", "owner", "time", "authorization"})
_MAX_LINKS: Final = 10_000
_HEX = frozenset("0123456789abcdef")

Kind = Literal["claim", "transfer", "release"]


@dataclass(frozen=True)
class OwnerRef:
    """An owner as a link names it: id and raw Ed25519 public key (hex)."""

    id: str
    public_key: str


@dataclass(frozen=True)
class Owner:
    """An authenticated owner account."""

    id: str
    public_key: str
    created_at: datetime

    @property
    def ref(self) -> OwnerRef:
        return OwnerRef(self.id, self.public_key)


def owner_id_digest(owner_id: str) -> str:
    """SHA-256 (hex) of an owner id: how evidence and receipts name an owner."""
    return hashlib.sha256(owner_id.encode("utf-8")).hexdigest()


def _api_key_digest(api_key: str) -> str:
    return hashlib.sha256(api_key.encode("utf-8")).hexdigest()


def _check_public_key(public_key: str) -> Ed25519PublicKey:
    if len(public_key) != 64 or not set(public_key) <= _HEX:
        raise UsageError("an owner public key is a raw Ed25519 key as 64 lower-case hexadecimal digits")
    return Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_key))


# -- owners ------------------------------------------------------------------------------------


def register_owner(service: FleetService, public_key: str) -> tuple[Owner, str]:
    """Make an owner account for ``public_key`` (hex Ed25519); return it and its API key (shown once)."""
    _check_public_key(public_key)
    api_key = API_KEY_PREFIX + secrets.token_urlsafe(32)
    owner = Owner(id="o-" + secrets.token_hex(16), public_key=public_key, created_at=service.clock())
    with service.store.transaction() as session:
        session.add(
            OwnerAccount(
                id=owner.id,
                api_key_sha256=_api_key_digest(api_key),
                public_key=public_key,
                created_at=owner.created_at,
            )
        )
    return owner, api_key


def authenticate_owner(service: FleetService, api_key: str) -> Owner:
    """The owner of ``api_key``; :class:`OwnerAuthError` if none (the key is looked up by its SHA-256)."""
    if not api_key.startswith(API_KEY_PREFIX) or len(api_key) > 128:
        raise OwnerAuthError("not an owner API key")
    with service.store.transaction() as session:
        row = session.scalars(
            select(OwnerAccount).where(OwnerAccount.api_key_sha256 == _api_key_digest(api_key))
        ).one_or_none()
    if row is None:
        raise OwnerAuthError("unknown owner API key")
    return Owner(id=row.id, public_key=row.public_key, created_at=row.created_at)


# -- claim codes -------------------------------------------------------------------------------


def set_claim_code_hash(service: FleetService, serial: str, claim_hash: str) -> None:
    """Record (or replace, re-arming a claim) the claim-code hash of device ``serial``."""
    if len(claim_hash) != 64 or not set(claim_hash) <= _HEX:
        raise UsageError("a claim code hash is 64 lower-case hexadecimal digits")
    with service.store.transaction() as session:
        device = _device(session, serial)
        session.execute(delete(DeviceClaimCode).where(DeviceClaimCode.device_id == device.id))
        session.add(DeviceClaimCode(device_id=device.id, claim_code_sha256=claim_hash, consumed_at=None))


def import_claim_codes(service: FleetService, devices: Iterable[Any]) -> int:
    """Record the claim-code hashes of a VERIFIED manifest's devices (``ManifestDevice`` objects).

    Devices without a hash, or whose hash is recorded already, are skipped; returns how many were added.
    """
    added = 0
    with service.store.transaction() as session:
        for item in devices:
            claim_hash = getattr(item, "claim_code_hash", None)
            if claim_hash is None:
                continue
            device_id = session.scalar(select(Device.id).where(Device.serial == item.serial))
            if device_id is None or session.get(DeviceClaimCode, device_id) is not None:
                continue
            session.add(DeviceClaimCode(device_id=device_id, claim_code_sha256=claim_hash, consumed_at=None))
            added += 1
    return added


# -- the chain ---------------------------------------------------------------------------------


def _device(session: Session, serial: str) -> Device:
    device = session.scalars(select(Device).where(Device.serial == serial)).one_or_none()
    if device is None:
        raise OwnershipRefused(f"no registered device {serial!r}")
    return device


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def transfer_authorization(serial: str, prev: str, new_owner: OwnerRef) -> bytes:
    """The bytes the current owner signs (Ed25519) to transfer ``serial`` to ``new_owner``.

    ``prev`` is the hash of the chain's last link (what :func:`ownership_chain` shows), so an
    authorisation is good for one transfer only.
    """
    return TRANSFER_DOMAIN + canonical_json(
        {"serial": serial, "prev": prev, "new_owner": {"id": new_owner.id, "public_key": new_owner.public_key}}
    )


def _last_link(session: Session, device_id: int) -> OwnershipLink | None:
    return session.scalars(
        select(OwnershipLink).where(OwnershipLink.device_id == device_id).order_by(OwnershipLink.seq.desc()).limit(1)
    ).one_or_none()


def _append_link(
    service: FleetService,
    session: Session,
    handle: KeyHandle,
    device: Device,
    *,
    kind: Kind,
    owner: OwnerRef | None,
    authorization: bytes | None,
    actor: str,
) -> dict[str, Any]:
    """Sign and store the next link of ``device``'s chain, move the current owner, record the evidence."""
    last = _last_link(session, device.id)
    seq = 1 if last is None else last.seq + 1
    prev = GENESIS_PREV if last is None else last.link_hash
    now = service.clock()
    body = {
        "v": 1,
        "serial": device.serial,
        "seq": seq,
        "prev": prev,
        "kind": kind,
        "owner": None if owner is None else {"id": owner.id, "public_key": owner.public_key},
        "time": now.isoformat(),
        "authorization": None if authorization is None else _b64(authorization),
    }
    encoded = canonical_json(body)
    link_hash = hashlib.sha256(encoded).hexdigest()
    signature = _b64(handle.sign(LINK_DOMAIN + encoded))
    key_id = public_key_fingerprint(handle.public_key())
    session.add(
        OwnershipLink(
            device_id=device.id,
            seq=seq,
            body=encoded.decode("utf-8"),
            link_hash=link_hash,
            signature=signature,
            key_id=key_id,
        )
    )
    session.execute(delete(DeviceOwnership).where(DeviceOwnership.device_id == device.id))
    if owner is not None:
        session.add(DeviceOwnership(device_id=device.id, owner_id=owner.id, since=now))
    record(
        service,
        "ownership.changed",
        device.serial,
        {
            "serial": device.serial,
            "kind": kind,
            "seq": seq,
            "link_hash": link_hash,
            "owner_id_sha256": None if owner is None else owner_id_digest(owner.id),
        },
        actor,
        session=session,
    )
    return {"body": body, "signature": signature, "key_id": key_id}


def _signing_handle(service: FleetService) -> KeyHandle:
    if service.keys is None:
        raise OwnershipRefused("the service has no key store to sign ownership links with")
    return service_signing_key(service.keys)


def service_public_key(service: FleetService) -> Ed25519PublicKey:
    """The public key that verifies the service's ownership links and deletion receipts."""
    key = _signing_handle(service).public_key()
    if not isinstance(key, Ed25519PublicKey):  # pragma: no cover - the key is made as Ed25519
        raise OwnershipRefused("the service's ownership key is not an Ed25519 key")
    return key


def claim_device(service: FleetService, owner: Owner, claim_code: str) -> dict[str, Any]:
    """Claim the device whose one-time ``claim_code`` this is for ``owner``; return the new link.

    :class:`~trustroot.errors.ClaimCodeError` for a malformed code; :class:`OwnershipRefused` for a
    code no device has, one used before, or a device that is revoked or owned.
    """
    digest = claim_code_hash(claim_code)
    handle = _signing_handle(service)
    with service.store.transaction() as session:
        serialize_writers(session.connection(), _CHAIN_LOCK)
        code = session.scalars(select(DeviceClaimCode).where(DeviceClaimCode.claim_code_sha256 == digest)).one_or_none()
        if code is None:
            raise OwnershipRefused("no device has this claim code", hint="check the code on the device's label")
        consumed = session.execute(
            update(DeviceClaimCode)
            .where(DeviceClaimCode.device_id == code.device_id, DeviceClaimCode.consumed_at.is_(None))
            .values(consumed_at=service.clock())
        )
        if getattr(consumed, "rowcount", 0) != 1:
            raise OwnershipRefused("this claim code was used already: a claim code claims once")
        device = session.get(Device, code.device_id)
        if device is None or device.status != DeviceStatus.ACTIVE.value:
            raise OwnershipRefused("the device of this claim code is not active")
        if session.get(DeviceOwnership, device.id) is not None:
            raise OwnershipRefused(f"device {device.serial} is owned already")
        return _append_link(
            service, session, handle, device, kind="claim", owner=owner.ref, authorization=None, actor=owner.id
        )


def _owned_by(session: Session, device: Device, owner: Owner) -> None:
    current = session.get(DeviceOwnership, device.id)
    if current is None or current.owner_id != owner.id:
        raise OwnershipRefused(f"device {device.serial} is not owned by this owner")


def transfer_device(
    service: FleetService, owner: Owner, serial: str, new_owner_id: str, authorization: bytes
) -> dict[str, Any]:
    """Transfer ``serial`` from ``owner`` to ``new_owner_id``; ``authorization`` is ``owner``'s Ed25519
    signature over :func:`transfer_authorization`. Returns the new link.
    """
    handle = _signing_handle(service)
    with service.store.transaction() as session:
        serialize_writers(session.connection(), _CHAIN_LOCK)
        device = _device(session, serial)
        _owned_by(session, device, owner)
        target = session.get(OwnerAccount, new_owner_id)
        if target is None or target.id == owner.id:
            raise OwnershipRefused("the new owner is unknown, or the current owner itself")
        new_ref = OwnerRef(target.id, target.public_key)
        last = _last_link(session, device.id)
        prev = GENESIS_PREV if last is None else last.link_hash
        try:
            _check_public_key(owner.public_key).verify(authorization, transfer_authorization(serial, prev, new_ref))
        except _CryptoInvalidSignature as exc:
            raise OwnershipRefused(
                "the transfer is not authorised: the owner's signature does not verify",
                hint="sign transfer_authorization(serial, prev, new owner) with the owner's key",
            ) from exc
        return _append_link(
            service,
            session,
            handle,
            device,
            kind="transfer",
            owner=new_ref,
            authorization=authorization,
            actor=owner.id,
        )


def release_device(service: FleetService, owner: Owner, serial: str) -> dict[str, Any]:
    """Give up ``owner``'s ownership of ``serial`` (the device becomes unowned); return the new link."""
    handle = _signing_handle(service)
    with service.store.transaction() as session:
        serialize_writers(session.connection(), _CHAIN_LOCK)
        device = _device(session, serial)
        _owned_by(session, device, owner)
        return _append_link(
            service, session, handle, device, kind="release", owner=None, authorization=None, actor=owner.id
        )


def owned_devices(session: Session, owner_id: str) -> list[Device]:
    """The devices ``owner_id`` owns now, by serial."""
    return list(
        session.scalars(
            select(Device)
            .join(DeviceOwnership, DeviceOwnership.device_id == Device.id)
            .where(DeviceOwnership.owner_id == owner_id)
            .order_by(Device.serial)
        )
    )


def ownership_chain(service: FleetService, serial: str) -> list[dict[str, Any]]:
    """Every link of ``serial``'s chain, in order (empty for a device never claimed)."""
    with service.store.transaction() as session:
        device = _device(session, serial)
        rows = session.scalars(
            select(OwnershipLink).where(OwnershipLink.device_id == device.id).order_by(OwnershipLink.seq)
        ).all()
        return [_link_view(row) for row in rows]


def chain_owners(service: FleetService, serial: str) -> tuple[str | None, set[str]]:
    """The current owner id of ``serial`` (or ``None``) and every owner id its chain names."""
    links = ownership_chain(service, serial)
    named = {link["body"]["owner"]["id"] for link in links if link["body"]["owner"] is not None}
    current = links[-1]["body"]["owner"] if links else None
    return (None if current is None else current["id"]), named


def _link_view(row: OwnershipLink) -> dict[str, Any]:
    return {"body": json.loads(row.body), "signature": row.signature, "key_id": row.key_id}


# -- verification (pure) -----------------------------------------------------------------------


def _owner_of(value: object, where: str) -> OwnerRef | None:
    if value is None:
        return None
    if not isinstance(value, Mapping) or set(value) != {"id", "public_key"}:
        raise OwnershipChainError(f"{where}: 'owner' is not {{id, public_key}}")
    owner_id, key = value["id"], value["public_key"]
    if not isinstance(owner_id, str) or not isinstance(key, str):
        raise OwnershipChainError(f"{where}: the owner's id and key are strings")
    try:
        _check_public_key(key)
    except (UsageError, ValueError) as exc:
        raise OwnershipChainError(f"{where}: the owner's public key is not an Ed25519 key") from exc
    return OwnerRef(owner_id, key)


def _time_of(value: object, where: str) -> datetime:
    if not isinstance(value, str):
        raise OwnershipChainError(f"{where}: 'time' is not an ISO 8601 time")
    try:
        time = datetime.fromisoformat(value)
    except ValueError as exc:
        raise OwnershipChainError(f"{where}: 'time' is not an ISO 8601 time") from exc
    if time.tzinfo is None:
        raise OwnershipChainError(f"{where}: 'time' has no time zone")
    return time


def _signed_body(link: object, service_public_key: Ed25519PublicKey, where: str) -> Mapping[str, Any]:
    """The link's body, after its service signature verified (checked before anything else is read)."""
    body = link.get("body") if isinstance(link, Mapping) else None
    if not isinstance(link, Mapping) or not isinstance(body, Mapping):
        raise OwnershipChainError(f"{where}: not a link (an object with a body and a signature)")
    try:
        signature = base64.b64decode(link["signature"], validate=True)
        service_public_key.verify(signature, LINK_DOMAIN + canonical_json(dict(body)))
    except (KeyError, TypeError, ValueError, binascii.Error, _CryptoInvalidSignature) as exc:
        raise OwnershipChainError(f"{where}: the service's signature does not verify") from exc
    if set(body) != _BODY_FIELDS or body["v"] != 1 or body["kind"] not in _KINDS:
        raise OwnershipChainError(f"{where}: a link body of a format this version does not know")
    return body


def _authorised(body: Mapping[str, Any], current: OwnerRef, new: OwnerRef, serial: str, where: str) -> None:
    try:
        signature = base64.b64decode(body["authorization"], validate=True)
        _check_public_key(current.public_key).verify(signature, transfer_authorization(serial, body["prev"], new))
    except (TypeError, ValueError, binascii.Error, _CryptoInvalidSignature) as exc:
        raise OwnershipChainError(f"{where}: the transfer is not authorised by the previous owner's key") from exc


def verify_ownership_chain(links: Sequence[Mapping[str, Any]], service_public_key: Ed25519PublicKey) -> OwnerRef | None:
    """Verify a device's whole ownership chain; return its current owner (``None`` if released).

    Raises :class:`OwnershipChainError` at the first link that breaks the chain (module docstring).
    """
    if not links:
        raise OwnershipChainError("an ownership chain has at least one link (the claim)")
    if len(links) > _MAX_LINKS:
        raise OwnershipChainError(f"an ownership chain of more than {_MAX_LINKS} links is refused")
    current: OwnerRef | None = None
    prev, serial, last_time = GENESIS_PREV, None, None
    for index, link in enumerate(links, start=1):
        where = f"ownership link {index}"
        body = _signed_body(link, service_public_key, where)
        serial = body["serial"] if serial is None else serial
        if body["serial"] != serial or not isinstance(serial, str):
            raise OwnershipChainError(f"{where}: of device {body['serial']!r}, the chain is of {serial!r}")
        if body["seq"] != index or body["prev"] != prev:
            raise OwnershipChainError(f"{where}: out of order (seq or prev does not follow link {index - 1})")
        time = _time_of(body["time"], where)
        if last_time is not None and time < last_time:
            raise OwnershipChainError(f"{where}: its time is before the previous link's")
        owner = _owner_of(body["owner"], where)
        kind = body["kind"]
        if kind == "claim" and (current is not None or owner is None):
            raise OwnershipChainError(f"{where}: a claim of a device that is owned (or by no one)")
        if kind == "transfer":
            if current is None or owner is None or owner.id == current.id:
                raise OwnershipChainError(f"{where}: a transfer needs a current and a different new owner")
            _authorised(body, current, owner, serial, where)
        elif body["authorization"] is not None:
            raise OwnershipChainError(f"{where}: only a transfer carries an authorization")
        if kind == "release" and (current is None or owner is not None):
            raise OwnershipChainError(f"{where}: a release of a device nobody owns (or naming an owner)")
        current, last_time = owner, time
        prev = hashlib.sha256(canonical_json(dict(body))).hexdigest()
    return current
