"""The fleet service over real TLS on loopback: who gets in, who does not, and why.

Attack matrix of the device routes (EN 303 645 provision 5.5-1)::

    no client certificate                 handshake OK (the certificate is optional) -> 401 naming 5.5-1
    certificate of another CA             the TLS layer refuses it: alert "unknown ca" (the handshake
                                          verifies every presented certificate; no HTTP answer at all)
    revoked in the issuing CA's CRL       the TLS layer refuses it: alert "certificate revoked"
    revoked in the fleet store only       handshake OK -> 401 (auth checks the store's status)
    not registered in the fleet store     handshake OK -> 401
    forwarding headers, mode off          ignored -> 401 "no client certificate"
"""

from __future__ import annotations

import dataclasses
import os
import socket
import ssl
import time
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from postgres import PostgresServer
from service_fixtures import (
    PROXY_SECRET,
    SHARED_MAX_INFLIGHT,
    DeviceCredentials,
    RunningService,
    check_in_request,
    copy_product,
    foreign_device,
    in_process,
    issue_device,
    next_serial_number,
    open_test_product,
    raw_exchange,
    register_device,
    revoke_device,
    service_for,
)
from sqlalchemy import select

from trustroot.errors import PKIError, PolicyRefusal, StateError, UsageError
from trustroot.fleet.server_cert import ProductTlsSource, ensure_server_certificate, renewal_reason, server_names
from trustroot.fleet.store.db import Store, make_engine
from trustroot.fleet.store.models import Device
from trustroot.fleet.tls import ServerTLS, TlsMaterial, build_server_context, tls_minimum_version
from trustroot.keys._interface import KeyRole
from trustroot.keys._softhsm import SoftHsmToken
from trustroot.keys.passphrase import fixed_secrets
from trustroot.pki.certificates import validate_chain
from trustroot.product import create_product

pytest_plugins = ["service_fixtures"]
pytestmark = pytest.mark.integration

CHECK_IN = {"firmware_version": "1.0.0", "security_counter": 1}


def _pem(device: DeviceCredentials) -> str:
    return device.certificate.public_bytes(serialization.Encoding.PEM).decode()


def _served_certificate(port: int, context: ssl.SSLContext) -> x509.Certificate:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


def _new_device(service: RunningService, *, status: str | None = "active") -> DeviceCredentials:
    device = issue_device(service.product_dir, next_serial_number())
    if status is not None:
        register_device(service.database_url, device, status=status)
    return device


def _assert_refused_401(response: httpx.Response, reason: str) -> None:
    assert response.status_code == 401, response.text
    body = response.json()
    assert body["provision"] == "5.5-1"
    assert reason in body["message"]
    assert "www-authenticate" in response.headers


# ------------------------------------------------------------------------------------ the shared service


def test_a_registered_device_is_served(service: RunningService) -> None:
    with service.client(service.device) as client:
        response = client.post("/api/v1/device/check-in", json=CHECK_IN)
    assert response.status_code == 200, response.text
    assert response.json()["device_id"] == service.device.serial


def test_no_client_certificate_is_401_naming_5_5_1(service: RunningService) -> None:
    with service.client() as client:
        _assert_refused_401(client.post("/api/v1/device/check-in", json=CHECK_IN), "no client certificate")
        # the whole prefix is guarded, routes that do not exist included (no probing without a certificate)
        _assert_refused_401(client.get("/api/v1/device/anything"), "no client certificate")


def test_public_routes_need_no_client_certificate(service: RunningService) -> None:
    with service.client() as client:
        response = client.get("/.well-known/security.txt")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; charset=utf-8"


def _refused_at_the_tls_layer(port: int, context: ssl.SSLContext) -> bool:
    """Whether a check-in over a new connection with ``context`` gets no HTTP answer at all.

    The server's OpenSSL refuses the client certificate, and asyncio closes the connection without
    flushing the alert: in TLS 1.2 the client's handshake ends in an EOF; in TLS 1.3 the client
    finishes its side of the handshake first (it is verified after its Finished) and then reads
    the end of the stream.
    """
    try:
        reply = raw_exchange(port, context, check_in_request())
    except (ssl.SSLError, ConnectionResetError):
        return True
    return reply == b""


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3], ids=["tls1.2", "tls1.3"])
def test_a_certificate_of_another_ca_is_refused_at_the_tls_layer(
    service: RunningService, tmp_path: Path, version: ssl.TLSVersion
) -> None:
    impostor = foreign_device(tmp_path, service.device.serial)  # same serial, same profile, other CA
    context = service.ssl_context(impostor)
    context.maximum_version = version
    assert _refused_at_the_tls_layer(service.port, context)
    genuine = service.ssl_context(service.device)  # the same exchange with the genuine certificate is served
    genuine.maximum_version = version
    assert raw_exchange(service.port, genuine, check_in_request()).startswith(b"HTTP/1.1 200 ")


def test_a_device_revoked_in_the_store_is_401(service: RunningService) -> None:
    device = _new_device(service, status="revoked")
    with service.client(device) as client:
        _assert_refused_401(client.post("/api/v1/device/check-in", json=CHECK_IN), "is revoked")


def test_an_unregistered_device_is_401(service: RunningService) -> None:
    device = _new_device(service, status=None)
    with service.client(device) as client:
        _assert_refused_401(client.post("/api/v1/device/check-in", json=CHECK_IN), "not registered")


def test_forwarding_headers_are_ignored_when_the_mode_is_off(service: RunningService) -> None:
    headers = {"X-Trustroot-Client-Cert": quote(_pem(service.device)), "X-Trustroot-Proxy-Secret": PROXY_SECRET}
    with service.client() as client:
        response = client.post("/api/v1/device/check-in", json=CHECK_IN, headers=headers)
    _assert_refused_401(response, "no client certificate")


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1])
def test_old_tls_versions_are_refused(service: RunningService, version: ssl.TLSVersion) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_ciphers("ALL:@SECLEVEL=0")  # let this client offer what the server must refuse
    with warnings.catch_warnings():  # Python deprecates these versions, which is the point
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = ssl.TLSVersion.TLSv1
        context.maximum_version = version
    request = b"GET /.well-known/security.txt HTTP/1.1\r\nHost: x\r\n\r\n"
    with pytest.raises(ssl.SSLError):  # the server gives up on the ClientHello (asyncio sends no alert)
        raw_exchange(service.port, context, request)
    context.maximum_version = ssl.TLSVersion.TLSv1_2  # the same client allowed TLS 1.2 is served
    assert raw_exchange(service.port, context, request).startswith(b"HTTP/1.1 200 ")


def test_the_server_chain_is_the_products(service: RunningService) -> None:
    served = _served_certificate(service.port, service.ssl_context())
    issuing = open_test_product(service.product_dir).certificate("issuing-ca.pem")
    assert served.issuer == issuing.subject
    san = served.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in san.get_values_for_type(x509.DNSName)
    eku = served.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]


# ---------------------------------------------------------------------------- reload without a restart


def _wait_for(condition: object, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _exchange_tls12(
    service: RunningService, context: ssl.SSLContext, session: ssl.SSLSession | None
) -> tuple[bytes, ssl.SSLSession | None, bool]:
    """A check-in over TLS 1.2, resuming ``session`` if given: (reply, session, whether it was resumed).

    The server closes the connection cleanly (Connection: close), so OpenSSL keeps the session in
    its cache (a connection cut without close_notify would drop it).
    """
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    body = b'{"firmware_version":"1.0.0","security_counter":1}'
    request = check_in_request(body).replace(b"Host: 127.0.0.1\r\n", b"Host: 127.0.0.1\r\nConnection: close\r\n")
    with socket.create_connection(("127.0.0.1", service.port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="127.0.0.1", session=session) as tls:
            tls.sendall(request)
            reply = b""
            while chunk := tls.recv(65536):
                reply += chunk
            return reply, tls.session, tls.session_reused


def test_crl_refresh_and_certificate_renewal_take_effect_without_a_restart(service: RunningService) -> None:
    pid = service.process.pid
    victim = _new_device(service)
    resuming = service.ssl_context(victim)
    reply, session, _ = _exchange_tls12(service, resuming, None)
    assert reply.startswith(b"HTTP/1.1 200 ")
    with service.client(victim) as kept_alive:
        assert kept_alive.post("/api/v1/device/check-in", json=CHECK_IN).status_code == 200

        revoke_device(service.product_dir, victim)

        _wait_for(
            lambda: _refused_at_the_tls_layer(service.port, service.ssl_context(victim)),
            "the new CRL to refuse the revoked device's handshake",
        )
        # the connection opened before the revocation: its next request is refused by the per-request check
        _assert_refused_401(kept_alive.post("/api/v1/device/check-in", json=CHECK_IN), "revoked")
    # a TLS 1.2 session resumed from OpenSSL's cache skips the handshake's certificate check: the
    # per-request check refuses it all the same
    reply, _, resumed = _exchange_tls12(service, resuming, session)
    assert resumed
    assert reply.startswith(b"HTTP/1.1 401 "), reply
    with service.client(service.device) as client:  # other devices are unaffected
        assert client.post("/api/v1/device/check-in", json=CHECK_IN).status_code == 200

    before = _served_certificate(service.port, service.ssl_context())
    renewed = ensure_server_certificate(open_test_product(service.product_dir), force=True)
    assert renewed.leaf.serial_number != before.serial_number
    _wait_for(
        lambda: _served_certificate(service.port, service.ssl_context()).serial_number == renewed.leaf.serial_number,
        "the renewed server certificate to be served",
    )
    assert service.process.poll() is None and service.process.pid == pid
    assert "TLS context reloaded" in service.log()


# ------------------------------------------------------------------------------------- load shedding


def _hold_check_in(service: RunningService, device: DeviceCredentials) -> ssl.SSLSocket:
    """A check-in admitted by the service whose body never comes: it stays in flight.

    ``Expect: 100-continue`` makes the admission visible: uvicorn answers "100 Continue" when the
    application first asks for the body, i.e. once the request is past load shedding.
    """
    raw = socket.create_connection(("127.0.0.1", service.port), timeout=10)
    tls = service.ssl_context(device).wrap_socket(raw, server_hostname="127.0.0.1")
    tls.sendall(
        b"POST /api/v1/device/check-in HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100\r\nExpect: 100-continue\r\n\r\n"
    )
    answer = tls.recv(1024)
    assert answer.startswith(b"HTTP/1.1 100 "), answer
    return tls


def test_overload_is_shed_with_503_and_retry_after(service: RunningService) -> None:
    held = [_hold_check_in(service, service.device) for _ in range(SHARED_MAX_INFLIGHT)]
    try:
        with service.client() as client:  # the next request, of any kind, is shed (unit tests: at once)
            response = client.get("/.well-known/security.txt")
        assert response.status_code == 503
        assert response.headers["retry-after"] == "5"
        assert response.json()["error"] == "overloaded"
        assert response.json()["provision"] == "5.9-1"
    finally:
        for connection in held:
            connection.close()
    with service.client() as client:  # the held requests end with their connections: served again
        _wait_for(lambda: client.get("/.well-known/security.txt").status_code == 200, "the service to recover")


# ----------------------------------------------------------------------------- forwarded-certificate mode


@pytest.fixture(scope="module")
def proxied_service(
    product_template: Path, tmp_path_factory: pytest.TempPathFactory, postgres_server: PostgresServer
) -> Iterator[RunningService]:
    """A service behind a (pretend) front proxy, in two worker processes sharing a PostgreSQL store."""
    product_dir = copy_product(product_template, tmp_path_factory.mktemp("proxied") / "acme")
    database = postgres_server.create_database()
    running = service_for(
        product_dir,
        args=("--workers", "2"),
        env={"TRUSTROOT_FORWARDED_CERT_SECRET": PROXY_SECRET},
        database=postgres_server.url(database),
    )
    try:
        yield running
    finally:
        running.stop()
        postgres_server.drop_database(database)


def test_forwarded_mode_accepts_the_proxys_certificate_and_nothing_else(
    proxied_service: RunningService, tmp_path: Path
) -> None:
    service = proxied_service
    assert "forwarded-certificate mode is ON" in service.log()
    forwarded = quote(_pem(service.device))
    with service.client() as proxy:  # the proxy's own TLS connection carries no device certificate
        response = proxy.post(
            "/api/v1/device/check-in",
            json=CHECK_IN,
            headers={"X-Trustroot-Client-Cert": forwarded, "X-Trustroot-Proxy-Secret": PROXY_SECRET},
        )
        assert response.status_code == 200, response.text
        assert response.json()["device_id"] == service.device.serial

        wrong = {"X-Trustroot-Client-Cert": forwarded, "X-Trustroot-Proxy-Secret": PROXY_SECRET[:-1] + "x"}
        _assert_refused_401(proxy.post("/api/v1/device/check-in", json=CHECK_IN, headers=wrong), "secret")

        no_secret = {"X-Trustroot-Client-Cert": forwarded}
        _assert_refused_401(
            proxy.post("/api/v1/device/check-in", json=CHECK_IN, headers=no_secret), "no client certificate"
        )

        # the service validates a forwarded certificate itself: another CA's is refused
        impostor = quote(_pem(foreign_device(tmp_path, service.device.serial)))
        headers = {"X-Trustroot-Client-Cert": impostor, "X-Trustroot-Proxy-Secret": PROXY_SECRET}
        _assert_refused_401(proxy.post("/api/v1/device/check-in", json=CHECK_IN, headers=headers), "refused")
    with service.client(service.device) as direct:  # a device may still connect directly
        assert direct.post("/api/v1/device/check-in", json=CHECK_IN).status_code == 200


def test_two_workers_share_the_socket_and_the_store(proxied_service: RunningService) -> None:
    service = proxied_service
    _wait_for(lambda: service.log().count("Started server process") == 2, "two worker processes", 60)
    for counter in range(1, 7):  # new connections, spread over the workers by the kernel
        with service.client(service.device) as client:
            report = {"firmware_version": f"1.0.{counter}", "security_counter": counter}
            assert client.post("/api/v1/device/check-in", json=report).status_code == 200
    store = Store(make_engine(service.database_url))
    try:
        with store.transaction() as session:  # what every worker wrote went to the one PostgreSQL store
            device = session.scalars(select(Device).where(Device.serial == service.device.serial)).one()
            assert (device.reported_version, device.security_counter) == ("1.0.6", 6)
    finally:
        store.dispose()
    service.stop()
    assert service.process.returncode == 0, service.log()


# ------------------------------------------------------------ in process: the listener and its swaps


def _handshake(server_context: ssl.SSLContext, client_context: ssl.SSLContext) -> ssl.SSLObject:
    """A complete handshake between two in-memory TLS endpoints; returns the client's end."""
    to_server, to_client = ssl.MemoryBIO(), ssl.MemoryBIO()
    client_out, server_out = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = client_context.wrap_bio(to_client, client_out, server_hostname="127.0.0.1")
    server = server_context.wrap_bio(to_server, server_out, server_side=True)
    done = {"client": False, "server": False}
    for _ in range(20):
        for name, end in (("client", client), ("server", server)):
            if not done[name]:
                try:
                    end.do_handshake()
                    done[name] = True
                except ssl.SSLWantReadError:
                    pass
        to_server.write(client_out.read())
        to_client.write(server_out.read())
        if all(done.values()):  # in TLS 1.3 the server verifies the client when it reads the client's Finished
            return client
    raise AssertionError("the handshake did not finish")


@pytest.fixture
def tls_source(product_dir: Path) -> ProductTlsSource:
    product = open_test_product(product_dir)
    ensure_server_certificate(product)
    return ProductTlsSource(product)


def _client_context(product_dir: Path, device: DeviceCredentials | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(product_dir / ".trustroot" / "pki" / "root-ca.pem"))
    if device is not None:
        context.load_cert_chain(device.cert_path, device.key_path)
    return context


def test_the_listener_hands_handshakes_to_the_current_context(tls_source: ProductTlsSource, product_dir: Path) -> None:
    tls = ServerTLS(tls_source, interval_s=60)
    device = issue_device(product_dir, 2)
    client = _handshake(tls.listener, _client_context(product_dir, device))
    first_serial = x509.load_der_x509_certificate(client.getpeercert(binary_form=True) or b"").serial_number
    assert tls.reload() is False  # nothing changed on disk

    revoke_device(product_dir, device)
    renewed = ensure_server_certificate(tls_source.product, force=True)
    assert tls.reload() is True and tls.generation == 1
    # the listener itself was never touched: the SNI callback moved the connection to the new context
    with pytest.raises(ssl.SSLError, match="certificate revoked"):
        _handshake(tls.listener, _client_context(product_dir, device))
    client = _handshake(tls.listener, _client_context(product_dir))
    served = x509.load_der_x509_certificate(client.getpeercert(binary_form=True) or b"")
    assert served.serial_number == renewed.leaf.serial_number != first_serial


def test_a_failed_reload_keeps_the_current_context(
    tls_source: ProductTlsSource, caplog: pytest.LogCaptureFixture
) -> None:
    calls = [0]

    def flaky() -> TlsMaterial:
        calls[0] += 1
        if calls[0] > 1:
            raise StateError("the certificate file is half-written")
        return tls_source()

    tls = ServerTLS(flaky, interval_s=60)
    before = tls.current
    assert tls.check() is False
    assert tls.current is before
    assert "TLS reload failed, the current context stays in use" in caplog.text


def test_min_tls_version_1_3_means_1_3_only(tls_source: ProductTlsSource, product_dir: Path) -> None:
    context = build_server_context(dataclasses.replace(tls_source(), min_version="1.3"))
    client = _client_context(product_dir)
    assert _handshake(context, client).version() == "TLSv1.3"
    client.maximum_version = ssl.TLSVersion.TLSv1_2
    with pytest.raises(ssl.SSLError):
        _handshake(context, client)


@pytest.mark.parametrize("setting", ["1.0", "1.1"])
def test_a_context_below_tls_1_2_is_refused(setting: str) -> None:
    with pytest.raises(PolicyRefusal, match=r"TLS 1\.2 or later") as refused:
        tls_minimum_version(setting)
    assert refused.value.provision == "5.5-1"


def test_material_whose_key_does_not_match_the_certificate_is_refused(tls_source: ProductTlsSource) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    with pytest.raises(PKIError, match="does not match"):
        dataclasses.replace(tls_source(), server_key=ec.generate_private_key(ec.SECP256R1()))


# -------------------------------------------------- in process: forwarded certificates, validated here


def _mismatched_names(product_dir: Path) -> str:
    """A clientAuth certificate from the product's issuing CA whose CN and serialNumber disagree."""
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    from trustroot.keys._interface import KeyRole
    from trustroot.pki.certificates import issue_leaf

    product = open_test_product(product_dir)
    cert = issue_leaf(
        product.keys.unlock(product.keys.active(KeyRole.ISSUING_CA).name),
        product.certificate("issuing-ca.pem"),
        ec.generate_private_key(ec.SECP256R1()).public_key(),
        x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, "ACMEPL-00000001"),
                x509.NameAttribute(NameOID.SERIAL_NUMBER, "ACMEPL-00000002"),
            ]
        ),
        validity_days=1,
        now=datetime.now(UTC),
        extended_key_usage=[ExtendedKeyUsageOID.CLIENT_AUTH],
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("garbage", "not a PEM certificate"),
        ("other CA", "unknown anchor"),
        ("server certificate", "wrong EKU for client_auth"),
        ("names disagree", "names no device"),
        ("revoked in the CRL", "revoked by"),
        ("not registered", "not registered"),
        ("wrong proxy secret", "secret does not match"),
        ("oversized header", "larger than"),
    ],
)
def test_forwarded_certificates_are_validated_by_the_service(
    product_dir: Path, sqlite_store: str, tmp_path: Path, case: str, reason: str
) -> None:
    with in_process(product_dir, sqlite_store) as app:
        secret = PROXY_SECRET
        pem: str | None = None
        device = None
        if case == "garbage":
            pem = "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n"
        elif case == "other CA":
            pem = _pem(foreign_device(tmp_path, app.device.serial))
        elif case == "server certificate":
            pem = (
                ensure_server_certificate(open_test_product(product_dir))
                .leaf.public_bytes(serialization.Encoding.PEM)
                .decode()
            )
        elif case == "names disagree":
            pem = _mismatched_names(product_dir)
        elif case == "revoked in the CRL":
            revoke_device(product_dir, app.device)
        elif case == "not registered":
            device = issue_device(product_dir, next_serial_number())
        elif case == "wrong proxy secret":
            secret = "x" * len(PROXY_SECRET)
        else:
            pem = "A" * (17 << 10)
        app.now[0] = datetime.now(UTC) + timedelta(seconds=2)  # past every notBefore just issued
        _assert_refused_401(app.check_in(cert_pem=pem, device=device, secret=secret), reason)
        assert app.check_in().status_code == (401 if case == "revoked in the CRL" else 200)


# --------------------------------------------------------------------------------- server certificate


def test_the_server_certificate_is_renewed_when_due_and_rekeyed_only_when_needed(product_dir: Path) -> None:
    product = open_test_product(product_dir)
    now = [datetime.now(UTC)]
    product.clock = lambda: now[0]
    first = ensure_server_certificate(product)
    assert first.key.name == "tls-server-1" and first.key.backend == "file"
    assert ensure_server_certificate(product).leaf == first.leaf  # valid and unchanged: nothing issued

    now[0] = first.not_after - timedelta(days=29)  # inside the renewal window
    renewed = ensure_server_certificate(product)
    assert renewed.leaf != first.leaf and renewed.key.name == "tls-server-1"

    more = ensure_server_certificate(product, ("127.0.0.1", "localhost", "fleet.example.com"))
    san = more.leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost", "fleet.example.com"]

    # every issuance, and only an issuance, leaves evidence (first, renewed, more names)
    issued = [r for r in product.evidence.iter_records() if r.type == "tls.server_certificate.issued"]
    assert len(issued) == 3 and {r.subject for r in issued} == {"tls-server-1"}

    product.keys.revoke("tls-server-1", "test: the key leaked")
    rekeyed = ensure_server_certificate(product, ("127.0.0.1", "localhost", "fleet.example.com"))
    assert rekeyed.key.name == "tls-server-2"
    assert (
        renewal_reason(
            rekeyed,
            ("127.0.0.1", "localhost", "fleet.example.com"),
            root=product.certificate("root-ca.pem"),
            issuing=product.certificate("issuing-ca.pem"),
            now=now[0],
        )
        is None
    )


@pytest.mark.parametrize(
    ("url", "extra", "names"),
    [
        ("https://127.0.0.1:8443", (), ("127.0.0.1", "localhost")),
        (
            "https://Fleet.Example.COM/",
            ("::1", "fleet.example.com."),
            ("127.0.0.1", "localhost", "fleet.example.com", "::1"),
        ),
        (None, ("0:0:0:0:0:0:0:1",), ("127.0.0.1", "localhost", "::1")),
    ],
)
def test_server_names_are_normalised(url: str | None, extra: tuple[str, ...], names: tuple[str, ...]) -> None:
    assert server_names(url, extra) == names


@pytest.mark.parametrize("name", ["", "-bad.example", "under_score.example", "a" * 64 + ".example", "x y"])
def test_a_malformed_server_name_is_refused(name: str) -> None:
    with pytest.raises(UsageError, match="neither an IP address nor a DNS host name"):
        server_names(None, (name,))


def test_a_pkcs11_product_serves_tls_with_a_file_key_and_a_token_issuing_ca(
    softhsm_token: SoftHsmToken, tmp_path: Path
) -> None:
    pin = "5521-0961-tls"  # the token is made up front by the softhsm_token fixture (conftest.py)
    secrets = fixed_secrets(os.environ["TRUSTROOT_PASSPHRASE"], os.environ["TRUSTROOT_ROOT_PASSPHRASE"], pin=pin)
    options = {"backend": "pkcs11", "pkcs11_module": softhsm_token.module_path, "pkcs11_token": "acme-tls"}
    product = create_product(tmp_path / "acme", "Acme HSM", secrets=secrets, template_options=options)
    issued = ensure_server_certificate(product)
    assert issued.key.backend == "file"  # Python's ssl can load no token key
    assert product.keys.active(KeyRole.ISSUING_CA).backend == "pkcs11"  # ... but the token's CA signed it
    validate_chain(
        issued.leaf,
        [product.certificate("issuing-ca.pem")],
        [product.certificate("root-ca.pem")],
        now=datetime.now(UTC),
        purpose="server_auth",
    )
    device = issue_device(product.root, 1, product=product)
    tls = ServerTLS(ProductTlsSource(product))
    client = _handshake(tls.listener, _client_context(product.root, device))
    assert client.getpeercert(binary_form=True) == issued.leaf.public_bytes(serialization.Encoding.DER)
