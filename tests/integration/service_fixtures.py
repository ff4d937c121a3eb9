"""A real ``trustroot serve`` on loopback, and devices to talk to it.

Load with ``pytest_plugins = ["service_fixtures"]`` in a test module. Fixtures::

    service          session  a running service for a private copy of the test product, with one
                              registered device (service.device); one per xdist worker. It checks
                              for a renewed certificate or a new CRL every 0.2 s and sheds load
                              above SHARED_MAX_INFLIGHT requests in flight

:func:`in_process` gives the same application in the test's process (injected clock, seeded RNG,
devices authenticated through forwarded-certificate mode) for fast tests of the logic.

Helpers for tests that start their own (other options, other environment):
:func:`copy_product`, :func:`start_service`, :func:`issue_device` (a device certificate from the
product's issuing CA, the IDevID profile of ``trustroot.provision.identity``), :func:`register_device`
(the device in the fleet store, as a production batch import will put it), :func:`revoke_device`
(a new CRL listing it). The service runs as ``python -m trustroot.cli serve --port 0`` with its
output in a log file; :func:`start_service` reads the port from the log line
"listening on https://127.0.0.1:PORT" and waits until a TLS handshake succeeds.

PYTEST_DONT_REWRITE (imported by test modules before pytest_plugins registers it; it asserts nothing)
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from trustroot.fleet.config import FleetConfig, sqlite_url
from trustroot.fleet.server import build_app
from trustroot.fleet.service import FleetService
from trustroot.fleet.store.db import Store, make_engine
from trustroot.fleet.store.migrate import open_store
from trustroot.fleet.store.models import Batch, Device
from trustroot.keys._interface import KeyRole
from trustroot.keys.passphrase import fixed_secrets
from trustroot.pki.certificates import certificate_fingerprint
from trustroot.pki.crl import dump_pem_crl, issue_crl, load_pem_crl
from trustroot.product import ISSUING_CA_CERT, ISSUING_CA_CRL, ROOT_CA_CERT, Product, open_product
from trustroot.provision.identity import format_serial, issue_device_certificate
from trustroot.web.app import create_app

__all__ = [
    "MINIMAL_REPORT",
    "PROXY_SECRET",
    "SHARED_MAX_INFLIGHT",
    "DeviceCredentials",
    "InProcess",
    "RunningService",
    "check_in_request",
    "copy_product",
    "foreign_device",
    "in_process",
    "issue_device",
    "migrate",
    "next_serial_number",
    "open_test_product",
    "raw_exchange",
    "register_device",
    "revoke_device",
    "service",
    "service_for",
    "sqlite_store",
    "start_service",
]

START_TIMEOUT_S = 60.0
#: Load shedding limit of the shared service (small, so that a test can reach it).
SHARED_MAX_INFLIGHT = 8
_LISTENING = re.compile(r"listening on https://127\.0\.0\.1:(\d+)")
_BATCH = "test-batch"


def open_test_product(product_dir: Path) -> Product:
    return open_product(
        product_dir / "security-context.toml",
        secrets=fixed_secrets(os.environ["TRUSTROOT_PASSPHRASE"], os.environ["TRUSTROOT_ROOT_PASSPHRASE"]),
    )


@dataclass(frozen=True)
class DeviceCredentials:
    """A device's certificate and key files (the key in clear: test material only)."""

    serial: str
    certificate: x509.Certificate
    cert_path: Path
    key_path: Path


def issue_device(product_dir: Path, seq: int, *, product: Product | None = None) -> DeviceCredentials:
    """A device certificate for serial number ``seq`` from the product's issuing CA."""
    product = product or open_test_product(product_dir)
    model = product.context.model
    serial = format_serial(model.identity.serial_prefix, model.identity.serial_digits, seq)
    key = ec.generate_private_key(ec.SECP256R1())
    issuing = product.keys.unlock(product.keys.active(KeyRole.ISSUING_CA).name)
    cert = issue_device_certificate(
        issuing,
        product.certificate(ISSUING_CA_CERT),
        key.public_key(),
        serial,
        model=model.product.model,
        manufacturer=model.product.manufacturer,
        settings=model.identity.certificate,
        now=datetime.now(UTC),
    )
    directory = product_dir / "test-devices" / serial
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / "device.pem", directory / "device.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return DeviceCredentials(serial=serial, certificate=cert, cert_path=cert_path, key_path=key_path)


def foreign_device(directory: Path, serial: str) -> DeviceCredentials:
    """A device certificate of the same profile and serial, issued by a CA that is not the product's."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Impostor CA")])
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [x509.NameAttribute(NameOID.COMMON_NAME, serial), x509.NameAttribute(NameOID.SERIAL_NUMBER, serial)]
            )
        )
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / "foreign.pem", directory / "foreign.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return DeviceCredentials(serial=serial, certificate=cert, cert_path=cert_path, key_path=key_path)


def raw_exchange(port: int, context: ssl.SSLContext, request: bytes, *, timeout: float = 10.0) -> bytes:
    """Send ``request`` over one TLS connection and read until the server closes or a full reply came.

    TLS errors (a refused handshake, an alert after it) propagate as :class:`ssl.SSLError`.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as raw:
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            tls.sendall(request)
            reply = b""
            while chunk := tls.recv(65536):
                reply += chunk
                if b"\r\n\r\n" in reply and _complete(reply):
                    break
            return reply


def _complete(reply: bytes) -> bool:
    head, _, body = reply.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(body) >= int(line.split(b":", 1)[1])
    return False


def check_in_request(body: bytes = b'{"firmware_version":"1.0.0","security_counter":1}') -> bytes:
    return (
        b"POST /api/v1/device/check-in HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )


def database_url(product_dir: Path) -> str:
    return sqlite_url(product_dir / ".trustroot" / "fleet.sqlite")


def register_device(url: str, device: DeviceCredentials, *, status: str = "active") -> None:
    """Put ``device`` in the fleet store (already migrated), as a batch import would."""
    store = Store(make_engine(url))
    try:
        now = datetime.now(UTC)
        with store.transaction() as session:
            if session.get(Batch, _BATCH) is None:
                session.add(
                    Batch(id=_BATCH, manifest_sha256="0" * 64, factory="test-factory", device_count=0, imported_at=now)
                )
            session.add(
                Device(
                    serial=device.serial,
                    certificate_fingerprint=certificate_fingerprint(device.certificate),
                    certificate_pem=device.certificate.public_bytes(serialization.Encoding.PEM).decode(),
                    batch_id=_BATCH,
                    factory="test-factory",
                    status=status,
                    registered_at=now,
                )
            )
    finally:
        store.dispose()


def revoke_device(product_dir: Path, *devices: DeviceCredentials) -> x509.CertificateRevocationList:
    """Publish a new CRL of the issuing CA listing ``devices`` (and what the old CRL listed)."""
    product = open_test_product(product_dir)
    path = product.pki_dir / ISSUING_CA_CRL
    old = load_pem_crl(path)
    number = old.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    now = datetime.now(UTC)
    entries = [(r.serial_number, r.revocation_date_utc, None) for r in old]
    entries += [(d.certificate.serial_number, now, x509.ReasonFlags.key_compromise) for d in devices]
    crl = issue_crl(
        product.keys.unlock(product.keys.active(KeyRole.ISSUING_CA).name),
        product.certificate(ISSUING_CA_CERT),
        entries,
        this_update=now,
        next_update=now + timedelta(days=7),
        crl_number=number + 1,
    )
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(dump_pem_crl(crl))
    tmp.replace(path)
    return crl


def copy_product(template: Path, target: Path) -> Path:
    shutil.copytree(template, target, symlinks=True)
    return target


@dataclass
class RunningService:
    """A ``trustroot serve`` process and what a test needs to talk to it."""

    product_dir: Path
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    device: DeviceCredentials
    #: The fleet store's URL when it is not the product's SQLite default.
    store_url: str | None = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def root_ca(self) -> Path:
        return self.product_dir / ".trustroot" / "pki" / ROOT_CA_CERT

    @property
    def database_url(self) -> str:
        return self.store_url or database_url(self.product_dir)

    def ssl_context(self, device: DeviceCredentials | None = None) -> ssl.SSLContext:
        """A client context trusting the product's root, presenting ``device``'s certificate if given."""
        context = ssl.create_default_context(cafile=str(self.root_ca))
        if device is not None:
            context.load_cert_chain(device.cert_path, device.key_path)
        return context

    def client(self, device: DeviceCredentials | None = None, **options: object) -> httpx.Client:
        return httpx.Client(base_url=self.url, verify=self.ssl_context(device), timeout=10.0, **options)  # type: ignore[arg-type]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def _handshake_ok(port: int, context: ssl.SSLContext) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as raw:
            with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                return tls.version() is not None
    except OSError:
        return False


def start_service(
    product_dir: Path,
    device: DeviceCredentials,
    *,
    args: Sequence[str] = (),
    env: dict[str, str] | None = None,
) -> RunningService:
    """Run ``trustroot serve`` for ``product_dir`` on a free loopback port; wait until it handshakes."""
    log_path = product_dir / f"serve-{time.monotonic_ns()}.log"
    environment = {**os.environ, **(env or {})}
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "trustroot.cli", "serve", "--context", str(product_dir), "--port", "0", *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=environment,
            cwd=product_dir,
        )
    running = RunningService(product_dir=product_dir, port=0, process=process, log_path=log_path, device=device)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"trustroot serve exited with {process.returncode}:\n{running.log()}")
        if not running.port and (found := _LISTENING.search(running.log())):
            running.port = int(found.group(1))
        if running.port and _handshake_ok(running.port, running.ssl_context()):
            return running
        time.sleep(0.05)
    running.stop()
    raise AssertionError(f"trustroot serve did not come up in {START_TIMEOUT_S} s:\n{running.log()}")


_SERIALS = iter(range(100, 10**6))


def next_serial_number() -> int:
    """A device sequence number not used before in this process (the shared service's devices)."""
    return next(_SERIALS)


def migrate(url: str) -> str:
    """Bring the store at ``url`` to the newest revision (what ``trustroot serve`` does at start)."""
    open_store(url).dispose()
    return url


def service_for(
    product_dir: Path, *, args: Sequence[str] = (), env: dict[str, str] | None = None, database: str | None = None
) -> RunningService:
    """A started service of ``product_dir`` with one registered device (store: ``database`` or the SQLite default)."""
    device = issue_device(product_dir, 1)
    register_device(migrate(database or database_url(product_dir)), device)
    if database is not None:
        args = ("--database", database, *args)
    running = start_service(product_dir, device, args=args, env=env)
    running.store_url = database
    return running


@pytest.fixture(scope="session")
def service(product_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningService]:
    """A service shared by the session (one per xdist worker), with one registered device (``service.device``).

    Tests that add devices to it use serial numbers of their own (:func:`next_serial_number`).
    """
    product_dir = copy_product(product_template, tmp_path_factory.mktemp("served") / "acme")
    running = service_for(
        product_dir, args=("--tls-reload-interval", "0.2", "--max-inflight", str(SHARED_MAX_INFLIGHT))
    )
    try:
        yield running
    finally:
        running.stop()


# ------------------------------------------------------------------------------------------ in process

#: The front proxy's secret of :func:`in_process` services (forwarded-certificate mode is on there).
PROXY_SECRET = "in-process-proxy-secret-0123456789"
MINIMAL_REPORT: dict[str, Any] = {"firmware_version": "1.0.0", "security_counter": 1}


@dataclass
class InProcess:
    """The application ``trustroot serve`` runs, in this process: injected clock, seeded RNG, no TLS.

    Devices authenticate through forwarded-certificate mode (the whole certificate validation of
    ``trustroot.fleet.auth``, without a TLS listener).
    """

    service: FleetService
    app: Any
    device: DeviceCredentials
    url: str
    now: list[datetime]

    def check_in(
        self,
        report: dict[str, Any] | None = None,
        *,
        device: DeviceCredentials | None = None,
        cert_pem: str | None = None,
        secret: str = PROXY_SECRET,
    ) -> httpx.Response:
        """POST a check-in as ``device`` (default: the registered one), or with ``cert_pem`` forwarded as is."""
        if cert_pem is None:
            cert_pem = (device or self.device).certificate.public_bytes(serialization.Encoding.PEM).decode()
        headers = {"X-Trustroot-Client-Cert": quote(cert_pem), "X-Trustroot-Proxy-Secret": secret}

        async def post() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as client:
                return await client.post("/api/v1/device/check-in", json=report or MINIMAL_REPORT, headers=headers)

        return asyncio.run(post())


@pytest.fixture
def sqlite_store(sqlite_migrated_template: Path, tmp_path: Path) -> str:
    """URL of a migrated SQLite store of one test (a copy of the session's migrated template)."""
    path = tmp_path / "fleet.sqlite"
    shutil.copyfile(sqlite_migrated_template, path)
    return sqlite_url(path)


@contextlib.contextmanager
def in_process(product_dir: Path, url: str, *, support_period_end: date | None = None) -> Iterator[InProcess]:
    """The service of ``product_dir`` on the migrated store at ``url``, with one registered device."""
    product = open_test_product(product_dir)
    context = product.context.model
    if support_period_end is not None:
        context = context.model_copy(
            update={"product": context.product.model_copy(update={"support_period_end": support_period_end})}
        )
    device = issue_device(product_dir, next_serial_number(), product=product)
    register_device(url, device)
    now = [datetime.now(UTC)]
    service = FleetService(
        store=Store(make_engine(url)),
        config=FleetConfig(database_url=url, state_dir=product.state_dir, forwarded_cert_secret=PROXY_SECRET),
        context=context,
        pki_dir=product.pki_dir,
        keys=product.keys,
        clock=lambda: now[0],
    )
    service.parts["checkin_rng"] = random.Random(20240611)
    try:
        yield InProcess(service=service, app=build_app(service, create_app), device=device, url=url, now=now)
    finally:
        service.store.dispose()
