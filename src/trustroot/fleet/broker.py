"""The Mosquitto configuration for telemetry over MQTT: mutual TLS, one topic per device, read by the broker.

:func:`write_broker_config` writes, into one directory::

    mosquitto.conf    one TLS listener (loopback by default): TLS 1.2 minimum with ECDHE + AEAD suites,
                      the product's server certificate, client certificates REQUIRED and checked against
                      the product's CAs and the issuing CA's CRL, the certificate's CN as the user name
                      (use_identity_as_username: a device's serial), no anonymous clients, the ACL below;
                      queues sized for QoS 1 without loss (max_queued_messages, max_inflight_messages)
    acl               pattern write trustroot/%u/telemetry     a device publishes on its own topic only
                      user trustroot-ingest                    the ingest workers read every device's
                      topic read trustroot/+/telemetry         topic (shared subscription
                                                               $share/ingest/trustroot/+/telemetry)
    ca.pem            root and issuing CA certificates (client verification)
    crl.pem           the issuing CA's CRL (revoked devices are refused at the handshake)
    server.pem        the service's TLS certificate chain; server.key its key (PEM, unencrypted: the
                      broker cannot prompt for a passphrase), mode 0640
    ingest.pem        the ingest workers' client certificate (CN trustroot-ingest, issued by the
                      issuing CA, clientAuth); ingest.key its key, mode 0600, for the workers only

Ownership: Mosquitto 2 drops privileges to the ``mosquitto`` user before it reads certificates, so
when the user exists and this runs as root, the directory and the files the broker reads are group
``mosquitto`` (directory 0750, key 0640, others 0644); ``ingest.key`` stays the caller's alone.
Re-run after the server certificate is renewed or the CRL changes, then signal the broker (SIGHUP).
"""

from __future__ import annotations

import grp
import os
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from trustroot._fsutil import atomic_write
from trustroot.errors import UsageError
from trustroot.fleet.server_cert import ensure_server_certificate
from trustroot.keys._interface import KeyRole
from trustroot.pki.certificates import dump_pem_certificates, issue_leaf
from trustroot.product import ISSUING_CA_CERT, ISSUING_CA_CRL, ROOT_CA_CERT, Product

__all__ = [
    "BROKER_GROUP",
    "INGEST_IDENTITY",
    "MAX_INFLIGHT",
    "MAX_QUEUED",
    "SHARED_SUBSCRIPTION",
    "TELEMETRY_TOPIC",
    "BrokerFiles",
    "write_broker_config",
]

#: The user name (certificate CN) of the ingest workers.
INGEST_IDENTITY: Final = "trustroot-ingest"
#: A device's telemetry topic (``{serial}``), and what the workers subscribe to.
TELEMETRY_TOPIC: Final = "trustroot/{serial}/telemetry"
SHARED_SUBSCRIPTION: Final = "$share/ingest/trustroot/+/telemetry"
#: The broker's group after it drops privileges.
BROKER_GROUP: Final = "mosquitto"
#: Messages queued per client (QoS 1: a slow worker must not lose them), and in flight to it at once.
MAX_QUEUED: Final = 1_000_000
MAX_INFLIGHT: Final = 1000
#: Largest MQTT packet (one telemetry batch), bytes.
MAX_PACKET_BYTES: Final = 256 << 10
_INGEST_DAYS: Final = 365
#: TLS 1.2 suites: ECDHE and AEAD only (TLS 1.3 suites are all AEAD with forward secrecy).
_CIPHERS: Final = ":".join(
    (
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-RSA-CHACHA20-POLY1305",
    )
)


@dataclass(frozen=True)
class BrokerFiles:
    """What :func:`write_broker_config` wrote."""

    directory: Path
    config: Path
    acl: Path
    ca: Path
    ingest_cert: Path
    ingest_key: Path
    host: str
    port: int


def _acl() -> str:
    return (
        "# trustroot: devices publish telemetry on their own topic only (user name = certificate CN = serial).\n"
        f"user {INGEST_IDENTITY}\n"
        "topic read trustroot/+/telemetry\n"
        "\n"
        "pattern write trustroot/%u/telemetry\n"
    )


def _config(directory: Path, host: str, port: int) -> str:
    return f"""# Written by trustroot monitor broker-config: telemetry over MQTT with mutual TLS (EN 303 645 5.5-1).
per_listener_settings false
allow_anonymous false
persistence false
log_dest stderr
log_type error
log_type warning
log_type notice
max_queued_messages {MAX_QUEUED}
max_inflight_messages {MAX_INFLIGHT}
max_packet_size {MAX_PACKET_BYTES}
acl_file {directory / "acl"}

listener {port} {host}
protocol mqtt
cafile {directory / "ca.pem"}
crlfile {directory / "crl.pem"}
certfile {directory / "server.pem"}
keyfile {directory / "server.key"}
require_certificate true
use_identity_as_username true
tls_version tlsv1.2
ciphers {_CIPHERS}
"""


def _ingest_identity(product: Product) -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    issuing_info = product.keys.active(KeyRole.ISSUING_CA)
    issuing = product.certificate(ISSUING_CA_CERT)
    now = product.clock()
    days = max(1, min(_INGEST_DAYS, (issuing.not_valid_after_utc - now - timedelta(days=1)).days))
    cert = issue_leaf(
        product.keys.unlock(issuing_info.name),
        issuing,
        key.public_key(),
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, INGEST_IDENTITY)]),
        validity_days=days,
        now=now,
        key_usage=("digital_signature",),
        extended_key_usage=[ExtendedKeyUsageOID.CLIENT_AUTH],
    )
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return dump_pem_certificates([cert, issuing]), pem


def _broker_gid() -> int | None:
    if os.geteuid() != 0:
        return None
    try:
        return grp.getgrnam(BROKER_GROUP).gr_gid
    except KeyError:
        return None


def write_broker_config(product: Product, directory: Path, *, host: str = "127.0.0.1", port: int = 8883) -> BrokerFiles:
    """Write the broker's configuration and credentials for ``product`` into ``directory``."""
    if not 1 <= port <= 65535:
        raise UsageError(f"broker port {port}: expected 1-65535")
    if not host or any(c.isspace() for c in host) or len(host) > 253:
        raise UsageError(f"broker host {host!r}: expected an address or host name")
    directory = directory.resolve()
    directory.mkdir(parents=True, exist_ok=True)
    gid = _broker_gid()
    server = ensure_server_certificate(product)
    server_key = product.keys.export_private_der(server.key.name)
    key_pem = serialization.load_der_private_key(server_key, password=None).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    ingest_cert, ingest_key = _ingest_identity(product)
    shared = {
        "ca.pem": dump_pem_certificates([product.certificate(ROOT_CA_CERT), product.certificate(ISSUING_CA_CERT)]),
        "crl.pem": (product.pki_dir / ISSUING_CA_CRL).read_bytes(),
        "server.pem": dump_pem_certificates(server.chain),
        "acl": _acl().encode(),
        "mosquitto.conf": _config(directory, host, port).encode(),
    }
    for name, data in shared.items():
        atomic_write(directory / name, data, mode=0o644)
    atomic_write(directory / "server.key", key_pem, mode=0o640 if gid is not None else 0o600)
    atomic_write(directory / "ingest.pem", ingest_cert, mode=0o644)
    atomic_write(directory / "ingest.key", ingest_key, mode=0o600)
    if gid is not None:
        os.chown(directory, -1, gid)
        directory.chmod(0o750)
        for name in (*shared, "server.key"):
            os.chown(directory / name, -1, gid)
    return BrokerFiles(
        directory=directory,
        config=directory / "mosquitto.conf",
        acl=directory / "acl",
        ca=directory / "ca.pem",
        ingest_cert=directory / "ingest.pem",
        ingest_key=directory / "ingest.key",
        host=host,
        port=port,
    )
