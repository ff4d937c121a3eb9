"""Device authentication: who a request comes from, taken from a verified device certificate only.

Every request to ``/api/v1/device/...`` must come with the device's identity certificate, else
it is answered 401 with a JSON body naming provision 5.5-1. Other paths (security.txt, the
disclosure intake, ``/tuf/``, the console, operator routes) need no client certificate.

Where the certificate comes from::

    mutual TLS (default)   the certificate the client presented in the handshake, which the TLS
                           layer already verified against the product's CAs and CRL
                           (scope["extensions"]["tls"]["client_cert_chain"][0])
    forwarded (opt-in)     only when FleetConfig.forwarded_cert_secret is set: a front proxy that
                           terminated mutual TLS sends the certificate as URL-encoded PEM in
                           X-Trustroot-Client-Cert and the shared secret in X-Trustroot-Proxy-Secret
                           (compared in constant time). Without the setting these headers are
                           IGNORED: a client can never name its own certificate in a header.

What is checked, in order (each refusal is a :class:`DeviceAuthError` naming 5.5-1)::

    1  a certificate is there (TLS, or forwarded with the right secret)
    2  validate_chain: issued by the product's issuing CA under its root, valid now, EKU
       clientAuth, not revoked in the issuing CA's current CRL. The TLS layer checked this at the
       handshake; checking again per request also catches a device revoked while its connection
       stayed open, a resumed session, and every forwarded certificate
    3  the device id: the serial the certificate names (CN, serialNumber and hardwareModuleName
       agree, :func:`trustroot.provision.identity.device_serial_of`), never a field of the request
    4  the fleet store knows the device by this certificate, and its status is active

Use: :class:`DeviceAuthMiddleware` guards the whole ``/api/v1/device/`` prefix (so a route added
later cannot forget it) and leaves the :class:`DeviceIdentity` in the request state, where the
FastAPI dependency :func:`require_device` picks it up (or authenticates itself, if the middleware
is not installed).
"""

from __future__ import annotations

import dataclasses
import hmac
import json
import logging
import threading
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final, Literal
from urllib.parse import unquote

import anyio.to_thread
from cryptography import x509
from fastapi import HTTPException, Request
from starlette.datastructures import Headers

from trustroot.errors import PKIError, PolicyRefusal, TrustrootError
from trustroot.fleet.devices import DeviceUnknown, get_device_by_certificate
from trustroot.fleet.operators import require_operator  # noqa: F401 - re-exported for the operator routers
from trustroot.fleet.service import FleetService, get_service
from trustroot.fleet.store.models import Device, DeviceStatus
from trustroot.pki.certificates import (
    certificate_fingerprint,
    load_pem_certificate,
    parse_pem_certificate,
    validate_chain,
)
from trustroot.pki.crl import load_pem_crl
from trustroot.product import ISSUING_CA_CERT, ISSUING_CA_CRL, ROOT_CA_CERT
from trustroot.provision.identity import device_serial_of

__all__ = [
    "DEVICE_PATH_PREFIX",
    "FORWARDED_CERT_HEADER",
    "FORWARDED_SECRET_HEADER",
    "PROVISION",
    "DeviceAuthError",
    "DeviceAuthMiddleware",
    "DeviceIdentity",
    "DeviceTrust",
    "authenticate_certificate",
    "authenticate_request",
    "device_trust",
    "is_device_path",
    "require_device",
]

_log = logging.getLogger(__name__)

#: Every path under this prefix needs a verified device certificate.
DEVICE_PATH_PREFIX: Final = "/api/v1/device"
#: The certificate a front proxy forwards (URL-encoded PEM), honoured only in forwarded mode.
FORWARDED_CERT_HEADER: Final = "x-trustroot-client-cert"
#: The shared secret that proves the forwarding proxy.
FORWARDED_SECRET_HEADER: Final = "x-trustroot-proxy-secret"  # noqa: S105 - a header name
#: The EN 303 645 provision at stake: secure communication with authenticated devices.
PROVISION: Final = "5.5-1"

_STATE_KEY = "trustroot_device"
_PART = "device_trust"
_MAX_FORWARDED_BYTES = 16 << 10

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
AsgiApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class DeviceAuthError(PolicyRefusal):
    """A request to a device route was refused: no, or no acceptable, device certificate.

    Defined here until it moves to :mod:`trustroot.errors`; always names provision 5.5-1.
    """

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message, provision=PROVISION, hint=hint)


@dataclass(frozen=True)
class DeviceIdentity:
    """A device as authenticated by its certificate.

    ``device_id`` is the serial the certificate names; ``record`` is the store's row for the device
    (detached from its session), set once the store was consulted.
    """

    device_id: str
    certificate: x509.Certificate
    fingerprint: str
    via: Literal["tls", "forwarded"]
    record: Device | None = None


@dataclass(frozen=True)
class DeviceTrust:
    """What device certificates are checked against: the product's CAs and the issuing CA's CRL."""

    root: x509.Certificate
    issuing: x509.Certificate
    crl: x509.CertificateRevocationList


class _TrustFiles:
    """:class:`DeviceTrust` from the PKI directory, read again whenever one of its files changes."""

    def __init__(self, pki_dir: Path) -> None:
        self._paths = (pki_dir / ROOT_CA_CERT, pki_dir / ISSUING_CA_CERT, pki_dir / ISSUING_CA_CRL)
        self._stamp: tuple[tuple[int, int, int], ...] | None = None
        self._trust: DeviceTrust | None = None
        self._lock = threading.Lock()

    def _stamp_now(self) -> tuple[tuple[int, int, int], ...]:
        stats = [path.stat() for path in self._paths]
        return tuple((s.st_ino, s.st_mtime_ns, s.st_size) for s in stats)

    def current(self) -> DeviceTrust:
        try:
            stamp = self._stamp_now()
        except OSError as exc:
            raise DeviceAuthError(f"device certificates cannot be checked: {exc}") from exc
        with self._lock:
            if self._trust is None or stamp != self._stamp:
                root_path, issuing_path, crl_path = self._paths
                self._trust = DeviceTrust(
                    root=load_pem_certificate(root_path),
                    issuing=load_pem_certificate(issuing_path),
                    crl=load_pem_crl(crl_path),
                )
                self._stamp = stamp
            return self._trust


def device_trust(service: FleetService) -> DeviceTrust:
    """The service's current :class:`DeviceTrust` (kept in ``service.parts``, refreshed on file change)."""
    files = service.parts.get(_PART)
    if not isinstance(files, _TrustFiles):
        files = service.parts[_PART] = _TrustFiles(service.pki_dir)
    return files.current()


def is_device_path(path: str) -> bool:
    """Whether ``path`` is a device route (needs a device certificate)."""
    return path == DEVICE_PATH_PREFIX or path.startswith(DEVICE_PATH_PREFIX + "/")


def authenticate_certificate(
    cert: x509.Certificate,
    trust: DeviceTrust,
    *,
    now: datetime,
    via: Literal["tls", "forwarded"],
) -> DeviceIdentity:
    """Steps 2 and 3 of the module docstring, a pure function: the identity ``cert`` proves."""
    try:
        validate_chain(cert, [trust.issuing], [trust.root], now=now, purpose="client_auth", crls=[trust.crl])
    except PKIError as exc:
        raise DeviceAuthError(f"device certificate refused: {exc.message}") from exc
    try:
        device_id = device_serial_of(cert)
    except TrustrootError as exc:
        raise DeviceAuthError(f"the certificate names no device: {exc.message}") from exc
    return DeviceIdentity(device_id=device_id, certificate=cert, fingerprint=certificate_fingerprint(cert), via=via)


def _registered(service: FleetService, identity: DeviceIdentity) -> DeviceIdentity:
    """Step 4: the store's record of the device, which must be active and of the same serial."""
    try:
        device = get_device_by_certificate(service, identity.certificate)
    except DeviceUnknown as exc:
        raise DeviceAuthError(f"device {identity.device_id} is not registered with this fleet", hint=exc.hint) from exc
    if device.serial != identity.device_id:
        raise DeviceAuthError(f"the certificate of {identity.device_id} is registered to {device.serial}")
    if device.status != DeviceStatus.ACTIVE.value:
        raise DeviceAuthError(f"device {identity.device_id} is {device.status}: it may not use the service")
    return dataclasses.replace(identity, record=device)


def _forwarded_certificate(service: FleetService, headers: Headers) -> x509.Certificate | None:
    """The proxy-forwarded certificate, if forwarded mode is on and the proxy proved itself."""
    secret = service.config.forwarded_cert_secret
    if not secret:
        return None  # forwarded mode is off: the headers mean nothing
    presented = headers.get(FORWARDED_SECRET_HEADER)
    if presented is None:
        return None  # not from the proxy: a direct client, judged by its own TLS certificate
    if not hmac.compare_digest(presented.encode("utf-8"), secret.encode("utf-8")):
        _log.warning("a request carried a wrong %s: refused", FORWARDED_SECRET_HEADER)
        raise DeviceAuthError("the forwarding proxy's secret does not match")
    forwarded = headers.get(FORWARDED_CERT_HEADER)
    if not forwarded:
        raise DeviceAuthError("the forwarding proxy sent no client certificate")
    if len(forwarded) > _MAX_FORWARDED_BYTES:
        raise DeviceAuthError(f"the forwarded certificate is larger than {_MAX_FORWARDED_BYTES} bytes")
    try:
        return parse_pem_certificate(unquote(forwarded), what="forwarded client certificate")
    except PKIError as exc:
        raise DeviceAuthError(exc.message) from exc


def _tls_certificate(scope: Mapping[str, Any]) -> x509.Certificate:
    tls = (scope.get("extensions") or {}).get("tls") or {}
    chain = list(tls.get("client_cert_chain") or ())
    if not chain:
        raise DeviceAuthError(
            "no client certificate: device routes need mutual TLS with the device's identity certificate",
            hint="connect with the device certificate and key",
        )
    try:
        return parse_pem_certificate(chain[0], what="client certificate")
    except PKIError as exc:  # pragma: no cover - the TLS layer parsed it already
        raise DeviceAuthError(exc.message) from exc


def authenticate_request(service: FleetService, scope: Mapping[str, Any]) -> DeviceIdentity:
    """The device a request (its ASGI ``scope``) comes from; :class:`DeviceAuthError` if none."""
    forwarded = _forwarded_certificate(service, Headers(raw=list(scope.get("headers") or ())))
    cert = forwarded if forwarded is not None else _tls_certificate(scope)
    identity = authenticate_certificate(
        cert, device_trust(service), now=service.clock(), via="forwarded" if forwarded is not None else "tls"
    )
    return _registered(service, identity)


def _refusal_body(error: DeviceAuthError) -> dict[str, Any]:
    return {"error": "device_authentication_failed", "message": error.message, "provision": PROVISION}


_WWW_AUTHENTICATE: Final = 'MutualTLS realm="trustroot-device"'


class DeviceAuthMiddleware:
    """ASGI middleware: authenticates every request under ``/api/v1/device``; 401 for the refused.

    Install it inside the application (``app.add_middleware``), where ``scope["app"].state.fleet``
    is the service.
    """

    def __init__(self, app: AsgiApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_device_path(scope["path"]):
            await self.app(scope, receive, send)
            return
        service: FleetService = scope["app"].state.fleet
        try:
            identity = await anyio.to_thread.run_sync(authenticate_request, service, scope)
        except DeviceAuthError as error:
            _log.info("device request to %s refused: %s", scope["path"], error.message)
            body = json.dumps(_refusal_body(error)).encode("utf-8")
            await send(
                {
                    "type": "http.response.start",
                    "status": 401,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode("ascii")),
                        (b"www-authenticate", _WWW_AUTHENTICATE.encode("ascii")),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        scope.setdefault("state", {})[_STATE_KEY] = identity
        await self.app(scope, receive, send)


def require_device(request: Request) -> DeviceIdentity:
    """FastAPI dependency: the authenticated device of this request, or 401 naming 5.5-1."""
    found = request.scope.get("state", {}).get(_STATE_KEY)
    if isinstance(found, DeviceIdentity):
        return found
    try:
        identity = authenticate_request(get_service(request), request.scope)
    except DeviceAuthError as error:
        raise HTTPException(
            status_code=401, detail=_refusal_body(error), headers={"WWW-Authenticate": _WWW_AUTHENTICATE}
        ) from error
    request.scope.setdefault("state", {})[_STATE_KEY] = identity
    return identity
