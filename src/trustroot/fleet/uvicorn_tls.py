"""The ASGI ``tls`` scope extension for uvicorn, which (0.54) does not provide it yet.

**Temporary.** Drop this module when uvicorn fills ``scope["extensions"]["tls"]`` itself: the
test ``tests/unit/test_tls_hook.py::test_plain_uvicorn_still_lacks_the_tls_extension`` fails on
the day it does, and :class:`TlsH11Protocol` already steps aside (it never overwrites a ``tls``
entry the server made).

The extension (asgiref specs/tls.rst, version 0.2), filled for every HTTP request on a TLS
connection and never on a plain one::

    server_cert         PEM of the certificate the server presented (None if unknown)
    client_cert_chain   PEM strings, client certificate first; empty without one. Python 3.11's
                        ``ssl`` exposes the peer's leaf only (``getpeercert(binary_form=True)``),
                        so the chain holds that one certificate; on Python >= 3.13
                        ``SSLObject.get_unverified_chain()`` gives everything the client sent
    client_cert_name    RFC 4514 subject of the client certificate, or None
    client_cert_error   None: a presented certificate that fails verification aborts the handshake
                        (``CERT_OPTIONAL``), so a request never arrives with an unverified one
    tls_version         0x0303 (TLS 1.2), 0x0304 (TLS 1.3)
    cipher_suite        the IANA 16-bit code of the suite, e.g. 0x1301 for TLS_AES_128_GCM_SHA256
    trustroot.connection   (not in the spec) a :class:`ConnectionMemo`, one per TLS connection: the
                        device authentication layer keeps its verdict on the connection's
                        certificate there (:mod:`trustroot.fleet.auth`), so the chain and CRL are
                        validated once per connection and CRL generation, not once per request

Design: :class:`TlsH11Protocol` and :class:`TlsHttpToolsProtocol` subclass uvicorn's h11 and
httptools protocols. When a connection is made (after the TLS handshake) they read the TLS facts
once from the transport's ``ssl_object`` and wrap the application *for that connection* in
:class:`TlsScopeApp`, which adds the extension to each request's scope. Nothing else of uvicorn's
protocol changes. Pass the class as ``uvicorn.Config(http=TlsHttpToolsProtocol)`` (the faster
parser, used by ``trustroot serve``) or ``http=TlsH11Protocol`` (pure Python).
"""

from __future__ import annotations

import asyncio
import functools
import ssl
from collections.abc import Mapping
from typing import Any, Final

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = [
    "CONNECTION_MEMO",
    "TLS_VERSION_CODES",
    "ConnectionMemo",
    "TlsH11Protocol",
    "TlsHttpToolsProtocol",
    "TlsScopeApp",
    "cipher_suite_code",
    "tls_extension",
]

#: Key of the per-connection :class:`ConnectionMemo` in the ``tls`` extension.
CONNECTION_MEMO: Final = "trustroot.connection"


class ConnectionMemo:
    """What one TLS connection remembers between its requests (lives and dies with the connection).

    ``value`` belongs to the device authentication layer, which alone decides what it holds and
    when it is still good (:mod:`trustroot.fleet.auth`).
    """

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value: object = None


#: ``SSLObject.version()`` -> the TLS protocol version number.
TLS_VERSION_CODES: Final[Mapping[str, int]] = {
    "TLSv1": 0x0301,
    "TLSv1.1": 0x0302,
    "TLSv1.2": 0x0303,
    "TLSv1.3": 0x0304,
}


@functools.cache
def _cipher_codes() -> dict[str, int]:
    """OpenSSL cipher name -> IANA code. OpenSSL's cipher id is 0x0300XXXX with XXXX the IANA code."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.set_ciphers("ALL:@SECLEVEL=0")
    return {cipher["name"]: cipher["id"] & 0xFFFF for cipher in context.get_ciphers()}


def cipher_suite_code(openssl_name: str) -> int | None:
    """The IANA code of the cipher suite OpenSSL calls ``openssl_name`` (None if unknown)."""
    return _cipher_codes().get(openssl_name)


def _pem_of(der: bytes) -> tuple[str, str | None]:
    cert = x509.load_der_x509_certificate(der)
    try:
        name: str | None = cert.subject.rfc4514_string()
    except ValueError:  # pragma: no cover - a subject cryptography cannot render
        name = None
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii"), name


def _peer_chain(ssl_object: ssl.SSLObject) -> list[bytes]:
    unverified = getattr(ssl_object, "get_unverified_chain", None)
    if unverified is not None:  # pragma: no cover - Python >= 3.13
        chain = unverified()  # DER bytes, client certificate first
        if chain:
            return [bytes(der) for der in chain]
    leaf = ssl_object.getpeercert(binary_form=True)
    return [leaf] if leaf else []


def tls_extension(ssl_object: ssl.SSLObject | None) -> dict[str, Any] | None:
    """The ``tls`` extension dict for a connection's ``ssl_object`` (None for a plain connection)."""
    if ssl_object is None:
        return None
    chain: list[str] = []
    name: str | None = None
    for position, der in enumerate(_peer_chain(ssl_object)):
        pem, subject = _pem_of(der)
        chain.append(pem)
        if position == 0:
            name = subject
    cipher = ssl_object.cipher()
    version = ssl_object.version()
    return {
        CONNECTION_MEMO: ConnectionMemo(),
        "server_cert": getattr(ssl_object.context, "server_certificate_pem", None),
        "client_cert_chain": chain,
        "client_cert_name": name,
        "client_cert_error": None,
        "tls_version": TLS_VERSION_CODES.get(version) if version else None,
        "cipher_suite": cipher_suite_code(cipher[0]) if cipher else None,
    }


class TlsScopeApp:
    """An ASGI app that adds ``extension`` as ``scope["extensions"]["tls"]`` and calls ``app``."""

    def __init__(self, app: Any, extension: Mapping[str, Any]) -> None:
        self.app = app
        self.extension = extension

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        extensions = dict(scope.get("extensions") or {})
        if "tls" not in extensions:  # the server provides it: keep the server's
            extensions["tls"] = {**self.extension, "client_cert_chain": list(self.extension["client_cert_chain"])}
        await self.app({**scope, "extensions": extensions}, receive, send)


class TlsH11Protocol(H11Protocol):
    """uvicorn's h11 protocol that puts the ASGI ``tls`` extension into every request's scope."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        extension = tls_extension(transport.get_extra_info("ssl_object"))
        if extension is not None:
            self.app = TlsScopeApp(self.app, extension)


class TlsHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol that puts the ASGI ``tls`` extension into every request's scope."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        extension = tls_extension(transport.get_extra_info("ssl_object"))
        if extension is not None:
            self.app = TlsScopeApp(self.app, extension)
