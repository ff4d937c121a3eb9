"""The MCUboot format codec (trustroot._mcuboot): value types, encoding, and every parse refusal."""

from __future__ import annotations

import io
import struct
from collections.abc import Callable

import pytest

from trustroot import _mcuboot as m
from trustroot._mcuboot import (
    BOOT_MAGIC,
    Dependency,
    ImageFormatError,
    ImageHeader,
    ImageVersion,
    TlvType,
    encode_tlv,
    encode_tlv_area,
    parse_image,
    parse_image_stream,
)
from trustroot.errors import TrustrootError

# --- a hand-made image --------------------------------------------------------------------------------


def _image(
    *,
    payload: bytes = b"\xaa" * 64,
    header_size: int = 0x40,
    protected: list[tuple[int, bytes]] | None = None,
    tlvs: list[tuple[int, bytes]] | None = None,
    flags: int = 0,
    tail: bytes = b"",
) -> bytes:
    prot = encode_tlv_area(
        protected if protected is not None else [(TlvType.SEC_CNT, (5).to_bytes(4, "little"))], protected=True
    )
    header = ImageHeader(0, header_size, len(prot), len(payload), flags, ImageVersion(1, 2, 3, 4)).pack()
    unprot = encode_tlv_area(tlvs if tlvs is not None else [(TlvType.SHA256, bytes(32))], protected=False)
    return header + bytes(header_size - 32) + payload + prot + unprot + tail


def test_a_well_formed_image_parses_with_its_layout() -> None:
    data = _image()
    layout = parse_image(data)
    assert layout.header.version == ImageVersion(1, 2, 3, 4)
    assert (layout.payload_offset, layout.payload_size) == (0x40, 64)
    assert layout.protected_offset == 0x80
    assert layout.protected_size == 12
    assert layout.hash_range == (0, 0x80 + 12)
    assert layout.tlv_end == len(data)
    assert layout.security_counter == 5
    assert [t.name for t in layout.protected_tlvs] == ["SEC_CNT"]
    assert layout.hash_tlv is not None and layout.hash_tlv.value_offset == layout.unprotected_offset + 8
    assert layout.trailer is None
    assert parse_image_stream(io.BytesIO(data)) == layout
    assert parse_image(bytearray(data)) == layout
    assert parse_image(memoryview(data)) == layout


# --- value types ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "version"),
    [
        ("1.2.3+4", ImageVersion(1, 2, 3, 4)),
        ("1.2.3", ImageVersion(1, 2, 3, 0)),
        ("1.2", ImageVersion(1, 2, 0, 0)),
        ("7", ImageVersion(7)),
        ("255.255.65535+4294967295", ImageVersion(255, 255, 65535, 4294967295)),
        (" 0.0.0+0 ", ImageVersion(0)),
    ],
)
def test_versions_parse(text: str, version: ImageVersion) -> None:
    assert ImageVersion.parse(text) == version
    assert ImageVersion.parse(str(version)) == version


@pytest.mark.parametrize(
    "text",
    [
        "",
        "1.2.3.4",
        "01.2.3",
        "1.2.3+",
        "a.b.c",
        "256.0.0",
        "0.256.0",
        "0.0.65536",
        "0.0.0+4294967296",
        "-1.0.0",
        "1e3",
    ],
)
def test_bad_versions_are_refused(text: str) -> None:
    with pytest.raises(ImageFormatError, match="version"):
        ImageVersion.parse(text)


def test_versions_order_like_numbers() -> None:
    assert ImageVersion.parse("1.10.0") > ImageVersion.parse("1.9.9+99")


@pytest.mark.parametrize(
    "make",
    [
        lambda: ImageHeader(0, 31, 0, 0, 0, ImageVersion(0)),
        lambda: ImageHeader(0, 32, 2, 0, 0, ImageVersion(0)),
        lambda: ImageHeader(-1, 32, 0, 0, 0, ImageVersion(0)),
        lambda: ImageHeader(0, 0x10000, 0, 0, 0, ImageVersion(0)),
        lambda: ImageHeader(0, 32, 0, 1 << 32, 0, ImageVersion(0)),
        lambda: ImageHeader(0, 32, 0, 0, True, ImageVersion(0)),  # type: ignore[arg-type]
        lambda: Dependency(256, ImageVersion(0)),
    ],
)
def test_invalid_objects_cannot_be_built(make: Callable[[], object]) -> None:
    with pytest.raises(ImageFormatError):
        make()


def test_header_layout_is_mcuboots() -> None:
    header = ImageHeader(0x20000000, 0x200, 0x1C, 0xBB8, 0x24, ImageVersion(1, 2, 3, 4))
    raw = header.pack()
    assert raw == struct.pack("<IIHHIIBBHII", 0x96F3B83D, 0x20000000, 0x200, 0x1C, 0xBB8, 0x24, 1, 2, 3, 4, 0)
    assert ImageHeader.unpack(raw) == header
    assert header.aes_key_bits == 128 and header.encrypted


def test_dependency_encoding_is_imgtools() -> None:
    dep = Dependency(1, ImageVersion(2, 3, 4, 5))
    assert dep.pack() == struct.pack("<B3xBBHI", 1, 2, 3, 4, 5)
    assert Dependency.unpack(dep.pack()) == dep
    with pytest.raises(ImageFormatError):
        Dependency.unpack(b"\x00" * 11)


def test_tlv_encoding() -> None:
    assert encode_tlv(TlvType.SEC_CNT, b"\x01\x00\x00\x00") == b"\x50\x00\x04\x00\x01\x00\x00\x00"
    assert encode_tlv_area([], protected=True) == b""
    assert encode_tlv_area([(0x10, b"x" * 32)], protected=False)[:4] == b"\x07\x69\x28\x00"
    with pytest.raises(ImageFormatError):
        encode_tlv(0x10, b"x" * 0x10000)
    with pytest.raises(ImageFormatError):
        encode_tlv_area([(0xA0, b"x" * 0xFFF0), (0xA1, b"x" * 0x10)], protected=True)


def test_names() -> None:
    assert m.tlv_name(0x22) == "ECDSA_SIG"
    assert m.tlv_name(0xA0) == "0x00a0"
    assert m.flag_names(0x24 | 0x80000000) == ["ENCRYPTED_AES128", "RAM_LOAD", "0x80000000"]


# --- trailer geometry (imgtool's numbers) ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("align", "max_align", "sectors", "encrypted", "size"),
    [
        (1, 8, 128, False, 128 * 3 + 32 + 16),
        (8, 8, 128, False, 128 * 24 + 32 + 16),
        (8, 8, 128, True, 128 * 24 + 32 + 32 + 16),
        (32, 32, 8, False, 8 * 96 + 128 + 32),
        (16, 32, 8, True, 8 * 48 + 64 + 128 + 32),
    ],
)
def test_trailer_sizes(align: int, max_align: int, sectors: int, encrypted: bool, size: int) -> None:
    assert m.trailer_size(align, max_align, max_sectors=sectors, encrypted=encrypted) == size


def test_trailer_overwrite_only_and_bad_alignment() -> None:
    assert m.trailer_size(8, 8, overwrite_only=True) == 32
    with pytest.raises(ImageFormatError):
        m.trailer_size(3, 8)
    with pytest.raises(ImageFormatError):
        m.boot_magic(4)


def test_trailer_bytes_and_magic() -> None:
    assert m.boot_magic(8) == BOOT_MAGIC
    assert m.boot_magic(32) == b"\x20\x00" + m.BOOT_MAGIC_LARGE_ALIGN_SUFFIX
    tail = m.trailer_bytes(64, 8, confirm=True, erased_val=0xFF)
    assert tail[-16:] == BOOT_MAGIC and tail[-24] == 1 and tail.count(0xFF) == 64 - 16 - 1
    assert m.image_ok_offset(32) == -64
    with pytest.raises(ImageFormatError):
        m.trailer_bytes(20, 8, confirm=False, erased_val=0xFF)


def test_a_padded_tail_is_recognised() -> None:
    for max_align, erased in ((8, 0xFF), (32, 0x00)):
        tail = bytes([erased]) * 100 + m.trailer_bytes(200, max_align, confirm=True, erased_val=erased)
        layout = parse_image(_image(tail=tail))
        assert layout.trailer is not None
        assert (layout.trailer.max_align, layout.trailer.image_ok, layout.trailer.erased_value) == (
            max_align,
            1,
            erased,
        )


# --- every refusal ----------------------------------------------------------------------------------------

GOOD = _image()


def _patch(offset: int, value: bytes) -> bytes:
    data = bytearray(GOOD)
    data[offset : offset + len(value)] = value
    return bytes(data)


PROT = 0x40 + 64  # where the protected area starts in GOOD
UNPROT = PROT + 12

REFUSALS: list[tuple[str, bytes, str]] = [
    ("empty", b"", "empty"),
    ("short", GOOD[:20], "truncated"),
    ("bad magic", _patch(0, b"\x00\x00\x00\x00"), "bad header magic"),
    ("header size below 32", _patch(8, struct.pack("<H", 16)), "header size 16"),
    ("header beyond file", _patch(8, struct.pack("<H", 0xFFF0)), "truncated"),
    ("image beyond file", _patch(12, struct.pack("<I", 0xFFFF)), "truncated"),
    ("protected size below its info", _patch(10, struct.pack("<H", 2)), "smaller than its 4-byte info"),
    ("protected size disagrees", _patch(10, struct.pack("<H", 16)), "protected TLV area says 12"),
    ("protected area undeclared", _patch(10, struct.pack("<H", 0)), "declares none"),
    (
        "protected area missing",
        _image(protected=[])[:10] + struct.pack("<H", 8) + _image(protected=[])[12:],
        "holds magic",
    ),
    ("bad TLV info magic", _patch(UNPROT, b"\x00\x00"), "bad TLV info magic"),
    ("TLV area shorter than its info", _patch(UNPROT + 2, struct.pack("<H", 2)), "less than its own info"),
    ("TLV area beyond file", _patch(UNPROT + 2, struct.pack("<H", 200)), "truncated"),
    ("TLV overruns its area", _patch(UNPROT + 6, struct.pack("<H", 40)), "overruns"),
    ("stray bytes", _patch(UNPROT + 2, struct.pack("<H", 42)) + b"\x00\x00", "2 stray bytes"),
    (
        "counter unprotected",
        _image(tlvs=[(TlvType.SHA256, bytes(32)), (TlvType.SEC_CNT, bytes(4))]),
        "must be in the protected area",
    ),
    (
        "vendor TLV unprotected",
        _image(tlvs=[(TlvType.SHA256, bytes(32)), (0xA0, b"x")]),
        "must be in the protected area",
    ),
    ("hash protected", _image(protected=[(TlvType.SHA256, bytes(32))]), "cannot be"),
    ("signature protected", _image(protected=[(TlvType.ED25519, bytes(64))]), "cannot be"),
    ("counter of 3 bytes", _image(protected=[(TlvType.SEC_CNT, bytes(3))]), "has 3 bytes"),
    ("dependency of 8 bytes", _image(protected=[(TlvType.DEPENDENCY, bytes(8))]), "has 8 bytes"),
    ("short hash", _image(tlvs=[(TlvType.SHA256, bytes(31))]), "has 31 bytes"),
    ("odd key hash", _image(tlvs=[(TlvType.SHA256, bytes(32)), (TlvType.KEYHASH, bytes(20))]), "has 20 bytes"),
    ("huge ECDSA signature", _image(tlvs=[(TlvType.SHA256, bytes(32)), (TlvType.ECDSA_SIG, bytes(129))]), "outside"),
    ("empty public key", _image(tlvs=[(TlvType.SHA256, bytes(32)), (TlvType.PUBKEY, b"")]), "is empty"),
    ("two counters", _image(protected=[(TlvType.SEC_CNT, bytes(4)), (TlvType.SEC_CNT, bytes(4))]), "duplicate SEC_CNT"),
    ("two hashes", _image(tlvs=[(TlvType.SHA256, bytes(32)), (TlvType.SHA384, bytes(48))]), "2 hash TLVs"),
    (
        "two key TLVs for encryption",
        _image(tlvs=[(TlvType.SHA256, bytes(32)), (TlvType.ENC_KW, bytes(24)), (TlvType.ENC_EC256, bytes(113))]),
        "2 encryption key TLVs",
    ),
    ("both AES flags", _image(flags=0x0C, tlvs=[(TlvType.SHA256, bytes(32)), (TlvType.ENC_KW, bytes(24))]), "both AES"),
    ("encrypted without a key TLV", _image(flags=0x04), "no encryption key TLV"),
    ("trailing garbage", GOOD + b"\x01\x02", "trailing bytes"),
    ("erased fill without a trailer", GOOD + b"\xff" * 64, "trailing bytes"),
    ("tail too short for a trailer", GOOD + b"\xff" * 4 + BOOT_MAGIC, "too few"),
    (
        "garbage in the fill",
        GOOD + b"\xff" * 40 + b"\x00" + b"\xff" * 50 + m.trailer_bytes(64, 8, confirm=False, erased_val=0xFF),
        "unexpected byte 0x00",
    ),
    (
        "fill neither 0xff nor 0",
        GOOD + b"\x55" * 40 + m.trailer_bytes(64, 8, confirm=False, erased_val=0xFF),
        "unexpected byte 0x55",
    ),
]


@pytest.mark.parametrize(("name", "data", "reason"), REFUSALS, ids=[r[0] for r in REFUSALS])
def test_malformed_images_are_refused_with_the_reason(name: str, data: bytes, reason: str) -> None:
    with pytest.raises(ImageFormatError, match=reason) as caught:
        parse_image(data)
    assert "\n" not in str(caught.value)
    with pytest.raises(ImageFormatError, match=reason):
        parse_image_stream(io.BytesIO(data))


def test_the_error_is_a_trustroot_error() -> None:
    assert issubclass(ImageFormatError, TrustrootError)
    assert issubclass(m.ImageVerificationError, m.ImageError)


def test_a_lenient_tail_is_not_examined() -> None:
    layout = parse_image(GOOD + b"\x01\x02" + b"\xff" * 100, strict_tail=False)
    assert layout.trailer is None and layout.file_size == len(GOOD) + 102
    slot = GOOD + b"\x00" * 7 + m.trailer_bytes(64, 8, confirm=True, erased_val=0xFF)
    layout = parse_image(slot, strict_tail=False)
    assert layout.trailer is not None and layout.trailer.erased_value is None
    tiny = GOOD + b"\xff" * 2 + BOOT_MAGIC
    assert parse_image(tiny, strict_tail=False).trailer is None


def test_a_stream_that_shrinks_is_refused() -> None:
    class Shrinking(io.BytesIO):
        def read(self, size: int | None = -1, /) -> bytes:
            return super().read(size)[:-1] if size and size > 8 else super().read(size)

    with pytest.raises(ImageFormatError, match="cannot read"):
        parse_image_stream(Shrinking(GOOD))


def test_dependencies_and_unknown_protected_tlvs() -> None:
    dep = Dependency(3, ImageVersion(1, 0, 0, 0))
    data = _image(protected=[(TlvType.DEPENDENCY, dep.pack()), (TlvType.DEPENDENCY, dep.pack()), (0xA0, b"vendor")])
    layout = parse_image(data)
    assert layout.dependencies == (dep, dep)
    assert layout.security_counter is None
    assert [t.type for t in layout.find(0xA0)] == [0xA0]
    assert layout.enc_tlv is None
