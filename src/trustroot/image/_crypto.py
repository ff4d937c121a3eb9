"""How MCUboot images use keys: which hash and signature TLV go with a key, and the key bytes.

The rules are imgtool 2.5.0's (``ALLOWED_KEY_SHA``, ``sig_tlv``, ``get_public_bytes``)::

    key          image hash                signature TLV       signed message           key bytes (KEYHASH/PUBKEY)
    ecdsa-p256   sha256                    ECDSA_SIG  0x22     ECDSA over the hash      SubjectPublicKeyInfo DER
    ecdsa-p384   sha384                    ECDSA_SIG  0x22     ECDSA over the hash      SubjectPublicKeyInfo DER
    rsa-3072     sha256                    RSA3072    0x23     RSA-PSS (salt 32)        PKCS#1 RSAPublicKey DER
    rsa-2048     sha256 (verify only)      RSA2048    0x20     RSA-PSS (salt 32)        PKCS#1 RSAPublicKey DER
    ed25519      sha256 (default), sha512  ED25519    0x24     pure Ed25519 OF THE HASH SubjectPublicKeyInfo DER

KEYHASH is the image's hash algorithm over those key bytes. imgtool 2.5.0 signs Ed25519 images
"hash-then-sign" by default (the ``--pure`` variant, which signs the whole image and adds a
SIG_PURE TLV, is not produced here): a streamed hash is all any algorithm needs.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa, utils
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from trustroot._mcuboot import TlvType
from trustroot.errors import UsageError

__all__ = [
    "SigningScheme",
    "mcuboot_key_bytes",
    "public_key_fingerprint",
    "same_bytes",
    "scheme_for",
    "signature_verifies",
]

_PSS_SALT = 32
_HASHES: Final[dict[str, Callable[[], hashes.HashAlgorithm]]] = {
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}


def public_key_fingerprint(public_key: PublicKeyTypes) -> str:
    """SHA-256 (hex) of the DER SubjectPublicKeyInfo, as ``trustroot.keys`` names keys (kept equal by a test).

    Here so that signing with a key file does not import the key store's interface.
    """
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


@dataclass(frozen=True)
class SigningScheme:
    """How one public key signs images."""

    #: trustroot's algorithm name (``ecdsa-p256``...), or ``rsa-2048`` for imgtool's RSA-2048 images.
    algorithm: str
    signature_tlv: TlvType
    #: The image hashes this key may sign, the default first.
    hashes: tuple[str, ...]

    @property
    def default_hash(self) -> str:
        return self.hashes[0]

    def choose_hash(self, requested: str | None) -> str:
        """The image hash for this key: ``requested`` if allowed (imgtool's rule), else UsageError."""
        if requested is None:
            return self.default_hash
        if requested not in self.hashes:
            raise UsageError(
                f"a {self.algorithm} key cannot sign a {requested} image: use {' or '.join(self.hashes)}",
                hint="leave the hash unset to get the key's default",
            )
        return requested


def scheme_for(public_key: PublicKeyTypes) -> SigningScheme:
    """The :class:`SigningScheme` of ``public_key``; UsageError for a key MCUboot cannot verify."""
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        if isinstance(public_key.curve, ec.SECP256R1):
            return SigningScheme("ecdsa-p256", TlvType.ECDSA_SIG, ("sha256",))
        if isinstance(public_key.curve, ec.SECP384R1):
            return SigningScheme("ecdsa-p384", TlvType.ECDSA_SIG, ("sha384",))
        raise UsageError(f"an EC key on {public_key.curve.name} cannot sign MCUboot images (P-256 or P-384 can)")
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        return SigningScheme("ed25519", TlvType.ED25519, ("sha256", "sha512"))
    if isinstance(public_key, rsa.RSAPublicKey):
        if public_key.key_size == 3072:
            return SigningScheme("rsa-3072", TlvType.RSA3072_PSS, ("sha256",))
        if public_key.key_size == 2048:
            return SigningScheme("rsa-2048", TlvType.RSA2048_PSS, ("sha256",))
        raise UsageError(f"an RSA-{public_key.key_size} key cannot sign MCUboot images (RSA-3072 can)")
    raise UsageError(f"a {type(public_key).__name__.removeprefix('_')} cannot sign MCUboot images")


def mcuboot_key_bytes(public_key: PublicKeyTypes) -> bytes:
    """The key bytes MCUboot embeds and hashes: PKCS#1 for RSA, SubjectPublicKeyInfo otherwise."""
    if isinstance(public_key, rsa.RSAPublicKey):
        return public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1)
    return public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def signature_verifies(public_key: PublicKeyTypes, hash_name: str, digest: bytes, signature: bytes) -> bool:
    """Whether ``signature`` over the image ``digest`` verifies under ``public_key``.

    Returns a bool because it is private to the verifier, which turns False into its one error.
    """
    algorithm = _HASHES[hash_name]()
    try:
        if isinstance(public_key, ec.EllipticCurvePublicKey):
            public_key.verify(signature, digest, ec.ECDSA(utils.Prehashed(algorithm)))
        elif isinstance(public_key, ed25519.Ed25519PublicKey):
            public_key.verify(signature, digest)
        elif isinstance(public_key, rsa.RSAPublicKey):
            pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=_PSS_SALT)
            public_key.verify(signature, digest, pss, utils.Prehashed(algorithm))
        else:
            return False
    except (InvalidSignature, ValueError):
        return False
    return True


def same_bytes(a: bytes, b: bytes) -> bool:
    """Constant-time equality."""
    return hmac.compare_digest(a, b)
