"""A securesystemslib :class:`~securesystemslib.signer.Signer` that signs with a trustroot key handle.

python-tuf signs metadata through securesystemslib's ``Signer`` interface. :class:`KeyHandleSigner`
adapts a :class:`~trustroot.keys._interface.KeyHandle` to it, so TUF metadata is signed wherever
the key lives: an scrypt-encrypted file or a PKCS#11 token (the private key never leaves either).

The signature conventions of ``KeyHandle.sign`` are exactly those of securesystemslib's schemes,
so no conversion is needed::

    trustroot algorithm   TUF keytype / scheme              signature bytes
    ───────────────────   ───────────────────────────────   ──────────────────────────────────
    ed25519               ed25519 / ed25519                 pure Ed25519, 64 bytes
    ecdsa-p256            ecdsa / ecdsa-sha2-nistp256       DER ECDSA over SHA-256
    ecdsa-p384            ecdsa / ecdsa-sha2-nistp384       DER ECDSA over SHA-384
    rsa-3072              rsa / rsassa-pss-sha256           RSASSA-PSS, SHA-256, salt 32 (verified
                                                            by securesystemslib with salt AUTO)

The TUF key id is securesystemslib's default: the SHA-256 of the canonical JSON of the public key
(keytype, scheme, keyval), so any TUF client computes the same id.

Errors: a key of another algorithm (a secret, an ECIES key) raises
:class:`~trustroot.errors.KeyStateError`; a handle that refuses to sign (retired, revoked) raises
its own ``KeyStateError``, which python-tuf's ``Metadata.sign`` wraps in ``UnsignedMetadataError``.
"""

from __future__ import annotations

from typing import Final

from cryptography.hazmat.primitives import serialization

from trustroot._tuf_api import Key, SecretsHandler, Signature, Signer, SSlibKey
from trustroot.errors import KeyStateError
from trustroot.keys._interface import Algorithm, KeyHandle, KeyInfo

__all__ = ["TUF_SCHEMES", "KeyHandleSigner", "tuf_key", "tuf_key_from_info"]

#: trustroot signing algorithm -> TUF (keytype, scheme).
TUF_SCHEMES: Final[dict[Algorithm, tuple[str, str]]] = {
    Algorithm.ED25519: ("ed25519", "ed25519"),
    Algorithm.ECDSA_P256: ("ecdsa", "ecdsa-sha2-nistp256"),
    Algorithm.ECDSA_P384: ("ecdsa", "ecdsa-sha2-nistp384"),
    Algorithm.RSA_3072: ("rsa", "rsassa-pss-sha256"),
}


def _scheme(info: KeyInfo) -> str:
    try:
        return TUF_SCHEMES[info.algorithm][1]
    except KeyError:
        raise KeyStateError(
            f"key '{info.name}' ({info.algorithm.value}) cannot sign TUF metadata: "
            f"use one of {', '.join(a.value for a in TUF_SCHEMES)}"
        ) from None


def tuf_key_from_info(info: KeyInfo) -> SSlibKey:
    """The TUF public key of a key in the store, from its public PEM (nothing is unlocked)."""
    scheme = _scheme(info)
    if not info.public_pem:
        raise KeyStateError(f"key '{info.name}' has no public key")
    public = serialization.load_pem_public_key(info.public_pem.encode("ascii"))
    return SSlibKey.from_crypto(public, scheme=scheme)


def tuf_key(handle: KeyHandle) -> SSlibKey:
    """The TUF public key of an unlocked key handle."""
    scheme = _scheme(handle.info)
    return SSlibKey.from_crypto(handle.public_key(), scheme=scheme)


class KeyHandleSigner(Signer):
    """Signs TUF metadata with a key handle (file or PKCS#11), by the handle's own convention."""

    def __init__(self, handle: KeyHandle) -> None:
        self._handle = handle
        self._public = tuf_key(handle)

    def __repr__(self) -> str:
        return f"KeyHandleSigner({self._handle.info.name!r}, keyid={self._public.keyid[:16]})"

    @property
    def public_key(self) -> Key:
        return self._public

    @property
    def keyid(self) -> str:
        """The TUF key id of the key (what the signature carries)."""
        return self._public.keyid

    def sign(self, payload: bytes) -> Signature:
        """Sign ``payload`` (the canonical JSON of a metadata's ``signed``) with the handle."""
        return Signature(self._public.keyid, self._handle.sign(payload).hex())

    @classmethod
    def from_priv_key_uri(
        cls,
        priv_key_uri: str,
        public_key: Key,
        secrets_handler: SecretsHandler | None = None,
    ) -> Signer:
        """Not supported: a key handle comes from the key store, never from a URI."""
        raise ValueError("KeyHandleSigner is made from a trustroot key handle, not from a private key URI")
