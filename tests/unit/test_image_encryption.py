"""MCUboot image encryption: round trips, TLV shapes, known answers, and every way a TLV must not open."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, x25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from trustroot.errors import KeyStateError, TrustrootError, UsageError
from trustroot.image import encryption
from trustroot.image.encryption import (
    ECIES_INFO,
    ENCRYPTED_AES128,
    ENCRYPTED_AES256,
    TLV_ENCEC256,
    TLV_ENCX25519,
    TLV_ENCX25519_SHA512,
    ImageDecryptionError,
    aes_key_bits_from_flags,
    check_encryption_pair,
    encryption_algorithm_of,
    make_decryptor,
    make_encryptor,
    tlv_value_length,
)
from trustroot.keys._interface import Algorithm, KeyInfo, KeyRole, KeyStatus
from trustroot.keys.filestore import FileKeyHandle

PAYLOAD = bytes(range(256)) * 5 + b"tail: not a multiple of 16"
ONE_MESSAGE = "does not open with this key (wrong key, or a damaged or altered image)"

# A fixed private key per curve (tests only), so failures are reproducible.
P256_KEY = ec.derive_private_key(0x1F2E3D4C5B6A79880102030405060708090A0B0C0D0E0F101112131415161718, ec.SECP256R1())
X25519_KEY = x25519.X25519PrivateKey.from_private_bytes(bytes(range(32, 64)))

PAIRS = [
    pytest.param(P256_KEY, "ecdsa-p256", TLV_ENCEC256, 65, id="ecdsa-p256+ecies-p256"),
    pytest.param(X25519_KEY, "ed25519", TLV_ENCX25519, 32, id="ed25519+ecies-x25519"),
]


def fixed_rng(seed: bytes) -> Callable[[int], bytes]:
    """A deterministic byte source: SHA-256 in counter mode over ``seed`` (tests only)."""
    counter = 0
    buffer = b""

    def rng(n: int) -> bytes:
        nonlocal counter, buffer
        while len(buffer) < n:
            buffer += hashlib.sha256(seed + counter.to_bytes(4, "big")).digest()
            counter += 1
        out, buffer = buffer[:n], buffer[n:]
        return out

    return rng


def chunks(data: bytes, sizes: list[int]) -> Iterator[bytes]:
    position, index = 0, 0
    while position < len(data):
        size = sizes[index % len(sizes)]
        yield data[position : position + size]
        position += size
        index += 1


# --- round trips and shapes ---------------------------------------------------------------------


@pytest.mark.parametrize(("key", "signing", "tlv_type", "pub_len"), PAIRS)
@pytest.mark.parametrize("bits", [128, 256])
def test_round_trip_and_tlv_shape(key: Any, signing: str, tlv_type: int, pub_len: int, bits: Any) -> None:
    enc = make_encryptor(key.public_key(), bits, signing)
    assert enc.tlv_type == tlv_type
    assert enc.flags == (ENCRYPTED_AES128 if bits == 128 else ENCRYPTED_AES256)
    assert len(enc.tlv_value) == pub_len + 32 + bits // 8 == tlv_value_length(tlv_type, bits)
    ciphertext = enc.update(PAYLOAD)
    assert len(ciphertext) == len(PAYLOAD) and ciphertext != PAYLOAD
    decrypt = make_decryptor(key, enc.tlv_type, enc.tlv_value, bits)
    assert decrypt(ciphertext) == PAYLOAD


@pytest.mark.parametrize(("key", "signing", "tlv_type", "pub_len"), PAIRS)
def test_the_stream_continues_across_chunks(key: Any, signing: str, tlv_type: int, pub_len: int) -> None:
    """AES-CTR over the whole body: any chunking gives the bytes one call gives."""
    one = make_encryptor(key.public_key(), 128, signing, rng=fixed_rng(b"chunks"))
    many = make_encryptor(key.public_key(), 128, signing, rng=fixed_rng(b"chunks"))
    whole = one.update(PAYLOAD)
    pieces = b"".join(many.update(c) for c in chunks(PAYLOAD, [1, 15, 16, 17, 100, 3]))
    assert pieces == whole
    decrypt = make_decryptor(key, tlv_type, one.tlv_value, 128)
    assert b"".join(decrypt(c) for c in chunks(whole, [7, 33, 16])) == PAYLOAD


def test_each_image_gets_a_fresh_key() -> None:
    a = make_encryptor(P256_KEY.public_key(), 128, "ecdsa-p256")
    b = make_encryptor(P256_KEY.public_key(), 128, "ecdsa-p256")
    assert a.tlv_value != b.tlv_value
    assert a.update(PAYLOAD) != b.update(PAYLOAD)


def test_the_ephemeral_key_is_the_first_part_of_the_tlv() -> None:
    enc = make_encryptor(P256_KEY.public_key(), 256, "ecdsa-p256")
    point = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), enc.tlv_value[:65])
    assert point.public_numbers() != P256_KEY.public_key().public_numbers()
    assert "encryptor" in repr(enc) and "0x32" in repr(enc)


# --- known answers (fixed rng) --------------------------------------------------------------------

# Pinned outputs for rng = fixed_rng(b"trustroot-kat"); tests/integration/test_encryption_interop.py
# shows imgtool 2.5.0, given the same image key and ephemeral key, writes the same bytes.
KAT_PAYLOAD = b"MCUboot known-answer payload".ljust(48, b".")
#: SHA-256 of tlv_value + ciphertext of KAT_PAYLOAD.
KAT = {
    ("ecdsa-p256", 128): "60ffc43715f7ebef252aecd2d1f313e38e258ff88b34f34f3a09f0f3d95e1c9c",
    ("ecdsa-p256", 256): "b3506d780c66de2d116a22180e0b144b40116aeb2b03c93c5b99514df7632bb6",
    ("ed25519", 128): "58e2bf412f27470e36d33cdd8ace653a959adf26942f6331a2488ee5c3730ca0",
    ("ed25519", 256): "7a14a235797edbb52f4bdcfae93a50720f24db63ca17b8fe2f4f479dbcd2166f",
}


@pytest.mark.parametrize(("signing", "bits"), list(KAT))
def test_known_answers(signing: str, bits: Any) -> None:
    key: Any = P256_KEY if signing == "ecdsa-p256" else X25519_KEY
    enc = make_encryptor(key.public_key(), bits, signing, rng=fixed_rng(b"trustroot-kat"))
    digest = hashlib.sha256(enc.tlv_value + enc.update(KAT_PAYLOAD)).hexdigest()
    assert digest == KAT[(signing, bits)]


def test_the_rng_order_is_image_key_then_ephemeral_key() -> None:
    image_key = bytes(range(16))
    scalar = (7).to_bytes(32, "big")
    drawn = iter([image_key, scalar])
    enc = make_encryptor(P256_KEY.public_key(), 128, "ecdsa-p256", rng=lambda n: next(drawn))
    expected_point = ec.derive_private_key(7, ec.SECP256R1()).public_key()
    assert enc.tlv_value[:65] == expected_point.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)


def test_an_out_of_range_p256_scalar_is_drawn_again() -> None:
    drawn = iter([bytes(16), bytes(32), b"\xff" * 32, (5).to_bytes(32, "big")])
    enc = make_encryptor(P256_KEY.public_key(), 128, "ecdsa-p256", rng=lambda n: next(drawn))
    make_decryptor(P256_KEY, TLV_ENCEC256, enc.tlv_value, 128)


def test_a_broken_rng_is_refused() -> None:
    with pytest.raises(UsageError, match="no valid P-256 scalar"):
        make_encryptor(P256_KEY.public_key(), 128, "ecdsa-p256", rng=lambda n: b"\xff" * n)
    with pytest.raises(UsageError, match="returned 3 bytes where 16 were asked for"):
        make_encryptor(P256_KEY.public_key(), 128, "ecdsa-p256", rng=lambda n: b"abc")


# --- arguments ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("public", "signing", "words"),
    [
        (P256_KEY.public_key(), "ed25519", "ecies-p256 encryption with ed25519 signatures"),
        (X25519_KEY.public_key(), "ecdsa-p256", "ecies-x25519 encryption with ecdsa-p256 signatures"),
        (P256_KEY.public_key(), "rsa-3072", "the pair rsa-3072 + ecies-p256 is refused"),
        (P256_KEY.public_key(), "ecdsa-p384", "the pair ecdsa-p384 + ecies-p256 is refused"),
        (X25519_KEY.public_key(), "none", "the pair none + ecies-x25519 is refused"),
    ],
)
def test_pairs_mcuboot_cannot_boot_are_refused(public: Any, signing: str, words: str) -> None:
    with pytest.raises(UsageError, match=re.escape(words)) as caught:
        make_encryptor(public, 128, signing)
    assert "ecdsa-p256 + ecies-p256, ed25519 + ecies-x25519" in str(caught.value)


def test_the_allowed_pairs_are_the_lints() -> None:
    from trustroot.context.lint import ALLOWED_ENCRYPTION_PAIRS

    for signing, enc in ALLOWED_ENCRYPTION_PAIRS:
        check_encryption_pair(signing, enc)
    check_encryption_pair(Algorithm.ED25519, Algorithm.ECIES_X25519)  # the enums are accepted too


@pytest.mark.parametrize(
    "public",
    [
        ec.generate_private_key(ec.SECP384R1()).public_key(),
        ed25519.Ed25519PrivateKey.generate().public_key(),
    ],
    ids=["p384", "ed25519"],
)
def test_other_key_types_are_refused(public: Any) -> None:
    with pytest.raises(UsageError, match=r"P-256 .* or X25519 .* public key, not"):
        make_encryptor(public, 128, "ecdsa-p256")


@pytest.mark.parametrize("bits", [0, 192, 512, True])
def test_aes_sizes_other_than_128_and_256_are_refused(bits: Any) -> None:
    with pytest.raises(UsageError, match="AES-128 or AES-256 only"):
        make_encryptor(P256_KEY.public_key(), bits, "ecdsa-p256")
    with pytest.raises(UsageError, match="AES-128 or AES-256 only"):
        make_decryptor(P256_KEY, TLV_ENCEC256, bytes(113), bits)


def test_a_small_order_x25519_public_key_is_refused() -> None:
    with pytest.raises(UsageError, match="small-order point"):
        make_encryptor(x25519.X25519PublicKey.from_public_bytes(bytes(32)), 128, "ed25519")


def test_encryption_algorithm_of() -> None:
    assert encryption_algorithm_of(P256_KEY.public_key()) == "ecies-p256"
    assert encryption_algorithm_of(X25519_KEY.public_key()) == "ecies-x25519"


@pytest.mark.parametrize(
    ("flags", "bits"),
    [(0, None), (0x10, None), (ENCRYPTED_AES128, 128), (ENCRYPTED_AES256 | 0x10, 256)],
)
def test_header_flags_give_the_key_size(flags: int, bits: int | None) -> None:
    assert aes_key_bits_from_flags(flags) == bits


def test_both_encryption_flags_are_refused() -> None:
    with pytest.raises(ImageDecryptionError, match="both AES-128 and AES-256"):
        aes_key_bits_from_flags(ENCRYPTED_AES128 | ENCRYPTED_AES256)


@pytest.mark.parametrize(
    ("tlv_type", "bits", "length"),
    [
        (TLV_ENCEC256, 128, 113),
        (TLV_ENCEC256, 256, 129),
        (TLV_ENCX25519, 128, 80),
        (TLV_ENCX25519, 256, 96),
        (TLV_ENCX25519_SHA512, 128, 112),
        (TLV_ENCX25519_SHA512, 256, 128),
    ],
)
def test_tlv_lengths_are_mcuboots(tlv_type: int, bits: Any, length: int) -> None:
    assert tlv_value_length(tlv_type, bits) == length


def test_the_hkdf_info_is_mcuboots() -> None:
    assert ECIES_INFO == b"MCUBoot_ECIES_v1"


# --- the decryptor: one error, MAC first ----------------------------------------------------------


def _flip(data: bytes, index: int) -> bytes:
    return data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1 :]


def _bad_tlvs(tlv: bytes, pub_len: int) -> dict[str, bytes]:
    return {
        "ephemeral key": _flip(tlv, 5),
        "ephemeral key, first byte": _flip(tlv, 0),
        "tag": _flip(tlv, pub_len + 3),
        "wrapped key": _flip(tlv, len(tlv) - 1),
        "truncated": tlv[:-1],
        "extended": tlv + b"\x00",
        "empty": b"",
        "zeros": bytes(len(tlv)),
    }


@pytest.mark.parametrize(("key", "signing", "tlv_type", "pub_len"), PAIRS)
def test_every_altered_tlv_fails_with_the_one_message(key: Any, signing: str, tlv_type: int, pub_len: int) -> None:
    enc = make_encryptor(key.public_key(), 128, signing)
    messages = set()
    for what, bad in _bad_tlvs(enc.tlv_value, pub_len).items():
        with pytest.raises(ImageDecryptionError) as caught:
            make_decryptor(key, tlv_type, bad, 128)
        assert caught.value.__cause__ is None and caught.value.__suppress_context__, what
        messages.add(str(caught.value))
    assert messages == {f"the image's encryption key TLV {ONE_MESSAGE}"}


def test_wrong_key_wrong_size_and_wrong_type_fail_with_the_one_message() -> None:
    enc = make_encryptor(P256_KEY.public_key(), 128, "ecdsa-p256")
    x_enc = make_encryptor(X25519_KEY.public_key(), 128, "ed25519")
    other_p256 = ec.generate_private_key(ec.SECP256R1())
    cases: list[tuple[Any, int, bytes, Any]] = [
        (other_p256, TLV_ENCEC256, enc.tlv_value, 128),  # another key of the right kind
        (P256_KEY, TLV_ENCEC256, enc.tlv_value, 256),  # the header says another AES size
        (X25519_KEY, TLV_ENCEC256, enc.tlv_value, 128),  # an X25519 key for a P-256 TLV
        (P256_KEY, TLV_ENCX25519, x_enc.tlv_value, 128),  # a P-256 key for an X25519 TLV
        (X25519_KEY, TLV_ENCX25519_SHA512, x_enc.tlv_value + bytes(32), 128),  # the SHA-512 variant
        (ed25519.Ed25519PrivateKey.generate(), TLV_ENCX25519, x_enc.tlv_value, 128),  # not an ECDH key
        (ec.generate_private_key(ec.SECP384R1()), TLV_ENCEC256, enc.tlv_value, 128),  # another curve
        (X25519_KEY, TLV_ENCX25519, bytes(32) + x_enc.tlv_value[32:], 128),  # a small-order point
    ]
    for key, tlv_type, value, bits in cases:
        with pytest.raises(ImageDecryptionError, match=re.escape(ONE_MESSAGE)):
            make_decryptor(key, tlv_type, value, bits)


@pytest.mark.parametrize(("tlv_type", "name"), [(0x30, "ENCRSA2048"), (0x31, "ENCKW"), (0x99, "unknown")])
def test_unsupported_tlv_types_are_named(tlv_type: int, name: str) -> None:
    with pytest.raises(ImageDecryptionError, match=f"0x{tlv_type:02x} \\({name}\\) is not supported"):
        make_decryptor(P256_KEY, tlv_type, bytes(113), 128)


def test_the_mac_is_checked_before_anything_is_unwrapped(monkeypatch: pytest.MonkeyPatch) -> None:
    enc = make_encryptor(P256_KEY.public_key(), 128, "ecdsa-p256")
    streams: list[bytes] = []
    real_ctr = encryption._ctr

    def spy(key: bytes) -> Callable[[bytes], bytes]:
        streams.append(key)
        return real_ctr(key)

    monkeypatch.setattr(encryption, "_ctr", spy)
    with pytest.raises(ImageDecryptionError):
        make_decryptor(P256_KEY, TLV_ENCEC256, _flip(enc.tlv_value, 70), 128)
    assert streams == []  # no AES use at all: the tag failed first
    make_decryptor(P256_KEY, TLV_ENCEC256, enc.tlv_value, 128)
    assert len(streams) == 2  # unwrap the image key, then the body stream


def test_the_error_is_a_trustroot_error() -> None:
    assert issubclass(ImageDecryptionError, TrustrootError)


# --- key handles ----------------------------------------------------------------------------------


def _handle(material: Any, algorithm: Algorithm, status: KeyStatus = KeyStatus.ACTIVE) -> FileKeyHandle:
    info = KeyInfo(
        name="image-encryption-1",
        role=KeyRole.IMAGE_ENCRYPTION,
        algorithm=algorithm,
        backend="file",
        created=datetime(2026, 1, 1, tzinfo=UTC),
        status=status,
    )
    return FileKeyHandle(info, material)


@pytest.mark.parametrize(
    ("key", "algorithm", "signing"),
    [(P256_KEY, Algorithm.ECIES_P256, "ecdsa-p256"), (X25519_KEY, Algorithm.ECIES_X25519, "ed25519")],
)
def test_a_key_handle_decrypts_through_exchange(key: Any, algorithm: Algorithm, signing: str) -> None:
    handle = _handle(key, algorithm)
    enc = make_encryptor(handle.public_key(), 256, signing)
    assert make_decryptor(handle, enc.tlv_type, enc.tlv_value, 256)(enc.update(PAYLOAD)) == PAYLOAD


def test_a_key_handle_of_the_other_type_fails_with_the_one_message() -> None:
    x_enc = make_encryptor(X25519_KEY.public_key(), 128, "ed25519")
    with pytest.raises(ImageDecryptionError, match="does not open"):
        make_decryptor(_handle(P256_KEY, Algorithm.ECIES_P256), TLV_ENCX25519, x_enc.tlv_value, 128)
    with pytest.raises(ImageDecryptionError, match="does not open"):
        make_decryptor(
            _handle(X25519_KEY, Algorithm.ECIES_X25519), TLV_ENCX25519, bytes(32) + x_enc.tlv_value[32:], 128
        )


def test_key_store_refusals_pass_through() -> None:
    """A revoked key is the key store's error, not the image's: it is not masked."""
    enc = make_encryptor(P256_KEY.public_key(), 128, "ecdsa-p256")
    with pytest.raises(KeyStateError, match="revoked"):
        make_decryptor(_handle(P256_KEY, Algorithm.ECIES_P256, KeyStatus.REVOKED), TLV_ENCEC256, enc.tlv_value, 128)
