"""image_info / read_layout, the recipes' odd corners, and the private streaming helpers' failure paths."""

from __future__ import annotations

import io
import os
import threading
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa, x25519

from trustroot._mcuboot import ImageFormatError, ImageVersion, Tlv, parse_image
from trustroot.errors import EvidenceError, KeyFileCorruptError, UnreadableInputError, UsageError
from trustroot.image import _stream, image_info, load_key_file, read_layout, recipes, sign, sign_image, sign_image_bytes
from trustroot.image._crypto import scheme_for, signature_verifies
from trustroot.image.hexfile import iter_hex

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "mcuboot"
ED = load_key_file(VECTORS / "inputs" / "ed25519-TEST-ONLY.pem")
BASE: dict[str, Any] = {"version": "1.0.0", "header_size": 0x200, "pad_header": True}


def test_info_of_binary_hex_and_bytes() -> None:
    for name in ("ed25519-hex.hex", "ed25519-padded-confirmed.bin"):
        info = image_info(VECTORS / name)
        assert info["verified"] is False and info["trailer"] is not None
    data = (VECTORS / "ecdsa-p256-counter-deps.bin").read_bytes()
    info = image_info(data)
    assert info["security_counter"] == 42 and info["key_hash"] is not None
    assert [t["name"] for t in info["protected_tlvs"]] == ["SEC_CNT", "DEPENDENCY", "DEPENDENCY"]  # type: ignore[index]
    unsigned = image_info(VECTORS / "unsigned.bin")
    assert unsigned["key_hash"] is None and [t["name"] for t in unsigned["tlvs"]] == ["SHA256"]  # type: ignore[index]


def test_info_refusals(tmp_path: Path) -> None:
    with pytest.raises(UnreadableInputError, match="directory"):
        read_layout(tmp_path)
    with pytest.raises(UnreadableInputError, match="no such file"):
        read_layout(tmp_path / "missing.bin")
    (tmp_path / "x.bin").write_bytes(b"not an image at all, not even close to one")
    with pytest.raises(ImageFormatError, match=r"x\.bin: bad header magic"):
        read_layout(tmp_path / "x.bin")


def test_codec_helpers() -> None:
    assert ImageVersion(1, 2, 3, 4).pack() == b"\x01\x02\x03\x00\x04\x00\x00\x00"
    assert Tlv(0x10, bytes(32), 0, protected=False).size == 36
    slot = sign_image_bytes(b"fw", ED, **BASE) + b"\xff" * 40 + b"\x10\x00" + bytes(14)  # no magic
    assert parse_image(slot, strict_tail=False).trailer is None
    odd_align = (
        sign_image_bytes(b"fw", ED, **BASE)
        + b"\xff" * 200
        + b"\x40\x00"
        + bytes.fromhex("2de15d29410b8d77679c110f1f8a")
    )
    assert parse_image(odd_align, strict_tail=False).trailer is None  # 64 is no maximum alignment


def test_crypto_helpers_refuse_keys_mcuboot_has_no_use_for() -> None:
    with pytest.raises(UsageError, match="RSA-4096"):
        scheme_for(rsa.generate_private_key(65537, 4096).public_key())
    with pytest.raises(UsageError, match="X25519"):
        scheme_for(x25519.X25519PrivateKey.generate().public_key())
    assert not signature_verifies(x25519.X25519PrivateKey.generate().public_key(), "sha256", bytes(32), bytes(64))


# --- streaming failure paths --------------------------------------------------------------------------------


def test_a_file_that_shrinks_while_read_is_refused() -> None:
    chunks = _stream.file_chunks(io.BufferedReader(io.BytesIO(b"abc")), 10, "input x")  # type: ignore[arg-type]
    with pytest.raises(UnreadableInputError, match="shrank"):
        list(chunks)


def test_a_body_shorter_than_announced_is_refused() -> None:
    plan = sign._plan(
        **{**BASE, "slot_size": None, "pad": False, "confirm": False, "align": 1, "max_align": None},
        max_sectors=128,
        erased_val=0xFF,
        load_addr=0,
        rom_fixed=None,
        non_bootable=False,
        security_counter=None,
        dependencies=(),
        public_key_format="hash",
        hash_algorithm=None,
        hex_addr=None,
    )
    body = _stream.Input(10, lambda: iter([b"abc"]))
    frame = sign._frame(plan, body, None)
    import hashlib

    with pytest.raises(UnreadableInputError, match="changed while it was read"):
        sign._feed(frame, body, hashlib.sha256(), None)
    background = sign._Background(
        frame, body, hashlib.sha256(), _stream.BinarySink(_stream.DigestingFile(io.BytesIO(), digest=False))
    )
    with pytest.raises(UnreadableInputError, match="changed while it was read"):
        background.join()


def test_the_split_head_of_small_chunks() -> None:
    head, rest = _stream.split_head(iter([b"ab", b"cd", b"efgh", b"ij"]), 5)
    assert head == b"abcde" and b"".join(rest) == b"fghij"
    head, rest = _stream.split_head(iter([b"abc"]), 5)
    assert head == b"abc" and b"".join(rest) == b""


def test_an_image_above_4_gib_is_refused(tmp_path: Path) -> None:
    huge = tmp_path / "huge.bin"
    with huge.open("wb") as handle:
        handle.truncate((1 << 32) + 1)  # sparse; refused before any byte is read
    with pytest.raises(UsageError, match="4 GiB"):
        sign_image(huge, tmp_path / "o.bin", ED, **BASE)


def test_hex_output_padded_but_not_confirmed_and_moved_for_the_header(tmp_path: Path) -> None:
    source = VECTORS / "inputs" / "app.hex"
    out = tmp_path / "o.hex"
    sign_image(source, out, ED, **BASE, slot_size=0x4000, pad=True)
    data = b"".join(iter_hex(out))
    layout = parse_image(data)
    assert layout.trailer is not None and layout.trailer.image_ok == 0xFF
    from trustroot.image.hexfile import scan_hex

    assert scan_hex(out).start == 0x08000000 - 0x200


def test_a_cancelled_background_stream_stops() -> None:
    plan = sign._plan(
        **BASE,
        slot_size=None,
        pad=False,
        confirm=False,
        align=1,
        max_align=None,
        max_sectors=128,
        erased_val=0xFF,
        load_addr=0,
        rom_fixed=None,
        non_bootable=False,
        security_counter=None,
        dependencies=(),
        public_key_format="hash",
        hash_algorithm=None,
        hex_addr=None,
    )
    gate = threading.Event()

    def chunks() -> Any:
        yield b"a"
        gate.wait(5)
        yield b"b"

    body = _stream.Input(2, chunks)
    frame = sign._frame(plan, body, None)
    import hashlib

    sink = _stream.BinarySink(_stream.DigestingFile(io.BytesIO(), digest=False))
    background = sign._Background(frame, body, hashlib.sha256(), sink)
    background._cancel.set()
    gate.set()
    background.cancel()
    assert sink.size == 0x200 + 1


# --- recipes ----------------------------------------------------------------------------------------------


def test_public_key_files(tmp_path: Path) -> None:
    pem = tmp_path / "pub.pem"
    pem.write_bytes(
        ED.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    assert recipes.load_public_key_file(pem) == ED.public_key()
    bad = tmp_path / "bad.pem"
    bad.write_text("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
    with pytest.raises(KeyFileCorruptError):
        recipes.load_public_key_file(bad)


def test_passwords_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMAGE_KEY_PW", "s3cret")
    assert recipes.password_from_env("IMAGE_KEY_PW") == b"s3cret"
    assert recipes.password_from_env(None) is None


def _product(product_dir: Path) -> Any:
    from trustroot.product import open_product

    return open_product(product_dir / "security-context.toml")


def test_the_next_counter_ignores_odd_records_and_refuses_overflow(product_dir: Path) -> None:
    product = _product(product_dir)
    assert recipes.next_security_counter(product) == 1
    product.record("image.signed", "a.img", {"security_counter": None})
    product.record("image.signed", "b.img", {"security_counter": True})
    product.record("image.signed", "c.img", {"security_counter": 41})
    assert recipes.next_security_counter(product) == 42
    product.record("image.signed", "d.img", {"security_counter": 0xFFFFFFFF})
    with pytest.raises(EvidenceError, match="cannot grow"):
        recipes.next_security_counter(product)


def _edit_boot(product_dir: Path, old: str, new: str) -> None:
    context = product_dir / "security-context.toml"
    head, boot = context.read_text().split("[boot]", 1)
    assert old in boot
    context.write_text(head + "[boot]" + boot.replace(old, new, 1))


def test_product_settings(product_dir: Path, tmp_path: Path) -> None:
    source = tmp_path / "fw.bin"
    source.write_bytes(os.urandom(100))
    _edit_boot(product_dir, "anti_rollback = true", "anti_rollback = false")
    request = recipes.SignRequest(source, tmp_path / "a.img", "1.0.0", pad_header=True)
    assert recipes.sign_request(request, _product(product_dir)).security_counter is None
    enc = VECTORS / "inputs" / "enc-p256-TEST-ONLY.pem"
    request = recipes.SignRequest(source, tmp_path / "b.img", "1.0.0", pad_header=True, enc_key_file=enc)
    assert recipes.sign_request(request, _product(product_dir)).encrypted
    with pytest.raises(UsageError, match="--version"):
        recipes.sign_request(recipes.SignRequest(source, tmp_path / "c.img", "one"), None)
    _edit_boot(product_dir, 'signature = "ecdsa-p256"', 'signature = "none"')
    with pytest.raises(UsageError, match="signature = none"):
        recipes.sign_request(
            recipes.SignRequest(source, tmp_path / "d.img", "1.0.0", pad_header=True), _product(product_dir)
        )


def test_no_image_is_left_without_its_evidence(
    product_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    product = _product(product_dir)
    source = tmp_path / "fw.bin"
    source.write_bytes(os.urandom(100))

    def refuse(*args: object) -> None:
        raise EvidenceError("the evidence log is full")

    monkeypatch.setattr(product, "record", refuse)
    request = recipes.SignRequest(source, tmp_path / "o.img", "1.0.0", pad_header=True, security_counter=5)
    with pytest.raises(EvidenceError):
        recipes.sign_request(request, product)
    assert not (tmp_path / "o.img").exists()
