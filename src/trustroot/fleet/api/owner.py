"""Owner routes: accounts, claim / transfer / release, the ownership chain, personal data, deletion.

::

    POST /api/v1/owners                                   {"public_key": hex Ed25519}  -> 201 {owner_id, api_key}
    POST /api/v1/owners/claim                             {"claim_code"}               -> the new link
    GET  /api/v1/owners/me/devices                        the serials the owner owns
    GET  /api/v1/owners/me/devices/{serial}/ownership     {"links": [...], "service_key": PEM, "key_id"}
    POST /api/v1/owners/me/devices/{serial}/transfer      {"new_owner_id", "authorization": base64}
                                                          -> {"link", "receipt" (if delete_on_transfer)}
    POST /api/v1/owners/me/devices/{serial}/release       -> the new link
    PUT  /api/v1/owners/me/devices/{serial}/data/{cat}    {"value": text}  -> {"expires_at"}
    GET  /api/v1/owners/me/devices/{serial}/data          {"data": {category: text}}
    POST /api/v1/owners/me/devices/{serial}/delete        that device's data -> signed receipt
    POST /api/v1/owners/me/delete                         all the owner's data (crypto-shredding) -> receipt
    GET  /api/v1/devices/{serial}/ownership               operators (scope device-admin): the chain
    GET  /api/v1/ownership/key                            public: the service's ownership public key

Owners authenticate with ``Authorization: Bearer tro_...`` (their API key, :mod:`trustroot.fleet.ownership`).
Operator routes use :func:`trustroot.fleet.operators.require_operator`.

Errors: 401 no or unknown key; 403 not the owner, wrong or used claim code, unauthorised transfer;
404 unknown device; 413 value too large; 422 malformed input or undeclared category.
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any, Final

import anyio.to_thread
from cryptography.hazmat.primitives import serialization
from fastapi import APIRouter, Body, Depends, HTTPException, Path, Request
from pydantic import BaseModel, ConfigDict, Field

from trustroot.errors import TrustrootError, UsageError
from trustroot.fleet.operators import require_operator
from trustroot.fleet.ownership import (
    Owner,
    OwnerAuthError,
    OwnershipRefused,
    authenticate_owner,
    claim_device,
    owned_devices,
    ownership_chain,
    register_owner,
    release_device,
    service_public_key,
)
from trustroot.fleet.personal_data import (
    MAX_VALUE_BYTES,
    PersonalDataError,
    delete_owner_data,
    read_personal_data,
    store_personal_data,
    transfer_and_erase,
)
from trustroot.fleet.service import FleetService, get_service
from trustroot.fleet.store.models import Device
from trustroot.keys._interface import public_key_fingerprint

__all__ = ["OPERATOR_SCOPE", "require_owner", "router"]

#: The operator scope of the operator view of a chain.
OPERATOR_SCOPE: Final = "device-admin"
_SERIAL = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
_CATEGORY = r"^[a-z0-9][a-z0-9-]{0,63}$"

_OWNED: Final[dict[int | str, dict[str, Any]]] = {
    403: {"description": "Not this owner's device, or the step is not authorised."},
    404: {"description": "No registered device has this serial."},
    422: {"description": "Malformed input, an undeclared category, or the owner's data key is gone."},
}
_OWNER_KEY: Final[dict[int | str, dict[str, Any]]] = {401: {"description": "No valid owner API key."}}

router = APIRouter(tags=["owners"])
Service = Annotated[FleetService, Depends(get_service)]
SerialPath = Annotated[str, Path(pattern=_SERIAL)]


def require_owner(request: Request) -> Owner:
    """FastAPI dependency: the owner whose API key is the bearer token; 401 otherwise."""
    scheme, _, presented = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not presented.strip():
        raise HTTPException(401, "an owner API key is required", headers={"WWW-Authenticate": "Bearer"})
    try:
        return authenticate_owner(get_service(request), presented.strip())
    except OwnerAuthError:
        raise HTTPException(401, "invalid owner API key", headers={"WWW-Authenticate": "Bearer"}) from None


OwnerDep = Annotated[Owner, Depends(require_owner)]
OperatorDep = Annotated[str, Depends(require_operator(OPERATOR_SCOPE))]


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Registration(_Input):
    public_key: str = Field(pattern=r"^[0-9a-f]{64}$", description="Raw Ed25519 public key, hex.")


class Claim(_Input):
    claim_code: str = Field(min_length=1, max_length=64)


class Transfer(_Input):
    new_owner_id: str = Field(min_length=1, max_length=64)
    authorization: str = Field(min_length=1, max_length=128, description="Base64 Ed25519 signature.")


class Value(_Input):
    value: str = Field(max_length=MAX_VALUE_BYTES)


def _http_error(exc: TrustrootError) -> HTTPException:
    if isinstance(exc, OwnershipRefused):
        status = 404 if "no registered device" in exc.message else 403
        return HTTPException(status, exc.message)
    if isinstance(exc, OwnerAuthError):
        return HTTPException(401, exc.message, headers={"WWW-Authenticate": "Bearer"})
    if isinstance(exc, UsageError | PersonalDataError):
        return HTTPException(422, exc.message)
    return HTTPException(500, "the request could not be completed")


async def _run(function: Any, *args: Any, **kwargs: Any) -> Any:
    """Run blocking store work in a worker thread, mapping trustroot errors to HTTP answers."""
    try:
        return await anyio.to_thread.run_sync(lambda: function(*args, **kwargs))
    except TrustrootError as exc:
        raise _http_error(exc) from exc


@router.post("/api/v1/owners", status_code=201, responses={422: {"description": "Not a raw Ed25519 public key."}})
async def register(service: Service, body: Registration) -> dict[str, str]:
    """Make an owner account; the API key is shown this once."""
    owner, api_key = await _run(register_owner, service, body.public_key)
    return {"owner_id": owner.id, "api_key": api_key}


@router.post("/api/v1/owners/claim", responses={**_OWNER_KEY, **_OWNED})
async def claim(service: Service, owner: OwnerDep, body: Claim) -> dict[str, Any]:
    """Claim a device with its one-time claim code."""
    link: dict[str, Any] = await _run(claim_device, service, owner, body.claim_code)
    return link


def _owned_serials(service: FleetService, owner: Owner) -> list[str]:
    with service.store.transaction() as session:
        devices: list[Device] = owned_devices(session, owner.id)
        return [device.serial for device in devices]


@router.get("/api/v1/owners/me/devices", responses=_OWNER_KEY)
async def my_devices(service: Service, owner: OwnerDep) -> dict[str, Any]:
    """The serials of the devices the owner owns now."""
    return {"owner_id": owner.id, "devices": await _run(_owned_serials, service, owner)}


def _chain_view(service: FleetService, serial: str) -> dict[str, Any]:
    key = service_public_key(service)
    pem = key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return {
        "serial": serial,
        "links": ownership_chain(service, serial),
        "service_key": pem.decode("ascii"),
        "key_id": public_key_fingerprint(key),
    }


def _owner_chain_view(service: FleetService, owner: Owner, serial: str) -> dict[str, Any]:
    view = _chain_view(service, serial)
    named = {link["body"]["owner"]["id"] for link in view["links"] if link["body"]["owner"] is not None}
    if owner.id not in named:
        raise OwnershipRefused(f"device {serial} was never owned by this owner")
    return view


@router.get("/api/v1/owners/me/devices/{serial}/ownership", responses={**_OWNER_KEY, **_OWNED})
async def owner_chain(service: Service, owner: OwnerDep, serial: SerialPath) -> dict[str, Any]:
    """The device's ownership chain, for an owner it names (current or past)."""
    view: dict[str, Any] = await _run(_owner_chain_view, service, owner, serial)
    return view


@router.get("/api/v1/devices/{serial}/ownership", responses=_OWNED)
async def operator_chain(service: Service, _operator: OperatorDep, serial: SerialPath) -> dict[str, Any]:
    """The device's ownership chain, for operators."""
    view: dict[str, Any] = await _run(_chain_view, service, serial)
    return view


@router.get("/api/v1/ownership/key")
async def ownership_key(service: Service) -> dict[str, str]:
    """The public key that verifies ownership links and deletion receipts (public information)."""
    view = await _run(_chain_view_key, service)
    return {"service_key": view[0], "key_id": view[1]}


def _chain_view_key(service: FleetService) -> tuple[str, str]:
    key = service_public_key(service)
    pem = key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return pem.decode("ascii"), public_key_fingerprint(key)


@router.post("/api/v1/owners/me/devices/{serial}/transfer", responses={**_OWNER_KEY, **_OWNED})
async def transfer(service: Service, owner: OwnerDep, serial: SerialPath, body: Transfer) -> dict[str, Any]:
    """Transfer the device to another owner (authorised by the owner's signature)."""
    try:
        signature = base64.b64decode(body.authorization, validate=True)
    except (ValueError, binascii.Error) as exc:
        raise HTTPException(422, "authorization is a base64 Ed25519 signature") from exc
    link, outcome = await _run(transfer_and_erase, service, owner, serial, body.new_owner_id, signature)
    return {"link": link, "receipt": None if outcome is None else outcome.receipt}


@router.post("/api/v1/owners/me/devices/{serial}/release", responses={**_OWNER_KEY, **_OWNED})
async def release(service: Service, owner: OwnerDep, serial: SerialPath) -> dict[str, Any]:
    """Give up ownership of the device."""
    link: dict[str, Any] = await _run(release_device, service, owner, serial)
    return link


@router.put(
    "/api/v1/owners/me/devices/{serial}/data/{category}",
    responses={**_OWNER_KEY, **_OWNED, 413: {"description": f"A value is at most {MAX_VALUE_BYTES} bytes."}},
)
async def put_data(
    service: Service,
    owner: OwnerDep,
    serial: SerialPath,
    category: Annotated[str, Path(pattern=_CATEGORY)],
    body: Annotated[Value, Body()],
) -> dict[str, str]:
    """Store one category of the owner's personal data for the device (encrypted)."""
    value = body.value.encode("utf-8")
    if len(value) > MAX_VALUE_BYTES:
        raise HTTPException(413, f"a value is at most {MAX_VALUE_BYTES} bytes")
    expires = await _run(store_personal_data, service, owner, serial, category, value)
    return {"category": category, "expires_at": expires.isoformat()}


@router.get("/api/v1/owners/me/devices/{serial}/data", responses={**_OWNER_KEY, **_OWNED})
async def get_data(service: Service, owner: OwnerDep, serial: SerialPath) -> dict[str, Any]:
    """The owner's unexpired personal data for the device."""
    found: dict[str, bytes] = await _run(read_personal_data, service, owner, serial)
    return {"serial": serial, "data": {name: value.decode("utf-8", "replace") for name, value in found.items()}}


@router.post("/api/v1/owners/me/devices/{serial}/delete", responses={**_OWNER_KEY, **_OWNED})
async def delete_device_data(service: Service, owner: OwnerDep, serial: SerialPath) -> dict[str, Any]:
    """Delete the owner's personal data of one device (and queue its factory reset); signed receipt."""
    await _run(_owner_chain_view, service, owner, serial)
    outcome = await _run(delete_owner_data, service, owner, serials=[serial])
    receipt: dict[str, Any] = outcome.receipt
    return receipt


@router.post("/api/v1/owners/me/delete", responses={**_OWNER_KEY, **_OWNED})
async def delete_my_data(service: Service, owner: OwnerDep) -> dict[str, Any]:
    """Delete ALL the owner's personal data: crypto-shredding, factory reset of its devices; signed receipt."""
    outcome = await _run(delete_owner_data, service, owner)
    receipt: dict[str, Any] = outcome.receipt
    return receipt
