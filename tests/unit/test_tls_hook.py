"""The uvicorn hook that fills the ASGI ``tls`` scope extension, over real TLS handshakes on loopback.

When ``test_plain_uvicorn_still_lacks_the_tls_extension`` fails, uvicorn provides the extension
itself: drop ``trustroot/fleet/uvicorn_tls.py`` and serve with uvicorn's own protocol.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from uvicorn.protocols.http.h11_impl import H11Protocol

from trustroot.fleet.tls import ServerContext
from trustroot.fleet.uvicorn_tls import TlsH11Protocol, TlsScopeApp, cipher_suite_code, tls_extension


@dataclass(frozen=True)
class Pki:
    ca_pem: Path
    server_pem: str
    server_chain: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    client_pem: str


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> Path:
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return path


def _cert(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None,
    *,
    eku: x509.ObjectIdentifier | None = None,
    san: list[x509.GeneralName] | None = None,
) -> x509.Certificate:
    now = datetime.now(UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    issuer_name, issuer_key = issuer if issuer is not None else (name, key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
    )
    if eku is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([eku]), critical=False)
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("hook-pki")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("Hook Test CA", ca_key, None)
    issuer = (ca.subject, ca_key)
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = _cert(
        "hook server",
        server_key,
        issuer,
        eku=ExtendedKeyUsageOID.SERVER_AUTH,
        san=[x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
    )
    client_key = ec.generate_private_key(ec.SECP256R1())
    client = _cert("ACMEPL-00000042", client_key, issuer, eku=ExtendedKeyUsageOID.CLIENT_AUTH)
    ca_pem = directory / "ca.pem"
    ca_pem.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    chain = directory / "server.pem"
    server_pem = server.public_bytes(serialization.Encoding.PEM).decode()
    chain.write_text(server_pem + ca.public_bytes(serialization.Encoding.PEM).decode())
    client_path = directory / "client.pem"
    client_pem = client.public_bytes(serialization.Encoding.PEM).decode()
    client_path.write_text(client_pem)
    return Pki(
        ca_pem=ca_pem,
        server_pem=server_pem,
        server_chain=chain,
        server_key=_write_key(directory / "server.key", server_key),
        client_cert=client_path,
        client_key=_write_key(directory / "client.key", client_key),
        client_pem=client_pem,
    )


def _server_context(pki: Pki) -> ServerContext:
    context = ServerContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.server_chain, pki.server_key)
    context.verify_mode = ssl.CERT_OPTIONAL
    context.load_verify_locations(pki.ca_pem)
    context.server_certificate_pem = pki.server_pem
    return context


class Recorder:
    """An ASGI app that keeps the scope of each request and answers 204."""

    def __init__(self) -> None:
        self.scopes: list[dict[str, Any]] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.scopes.append(scope)
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})


@contextlib.contextmanager
def serving(protocol: type[asyncio.Protocol], context: ssl.SSLContext | None) -> Iterator[tuple[int, Recorder]]:
    """uvicorn with ``protocol`` in a thread on a free loopback port."""
    app = Recorder()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(
        app,
        http=protocol,
        ws="none",
        lifespan="off",
        log_config=None,
        access_log=False,
        ssl_context_factory=(lambda _c, _d: context) if context is not None else None,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield sock.getsockname()[1], app
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def _request(port: int, context: ssl.SSLContext | None) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        stream: socket.socket = raw if context is None else context.wrap_socket(raw, server_hostname="127.0.0.1")
        with stream:
            stream.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            reply = b""
            while chunk := stream.recv(4096):
                reply += chunk
    return reply


def _client(pki: Pki, *, with_cert: bool, version: ssl.TLSVersion) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki.ca_pem))
    context.maximum_version = version
    if with_cert:
        context.load_cert_chain(pki.client_cert, pki.client_key)
    return context


@pytest.mark.parametrize(
    ("version", "code"),
    [(ssl.TLSVersion.TLSv1_3, 0x0304), (ssl.TLSVersion.TLSv1_2, 0x0303)],
    ids=["tls1.3", "tls1.2"],
)
def test_the_hook_fills_the_tls_extension(pki: Pki, version: ssl.TLSVersion, code: int) -> None:
    with serving(TlsH11Protocol, _server_context(pki)) as (port, app):
        assert _request(port, _client(pki, with_cert=True, version=version)).startswith(b"HTTP/1.1 204")
        assert _request(port, _client(pki, with_cert=False, version=version)).startswith(b"HTTP/1.1 204")
    with_cert, without = (scope["extensions"]["tls"] for scope in app.scopes)
    assert with_cert["client_cert_chain"] == [pki.client_pem]  # the leaf (Python < 3.13 exposes only that)
    assert with_cert["client_cert_name"] == "CN=ACMEPL-00000042"
    assert with_cert["client_cert_error"] is None
    assert with_cert["server_cert"] == pki.server_pem
    assert with_cert["tls_version"] == code
    expected = {0x0304: {0x1301, 0x1302, 0x1303}, 0x0303: {0xC02B, 0xC02C, 0xCCA9}}[code]
    assert with_cert["cipher_suite"] in expected
    assert without["client_cert_chain"] == []
    assert without["client_cert_name"] is None
    assert without["tls_version"] == code


def test_a_plain_connection_gets_no_tls_extension(pki: Pki) -> None:
    with serving(TlsH11Protocol, None) as (port, app):
        assert _request(port, None).startswith(b"HTTP/1.1 204")
    assert "tls" not in (app.scopes[0].get("extensions") or {})
    assert tls_extension(None) is None


def test_plain_uvicorn_still_lacks_the_tls_extension(pki: Pki) -> None:
    """The day this fails, uvicorn provides the extension: remove trustroot.fleet.uvicorn_tls."""
    with serving(H11Protocol, _server_context(pki)) as (port, app):
        _request(port, _client(pki, with_cert=True, version=ssl.TLSVersion.TLSv1_3))
    assert "tls" not in (app.scopes[0].get("extensions") or {}), (
        f"uvicorn {uvicorn.__version__} now fills scope['extensions']['tls']: drop fleet/uvicorn_tls.py"
    )


def test_an_extension_the_server_made_is_kept() -> None:
    seen: list[dict[str, Any]] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.append(scope)

    server_made = {"tls": {"server_cert": None, "client_cert_chain": ["from the server"]}}
    ours = {"server_cert": None, "client_cert_chain": ["ours"], "tls_version": 0x0304}
    asyncio.run(TlsScopeApp(app, ours)({"type": "http", "extensions": server_made}, None, None))
    asyncio.run(TlsScopeApp(app, ours)({"type": "http"}, None, None))
    assert seen[0]["extensions"]["tls"]["client_cert_chain"] == ["from the server"]
    assert seen[1]["extensions"]["tls"]["client_cert_chain"] == ["ours"]
    assert seen[1]["extensions"]["tls"] is not ours  # each request gets its own copy


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("TLS_AES_128_GCM_SHA256", 0x1301),
        ("TLS_AES_256_GCM_SHA384", 0x1302),
        ("TLS_CHACHA20_POLY1305_SHA256", 0x1303),
        ("ECDHE-ECDSA-AES128-GCM-SHA256", 0xC02B),
        ("ECDHE-RSA-AES256-GCM-SHA384", 0xC030),
        ("ECDHE-ECDSA-CHACHA20-POLY1305", 0xCCA9),
        ("NO-SUCH-CIPHER", None),
    ],
)
def test_cipher_suite_codes_are_the_iana_numbers(name: str, code: int | None) -> None:
    assert cipher_suite_code(name) == code
