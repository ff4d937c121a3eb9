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
       handshake; checking again at the request level also catches a device revoked while its
       connection stayed open, a resumed session, and every forwarded certificate
    3  the device id: the serial the certificate names (CN, serialNumber and hardwareModuleName
       agree, :func:`trustroot.provision.identity.device_serial_of`), never a field of the request
    4  the fleet store knows the device by this certificate, and its status is active

**The verdict of one TLS connection is kept on that connection.** Steps 2-4 run at the first
request of a connection; the verdict is stored in the connection's memo (the ``tls`` extension's
``trustroot.connection``, :mod:`trustroot.fleet.uvicorn_tls`) with what it depends on: the leaf
certificate (PEM), the :class:`DeviceTrust` object it was checked against, and the time window in
which every certificate of the path and the CRL are valid. A later request on the connection
reuses it only if all three still hold: a new CRL (or CA certificate) on disk makes a new
:class:`DeviceTrust` (the files are stat()ed at every request), so a device revoked while its
connection stays open is refused at its next request; an expired certificate or CRL is refused;
another certificate (a new connection) starts from nothing. Forwarded certificates (one proxy
connection carries many devices) are validated at every request.

Step 4 is the store's answer at one moment. Routes in :data:`REGISTRATION_RECHECKED_BY_ROUTE`
(the check-in) re-check it inside their own write (``WHERE status = 'active'`` on the device row,
:mod:`trustroot.fleet.checkin`), so the middleware answers them from the connection's verdict
without a database round trip; every other device route gets a fresh store lookup per request.

Use: :class:`DeviceAuthMiddleware` guards the whole ``/api/v1/device/`` prefix (so a route added
later cannot forget it) and leaves the :class:`DeviceIdentity` in the request state, where the
FastAPI dependency :func:`require_device` picks it up (or authenticates itself, if the middleware
is not installed).
"""

from __future__ import annotations

import dataclasses
import functools
import hmac
import json
import logging
import os
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
from fastapi.responses import JSONResponse
from starlette.datastructures import Headers

from trustroot.errors import PKIError, PolicyRefusal, TrustrootError
from trustroot.fleet.devices import DeviceUnknown, get_device_by_certificate
from trustroot.fleet.operators import require_operator  # noqa: F401 - re-exported for the operator routers
from trustroot.fleet.service import FleetService, get_service
from trustroot.fleet.store.models import Device, DeviceStatus
from trustroot.fleet.uvicorn_tls import CONNECTION_MEMO, ConnectionMemo
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
    "REGISTRATION_RECHECKED_BY_ROUTE",
    "DeviceAuthError",
    "DeviceAuthMiddleware",
    "DeviceIdentity",
    "DeviceTrust",
    "authenticate_certificate",
    "authenticate_from_connection",
    "authenticate_request",
    "authenticated_device",
    "device_trust",
    "is_device_path",
    "refusal_body",
    "refusal_headers",
    "refusal_logged",
    "refusal_response",
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

#: (method, path) of the device routes that re-check the device's registration in their own write.
REGISTRATION_RECHECKED_BY_ROUTE: Final = frozenset({("POST", DEVICE_PATH_PREFIX + "/check-in")})

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


@dataclass(frozen=True, slots=True)
class _Verdict:
    """A connection's accepted identity and what it depends on (see the module docstring)."""

    leaf_pem: str
    trust: DeviceTrust
    not_before: datetime
    not_after: datetime
    identity: DeviceIdentity


def _validity_window(cert: x509.Certificate, trust: DeviceTrust) -> tuple[datetime, datetime]:
    """When every certificate of the path and the CRL are within their validity (the verdict's window)."""
    path = (cert, trust.issuing, trust.root)
    start = max([c.not_valid_before_utc for c in path] + [trust.crl.last_update_utc])
    ends = [c.not_valid_after_utc for c in path]
    if trust.crl.next_update_utc is not None:
        ends.append(trust.crl.next_update_utc)
    return start, min(ends)


class _TrustFiles:
    """:class:`DeviceTrust` from the PKI directory, read again whenever one of its files changes."""

    def __init__(self, pki_dir: Path) -> None:
        self._paths = (pki_dir / ROOT_CA_CERT, pki_dir / ISSUING_CA_CERT, pki_dir / ISSUING_CA_CRL)
        self._stamp: tuple[tuple[int, int, int], ...] | None = None
        self._trust: DeviceTrust | None = None
        self._lock = threading.Lock()

    def _stamp_now(self) -> tuple[tuple[int, int, int], ...]:
        stats = [os.stat(path) for path in self._paths]  # noqa: PTH116 - at every request: the cheaper call
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


def _tls_of(scope: Mapping[str, Any]) -> Mapping[str, Any]:
    tls: Mapping[str, Any] = (scope.get("extensions") or {}).get("tls") or {}
    return tls


def _reusable(scope: Mapping[str, Any], trust: DeviceTrust, now: datetime) -> DeviceIdentity | None:
    """The identity this connection's verdict gives, if the verdict still holds (module docstring)."""
    tls = _tls_of(scope)
    memo = tls.get(CONNECTION_MEMO)
    chain = tls.get("client_cert_chain")
    if not isinstance(memo, ConnectionMemo) or not chain:
        return None
    verdict = memo.value
    if (
        isinstance(verdict, _Verdict)
        and verdict.trust is trust
        and verdict.leaf_pem == chain[0]
        and verdict.not_before <= now <= verdict.not_after
    ):
        return verdict.identity
    return None


def _remember(scope: Mapping[str, Any], trust: DeviceTrust, identity: DeviceIdentity) -> None:
    tls = _tls_of(scope)
    memo = tls.get(CONNECTION_MEMO)
    chain = tls.get("client_cert_chain")
    if isinstance(memo, ConnectionMemo) and chain:
        start, end = _validity_window(identity.certificate, trust)
        memo.value = _Verdict(leaf_pem=chain[0], trust=trust, not_before=start, not_after=end, identity=identity)


def authenticate_from_connection(service: FleetService, scope: Mapping[str, Any]) -> DeviceIdentity | None:
    """The identity the connection's kept verdict gives without any database work, or None.

    For the routes of :data:`REGISTRATION_RECHECKED_BY_ROUTE` only (the registration it carries is
    from the connection's first request). None when forwarded mode is on, when the connection has
    no verdict yet, or when it no longer holds (new CRL, other certificate, out of validity).
    """
    if service.config.forwarded_cert_secret:
        return None
    return _reusable(scope, device_trust(service), service.clock())


def authenticate_request(
    service: FleetService, scope: Mapping[str, Any], *, reuse_registration: bool = False
) -> DeviceIdentity:
    """The device a request (its ASGI ``scope``) comes from; :class:`DeviceAuthError` if none.

    ``reuse_registration``: the route re-checks the registration itself (see the module
    docstring), so a kept verdict's store record may be reused.
    """
    forwarded = (
        _forwarded_certificate(service, Headers(raw=list(scope.get("headers") or ())))
        if service.config.forwarded_cert_secret
        else None
    )
    trust = device_trust(service)
    now = service.clock()
    if forwarded is not None:
        return _registered(service, authenticate_certificate(forwarded, trust, now=now, via="forwarded"))
    kept = _reusable(scope, trust, now)
    if kept is not None:
        return kept if reuse_registration else _registered(service, kept)
    identity = _registered(service, authenticate_certificate(_tls_certificate(scope), trust, now=now, via="tls"))
    _remember(scope, trust, identity)
    return identity


def refusal_body(error: DeviceAuthError) -> dict[str, Any]:
    """The JSON body of a 401 for ``error`` (names provision 5.5-1)."""
    return {"error": "device_authentication_failed", "message": error.message, "provision": PROVISION}


_refusal_body = refusal_body

_WWW_AUTHENTICATE: Final = 'MutualTLS realm="trustroot-device"'


def refusal_headers() -> tuple[tuple[bytes, bytes], ...]:
    """The extra headers of a 401 for a device route (``WWW-Authenticate``)."""
    return ((b"www-authenticate", _WWW_AUTHENTICATE.encode("ascii")),)


def refusal_logged(error: DeviceAuthError, path: str) -> None:
    """Log a refused device request (always: refusals are security events)."""
    _log.warning("device request to %s refused: %s", path, error.message)


def refusal_response(error: DeviceAuthError, *, path: str) -> JSONResponse:
    """The 401 answer (naming 5.5-1) for a refusal found by a route itself; logged like the middleware's."""
    refusal_logged(error, path)
    return JSONResponse(refusal_body(error), status_code=401, headers={"WWW-Authenticate": _WWW_AUTHENTICATE})


def authenticated_device(scope: Mapping[str, Any]) -> DeviceIdentity | None:
    """The device :class:`DeviceAuthMiddleware` authenticated for this request (``scope``), if any."""
    found = (scope.get("state") or {}).get(_STATE_KEY)
    return found if isinstance(found, DeviceIdentity) else None


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
        rechecked = (scope.get("method"), scope["path"]) in REGISTRATION_RECHECKED_BY_ROUTE
        try:
            # a kept verdict is answered on the event loop (no database); anything else in a thread
            identity = authenticate_from_connection(service, scope) if rechecked else None
            if identity is None:
                identity = await anyio.to_thread.run_sync(
                    functools.partial(authenticate_request, service, scope, reuse_registration=rechecked)
                )
        except DeviceAuthError as error:
            refusal_logged(error, scope["path"])
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


async def require_device(request: Request) -> DeviceIdentity:
    """FastAPI dependency: the authenticated device of this request, or 401 naming 5.5-1.

    Asynchronous on purpose: FastAPI runs a plain function dependency in a worker thread, a
    thread hop per request for what is, behind the middleware, a dictionary lookup.
    """
    found = request.scope.get("state", {}).get(_STATE_KEY)
    if isinstance(found, DeviceIdentity):
        return found
    try:
        identity = await anyio.to_thread.run_sync(authenticate_request, get_service(request), request.scope)
    except DeviceAuthError as error:
        raise HTTPException(
            status_code=401, detail=_refusal_body(error), headers={"WWW-Authenticate": _WWW_AUTHENTICATE}
        ) from error
    request.scope.setdefault("state", {})[_STATE_KEY] = identity
    return identity
