"""Image validation as MCUboot's bootutil does it, over the shared format codec.

:class:`ImageVerifier` is the boot loader's verifier: it is built with the public key(s) the boot
loader trusts and is called with the bytes of a slot (the image, then erased fill and the trailer,
which are not examined). It raises :class:`~trustroot.boot.errors.InvalidImageError` on any
fault and returns a :class:`VerifiedImage` otherwise. The checks, in bootutil's order
(``bootutil_img_validate``)::

    slot bytes ─► parse header + TLV areas (trustroot._mcuboot, strict)        reason "format"
              ─► not encrypted (this model holds no decryption key)            reason "encrypted"
              ─► hash TLV present; hash(header ‖ payload ‖ protected TLVs)
                 equals it (constant-time)                                     reason "hash"
              ─► KEYHASH (or PUBKEY) names one of the built-in keys,
                 hashed with the image's hash algorithm                        reason "key"
              ─► exactly one signature TLV, of that key's type, verifies
                 over the image hash                                           reason "signature"
              ─► SEC_CNT present (protected by construction of the codec)      reason "security-counter"

Signed message per key (imgtool's rules): ECDSA P-256 / P-384 over the SHA-256 / SHA-384 image
hash (DER signature, no padding accepted), RSA-PSS (salt 32, SHA-256) over the SHA-256 hash,
pure Ed25519 *of the hash bytes* (SHA-256 or SHA-512 image hash). The key bytes behind KEYHASH
are the SubjectPublicKeyInfo DER (EC, Ed25519) or the PKCS#1 DER (RSA) that MCUboot embeds.

The anti-rollback comparison with the *stored* counter is the boot manager's job (it owns the
counter store); the verifier only reports the image's counter.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa, utils
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from trustroot import _mcuboot
from trustroot._mcuboot import ImageFormatError, ImageVersion, TlvType
from trustroot.boot.errors import BootError, InvalidImageError

__all__ = ["ImageVerifier", "ImageVersion", "VerifiedImage", "Verifier"]

_PSS_SALT: Final = 32
_HASH_ALGORITHMS: Final[dict[str, Callable[[], hashes.HashAlgorithm]]] = {
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}


@dataclass(frozen=True)
class VerifiedImage:
    """What a verifier vouches for: the image's version and security counter."""

    version: ImageVersion
    security_counter: int
    #: The image hash (the hash TLV), empty if the verifier does not report it.
    digest: bytes = b""


#: The verifier the boot manager is given: raises on any invalid image.
Verifier = Callable[[bytes], VerifiedImage]


@dataclass(frozen=True)
class _Key:
    public_key: PublicKeyTypes
    key_bytes: bytes
    signature_tlv: int
    hashes: tuple[str, ...]


def _describe_key(public_key: PublicKeyTypes) -> tuple[int, tuple[str, ...]]:
    """(signature TLV type, allowed image hashes) of a key MCUboot can verify with."""
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        if isinstance(public_key.curve, ec.SECP256R1):
            return TlvType.ECDSA_SIG, ("sha256",)
        if isinstance(public_key.curve, ec.SECP384R1):
            return TlvType.ECDSA_SIG, ("sha384",)
    elif isinstance(public_key, ed25519.Ed25519PublicKey):
        return TlvType.ED25519, ("sha256", "sha512")
    elif isinstance(public_key, rsa.RSAPublicKey) and public_key.key_size in (2048, 3072):
        return (TlvType.RSA3072_PSS if public_key.key_size == 3072 else TlvType.RSA2048_PSS), ("sha256",)
    raise BootError(f"a boot loader cannot be built with a {type(public_key).__name__.lstrip('_')} key")


def _key_bytes(public_key: PublicKeyTypes) -> bytes:
    if isinstance(public_key, rsa.RSAPublicKey):
        return public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1)
    return public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _refuse(reason: str, message: str) -> InvalidImageError:
    return InvalidImageError(f"image refused: {message}", reason=reason)


class ImageVerifier:
    """The boot loader's image verifier, built with the public keys it trusts.

    ``require_security_counter`` (the default) refuses an image without a SEC_CNT TLV, as MCUboot
    does with hardware rollback protection enabled.
    """

    def __init__(self, public_keys: Sequence[PublicKeyTypes], *, require_security_counter: bool = True) -> None:
        if not public_keys:
            raise BootError("a boot loader needs at least one public key")
        keys = []
        for public_key in public_keys:
            signature_tlv, allowed = _describe_key(public_key)
            keys.append(_Key(public_key, _key_bytes(public_key), signature_tlv, allowed))
        self._keys = tuple(keys)
        self._require_counter = require_security_counter

    def __call__(self, slot_data: bytes) -> VerifiedImage:
        try:
            layout = _mcuboot.parse_image(slot_data, strict_tail=False)
        except ImageFormatError as exc:
            raise _refuse("format", str(exc)) from exc
        if layout.header.encrypted:
            raise _refuse("encrypted", "encrypted images cannot be checked by this model (no decryption key)")
        if layout.find(TlvType.SIG_PURE):
            raise _refuse("signature", "pure signatures (SIG_PURE) are not accepted by this boot loader")

        hash_tlv = layout.hash_tlv
        if hash_tlv is None:
            raise _refuse("hash", "no hash TLV")
        hash_name = _mcuboot.HASH_TLV_TYPES[TlvType(hash_tlv.type)]
        digest = hashlib.new(hash_name, slot_data[: layout.hashed_size]).digest()
        if not hmac.compare_digest(digest, hash_tlv.value):
            raise _refuse("hash", f"the {hash_name} of the image does not match its hash TLV")

        key = self._find_key(layout, hash_name)
        signatures = [t for t in layout.tlvs if t.type in _mcuboot.SIGNATURE_TLV_TYPES]
        if len(signatures) != 1:
            raise _refuse("signature", f"{len(signatures)} signature TLVs; exactly one is accepted")
        if signatures[0].type != key.signature_tlv:
            raise _refuse("signature", f"a {signatures[0].name} signature does not go with the named key")
        if not _signature_verifies(key.public_key, hash_name, digest, signatures[0].value):
            raise _refuse("signature", "the signature does not verify under the named key")

        counter = layout.security_counter
        if counter is None:
            if self._require_counter:
                raise _refuse("security-counter", "no security counter TLV (rollback protection needs one)")
            counter = 0
        return VerifiedImage(layout.header.version, counter, digest)

    def _find_key(self, layout: _mcuboot.ImageLayout, hash_name: str) -> _Key:
        keyhashes = layout.find(TlvType.KEYHASH)
        pubkeys = layout.find(TlvType.PUBKEY)
        if len(keyhashes) + len(pubkeys) != 1:
            raise _refuse("key", f"{len(keyhashes) + len(pubkeys)} KEYHASH/PUBKEY TLVs; exactly one is accepted")
        for key in self._keys:
            if keyhashes:
                named = hmac.compare_digest(hashlib.new(hash_name, key.key_bytes).digest(), keyhashes[0].value)
            else:
                named = hmac.compare_digest(key.key_bytes, pubkeys[0].value)
            if named:
                if hash_name not in key.hashes:
                    raise _refuse("hash", f"a {hash_name} image cannot be signed by the named key")
                return key
        raise _refuse("key", "the image names a key this boot loader was not built with")


def _signature_verifies(public_key: PublicKeyTypes, hash_name: str, digest: bytes, signature: bytes) -> bool:
    algorithm = _HASH_ALGORITHMS[hash_name]()
    try:
        if isinstance(public_key, ec.EllipticCurvePublicKey):
            public_key.verify(signature, digest, ec.ECDSA(utils.Prehashed(algorithm)))
        elif isinstance(public_key, ed25519.Ed25519PublicKey):
            public_key.verify(signature, digest)
        elif isinstance(public_key, rsa.RSAPublicKey):
            pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=_PSS_SALT)
            public_key.verify(signature, digest, pss, utils.Prehashed(algorithm))
        else:  # pragma: no cover  (keys are checked when the verifier is built)
            return False
    except (InvalidSignature, ValueError):
        return False
    return True
