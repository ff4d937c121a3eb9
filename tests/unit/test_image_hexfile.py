"""The streaming Intel HEX reader and the intelhex-compatible writer."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from trustroot._mcuboot import ImageFormatError
from trustroot.errors import UnreadableInputError
from trustroot.image.hexfile import HexFileError, HexWriter, is_hex_path, iter_hex, scan_hex


def record(kind: int, address: int, data: bytes) -> str:
    body = bytes([len(data), (address >> 8) & 0xFF, address & 0xFF, kind]) + data
    return ":" + (body + bytes([-sum(body) & 0xFF])).hex().upper()


def write(tmp_path: Path, *lines: str, name: str = "f.hex") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


EOF = ":00000001FF"


def test_linear_and_segment_addressing(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        record(0x02, 0, b"\x10\x00"),  # segment 0x1000: base 0x10000
        record(0x00, 0x0010, b"abcd"),
        "",
        record(0x04, 0, b"\x00\x02"),  # linear: base 0x20000
        record(0x00, 0x0000, b"efgh"),
        record(0x05, 0, bytes.fromhex("08000101")),
        EOF,
    )
    extent = scan_hex(path)
    assert (extent.start, extent.end, extent.start_address) == (0x10010, 0x20004, 0x08000101)
    data = b"".join(iter_hex(path))
    assert data[:4] == b"abcd" and data[-4:] == b"efgh" and len(data) == 0x20004 - 0x10010
    # a segment record that moves the base back below the data before it is refused
    back = write(
        tmp_path,
        record(0x04, 0, b"\x08\x00"),
        record(0, 0, b"ab"),
        record(0x02, 0, b"\x80\x01"),
        record(0, 0, b"cd"),
        EOF,
        name="back.hex",
    )
    with pytest.raises(HexFileError, match="line 4: address 0x80010 is below"):
        scan_hex(back)


def test_gaps_are_filled_and_chunks_are_bounded(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        record(0x04, 0, b"\x00\x01"),
        record(0x00, 0x0000, b"abcd"),
        record(0x00, 0x0008, b"efgh"),
        record(0x00, 0x0100, b"ij"),
        record(0x03, 0, bytes.fromhex("12345678")),
        EOF,
    )
    extent = scan_hex(path)
    assert (extent.start, extent.end, extent.size) == (0x10000, 0x10102, 0x102)
    assert extent.start_address == 0x1234 * 16 + 0x5678
    data = b"".join(iter_hex(path, fill=0x00))
    assert data[:12] == b"abcd\x00\x00\x00\x00efgh" and data[-2:] == b"ij" and len(data) == 0x102
    chunks = list(iter_hex(path, chunk_size=16))
    assert all(len(c) <= 16 for c in chunks) and b"".join(chunks) == b"".join(iter_hex(path))
    assert b"".join(chunks)[4:8] == b"\xff" * 4


BAD: list[tuple[list[str], str]] = [
    (["abc", EOF], "line 1: a record must start with ':'"),
    ([":0", EOF], "line 1: not an even number of hex digits"),
    ([":zz", EOF], "line 1: not an even number"),
    ([":0100", EOF], "line 1: the record length"),
    ([":0400000001FB", EOF], "line 1: the record length"),
    ([record(0, 0, b"ab")[:-2] + "00", EOF], "line 1: bad checksum"),
    ([record(0x06, 0, b""), EOF], "unknown record type 0x06"),
    ([record(0x04, 0, b"\x00"), EOF], "malformed extended linear address"),
    ([record(0x04, 2, b"\x00\x00"), EOF], "malformed extended linear address"),
    ([record(0x05, 0, b"\x00\x00"), EOF], "malformed start linear address"),
    ([record(0x01, 0, b"\x00")], "malformed end-of-file"),
    ([record(0, 0, b"ab"), EOF, record(0, 2, b"cd")], "line 3: data after the end-of-file record"),
    ([record(0, 0, b"ab")], "no end-of-file record"),
    ([record(0, 0x10, b"ab"), record(0, 0x08, b"cd"), EOF], "line 2: address 0x8 is below the end of the data"),
    ([record(0, 0x10, b"abcd"), record(0, 0x12, b"cd"), EOF], "line 2: address 0x12"),
    ([EOF], "no data records"),
    (["x" * 1000, EOF], "line 1: line too long"),
]


@pytest.mark.parametrize(("lines", "reason"), BAD, ids=[r for _, r in BAD])
def test_malformed_files_are_refused_naming_the_line(tmp_path: Path, lines: list[str], reason: str) -> None:
    path = write(tmp_path, *lines)
    with pytest.raises(HexFileError, match=reason) as caught:
        scan_hex(path)
    assert isinstance(caught.value, ImageFormatError)
    assert str(path) in str(caught.value)


def test_the_span_is_bounded(tmp_path: Path) -> None:
    path = write(tmp_path, record(0, 0, b"a"), record(0x04, 0, b"\x10\x00"), record(0, 0, b"b"), EOF)
    with pytest.raises(HexFileError, match="spans more than the limit"):
        scan_hex(path)
    assert scan_hex(path, max_span=0x10000001).size == 0x10000001


def test_unreadable(tmp_path: Path) -> None:
    with pytest.raises(UnreadableInputError):
        scan_hex(tmp_path / "missing.hex")


def test_hex_paths() -> None:
    assert is_hex_path("a.hex") and is_hex_path(Path("B.HEX"))
    assert not is_hex_path("a.bin") and not is_hex_path("hex")


# --- the writer -------------------------------------------------------------------------------------------


def _written(*parts: tuple[int, bytes]) -> list[str]:
    out = io.BytesIO()
    writer = HexWriter(out)
    for address, data in parts:
        writer.write(address, data)
    writer.close()
    return out.getvalue().decode().splitlines()


def test_records_of_16_bytes_cut_at_holes_and_64k() -> None:
    lines = _written((0x0FFF8, bytes(range(40))), (0x10030, b"\x01\x02"))
    assert lines[0] == ":020000040000FA"  # an address above 64 KiB later: announced first
    assert lines[1].startswith(":08FFF800")  # up to the 64 KiB boundary
    assert lines[2] == ":020000040001F9"
    assert [line[:9] for line in lines[3:6]] == [":10000000", ":10001000", ":02003000"]
    assert lines[-1] == ":00000001FF"


def test_small_files_have_no_extended_address_and_writes_merge() -> None:
    lines = _written((0x100, b"a" * 10), (0x10A, b"b" * 10), (0x120, b"c"))
    assert [line[:9] for line in lines[:-1]] == [":10010000", ":04011000", ":01012000"]


def test_a_first_address_above_64k_gets_one_extended_record() -> None:
    lines = _written((0x08000000, b"x" * 3))
    assert lines[:2] == [":020000040800F2", record(0, 0, b"xxx")]


def test_overlapping_writes_are_a_programming_error() -> None:
    writer = HexWriter(io.BytesIO())
    writer.write(0x10, b"abc")
    writer.write(0x20, b"")
    with pytest.raises(ValueError, match="overlaps"):
        writer.write(0x11, b"x")


def test_written_files_read_back(tmp_path: Path) -> None:
    path = tmp_path / "w.hex"
    payload = bytes(range(256)) * 300
    with path.open("wb") as handle:
        writer = HexWriter(handle)
        writer.write(0xFFF0, payload)
        writer.write(0xFFF0 + len(payload) + 5, b"tail")
        writer.close()
    assert b"".join(iter_hex(path)) == payload + b"\xff" * 5 + b"tail"
