"""The service's TLS: one listener, TLS 1.2 or later, mutual TLS with device certificates, reloaded live.

What a handshake with the fleet service offers and checks (EN 303 645 provision 5.5-1)::

    versions        TLS 1.3 and TLS 1.2 (``[communication].min_tls_version = "1.3"``: 1.3 only);
                    SSL 2/3, TLS 1.0 and 1.1 never
    TLS 1.2 suites  ECDHE (forward secrecy) with an AEAD only: AES-GCM and ChaCha20-Poly1305
                    (:data:`TLS12_CIPHERS`, set explicitly); TLS 1.3 suites are all AEAD + (EC)DHE
    server          the certificate chain from the product's root of trust (leaf + issuing CA,
                    :mod:`trustroot.fleet.server_cert`)
    client          a certificate is REQUESTED, not required (``CERT_OPTIONAL``): the same listener
                    serves security.txt, TUF metadata and the console to clients without one. A
                    certificate that is presented must chain to the product's CAs and must not be
                    revoked in the issuing CA's CRL (``VERIFY_CRL_CHECK_LEAF``), otherwise the
                    handshake fails; routes under ``/api/v1/device/`` then refuse requests that
                    came without one (:mod:`trustroot.fleet.auth`)
    no tickets      no session tickets (TLS 1.2 and 1.3), no renegotiation, no compression. OpenSSL's
                    server session cache still resumes TLS 1.2 sessions by id (Python cannot switch
                    it off), without checking the client certificate again: the request-level check
                    of trustroot.fleet.auth covers that

**Reloading without a restart.** The server socket keeps one *listener* context for its whole life.
Its SNI callback, which OpenSSL calls for every ClientHello (with or without a server name), moves
the new connection onto the *current* context (``SSLObject.context = ...``, i.e.
``SSL_set_SSL_CTX``): the server certificate chain and key, and the store that verifies client
certificates (trust anchors + CRL), come from the current context; protocol versions, suites,
options and verify flags are those of the listener, which every context shares because one
function (:func:`build_server_context`) builds them all. :class:`ServerTLS` rebuilds the current
context when its material changes (a renewed server certificate, a new CRL) and swaps it in;
handshakes already made keep theirs. A connection kept alive across a revocation is caught by the
request-level check in :mod:`trustroot.fleet.auth`, which reads the same CRL.

The private key reaches OpenSSL (which reads keys from files only) through an anonymous in-memory
file (``memfd``), encrypted under a random one-time password: it is never written to a disk in
clear (provision 5.4-1).

Errors: :class:`~trustroot.errors.PKIError` for unusable material, :class:`~trustroot.errors.PolicyRefusal`
for a minimum TLS version below 1.2.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import secrets
import ssl
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from trustroot.errors import PKIError, PolicyRefusal, TrustrootError

__all__ = [
    "CRL_WARNING_WINDOW",
    "TLS12_CIPHERS",
    "ServerContext",
    "ServerKey",
    "ServerTLS",
    "TlsMaterial",
    "build_server_context",
    "tls_minimum_version",
]

_log = logging.getLogger(__name__)

#: TLS 1.2 suites: ECDHE key exchange (forward secrecy) with an AEAD cipher, nothing else.
TLS12_CIPHERS: Final = ":".join(
    (
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
    )
)

#: A CRL that runs out within this window is logged as a warning at every reload.
CRL_WARNING_WINDOW: Final = timedelta(days=3)

ServerKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey

_VERSIONS: Final = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}


def tls_minimum_version(setting: str) -> ssl.TLSVersion:
    """The lowest version the listener accepts for ``[communication].min_tls_version``.

    "1.2" and "1.3" are honoured; anything lower is refused (the service never speaks it).
    """
    try:
        return _VERSIONS[setting]
    except KeyError:
        raise PolicyRefusal(
            f"[communication].min_tls_version = {setting!r}: the fleet service accepts TLS 1.2 or later only",
            provision="5.5-1",
            hint='set min_tls_version = "1.2" (or "1.3") in security-context.toml',
        ) from None


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@dataclass(frozen=True)
class TlsMaterial:
    """Everything one server context is made of.

    ``server_chain`` is the server certificate first, then its issuer(s); ``client_anchors`` are the
    CA certificates client certificates must chain to (the product's root and issuing CA);
    ``crl`` is the issuing CA's current CRL.
    """

    server_chain: tuple[x509.Certificate, ...]
    server_key: ServerKey = field(repr=False)
    client_anchors: tuple[x509.Certificate, ...]
    crl: x509.CertificateRevocationList
    min_version: str = "1.2"

    def __post_init__(self) -> None:
        if not self.server_chain:
            raise PKIError("TLS material: the server certificate chain is empty")
        if not self.client_anchors:
            raise PKIError("TLS material: no CA certificates to verify client certificates against")
        tls_minimum_version(self.min_version)
        key_public = self.server_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        leaf_public = (
            self.server_chain[0]
            .public_key()
            .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        )
        if key_public != leaf_public:
            raise PKIError("TLS material: the server key does not match the server certificate")

    @property
    def digest(self) -> str:
        """SHA-256 over every part but the key (the key follows the certificate): detects a change."""
        hasher = hashlib.sha256(self.min_version.encode())
        for cert in (*self.server_chain, *self.client_anchors):
            hasher.update(cert.fingerprint(hashes.SHA256()))
        hasher.update(self.crl.public_bytes(serialization.Encoding.DER))
        return hasher.hexdigest()

    @property
    def server_certificate_pem(self) -> str:
        return _pem(self.server_chain[0]).decode("ascii")


class ServerContext(ssl.SSLContext):
    """An ``SSLContext`` that remembers what it was built from (for the ASGI ``tls`` extension)."""

    #: PEM of the server certificate this context presents.
    server_certificate_pem: str | None = None


@contextlib.contextmanager
def _memory_file(data: bytes) -> Iterator[str]:
    """A path OpenSSL can open that holds ``data``: an anonymous memory file where Linux has one."""
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("trustroot-tls", os.MFD_CLOEXEC)
        try:
            os.write(fd, data)
            yield f"/proc/self/fd/{fd}"
        finally:
            os.close(fd)
        return
    with tempfile.TemporaryDirectory(prefix="trustroot-tls-") as directory:  # pragma: no cover - non-Linux
        path = Path(directory) / "material.pem"
        path.write_bytes(data)
        path.chmod(0o600)
        yield str(path)


def _load_server_identity(context: ssl.SSLContext, material: TlsMaterial) -> None:
    password = secrets.token_urlsafe(32)
    encryption = serialization.BestAvailableEncryption(password.encode("ascii"))  # PBES2, AES-256-CBC
    key_pem = material.server_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )
    chain_pem = b"".join(_pem(cert) for cert in material.server_chain)
    with _memory_file(chain_pem) as chain_path, _memory_file(key_pem) as key_path:
        context.load_cert_chain(chain_path, key_path, password=password)


def build_server_context(material: TlsMaterial) -> ServerContext:
    """A server context with the policy of the module docstring for ``material``."""
    context = ServerContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = tls_minimum_version(material.min_version)
    context.maximum_version = ssl.TLSVersion.MAXIMUM_SUPPORTED
    try:
        context.set_ciphers(TLS12_CIPHERS)
        context.options |= (
            ssl.OP_NO_COMPRESSION
            | ssl.OP_CIPHER_SERVER_PREFERENCE
            | ssl.OP_NO_RENEGOTIATION
            | ssl.OP_NO_TICKET
            | ssl.OP_SINGLE_ECDH_USE
        )
        context.num_tickets = 0
        context.verify_mode = ssl.CERT_OPTIONAL
        context.verify_flags = ssl.VERIFY_CRL_CHECK_LEAF | ssl.VERIFY_X509_STRICT
        _load_server_identity(context, material)
        context.load_verify_locations(cadata="".join(_pem(c).decode("ascii") for c in material.client_anchors))
        with _memory_file(material.crl.public_bytes(serialization.Encoding.PEM)) as crl_path:
            context.load_verify_locations(cafile=crl_path)
    except (ssl.SSLError, OSError, ValueError) as exc:
        raise PKIError(f"the TLS server context cannot be built: {exc}") from exc
    context.server_certificate_pem = material.server_certificate_pem
    return context


def _utcnow() -> datetime:
    return datetime.now(UTC)


class ServerTLS:
    """The listener context of the service and the live current context behind it.

    ``load`` returns the material as it is now (read from the product's files); ``maintain``, if
    given, runs before each periodic reload (the server certificate's renewal). :meth:`start`
    runs both every ``interval_s`` seconds in a daemon thread; :meth:`reload` does it at once.
    """

    def __init__(
        self,
        load: Callable[[], TlsMaterial],
        *,
        maintain: Callable[[], object] | None = None,
        interval_s: float = 60.0,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        if interval_s <= 0:
            raise PKIError(f"the TLS reload interval must be positive, got {interval_s}")
        self._load = load
        self._maintain = maintain
        self._interval_s = interval_s
        self._clock = clock
        material = load()
        self._check_crl(material)
        self._current = build_server_context(material)
        self._material = material
        #: The context the server socket is created with; it hands every handshake to :attr:`current`.
        self.listener = build_server_context(material)
        self.listener.sni_callback = self._select
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: How many times the current context was replaced.
        self.generation = 0

    @property
    def current(self) -> ServerContext:
        """The context new handshakes use."""
        return self._current

    @property
    def material(self) -> TlsMaterial:
        """The material of :attr:`current`."""
        return self._material

    def _select(self, connection: ssl.SSLObject | ssl.SSLSocket, _server_name: str | None, _ctx: object) -> None:
        current = self._current
        if connection.context is not current:
            connection.context = current

    def _check_crl(self, material: TlsMaterial) -> None:
        next_update = material.crl.next_update_utc
        now = self._clock()
        if next_update is None or next_update <= now:
            _log.error(
                "the issuing CA's CRL %s: every device certificate is refused until a current CRL is published",
                "has no nextUpdate" if next_update is None else f"expired on {next_update.isoformat()}",
            )
        elif next_update - now < CRL_WARNING_WINDOW:
            _log.warning("the issuing CA's CRL expires on %s: publish a new one", next_update.isoformat())

    def reload(self) -> bool:
        """Load the material again; if it changed, build a context and make it current. True if swapped."""
        with self._lock:
            material = self._load()
            if material.digest == self._material.digest:
                return False
            self._check_crl(material)
            context = build_server_context(material)
            self._current = context
            self._material = material
            self.generation += 1
        _log.info(
            "TLS context reloaded: server certificate serial %#x, CRL number %s",
            material.server_chain[0].serial_number,
            _crl_number(material.crl),
        )
        return True

    def check(self) -> bool:
        """One periodic step: maintain, then reload. Failures are logged; the current context stays."""
        try:
            if self._maintain is not None:
                self._maintain()
            return self.reload()
        except (TrustrootError, OSError, ssl.SSLError) as exc:
            _log.error("TLS reload failed, the current context stays in use: %s", exc)
            return False

    def start(self) -> None:
        """Run :meth:`check` every ``interval_s`` seconds in a daemon thread (idempotent)."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="trustroot-tls-reload", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            self.check()


def _crl_number(crl: x509.CertificateRevocationList) -> str:
    try:
        return str(crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number)
    except x509.ExtensionNotFound:
        return "none"
