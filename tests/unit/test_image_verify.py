"""verify_image: the attack matrix, in-process.

For each algorithm one small image (8 KiB payload, security counter, a dependency, padded and
confirmed) is signed once; every single-byte change over header, payload and both TLV areas is
then refused (N of N, counted), as is every truncation, splicing, a wrong key and a key hash
pointing at another key. The trailer after the TLV area is mutable by design and not mutated.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes

from trustroot._mcuboot import (
    ImageVerificationError,
    TlvType,
    encode_tlv,
    parse_image,
)
from trustroot.errors import UnreadableInputError, UsageError
from trustroot.image import load_key_file, sign_image, sign_image_bytes, verify_image
from trustroot.image._crypto import mcuboot_key_bytes
from trustroot.image.encryption import make_encryptor

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "mcuboot" / "inputs"
ALGORITHMS = ("ecdsa-p256", "ecdsa-p384", "ed25519", "rsa-3072")
PAYLOAD = hashlib.shake_256(b"tamper payload").digest(8192)
OPTIONS: dict[str, Any] = {
    "version": "3.1.4+15",
    "header_size": 0x200,
    "pad_header": True,
    "slot_size": 0x2800,
    "confirm": True,
    "security_counter": 9,
    "dependencies": [(1, "2.0.0")],
}


def _key(name: str) -> Any:
    return load_key_file(VECTORS / f"{name}-TEST-ONLY.pem")


@functools.cache
def _other_key(algorithm: str) -> PrivateKeyTypes:
    if algorithm == "ecdsa-p256":
        return ec.generate_private_key(ec.SECP256R1())
    if algorithm == "ecdsa-p384":
        return ec.generate_private_key(ec.SECP384R1())
    if algorithm == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    return rsa.generate_private_key(65537, 3072)


@dataclass(frozen=True)
class Signed:
    algorithm: str
    key: Any
    public: PublicKeyTypes
    data: bytes
    tlv_end: int


@pytest.fixture(scope="module", params=ALGORITHMS)
def signed(request: pytest.FixtureRequest) -> Signed:
    key = _key(request.param)
    data = sign_image_bytes(PAYLOAD, key, **OPTIONS)
    layout = parse_image(data)
    return Signed(request.param, key, key.public_key(), data, layout.tlv_end)


def _refused(data: bytes, keys: list[PublicKeyTypes], **kwargs: Any) -> str | None:
    """The refusal reason, or None if the image verified. Any other exception fails the test."""
    try:
        verify_image(data, keys=keys, **kwargs)
    except ImageVerificationError as exc:
        assert "\n" not in str(exc)
        return str(exc)
    return None


def test_the_untouched_image_verifies(signed: Signed) -> None:
    verified = verify_image(signed.data, keys=[signed.public])
    assert str(verified.version) == "3.1.4+15"
    assert verified.security_counter == 9
    assert [(d.image_id, str(d.min_version)) for d in verified.dependencies] == [(1, "2.0.0+0")]
    assert verified.algorithm == signed.algorithm
    assert verified.layout.trailer is not None and verified.layout.trailer.image_ok == 1
    assert len(signed.data) == 0x2800


def _count_refused(signed: Signed, changes: list[tuple[int, int]]) -> int:
    data = bytearray(signed.data)
    refused = 0
    for position, value in changes:
        original = data[position]
        data[position] = value
        refused += _refused(bytes(data), [signed.public]) is not None
        data[position] = original
    return refused


def test_every_single_byte_change_is_refused(signed: Signed) -> None:
    """Each byte of header, payload and both TLV areas inverted: N of N refused."""
    changes = [(position, signed.data[position] ^ 0xFF) for position in range(signed.tlv_end)]
    assert len(changes) > 8192 + 0x200
    assert _count_refused(signed, changes) == len(changes)


def test_every_value_of_every_structure_byte_is_refused() -> None:
    """Header fields, TLV info and TLV header bytes through all 255 other values; every byte +1.

    One algorithm (Ed25519) suffices: the structure is the same for all, only the signature differs.
    """
    key = _key("ed25519")
    data = sign_image_bytes(PAYLOAD, key, **OPTIONS)
    layout = parse_image(data)
    signed = Signed("ed25519", key, key.public_key(), data, layout.tlv_end)
    positions = list(range(32))
    positions += range(layout.protected_offset, layout.protected_offset + 4)
    positions += range(layout.unprotected_offset, layout.unprotected_offset + 4)
    for tlv in layout.all_tlvs:
        positions += range(tlv.offset, tlv.offset + 4)
    changes = [(p, value) for p in positions for value in range(256) if value != data[p]]
    assert len(changes) == 255 * len(positions) == 255 * (32 + 4 + 4 + 4 * len(layout.all_tlvs))
    assert _count_refused(signed, changes) == len(changes)
    plus_one = [(p, (data[p] + 1) & 0xFF) for p in range(signed.tlv_end)]
    assert _count_refused(signed, plus_one) == len(plus_one)


def test_every_truncation_is_refused(signed: Signed) -> None:
    """Every shorter file is refused, but one: cut exactly at the end of the TLV area, a padded
    image is the same image unpadded (the fill and trailer are not part of what is signed)."""
    reasons = [_refused(signed.data[:n], [signed.public]) for n in range(len(signed.data))]
    accepted = [n for n, reason in enumerate(reasons) if reason is None]
    assert accepted == [signed.tlv_end]
    assert reasons[0] is not None and "empty" in reasons[0]
    assert all(r is not None and "truncated" in r for r in reasons[1 : signed.tlv_end])
    unpadded = sign_image_bytes(PAYLOAD, signed.key, **{**OPTIONS, "confirm": False})
    refused = sum(_refused(unpadded[:n], [signed.public]) is not None for n in range(len(unpadded)))
    assert refused == len(unpadded)


def test_signature_tlvs_spliced_onto_another_image_are_refused(signed: Signed) -> None:
    other = sign_image_bytes(PAYLOAD[::-1], signed.key, **OPTIONS)
    layout, other_layout = parse_image(signed.data), parse_image(other)
    # the other image's header, payload and protected TLVs under this image's TLVs (and the reverse)
    for first, second, split in (
        (other, signed.data, layout.unprotected_offset),
        (signed.data, other, other_layout.unprotected_offset),
    ):
        spliced = first[:split] + second[split:]
        reason = _refused(spliced, [signed.public])
        assert reason is not None and "hash mismatch" in reason
    # only the payload swapped
    spliced = signed.data[: layout.payload_offset] + other[layout.payload_offset : layout.protected_offset]
    spliced += signed.data[layout.protected_offset :]
    assert "hash mismatch" in (_refused(spliced, [signed.public]) or "")


def test_a_wrong_key_is_refused(signed: Signed) -> None:
    other = _other_key(signed.algorithm).public_key()
    assert "signed by another key" in (_refused(signed.data, [other]) or "")
    # and with the right key among others, it verifies
    assert verify_image(signed.data, keys=[other, signed.public]).algorithm == signed.algorithm


def test_a_key_hash_pointing_at_another_key_is_refused(signed: Signed) -> None:
    other = _other_key(signed.algorithm).public_key()
    layout = parse_image(signed.data)
    keyhash = layout.find(TlvType.KEYHASH)[0]
    forged = bytearray(signed.data)
    digest = hashlib.new(verify_image(signed.data, keys=[signed.public]).hash_algorithm, mcuboot_key_bytes(other))
    forged[keyhash.value_offset : keyhash.value_offset + len(keyhash.value)] = digest.digest()
    reason = _refused(bytes(forged), [signed.public, other])
    assert reason is not None and "does not verify under key" in reason


def test_the_security_counter_floor(signed: Signed) -> None:
    assert verify_image(signed.data, keys=[signed.public], min_counter=9).security_counter == 9
    assert "below the floor 10" in (_refused(signed.data, [signed.public], min_counter=10) or "")
    unsigned_counter = sign_image_bytes(PAYLOAD, signed.key, **{**OPTIONS, "security_counter": None})
    assert "no security counter" in (_refused(unsigned_counter, [signed.public], min_counter=0) or "")


# --- signatures absent or odd -----------------------------------------------------------------------------

ED = _key("ed25519")
SMALL = {"version": "1.0.0", "header_size": 0x20, "pad_header": True}


def test_an_unsigned_image_needs_allow_unsigned(caplog: pytest.LogCaptureFixture) -> None:
    data = sign_image_bytes(b"firmware", None, **SMALL)
    assert "signature absent" in (_refused(data, [ED.public_key()]) or "")
    with pytest.raises(UsageError, match="no public key"):
        verify_image(data, keys=[])
    with caplog.at_level(logging.WARNING, logger="trustroot.image.verify"):
        assert verify_image(data, keys=[], allow_unsigned=True).key_id is None
    assert "WITHOUT a key" in caplog.text


def _with_tlvs(data: bytes, extra: bytes) -> bytes:
    """``data`` (unpadded) with ``extra`` TLV bytes appended to its unprotected area."""
    layout = parse_image(data)
    start = layout.unprotected_offset
    total = layout.unprotected_size + len(extra)
    return data[:start] + b"\x07\x69" + total.to_bytes(2, "little") + data[start + 4 :] + extra


def test_two_signatures_either_key_verifies() -> None:
    other = ed25519.Ed25519PrivateKey.generate()
    data = sign_image_bytes(b"firmware" * 10, ED, **SMALL)
    digest = parse_image(data).hash_tlv
    assert digest is not None
    key_hash = hashlib.sha256(mcuboot_key_bytes(other.public_key())).digest()
    second = encode_tlv(TlvType.KEYHASH, key_hash) + encode_tlv(TlvType.ED25519, other.sign(digest.value))
    both = _with_tlvs(data, second)
    assert verify_image(both, keys=[other.public_key()]).algorithm == "ed25519"
    assert verify_image(both, keys=[ED.public_key()]).algorithm == "ed25519"


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        (lambda kh: encode_tlv(TlvType.KEYHASH, kh), "no signature follows"),
        (lambda kh: encode_tlv(TlvType.KEYHASH, kh) + encode_tlv(TlvType.ECDSA_SIG, bytes(70)), "does not verify"),
        (lambda kh: encode_tlv(TlvType.KEYHASH, kh[:16] * 3), "key hash has 48 bytes"),
        (lambda kh: encode_tlv(TlvType.ED25519, bytes(64)), "no key TLV (KEYHASH or PUBKEY) before its signature"),
    ],
)
def test_odd_signature_areas_are_refused(extra: Callable[[bytes], bytes], reason: str) -> None:
    data = sign_image_bytes(b"firmware", None, **SMALL)
    key_hash = hashlib.sha256(mcuboot_key_bytes(ED.public_key())).digest()
    assert reason in (_refused(_with_tlvs(data, extra(key_hash)), [ED.public_key()]) or "")


def test_a_full_public_key_tlv_is_matched() -> None:
    data = sign_image_bytes(b"firmware", ED, **SMALL, public_key_format="full")
    assert verify_image(data, keys=[ED.public_key()]).key_id is not None
    other = ed25519.Ed25519PrivateKey.generate().public_key()
    assert "signed by another key" in (_refused(data, [other]) or "")


def test_keys_that_cannot_verify_images_are_usage_errors() -> None:
    data = sign_image_bytes(b"firmware", ED, **SMALL)
    with pytest.raises(UsageError, match="secp521r1"):
        verify_image(data, keys=[ec.generate_private_key(ec.SECP521R1()).public_key()])


def test_a_key_handle_can_stand_for_its_public_key() -> None:
    class Handle:
        def public_key(self) -> PublicKeyTypes:
            return ED.public_key()

    data = sign_image_bytes(b"firmware", ED, **SMALL)
    with pytest.raises(UsageError):
        verify_image(data, keys=[ED.public_key()], min_counter=-1)
    assert verify_image(data, keys=[ED.public_key()]).size == len(data)
    assert Handle().public_key() == ED.public_key()


# --- encrypted images -------------------------------------------------------------------------------------


def test_encrypted_images_verify_over_the_plaintext(tmp_path: Path) -> None:
    enc = _key("enc-x25519")
    source = tmp_path / "fw.bin"
    source.write_bytes(PAYLOAD[:5001])
    image = tmp_path / "fw.signed.bin"
    encryptor = make_encryptor(enc.public_key(), 256, "ed25519")
    sign_image(source, image, ED, version="1.0.0", header_size=0x200, pad_header=True, encryptor=encryptor)
    data = image.read_bytes()
    verified = verify_image(image, keys=[ED.public_key()], enc_key=enc)
    assert verified.encrypted
    assert PAYLOAD[:64] not in data  # the payload is not in clear
    assert "give the decryption key" not in str(verified)
    assert "its hash can only be checked with the decryption key" in (_refused(data, [ED.public_key()]) or "")
    wrong = _key("enc-p256")
    assert "cannot decrypt" in (_refused(data, [ED.public_key()], enc_key=wrong) or "")
    tampered = bytearray(data)
    tampered[0x200 + 100] ^= 1
    assert "hash mismatch" in (_refused(bytes(tampered), [ED.public_key()], enc_key=enc) or "")


# --- files ----------------------------------------------------------------------------------------------


def test_files_and_hex_files_verify(tmp_path: Path) -> None:
    source = tmp_path / "fw.bin"
    source.write_bytes(os.urandom(3000))
    for name in ("fw.signed.bin", "fw.signed.hex"):
        out = tmp_path / name
        sign_image(source, out, ED, version="1.0.0", header_size=0x200, pad_header=True, hex_addr=0x10000)
        assert verify_image(out, keys=[ED.public_key()]).version.major == 1
        assert verify_image(str(out), keys=[ED.public_key()]).size > 3000


def test_unreadable_files_are_not_verification_errors(tmp_path: Path) -> None:
    with pytest.raises(UnreadableInputError, match="no such file"):
        verify_image(tmp_path / "nope.bin", keys=[ED.public_key()])
    with pytest.raises(UnreadableInputError, match="directory"):
        verify_image(tmp_path, keys=[ED.public_key()])
    bad_hex = tmp_path / "bad.hex"
    bad_hex.write_text(":0100000001FE\n")
    with pytest.raises(ImageVerificationError, match="end-of-file"):
        verify_image(bad_hex, keys=[ED.public_key()])


def test_keys_may_come_from_a_loader_while_the_image_is_hashed(tmp_path: Path) -> None:
    image = tmp_path / "fw.img"
    image.write_bytes(sign_image_bytes(PAYLOAD, ED, **SMALL, security_counter=4))
    assert verify_image(image, keys=lambda: [ED]).security_counter == 4
    with pytest.raises(ImageVerificationError, match="signed by another key"):
        verify_image(image, keys=lambda: [_other_key("ed25519")])
    with pytest.raises(UsageError, match="secp521r1"):
        verify_image(image, keys=lambda: [ec.generate_private_key(ec.SECP521R1())])

    def broken() -> list[Any]:
        raise UnreadableInputError("key file k.pem: no such file")

    with pytest.raises(UnreadableInputError):
        verify_image(image, keys=broken)
    truncated = tmp_path / "short.img"
    truncated.write_bytes(image.read_bytes()[:-1])
    with pytest.raises(ImageVerificationError, match="truncated"):
        verify_image(truncated, keys=lambda: [ED])


def test_io_errors_midway_are_unreadable_input(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from trustroot.image import verify as verify_module

    image = tmp_path / "fw.img"
    image.write_bytes(sign_image_bytes(PAYLOAD, ED, **SMALL))

    def failing(self: object, start: int, end: int) -> Any:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(verify_module._Source, "ranges", failing)
    with pytest.raises(UnreadableInputError, match="Input/output error"):
        verify_image(image, keys=[ED])
