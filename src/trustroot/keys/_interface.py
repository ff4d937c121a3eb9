"""The key store's vocabulary: algorithms, roles, key metadata and the backend interface.

A *backend* keeps private key material (encrypted files, or a PKCS#11 token) and hands out
:class:`KeyHandle` objects that can use a key without exposing it. The front object
(:class:`trustroot.keys.store.KeyStore`) keeps the key index and routes to a backend.

Signature conventions (what ``KeyHandle.sign`` produces, fixed per algorithm so that every caller,
MCUboot images, certificates, TUF metadata and evidence checkpoints, gets the same bytes):

=============  ===========================================================================
ecdsa-p256     ECDSA over SHA-256, DER-encoded ``Ecdsa-Sig-Value``
ecdsa-p384     ECDSA over SHA-384, DER-encoded
ed25519        pure Ed25519 (RFC 8032), 64 bytes
rsa-3072       RSASSA-PSS, SHA-256, MGF1-SHA-256, salt length 32 (what MCUboot verifies)
=============  ===========================================================================
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol, runtime_checkable

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

__all__ = [
    "Algorithm",
    "BackendName",
    "KeyBackend",
    "KeyHandle",
    "KeyInfo",
    "KeyRole",
    "KeyStatus",
    "public_key_fingerprint",
]


class Algorithm(enum.StrEnum):
    """Every key algorithm trustroot makes or accepts."""

    ECDSA_P256 = "ecdsa-p256"
    ECDSA_P384 = "ecdsa-p384"
    ED25519 = "ed25519"
    RSA_3072 = "rsa-3072"
    #: A P-256 key used for ECDH (MCUboot's ECIES-P256 image encryption).
    ECIES_P256 = "ecies-p256"
    #: An X25519 key (MCUboot's ECIES-X25519); file backend only, SoftHSM2 has no X25519.
    ECIES_X25519 = "ecies-x25519"
    #: A 256-bit secret used with HMAC-SHA256 (the factory secret).
    HMAC_SHA256 = "hmac-sha256"

    @property
    def is_signing(self) -> bool:
        return self in _SIGNING

    @property
    def is_agreement(self) -> bool:
        return self in (Algorithm.ECIES_P256, Algorithm.ECIES_X25519)

    @property
    def is_secret(self) -> bool:
        return self is Algorithm.HMAC_SHA256


_SIGNING = frozenset({Algorithm.ECDSA_P256, Algorithm.ECDSA_P384, Algorithm.ED25519, Algorithm.RSA_3072})


class KeyRole(enum.StrEnum):
    """What a key of the root of trust is for. A role has one active key at a time (but ``declarer``, ``other``)."""

    ROOT_CA = "root-ca"
    ISSUING_CA = "issuing-ca"
    FIRMWARE_SIGNING = "firmware-signing"
    IMAGE_ENCRYPTION = "image-encryption"
    UPDATE_ROOT = "update-root"
    UPDATE_TARGETS = "update-targets"
    UPDATE_SNAPSHOT = "update-snapshot"
    UPDATE_TIMESTAMP = "update-timestamp"
    FACTORY_SECRET = "factory-secret"  # noqa: S105  (a role name, not a secret)
    EVIDENCE = "evidence"
    #: A person who signs conformance declarations (``trustroot declare``); one key per person, so
    #: the role may have several active keys, told apart by name.
    DECLARER = "declarer"
    #: Any other key a later capability files in the store (TLS server, station, signatory).
    OTHER = "other"


class KeyStatus(enum.StrEnum):
    ACTIVE = "active"
    #: Rotated out: still verifies what it signed, never signs again.
    RETIRED = "retired"
    #: Compromised or withdrawn: neither signs nor counts as a trust anchor.
    REVOKED = "revoked"


BackendName = Literal["file", "pkcs11"]


def public_key_fingerprint(public_key: PublicKeyTypes) -> str:
    """SHA-256 (hex) of the DER SubjectPublicKeyInfo: the key id used in evidence and listings."""
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


@dataclass(frozen=True)
class KeyInfo:
    """Metadata of one key in the store (never the key material)."""

    name: str
    role: KeyRole
    algorithm: Algorithm
    backend: BackendName
    created: datetime
    status: KeyStatus = KeyStatus.ACTIVE
    #: SHA-256 of the public key (SPKI DER), hex; for an HMAC secret, SHA-256 of a MAC over a fixed label.
    fingerprint: str = ""
    #: PEM of the public key; empty for secrets.
    public_pem: str = ""
    #: The passphrase domain: "store" for the key store passphrase, "root" for the offline root's own.
    passphrase_domain: Literal["store", "root"] = "store"  # noqa: S105  (which passphrase, not one)
    #: Whether the private part can ever leave the backend (always false on a token).
    extractable: bool = False
    #: Generation within the role (1 for the first key, +1 per rotation).
    generation: int = 1
    #: Free-form labels (e.g. ``{"replaces": "firmware-signing-1"}``).
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def offline(self) -> bool:
        """Whether the key belongs to the offline root (its own passphrase)."""
        return self.passphrase_domain == "root"  # noqa: S105  (a domain name, not a password)


@runtime_checkable
class KeyHandle(Protocol):
    """An unlocked key: it can be used, never read."""

    @property
    def info(self) -> KeyInfo: ...

    def public_key(self) -> PublicKeyTypes:
        """The public key (raises ``KeyStateError`` for a secret)."""
        ...

    def sign(self, data: bytes) -> bytes:
        """Sign ``data`` by the algorithm's convention (module docstring)."""
        ...

    def sign_digest(self, digest: bytes) -> bytes:
        """Sign a precomputed digest (SHA-256 for P-256 and RSA, SHA-384 for P-384).

        Lets callers hash large images in a stream. Ed25519 has no prehash form here and raises
        ``KeyStateError``.
        """
        ...

    def mac(self, data: bytes) -> bytes:
        """HMAC-SHA256 of ``data`` under a secret key."""
        ...

    def exchange(self, peer_public: PublicKeyTypes) -> bytes:
        """ECDH / X25519 shared secret with ``peer_public`` (image decryption)."""
        ...


class KeyBackend(Protocol):
    """Where private key material lives. Implementations: ``filestore``, ``pkcs11store``."""

    name: BackendName

    def generate(self, name: str, role: KeyRole, algorithm: Algorithm, *, domain: Literal["store", "root"]) -> KeyInfo:
        """Make a new key inside the backend; raise ``KeyExistsError`` if ``name`` is taken."""
        ...

    def import_key(
        self,
        name: str,
        role: KeyRole,
        algorithm: Algorithm,
        material: bytes,
        *,
        domain: Literal["store", "root"],
    ) -> KeyInfo:
        """Take an existing key (PKCS#8 DER of a private key, or 32 raw bytes of a secret)."""
        ...

    def unlock(self, info: KeyInfo) -> KeyHandle:
        """Open the key for use; raise ``WrongSecretError`` / ``TokenError`` / ``KeyFileCorruptError``."""
        ...

    def export_private_der(self, info: KeyInfo) -> bytes:
        """Clear PKCS#8 DER for an encrypted backup (raise ``KeyNotExtractableError`` when not allowed)."""
        ...

    def destroy(self, info: KeyInfo) -> None:
        """Delete the key material (used only to roll back a failed ceremony)."""
        ...
