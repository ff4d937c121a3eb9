"""MCUboot image encryption (IP protection): ECIES key transport and an AES-CTR payload stream.

MCUboot encrypts the image *body* (everything after the header, before the TLV area) with AES-CTR
under a random *image key*, and carries that key in one TLV, wrapped for the boot loader's
encryption key by ECIES. The hash and signature TLVs cover the **plain** body; the TLVs themselves
are never encrypted. trustroot writes exactly what imgtool writes and MCUboot reads:

=================  ======  ===============================  ====================================
TLV                type    key agreement                    value length (AES-128 / AES-256)
=================  ======  ===============================  ====================================
ENCEC256           0x32    ECDH P-256, SHA-256 HKDF/HMAC    113 / 129 bytes
ENCX25519          0x33    X25519, SHA-256 HKDF/HMAC        80 / 96 bytes
ENCX25519_SHA512   0x34    X25519, SHA-512 HKDF/HMAC        112 / 128 bytes (decrypt only)
=================  ======  ===============================  ====================================

The TLV value::

    0                     P                       P + T                    P + T + K
    +---------------------+-----------------------+------------------------+
    | ephemeral public    | HMAC tag over the     | wrapped image key      |
    | key                 | wrapped image key     | (AES-CTR, zero nonce)  |
    +---------------------+-----------------------+------------------------+
      P = 65 (P-256, X9.62   T = 32 (SHA-256)        K = 16 (AES-128)
          uncompressed)          64 (SHA-512)            32 (AES-256)
      P = 32 (X25519, raw)

    shared        = ECDH(ephemeral private, boot loader public)      32 bytes
    okm           = HKDF-H(ikm=shared, salt=none, info=b"MCUBoot_ECIES_v1", length=K + T)
    kek, mac_key  = okm[:K], okm[K:]
    wrapped       = AES-CTR(kek, nonce = 16 zero bytes)(image key)
    tag           = HMAC-H(mac_key, wrapped)
    body'         = AES-CTR(image key, nonce = 16 zero bytes)(body)   one stream over the whole body

The AES key size is the header flag (``ENCRYPTED_AES128`` = 0x04, ``ENCRYPTED_AES256`` = 0x08;
both at once is refused, as MCUboot does) and fixes ``K``; the wrapping key has the same size as the
image key (imgtool 2.5.0 derives ``K + T`` bytes, and MCUboot ``BOOT_ENC_KEY_SIZE + 32``), so both
pairs work with AES-128 and AES-256. MCUboot accepts a TLV only of exactly the length above.

The signature / encryption pairs MCUboot builds are those of
:data:`trustroot._mcuboot.ALLOWED_ENCRYPTION_PAIRS`: ecdsa-p256 + ecies-p256 and
ed25519 + ecies-x25519. :func:`make_encryptor` refuses any other pair.

Errors::

    TrustrootError
    ├── UsageError            a wrong argument: key type, AES size, refused pair, a broken rng
    └── ImageDecryptionError  (here) the encryption TLV does not open: wrong key, altered or damaged
                              TLV, bad MAC, bad lengths: one message for all (no oracle); an
                              unsupported TLV type is named, since it is known before any key use

:func:`make_decryptor` checks the MAC over the wrapped key before it unwraps anything.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal, Protocol, cast

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as crypto_hmac
from cryptography.hazmat.primitives.asymmetric import ec, x25519
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from trustroot.errors import ImageDecryptionError, UsageError
from trustroot.keys._interface import KeyHandle

__all__ = [
    "ECIES_INFO",
    "ENCRYPTED_AES128",
    "ENCRYPTED_AES256",
    "ENCRYPTION_FLAGS",
    "TLV_ENCEC256",
    "TLV_ENCX25519",
    "TLV_ENCX25519_SHA512",
    "AesKeyBits",
    "ImageDecryptionError",
    "PayloadEncryptor",
    "Rng",
    "aes_key_bits_from_flags",
    "check_encryption_pair",
    "encryption_algorithm_of",
    "make_decryptor",
    "make_encryptor",
    "tlv_value_length",
]

#: Image header flag: the body is encrypted with AES-128-CTR.
ENCRYPTED_AES128: Final = 0x0000_0004
#: Image header flag: the body is encrypted with AES-256-CTR.
ENCRYPTED_AES256: Final = 0x0000_0008
#: Both encryption flags (an image may carry at most one of them).
ENCRYPTION_FLAGS: Final = ENCRYPTED_AES128 | ENCRYPTED_AES256

#: ECIES-P256 key TLV (HKDF/HMAC with SHA-256).
TLV_ENCEC256: Final = 0x32
#: ECIES-X25519 key TLV (HKDF/HMAC with SHA-256).
TLV_ENCX25519: Final = 0x33
#: ECIES-X25519 key TLV with SHA-512 HKDF/HMAC (imgtool ``--hmac-sha 512``); trustroot decrypts it only.
TLV_ENCX25519_SHA512: Final = 0x34

#: The HKDF ``info`` of MCUboot's ECIES (imgtool and ``boot/bootutil/src/encrypted.c``).
ECIES_INFO: Final = b"MCUBoot_ECIES_v1"

AesKeyBits = Literal[128, 256]
#: A source of random bytes: ``rng(n)`` returns ``n`` bytes (``os.urandom`` unless a test injects one).
Rng = Callable[[int], bytes]

_ZERO_NONCE: Final = bytes(16)
_P256_POINT_BYTES: Final = 65
_X25519_KEY_BYTES: Final = 32
_P256_SCALAR_BYTES: Final = 32
#: Order of the P-256 group: an ephemeral scalar must lie in [1, n - 1].
_P256_ORDER: Final = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
#: Draws of an out-of-range P-256 scalar tolerated before the rng is called broken (p ~ 2^-32 each).
_MAX_SCALAR_DRAWS: Final = 8

_FLAG_FOR_BITS: Final[dict[int, int]] = {128: ENCRYPTED_AES128, 256: ENCRYPTED_AES256}
_TLV_NAMES: Final[dict[int, str]] = {
    0x30: "ENCRSA2048",
    0x31: "ENCKW",
    TLV_ENCEC256: "ENCEC256",
    TLV_ENCX25519: "ENCX25519",
    TLV_ENCX25519_SHA512: "ENCX25519_SHA512",
}

_DECRYPTION_FAILED = (
    "the image's encryption key TLV does not open with this key (wrong key, or a damaged or altered image)"
)


class _DoesNotOpen(Exception):
    """Inside :func:`make_decryptor` only: any reason the TLV does not open (never leaves the module)."""


@dataclass(frozen=True)
class _Scheme:
    """One ECIES variant: the TLV type, its public key length and the HKDF/HMAC hash."""

    tlv_type: int
    encryption_algorithm: str
    public_bytes: int
    hash_name: Literal["sha256", "sha512"]

    def hash(self) -> hashes.SHA256 | hashes.SHA512:
        return hashes.SHA256() if self.hash_name == "sha256" else hashes.SHA512()

    @property
    def tag_bytes(self) -> int:
        return 32 if self.hash_name == "sha256" else 64


_SCHEMES: Final[dict[int, _Scheme]] = {
    TLV_ENCEC256: _Scheme(TLV_ENCEC256, "ecies-p256", _P256_POINT_BYTES, "sha256"),
    TLV_ENCX25519: _Scheme(TLV_ENCX25519, "ecies-x25519", _X25519_KEY_BYTES, "sha256"),
    TLV_ENCX25519_SHA512: _Scheme(TLV_ENCX25519_SHA512, "ecies-x25519", _X25519_KEY_BYTES, "sha512"),
}


# --- small public helpers ---------------------------------------------------------------------------


def _key_bytes(aes_key_bits: int) -> int:
    if aes_key_bits not in _FLAG_FOR_BITS:
        raise UsageError(f"AES key size {aes_key_bits!r}: MCUboot encrypts images with AES-128 or AES-256 only")
    return aes_key_bits // 8


def tlv_value_length(tlv_type: int, aes_key_bits: AesKeyBits) -> int:
    """The exact length MCUboot accepts for a key TLV of ``tlv_type`` (113/129, 80/96, 112/128)."""
    scheme = _scheme(tlv_type)
    return scheme.public_bytes + scheme.tag_bytes + _key_bytes(aes_key_bits)


def aes_key_bits_from_flags(flags: int) -> AesKeyBits | None:
    """The AES key size an image header's ``flags`` declare, or ``None`` for a plain image.

    Both encryption flags at once is refused (:class:`ImageDecryptionError`), as MCUboot's
    ``boot_check_header_valid`` refuses it.
    """
    chosen = flags & ENCRYPTION_FLAGS
    if chosen == ENCRYPTION_FLAGS:
        raise ImageDecryptionError(
            f"image header flags 0x{flags:08x} declare both AES-128 and AES-256 encryption; "
            "MCUboot refuses such an image"
        )
    if chosen == ENCRYPTED_AES128:
        return 128
    if chosen == ENCRYPTED_AES256:
        return 256
    return None


def encryption_algorithm_of(public_key: PublicKeyTypes) -> Literal["ecies-p256", "ecies-x25519"]:
    """``ecies-p256`` for a P-256 public key, ``ecies-x25519`` for an X25519 one; else :class:`UsageError`."""
    if isinstance(public_key, ec.EllipticCurvePublicKey) and isinstance(public_key.curve, ec.SECP256R1):
        return "ecies-p256"
    if isinstance(public_key, x25519.X25519PublicKey):
        return "ecies-x25519"
    raise UsageError(
        f"an image encryption key must be a P-256 (ecies-p256) or X25519 (ecies-x25519) public key, "
        f"not {_describe(public_key)}"
    )


def check_encryption_pair(signing_algorithm: str, encryption_algorithm: str) -> None:
    """Refuse a signature / encryption pair MCUboot cannot boot (:class:`UsageError` naming the pair)."""
    from trustroot._mcuboot import ALLOWED_ENCRYPTION_PAIRS

    pair = (str(signing_algorithm), str(encryption_algorithm))
    if pair not in ALLOWED_ENCRYPTION_PAIRS:
        allowed = ", ".join(f"{s} + {e}" for s, e in sorted(ALLOWED_ENCRYPTION_PAIRS))
        raise UsageError(
            f"MCUboot cannot use {pair[1]} encryption with {pair[0]} signatures "
            f"(the pair {pair[0]} + {pair[1]} is refused); the pairs it allows are {allowed}",
            hint='set [boot] signature and encryption to "ecdsa-p256" + "ecies-p256" or "ed25519" + "ecies-x25519"',
        )


def _describe(key: object) -> str:
    if isinstance(key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey):
        return f"an EC key on {key.curve.name}"
    return f"a {type(key).__name__.removeprefix('_')}"


def _scheme(tlv_type: int) -> _Scheme:
    scheme = _SCHEMES.get(tlv_type)
    if scheme is None:
        name = _TLV_NAMES.get(tlv_type, "unknown")
        raise ImageDecryptionError(
            f"encryption TLV type 0x{tlv_type:02x} ({name}) is not supported: trustroot decrypts "
            "ENCEC256 (0x32), ENCX25519 (0x33) and ENCX25519_SHA512 (0x34)"
        )
    return scheme


# --- the primitives, shared by both directions --------------------------------------------------------


def _derive(scheme: _Scheme, shared: bytes, key_bytes: int) -> tuple[bytes, bytes]:
    """(key-encryption key, MAC key) from the ECDH secret, by MCUboot's HKDF."""
    okm = HKDF(algorithm=scheme.hash(), length=key_bytes + scheme.tag_bytes, salt=None, info=ECIES_INFO).derive(shared)
    return okm[:key_bytes], okm[key_bytes:]


def _mac(scheme: _Scheme, mac_key: bytes, wrapped: bytes) -> bytes:
    mac = crypto_hmac.HMAC(mac_key, scheme.hash())
    mac.update(wrapped)
    return mac.finalize()


def _ctr(key: bytes) -> Callable[[bytes], bytes]:
    """An AES-CTR stream (zero nonce, 128-bit big-endian counter) that continues across calls."""
    context = Cipher(algorithms.AES(key), modes.CTR(_ZERO_NONCE)).encryptor()
    return context.update


# --- encryption -----------------------------------------------------------------------------------------


class PayloadEncryptor(Protocol):
    """What the image signer needs to encrypt a body: header flag, key TLV and the body stream.

    ``update`` encrypts the next chunk of the body (AES-CTR under the image key; the counter
    continues across chunks, so the chunking does not change the output).
    """

    @property
    def flags(self) -> int:
        """The header flag: ``ENCRYPTED_AES128`` or ``ENCRYPTED_AES256``."""
        ...

    @property
    def tlv_type(self) -> int:
        """``TLV_ENCEC256`` (0x32) or ``TLV_ENCX25519`` (0x33)."""
        ...

    @property
    def tlv_value(self) -> bytes:
        """The key TLV's value: ephemeral public key, tag, wrapped image key."""
        ...

    def update(self, chunk: bytes) -> bytes:
        """The next chunk of the body, encrypted (the counter continues from the last call)."""
        ...


class _Encryptor:
    """The :class:`PayloadEncryptor` :func:`make_encryptor` returns (the image key stays inside)."""

    def __init__(self, flags: int, tlv_type: int, tlv_value: bytes, image_key: bytes) -> None:
        self.flags = flags
        self.tlv_type = tlv_type
        self.tlv_value = tlv_value
        self._stream = _ctr(image_key)

    def __repr__(self) -> str:
        return f"<MCUboot payload encryptor TLV 0x{self.tlv_type:02x}, flags 0x{self.flags:x}>"

    def update(self, chunk: bytes) -> bytes:
        return self._stream(bytes(chunk))


def _draw(rng: Rng, count: int) -> bytes:
    data = bytes(rng(count))
    if len(data) != count:
        raise UsageError(f"the random source returned {len(data)} bytes where {count} were asked for")
    return data


def _ephemeral_p256(rng: Rng) -> ec.EllipticCurvePrivateKey:
    for _ in range(_MAX_SCALAR_DRAWS):
        scalar = int.from_bytes(_draw(rng, _P256_SCALAR_BYTES), "big")
        if 0 < scalar < _P256_ORDER:
            return ec.derive_private_key(scalar, ec.SECP256R1())
    raise UsageError(f"the random source gave no valid P-256 scalar in {_MAX_SCALAR_DRAWS} draws: it is broken")


def make_encryptor(
    enc_public_key: PublicKeyTypes,
    aes_key_bits: AesKeyBits,
    signing_algorithm: str,
    *,
    rng: Rng = os.urandom,
) -> PayloadEncryptor:
    """A new image key, wrapped for ``enc_public_key``; returns the header flag, key TLV and body stream.

    ``enc_public_key`` is the boot loader's P-256 (ENCEC256) or X25519 (ENCX25519) public key;
    ``signing_algorithm`` the image's signature algorithm (``ecdsa-p256``, ``ed25519``, ...), checked
    against the pairs MCUboot allows. ``rng`` is drawn in this order: the image key (16 or 32
    bytes), then the ephemeral private key (32 bytes; P-256 redraws a scalar outside [1, n-1]),
    the order imgtool uses; tests inject a fixed source for known answers.
    """
    encryption_algorithm = encryption_algorithm_of(enc_public_key)
    check_encryption_pair(signing_algorithm, encryption_algorithm)
    key_bytes = _key_bytes(aes_key_bits)
    image_key = _draw(rng, key_bytes)
    if isinstance(enc_public_key, ec.EllipticCurvePublicKey):
        scheme = _SCHEMES[TLV_ENCEC256]
        ephemeral_ec = _ephemeral_p256(rng)
        shared = ephemeral_ec.exchange(ec.ECDH(), enc_public_key)
        ephemeral_public = ephemeral_ec.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    else:
        scheme = _SCHEMES[TLV_ENCX25519]
        ephemeral_x = x25519.X25519PrivateKey.from_private_bytes(_draw(rng, _X25519_KEY_BYTES))
        try:
            shared = ephemeral_x.exchange(cast(x25519.X25519PublicKey, enc_public_key))
        except ValueError as exc:  # an all-zero secret: a small-order boot loader "public key"
            raise UsageError("the X25519 image encryption public key is invalid (a small-order point)") from exc
        ephemeral_public = ephemeral_x.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    kek, mac_key = _derive(scheme, shared, key_bytes)
    wrapped = _ctr(kek)(image_key)
    tag = _mac(scheme, mac_key, wrapped)
    return _Encryptor(_FLAG_FOR_BITS[aes_key_bits], scheme.tlv_type, ephemeral_public + tag + wrapped, image_key)


# --- decryption -----------------------------------------------------------------------------------------


def _shared_secret(enc_private: KeyHandle | PrivateKeyTypes, scheme: _Scheme, ephemeral: bytes) -> bytes:
    """ECDH of the boot loader key with the TLV's ephemeral key.

    Raises ``ValueError`` (an invalid point) or :class:`_DoesNotOpen` (a key of the other type).
    """
    peer: ec.EllipticCurvePublicKey | x25519.X25519PublicKey
    if scheme.tlv_type == TLV_ENCEC256:
        peer = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), ephemeral)  # checks the point
    else:
        peer = x25519.X25519PublicKey.from_public_bytes(ephemeral)
    if isinstance(enc_private, ec.EllipticCurvePrivateKey):
        if not isinstance(peer, ec.EllipticCurvePublicKey) or not isinstance(enc_private.curve, ec.SECP256R1):
            raise _DoesNotOpen
        return enc_private.exchange(ec.ECDH(), peer)
    if isinstance(enc_private, x25519.X25519PrivateKey):
        if not isinstance(peer, x25519.X25519PublicKey):
            raise _DoesNotOpen
        return enc_private.exchange(peer)  # ValueError for a small-order point
    if isinstance(enc_private, KeyHandle):
        try:
            return enc_private.exchange(peer)
        except UsageError as exc:  # the key store's words for a peer of another type or a bad point
            raise _DoesNotOpen from exc
    raise _DoesNotOpen


def make_decryptor(
    enc_private: KeyHandle | PrivateKeyTypes,
    tlv_type: int,
    tlv_value: bytes,
    aes_key_bits: AesKeyBits,
) -> Callable[[bytes], bytes]:
    """Open an image's key TLV with the boot loader key and return the body decryption stream.

    ``enc_private`` is a trustroot :class:`~trustroot.keys._interface.KeyHandle` (its ``exchange``
    is used, so a P-256 key on a PKCS#11 token works) or a ``cryptography`` P-256 / X25519 private
    key. ``aes_key_bits`` comes from the header flags (:func:`aes_key_bits_from_flags`). The MAC
    over the wrapped key is checked before the key is unwrapped; every failure from the TLV's
    length on is the one :class:`ImageDecryptionError`. Key store failures that do not depend on
    the image (a missing token, a revoked key) pass through as they are.
    """
    scheme = _scheme(tlv_type)
    key_bytes = _key_bytes(aes_key_bits)
    value = bytes(tlv_value)
    try:
        if len(value) != scheme.public_bytes + scheme.tag_bytes + key_bytes:
            raise _DoesNotOpen  # noqa: TRY301 - one failure path for every cause
        ephemeral = value[: scheme.public_bytes]
        tag = value[scheme.public_bytes : scheme.public_bytes + scheme.tag_bytes]
        wrapped = value[scheme.public_bytes + scheme.tag_bytes :]
        kek, mac_key = _derive(scheme, _shared_secret(enc_private, scheme, ephemeral), key_bytes)
        if not hmac.compare_digest(_mac(scheme, mac_key, wrapped), tag):
            raise _DoesNotOpen  # noqa: TRY301 - one failure path for every cause
    except (ValueError, _DoesNotOpen):
        raise ImageDecryptionError(_DECRYPTION_FAILED) from None  # no cause attached: no oracle in a traceback
    return _ctr(_ctr(kek)(wrapped))
