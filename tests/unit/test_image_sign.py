"""sign_image: options, refusals, key kinds (objects, loaders, key store handles), HEX, atomic output."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from trustroot._mcuboot import (
    IMAGE_F_NON_BOOTABLE,
    IMAGE_F_RAM_LOAD,
    IMAGE_F_ROM_FIXED,
    Dependency,
    ImageFormatError,
    ImageVersion,
    TlvType,
    parse_image,
)
from trustroot.errors import KeyFileCorruptError, KeyStateError, UnreadableInputError, UsageError, WrongSecretError
from trustroot.image import load_key_file, sign_image, sign_image_bytes, verify_image
from trustroot.image.hexfile import iter_hex, scan_hex

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "mcuboot" / "inputs"
ED = load_key_file(VECTORS / "ed25519-TEST-ONLY.pem")
P384 = load_key_file(VECTORS / "ecdsa-p384-TEST-ONLY.pem")
BASE: dict[str, Any] = {"version": "1.0.0", "header_size": 0x200, "pad_header": True}


@pytest.fixture
def firmware(tmp_path: Path) -> Path:
    path = tmp_path / "fw.bin"
    path.write_bytes(hashlib.shake_256(b"fw").digest(4000))
    return path


# --- options ---------------------------------------------------------------------------------------------

BAD_OPTIONS: list[tuple[dict[str, Any], str]] = [
    ({"version": "1.2.3.4"}, "version"),
    ({"header_size": 16}, "header size 16"),
    ({"header_size": 0x10000}, "header size"),
    ({"align": 3}, "alignment 3"),
    ({"align": 16, "max_align": 8}, "maximum alignment 8"),
    ({"max_align": 12}, "maximum alignment 12"),
    ({"erased_val": 0x55}, "erased value"),
    ({"max_sectors": 0}, "maximum sectors"),
    ({"pad": True}, "needs the slot size"),
    ({"confirm": True}, "needs the slot size"),
    ({"slot_size": 0}, "slot size 0"),
    ({"load_addr": 0x1000, "rom_fixed": 0x8000}, "cannot both"),
    ({"load_addr": 1 << 32}, "load address"),
    ({"rom_fixed": -1}, "fixed ROM address"),
    ({"security_counter": 1 << 32}, "security counter"),
    ({"security_counter": True}, "security counter"),
    ({"public_key_format": "pem"}, "public key format"),
    ({"hash_algorithm": "md5"}, "hash 'md5'"),
    ({"hash_algorithm": "sha384"}, "cannot sign a sha384 image"),
    ({"dependencies": [(1, "x")]}, "dependency"),
]


@pytest.mark.parametrize(("options", "reason"), BAD_OPTIONS, ids=[r for _, r in BAD_OPTIONS])
def test_bad_options_are_usage_errors(options: dict[str, Any], reason: str) -> None:
    with pytest.raises(UsageError, match=reason):
        sign_image_bytes(b"fw", ED, **{**BASE, **options})


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        (ec.generate_private_key(ec.SECP521R1()), "secp521r1"),
        (rsa.generate_private_key(65537, 2048), "RSA-3072, not RSA-2048"),
        ("a string", "cannot sign"),
    ],
)
def test_keys_mcuboot_cannot_use_are_refused(key: Any, reason: str) -> None:
    with pytest.raises(UsageError, match=reason):
        sign_image_bytes(b"fw", key, **BASE)


def test_header_flags_and_fields() -> None:
    layout = parse_image(sign_image_bytes(b"fw", ED, **BASE, load_addr=0x20000000, non_bootable=True))
    assert layout.header.load_addr == 0x20000000
    assert layout.header.flags == IMAGE_F_RAM_LOAD | IMAGE_F_NON_BOOTABLE
    layout = parse_image(sign_image_bytes(b"fw", ED, **BASE, rom_fixed=0x8000))
    assert (layout.header.load_addr, layout.header.flags) == (0x8000, IMAGE_F_ROM_FIXED)


def test_protected_tlvs_are_counter_then_dependencies() -> None:
    deps = [Dependency(2, ImageVersion(1)), (1, "2.0.0"), (3, ImageVersion.parse("0.1.2+3"))]
    layout = parse_image(sign_image_bytes(b"fw", ED, **BASE, security_counter=77, dependencies=deps))
    assert [t.type for t in layout.protected_tlvs] == [TlvType.SEC_CNT] + [TlvType.DEPENDENCY] * 3
    assert layout.security_counter == 77
    assert [d.image_id for d in layout.dependencies] == [2, 1, 3]


def test_unprotected_tlvs_are_hash_key_signature() -> None:
    layout = parse_image(sign_image_bytes(b"fw", ED, **BASE))
    assert [t.type for t in layout.tlvs] == [TlvType.SHA256, TlvType.KEYHASH, TlvType.ED25519]
    layout = parse_image(sign_image_bytes(b"fw", ED, **BASE, public_key_format="full", hash_algorithm="sha512"))
    assert [t.type for t in layout.tlvs] == [TlvType.SHA512, TlvType.PUBKEY, TlvType.ED25519]
    layout = parse_image(sign_image_bytes(b"fw", None, **BASE, hash_algorithm="sha384"))
    assert [t.type for t in layout.tlvs] == [TlvType.SHA384]


def test_without_pad_header_the_header_area_must_be_zeros() -> None:
    zeros = bytes(0x200) + b"firmware"
    layout = parse_image(sign_image_bytes(zeros, ED, version="1.0.0", header_size=0x200))
    assert layout.payload_size == 8
    with pytest.raises(ImageFormatError, match="not all zeros") as caught:
        sign_image_bytes(b"\x01" + zeros[1:], ED, version="1.0.0", header_size=0x200)
    assert caught.value.hint is not None and "--pad-header" in caught.value.hint
    with pytest.raises(ImageFormatError, match="shorter than the header size"):
        sign_image_bytes(bytes(0x100), ED, version="1.0.0", header_size=0x200)


def test_an_image_that_does_not_fit_its_slot_is_refused(firmware: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.bin"
    with pytest.raises(UsageError, match="exceeds the slot size 0x1000"):
        sign_image(firmware, out, ED, **BASE, slot_size=0x1000)
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["fw.bin"]  # no temp file left either
    # it fits exactly when the slot holds image, TLVs and trailer
    image = sign_image_bytes(firmware.read_bytes(), ED, **BASE)
    slot = len(image) + 128 * 3 + 32 + 16
    assert len(sign_image_bytes(firmware.read_bytes(), ED, **BASE, slot_size=slot, pad=True)) == slot
    with pytest.raises(UsageError, match="exceeds"):
        sign_image_bytes(firmware.read_bytes(), ED, **BASE, slot_size=slot - 1)


def test_padding_and_confirmation(firmware: Path) -> None:
    data = firmware.read_bytes()
    padded = sign_image_bytes(data, ED, **BASE, slot_size=0x2000, pad=True)
    confirmed = sign_image_bytes(data, ED, **BASE, slot_size=0x2000, confirm=True, align=8)
    for image, image_ok in ((padded, 0xFF), (confirmed, 0x01)):
        layout = parse_image(image)
        assert len(image) == 0x2000
        assert layout.trailer is not None and layout.trailer.image_ok == image_ok
    erased0 = parse_image(sign_image_bytes(data, ED, **BASE, slot_size=0x2000, pad=True, erased_val=0))
    assert erased0.trailer is not None and erased0.trailer.erased_value == 0


# --- keys -----------------------------------------------------------------------------------------------


def test_a_loader_streams_while_the_key_loads_even_when_the_guess_is_wrong(firmware: Path, tmp_path: Path) -> None:
    """ECDSA P-384 needs SHA-384: a loader's SHA-256 guess is redone, the output is the same."""
    direct = sign_image(firmware, tmp_path / "a.bin", P384, **BASE)
    loaded = sign_image(firmware, tmp_path / "b.bin", lambda: P384, **BASE)
    assert direct.hash_algorithm == loaded.hash_algorithm == "sha384"
    assert direct.digest == loaded.digest
    assert verify_image(tmp_path / "b.bin", keys=[P384.public_key()]).algorithm == "ecdsa-p384"
    ed = sign_image(firmware, tmp_path / "c.bin", lambda: ED, **BASE, output_sha256=True)
    assert (tmp_path / "c.bin").read_bytes() == sign_image_bytes(firmware.read_bytes(), ED, **BASE)
    assert ed.sha256 == hashlib.sha256((tmp_path / "c.bin").read_bytes()).hexdigest()


def test_a_failing_loader_leaves_nothing_behind(firmware: Path, tmp_path: Path) -> None:
    def broken() -> Any:
        raise WrongSecretError("the password does not unlock key file k.pem")

    with pytest.raises(WrongSecretError):
        sign_image(firmware, tmp_path / "out.bin", broken, **BASE)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fw.bin"]


def test_key_store_handles_sign(product_dir: Path, firmware: Path, tmp_path: Path) -> None:
    from trustroot.keys._interface import KeyRole
    from trustroot.keys.passphrase import fixed_secrets
    from trustroot.product import open_product

    product = open_product(
        product_dir / "security-context.toml", secrets=fixed_secrets(os.environ["TRUSTROOT_PASSPHRASE"])
    )
    handle = product.keys.unlock(product.keys.active(KeyRole.FIRMWARE_SIGNING).name)
    signed = sign_image(firmware, tmp_path / "out.bin", handle, **BASE)
    assert signed.key_id == handle.info.fingerprint
    assert verify_image(tmp_path / "out.bin", keys=[handle]).key_id == handle.info.fingerprint
    product.keys.revoke(handle.info.name, "test")
    with pytest.raises(KeyStateError):
        sign_image(firmware, tmp_path / "again.bin", handle, **BASE)
    assert not (tmp_path / "again.bin").exists()


def test_a_handle_holding_another_key_than_recorded_is_refused() -> None:
    class Liar:
        class info:  # noqa: N801 - stands in for KeyInfo
            name = "liar"

            class algorithm:  # noqa: N801
                value = "ecdsa-p256"

        def public_key(self) -> Any:
            return ED.public_key()

        def sign(self, data: bytes) -> bytes:
            return ED.sign(data)

        def sign_digest(self, digest: bytes) -> bytes:
            raise AssertionError

        def mac(self, data: bytes) -> bytes:
            raise AssertionError

        def exchange(self, peer: Any) -> bytes:
            raise AssertionError

    with pytest.raises(KeyStateError, match="recorded as ecdsa-p256"):
        sign_image_bytes(b"fw", Liar(), **BASE)  # type: ignore[arg-type]


def test_pem_key_files(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization

    key = ed25519.Ed25519PrivateKey.generate()
    encrypted = tmp_path / "enc.pem"
    encrypted.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"correct horse"),
        )
    )
    assert load_key_file(encrypted, "correct horse").public_key() == key.public_key()
    with pytest.raises(WrongSecretError):
        load_key_file(encrypted, "wrong")
    with pytest.raises(WrongSecretError):
        load_key_file(encrypted)
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    with pytest.raises(KeyFileCorruptError):
        load_key_file(garbage)
    with pytest.raises(UnreadableInputError):
        load_key_file(tmp_path / "missing.pem")


# --- files ----------------------------------------------------------------------------------------------


def test_files_and_memory_give_the_same_image(firmware: Path, tmp_path: Path) -> None:
    signed = sign_image(
        firmware, tmp_path / "o.bin", ED, **BASE, slot_size=0x2000, confirm=True, security_counter=3, output_sha256=True
    )
    data = (tmp_path / "o.bin").read_bytes()
    expected = sign_image_bytes(firmware.read_bytes(), ED, **BASE, slot_size=0x2000, confirm=True, security_counter=3)
    assert data == expected
    assert signed.size == len(data) and signed.sha256 == hashlib.sha256(data).hexdigest()
    assert (signed.version, signed.security_counter, signed.algorithm) == (ImageVersion(1), 3, "ed25519")
    assert signed.key_hash is not None and len(signed.key_hash) == 32
    assert oct((tmp_path / "o.bin").stat().st_mode & 0o777) == "0o644"


def test_unreadable_inputs(tmp_path: Path) -> None:
    with pytest.raises(UnreadableInputError, match="no such file"):
        sign_image(tmp_path / "missing.bin", tmp_path / "o.bin", ED, **BASE)
    with pytest.raises(UnreadableInputError, match="directory"):
        sign_image(tmp_path, tmp_path / "o.bin", ED, **BASE)
    (tmp_path / "fw.bin").write_bytes(b"fw")
    with pytest.raises(UnreadableInputError, match="cannot be written"):
        sign_image(tmp_path / "fw.bin", tmp_path / "no" / "dir" / "o.bin", ED, **BASE)


def test_hex_in_and_out(tmp_path: Path) -> None:
    from trustroot.image.hexfile import HexWriter

    source = tmp_path / "app.hex"
    with source.open("wb") as handle:
        writer = HexWriter(handle)
        writer.write(0x08000000, bytes(0x200) + b"A" * 1000)
        writer.write(0x08000000 + 0x200 + 1000 + 0x20, b"B" * 300)
        writer.close()
    out_bin, out_hex = tmp_path / "o.bin", tmp_path / "o.hex"
    sign_image(source, out_bin, ED, version="1.0.0", header_size=0x200)
    sign_image(source, out_hex, ED, version="1.0.0", header_size=0x200, slot_size=0x1000, confirm=True)
    binary = out_bin.read_bytes()
    assert binary[0x200 + 1000 : 0x200 + 1000 + 0x20] == b"\xff" * 0x20  # the gap, filled with 0xff
    extent = scan_hex(out_hex)
    assert (extent.start, extent.end) == (0x08000000, 0x08001000)
    from_hex = b"".join(iter_hex(out_hex))
    assert from_hex[: len(binary)] == binary
    assert verify_image(out_hex, keys=[ED.public_key()]).layout.trailer is not None


def test_hex_output_needs_an_address(firmware: Path, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="has no address") as caught:
        sign_image(firmware, tmp_path / "o.hex", ED, **BASE)
    assert "--hex-addr" in (caught.value.hint or "")
    low = tmp_path / "low.hex"
    low.write_text(":10010000" + "00" * 16 + "EF\n:00000001FF\n")
    with pytest.raises(UsageError, match="too low"):
        sign_image(low, tmp_path / "o.hex", ED, **BASE)
    sign_image(firmware, tmp_path / "o.hex", ED, **BASE, hex_addr=0x10000)
    assert scan_hex(tmp_path / "o.hex").start == 0x10000


def test_io_errors_midway_are_unreadable_input(firmware: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from trustroot.image import _stream

    def full(self: object, data: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(_stream.DigestingFile, "write", full)
    with pytest.raises(UnreadableInputError, match="No space left on device"):
        sign_image(firmware, tmp_path / "o.bin", ED, **BASE)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fw.bin"]
