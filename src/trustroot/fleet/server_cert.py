"""The fleet service's TLS server certificate, issued from the product's root of trust and renewed in time.

::

    key           role OTHER, named tls-server-<N>, ECDSA P-256, always in the file backend: Python's
                  ssl hands keys to OpenSSL as (encrypted) PEM, which a PKCS#11 token cannot give.
                  On a PKCS#11 product the issuing CA still signs on the token.
    certificate   issued by the product's issuing CA: CN "<product> fleet service",
                  SAN IP:127.0.0.1, DNS:localhost, the host of [communication].service_url and any
                  configured names; keyUsage digitalSignature; EKU serverAuth; 90 days
    file          .trustroot/pki/tls-server.pem: the leaf, then the issuing CA certificate
    renewal       when missing, within 30 days of notAfter, not chaining to the current issuing CA,
                  for other names than wanted, or when its key is gone or revoked; the key is
                  kept across renewals and replaced (tls-server-<N+1>) only when it cannot be used

:func:`ensure_server_certificate` decides and issues under a lock file, so several workers can call
it at once; each issuance is recorded as evidence (``tls.server_certificate.issued``).
:class:`ProductTlsSource` reads the current material for :class:`~trustroot.fleet.tls.ServerTLS`.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from trustroot._fsutil import atomic_write, exclusive_lock
from trustroot.errors import KeyStoreError, PKIError, StateError, UsageError
from trustroot.fleet.tls import ServerKey, TlsMaterial
from trustroot.keys._interface import Algorithm, KeyInfo, KeyRole, KeyStatus, public_key_fingerprint
from trustroot.pki.certificates import (
    certificate_fingerprint,
    dump_pem_certificates,
    issue_leaf,
    load_pem_certificate,
    load_pem_certificates,
    validate_chain,
)
from trustroot.pki.crl import load_pem_crl
from trustroot.product import ISSUING_CA_CERT, ISSUING_CA_CRL, ROOT_CA_CERT, Product

__all__ = [
    "DEFAULT_NAMES",
    "DEFAULT_RENEW_BEFORE",
    "DEFAULT_VALIDITY_DAYS",
    "EVIDENCE_TYPE_ISSUED",
    "KEY_NAME_PREFIX",
    "SERVER_CERT_FILE",
    "ProductTlsSource",
    "ServerCertificate",
    "ensure_server_certificate",
    "read_server_certificate",
    "renewal_reason",
    "server_names",
]

SERVER_CERT_FILE: Final = "tls-server.pem"
#: The evidence record type of an issuance.
EVIDENCE_TYPE_ISSUED: Final = "tls.server_certificate.issued"
KEY_NAME_PREFIX: Final = "tls-server-"
DEFAULT_VALIDITY_DAYS: Final = 90
DEFAULT_RENEW_BEFORE: Final = timedelta(days=30)
#: Names every server certificate carries (the service listens on loopback by default).
DEFAULT_NAMES: Final = ("127.0.0.1", "localhost")

_log = logging.getLogger(__name__)

_LOCK_FILE = ".tls-server.lock"
_KEY_NAME = re.compile(re.escape(KEY_NAME_PREFIX) + r"([1-9][0-9]{0,8})")
_DNS_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")
_MAX_NAMES = 20


def _check_dns_name(name: str) -> str:
    host = name.lower().rstrip(".")
    if not host or len(host) > 253 or not all(_DNS_LABEL.fullmatch(label) for label in host.split(".")):
        raise UsageError(f"server name {name!r} is neither an IP address nor a DNS host name")
    return host


def _normalise(name: str) -> str:
    text = name.strip()
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return _check_dns_name(text)


def server_names(service_url: str | None, extra: Iterable[str] = ()) -> tuple[str, ...]:
    """The names the certificate must carry: the defaults, the service URL's host, then ``extra``."""
    wanted: list[str] = []
    host = urlsplit(service_url).hostname if service_url else None
    for name in (*DEFAULT_NAMES, *((host,) if host else ()), *extra):
        normal = _normalise(name)
        if normal not in wanted:
            wanted.append(normal)
    if len(wanted) > _MAX_NAMES:
        raise UsageError(f"{len(wanted)} server names given; at most {_MAX_NAMES}")
    return tuple(wanted)


def _general_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def _names_of(cert: x509.Certificate) -> set[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    return {str(ip) for ip in san.get_values_for_type(x509.IPAddress)} | set(san.get_values_for_type(x509.DNSName))


@dataclass(frozen=True)
class ServerCertificate:
    """The server certificate on disk: its chain (leaf first) and the key-store key it certifies."""

    key: KeyInfo
    chain: tuple[x509.Certificate, ...]

    @property
    def leaf(self) -> x509.Certificate:
        return self.chain[0]

    @property
    def not_after(self) -> datetime:
        return self.leaf.not_valid_after_utc


def _server_keys(product: Product) -> list[KeyInfo]:
    return [info for info in product.keys.list() if info.role is KeyRole.OTHER and _KEY_NAME.fullmatch(info.name)]


def read_server_certificate(product: Product) -> ServerCertificate | None:
    """The certificate in ``pki/tls-server.pem`` with its key, or None if either is missing."""
    path = product.pki_dir / SERVER_CERT_FILE
    if not path.exists():
        return None
    chain = tuple(load_pem_certificates(path))
    fingerprint = public_key_fingerprint(chain[0].public_key())
    for info in _server_keys(product):
        if info.fingerprint == fingerprint:
            return ServerCertificate(key=info, chain=chain)
    return None


def _problems(
    current: ServerCertificate,
    names: Sequence[str],
    *,
    root: x509.Certificate,
    issuing: x509.Certificate,
    now: datetime,
    renew_before: timedelta,
) -> Iterator[str]:
    if current.key.status is not KeyStatus.ACTIVE:
        yield f"its key {current.key.name} is {current.key.status.value}"
    if current.leaf.issuer != issuing.subject or len(current.chain) < 2 or current.chain[1] != issuing:
        yield "it was not issued by the current issuing CA"
    try:
        validate_chain(current.leaf, [issuing], [root], now=now, purpose="server_auth")
    except PKIError as exc:
        yield f"it is not valid: {exc}"
    if current.not_after - now < renew_before:
        yield f"it expires on {current.not_after.isoformat()}"
    if _names_of(current.leaf) != set(names):
        yield f"its names {sorted(_names_of(current.leaf))} differ from the wanted {sorted(names)}"


def renewal_reason(
    current: ServerCertificate | None,
    names: Sequence[str],
    *,
    root: x509.Certificate,
    issuing: x509.Certificate,
    now: datetime,
    renew_before: timedelta = DEFAULT_RENEW_BEFORE,
) -> str | None:
    """Why ``current`` must be replaced, or None if it is good for now (a pure decision)."""
    if current is None:
        return "no server certificate (or its key is not in the key store)"
    return next(_problems(current, names, root=root, issuing=issuing, now=now, renew_before=renew_before), None)


def _new_key(product: Product) -> KeyInfo:
    used = [int(m.group(1)) for info in product.keys.list() if (m := _KEY_NAME.fullmatch(info.name))]
    name = f"{KEY_NAME_PREFIX}{max(used, default=0) + 1}"
    info = product.keys.create(KeyRole.OTHER, Algorithm.ECDSA_P256, name=name, backend="file")
    product.record(
        "key.created",
        info.name,
        {
            "role": info.role.value,
            "algorithm": info.algorithm.value,
            "backend": info.backend,
            "fingerprint": info.fingerprint,
            "purpose": "tls-server",
        },
    )
    return info


def _validity_days(issuing: x509.Certificate, now: datetime, wanted: int) -> int:
    left = (issuing.not_valid_after_utc - now).days
    if left < 1:
        raise PKIError("the issuing CA expires within a day: no server certificate can be issued under it")
    return min(wanted, left)


def ensure_server_certificate(
    product: Product,
    names: Sequence[str] = DEFAULT_NAMES,
    *,
    validity_days: int = DEFAULT_VALIDITY_DAYS,
    renew_before: timedelta = DEFAULT_RENEW_BEFORE,
    force: bool = False,
) -> ServerCertificate:
    """The current server certificate for ``names``, issued (or renewed) first if it has to be."""
    wanted = tuple(_normalise(name) for name in names)
    if renew_before >= timedelta(days=validity_days):
        raise UsageError(f"renew_before {renew_before} is not shorter than the validity of {validity_days} days")
    with exclusive_lock(product.pki_dir / _LOCK_FILE):
        now = product.clock()
        root = product.certificate(ROOT_CA_CERT)
        issuing = product.certificate(ISSUING_CA_CERT)
        current = read_server_certificate(product)
        reason = (
            "renewal forced"
            if force
            else renewal_reason(current, wanted, root=root, issuing=issuing, now=now, renew_before=renew_before)
        )
        if reason is None and current is not None:
            return current
        key = current.key if current is not None and current.key.status is KeyStatus.ACTIVE else _new_key(product)
        issuing_info = product.keys.active(KeyRole.ISSUING_CA)
        leaf = issue_leaf(
            product.keys.unlock(issuing_info.name),
            issuing,
            product.keys.public_key(key.name),
            x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{product.context.model.product.name} fleet service")]),
            validity_days=_validity_days(issuing, now, validity_days),
            now=now,
            subject_alt_names=[_general_name(name) for name in wanted],
            key_usage=("digital_signature",),
            extended_key_usage=[ExtendedKeyUsageOID.SERVER_AUTH],
        )
        chain = (leaf, issuing)
        atomic_write(product.pki_dir / SERVER_CERT_FILE, dump_pem_certificates(chain), mode=0o644)
        _record_issued(
            product,
            key.name,
            {
                "certificate": certificate_fingerprint(leaf),
                "serial": f"{leaf.serial_number:x}",
                "not_after": leaf.not_valid_after_utc.isoformat(),
                "names": list(wanted),
                "reason": reason,
            },
        )
        return ServerCertificate(key=key, chain=chain)


def _record_issued(product: Product, key_name: str, data: dict[str, object]) -> None:
    """Evidence of an issuance."""
    product.record(EVIDENCE_TYPE_ISSUED, key_name, data)


def _private_key(product: Product, key: KeyInfo) -> ServerKey:
    try:
        der = product.keys.export_private_der(key.name)
    except KeyStoreError as exc:
        raise StateError(f"the TLS server key {key.name} cannot be handed to the TLS stack: {exc}") from exc
    private = serialization.load_der_private_key(der, password=None)
    if not isinstance(private, ServerKey):  # pragma: no cover - the key store made it as P-256
        raise StateError(f"the TLS server key {key.name} is of an unusable type")
    return private


class ProductTlsSource:
    """Reads the TLS material of a product's files; renews the server certificate when it is due.

    The server key is read from the key store once per key (a renewal with the same key reads
    nothing); certificates and the CRL are read at every call, which is cheap.
    """

    def __init__(
        self,
        product: Product,
        names: Sequence[str] = DEFAULT_NAMES,
        *,
        validity_days: int = DEFAULT_VALIDITY_DAYS,
        renew_before: timedelta = DEFAULT_RENEW_BEFORE,
    ) -> None:
        self.product = product
        self.names = tuple(names)
        self.validity_days = validity_days
        self.renew_before = renew_before
        self._keys: dict[str, ServerKey] = {}
        self._lock = threading.Lock()

    def renew(self) -> ServerCertificate:
        """Issue or renew the server certificate if it is due (see the module docstring)."""
        return ensure_server_certificate(
            self.product, self.names, validity_days=self.validity_days, renew_before=self.renew_before
        )

    def __call__(self) -> TlsMaterial:
        current = read_server_certificate(self.product)
        if current is None:
            raise StateError(
                f"{self.product.pki_dir / SERVER_CERT_FILE}: no server certificate whose key is in the key store",
                hint="start the service with 'trustroot serve', which issues one",
            )
        with self._lock:
            key = self._keys.get(current.key.name)
            if key is None:
                key = self._keys[current.key.name] = _private_key(self.product, current.key)
        pki = self.product.pki_dir
        return TlsMaterial(
            server_chain=current.chain,
            server_key=key,
            client_anchors=(load_pem_certificate(pki / ROOT_CA_CERT), load_pem_certificate(pki / ISSUING_CA_CERT)),
            crl=load_pem_crl(pki / ISSUING_CA_CRL),
            min_version=self.product.context.model.communication.min_tls_version,
        )
