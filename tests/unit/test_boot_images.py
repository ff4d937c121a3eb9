"""Signed test images for the boot model, and the boot loader's verifier (boot/validate.py).

``build_image`` signs with trustroot's image signer (``trustroot.image.sign``, imgtool's format),
so the boot layer's verifier, written separately from the format, is checked against images it
did not produce. For images the signer rightly refuses to make (a KEYHASH naming another key,
extra or foreign TLVs, an encrypted flag without encryption, RSA-2048, a P-384 key over SHA-256)
it falls back to a small in-test signer that lays the image out by hand. Other boot test
modules import it from here (tests may import any layer; only src/trustroot/boot may not import
trustroot.image).
"""

from __future__ import annotations

import functools
import hashlib
import struct
from collections.abc import Sequence

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa, utils, x25519
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes

from trustroot._mcuboot import (
    IMAGE_F_ENCRYPTED_AES128,
    ImageHeader,
    ImageVersion,
    TlvType,
    encode_tlv_area,
    parse_image,
)
from trustroot.boot import BootError, ImageVerifier, InvalidImageError, VerifiedImage
from trustroot.image.sign import sign_image_bytes

_HASH_TLV = {"sha256": TlvType.SHA256, "sha384": TlvType.SHA384, "sha512": TlvType.SHA512}
_PREHASH = {"sha256": hashes.SHA256, "sha384": hashes.SHA384, "sha512": hashes.SHA512}


def signing_key(kind: str = "p256", n: int = 0) -> PrivateKeyTypes:
    """One key per (kind, n) for the whole test session (n tells keys of one kind apart)."""
    return _key(kind, n)


@functools.cache
def _key(kind: str, n: int) -> PrivateKeyTypes:
    del n
    if kind == "p256":
        return ec.generate_private_key(ec.SECP256R1())
    if kind == "p384":
        return ec.generate_private_key(ec.SECP384R1())
    if kind == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    if kind == "rsa2048":
        return rsa.generate_private_key(65537, 2048)
    if kind == "rsa3072":
        return rsa.generate_private_key(65537, 3072)
    raise ValueError(kind)


def mcuboot_key_bytes(public_key: PublicKeyTypes) -> bytes:
    if isinstance(public_key, rsa.RSAPublicKey):
        return public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1)
    return public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _sign(key: PrivateKeyTypes, hash_name: str, digest: bytes) -> tuple[int, bytes]:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return TlvType.ECDSA_SIG, key.sign(digest, ec.ECDSA(utils.Prehashed(_PREHASH[hash_name]())))
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return TlvType.ED25519, key.sign(digest)
    assert isinstance(key, rsa.RSAPrivateKey)
    pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
    signature = key.sign(digest, pss, utils.Prehashed(hashes.SHA256()))
    return (TlvType.RSA3072_PSS if key.key_size == 3072 else TlvType.RSA2048_PSS), signature


def build_image(
    key: PrivateKeyTypes | None = None,
    *,
    version: str = "1.0.0",
    counter: int | None = 0,
    payload: bytes = b"firmware",
    header_size: int = 0x200,
    hash_name: str | None = None,
    flags: int = 0,
    public_key_format: str = "hash",
    keyhash_of: PrivateKeyTypes | None = None,
    extra_unprotected: Sequence[tuple[int, bytes]] = (),
    by_hand: bool = False,
    with_hash: bool = True,
) -> bytes:
    """An MCUboot image signed by ``key`` (P-256 by default).

    ``keyhash_of`` names another key in the KEYHASH TLV (to forge), ``extra_unprotected`` adds
    TLVs after the signature; those, ``flags`` and ``by_hand`` use the in-test signer.
    """
    key = key if key is not None else signing_key()
    rsa2048 = isinstance(key, rsa.RSAPrivateKey) and key.key_size == 2048
    if not (by_hand or keyhash_of or extra_unprotected or flags or rsa2048 or not with_hash):
        return sign_image_bytes(
            bytes(header_size) + payload,
            key,
            version=version,
            header_size=header_size,
            security_counter=counter,
            hash_algorithm=hash_name,
            public_key_format="hash" if public_key_format == "hash" else "full",
        )
    if hash_name is None:
        p384 = isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP384R1)
        hash_name = "sha384" if p384 else "sha256"
    protected = b""
    if counter is not None:
        protected = encode_tlv_area([(TlvType.SEC_CNT, struct.pack("<I", counter))], protected=True)
    header = ImageHeader(0, header_size, len(protected), len(payload), flags, ImageVersion.parse(version)).pack()
    body = header + bytes(header_size - len(header)) + payload + protected
    digest = hashlib.new(hash_name, body).digest()
    key_bytes = mcuboot_key_bytes((keyhash_of or key).public_key())
    key_tlv = (
        (TlvType.KEYHASH, hashlib.new(hash_name, key_bytes).digest())
        if public_key_format == "hash"
        else (TlvType.PUBKEY, key_bytes)
    )
    entries = [(_HASH_TLV[hash_name], digest)] if with_hash else []
    entries += [key_tlv, _sign(key, hash_name, digest), *extra_unprotected]
    return body + encode_tlv_area(entries, protected=False)


def verifier_for(*kinds: str) -> ImageVerifier:
    return ImageVerifier([signing_key(kind).public_key() for kind in (kinds or ("p256",))])


# --------------------------------------------------------------------------------------------- tests


def _hashed(image: bytes, hash_name: str) -> bytes:
    return hashlib.new(hash_name, image[: parse_image(image).hashed_size]).digest()


@pytest.mark.parametrize(
    ("kind", "hash_name"),
    [("p256", "sha256"), ("p384", "sha384"), ("ed25519", "sha256"), ("ed25519", "sha512"), ("rsa2048", "sha256")],
)
def test_verifier_accepts_each_key_type(kind: str, hash_name: str) -> None:
    image = build_image(signing_key(kind), version="1.2.3+4", counter=7, hash_name=hash_name)
    assert verifier_for(kind)(image) == VerifiedImage(ImageVersion(1, 2, 3, 4), 7, _hashed(image, hash_name))


def test_the_in_test_signer_and_trustroots_signer_agree() -> None:
    key = signing_key("ed25519")  # deterministic signatures: the bytes must be equal
    for counter in (None, 5):
        assert build_image(key, counter=counter, version="3.1.4+1") == build_image(
            key, counter=counter, version="3.1.4+1", by_hand=True
        )


def test_verifier_accepts_rsa3072_and_a_full_public_key() -> None:
    assert verifier_for("rsa3072")(build_image(signing_key("rsa3072"), counter=1)).security_counter == 1
    assert verifier_for("p256")(build_image(public_key_format="full", counter=2)).security_counter == 2


def test_verifier_ignores_what_follows_the_tlvs_in_a_slot() -> None:
    image = build_image(counter=3)
    assert verifier_for()(image + b"\xff" * 100 + bytes(16)).security_counter == 3


def test_verifier_picks_the_named_key_among_several() -> None:
    verifier = ImageVerifier([signing_key("ed25519").public_key(), signing_key("p256").public_key()])
    assert verifier(build_image(signing_key("ed25519"))).version == ImageVersion(1)
    assert verifier(build_image(signing_key("p256"))).version == ImageVersion(1)


def _reason(image: bytes, verifier: ImageVerifier | None = None) -> str:
    with pytest.raises(InvalidImageError) as info:
        (verifier or verifier_for())(image)
    assert info.value.provision == "5.7-1"
    return info.value.reason


def test_verifier_refuses_format_hash_key_and_counter_faults() -> None:
    good = build_image(counter=1)
    assert _reason(b"\x00" * 64) == "format"
    assert _reason(good[:-1]) == "format"
    assert _reason(build_image(signing_key("p256", 1))) == "key"  # a key the boot loader lacks
    tampered = bytearray(good)
    tampered[0x200] ^= 1  # the first payload byte
    assert _reason(bytes(tampered)) == "hash"
    assert _reason(build_image(counter=None)) == "security-counter"
    assert _reason(build_image(with_hash=False)) == "hash"
    lenient = ImageVerifier([signing_key().public_key()], require_security_counter=False)
    assert lenient(build_image(counter=None)).security_counter == 0


def test_verifier_refuses_signature_faults() -> None:
    trusted, other = signing_key("p256"), signing_key("p256", 1)
    # Signed by another P-256 key, but naming the trusted one.
    assert _reason(build_image(other, keyhash_of=trusted)) == "signature"
    # An Ed25519 signature naming the P-256 key: the wrong signature type for the key.
    assert _reason(build_image(signing_key("ed25519"), keyhash_of=trusted)) == "signature"
    # Two signature TLVs: exactly one is accepted.
    assert _reason(build_image(trusted, extra_unprotected=[(TlvType.ECDSA_SIG, bytes(70))])) == "signature"
    # Pure signatures are not accepted.
    assert _reason(build_image(trusted, extra_unprotected=[(TlvType.SIG_PURE, b"\x01")])) == "signature"
    # A P-384 key cannot sign a SHA-256 image.
    assert _reason(build_image(signing_key("p384"), hash_name="sha256", by_hand=True), verifier_for("p384")) == "hash"
    # Two key TLVs.
    extra_key = (TlvType.PUBKEY, mcuboot_key_bytes(trusted.public_key()))
    assert _reason(build_image(trusted, extra_unprotected=[extra_key])) == "key"


def test_verifier_refuses_an_encrypted_image() -> None:
    image = build_image(flags=IMAGE_F_ENCRYPTED_AES128, extra_unprotected=[(TlvType.ENC_EC256, bytes(113))])
    assert _reason(image) == "encrypted"


def test_verifier_needs_keys_it_can_use() -> None:
    with pytest.raises(BootError):
        ImageVerifier([])
    with pytest.raises(BootError):
        ImageVerifier([x25519.X25519PrivateKey.generate().public_key()])
    with pytest.raises(BootError):
        ImageVerifier([ec.generate_private_key(ec.SECP521R1()).public_key()])
