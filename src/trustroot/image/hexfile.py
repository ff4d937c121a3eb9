"""A streaming Intel HEX reader and writer, in bounded memory.

Reading is two passes over the text: :func:`scan_hex` checks every record and returns the
address range; :func:`iter_hex` then yields the bytes from the lowest to the highest address
in chunks, gaps filled with ``fill``. Only what a firmware file needs is accepted::

    :LLAAAATT<data>CC     LL bytes of data, AAAA offset, TT type, CC two's-complement checksum
    00 data               at base + AAAA (no wrap-around)
    01 end of file        no data; nothing but blank lines may follow
    02 extended segment   base = segment * 16
    03 start segment      CS:IP, kept as the start address, not data
    04 extended linear    base = upper 16 bits << 16
    05 start linear       EIP, kept as the start address, not data

Data records must come in ascending address order, without overlap; a file that jumps back is
refused naming the line (most toolchains write ascending files; a reordered file is a red flag).

:class:`HexWriter` writes what imgtool (through the ``intelhex`` package) writes for the same
bytes: 16-byte records starting at the first address, cut at holes and 64 KiB boundaries,
upper-case hex, ``\\n`` line ends, extended linear address records only when an address above
0xFFFF occurs (then one at the start and one per 64 KiB segment entered), and ``:00000001FF``.

Errors: :class:`HexFileError` (an :class:`~trustroot._mcuboot.ImageFormatError`) with ``line``.
"""

from __future__ import annotations

import binascii
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Protocol

from trustroot._mcuboot import ImageFormatError
from trustroot.errors import UnreadableInputError

__all__ = [
    "DEFAULT_MAX_SPAN",
    "HexExtent",
    "HexFileError",
    "HexWriter",
    "is_hex_path",
    "iter_hex",
    "scan_hex",
]

#: Largest address range a HEX file may span (gaps included): the largest slot the context allows.
DEFAULT_MAX_SPAN: Final = 0x10000000
#: Longest line accepted: ':' + 2 * (5 + 255) hex digits, with room for trailing blanks.
_MAX_LINE: Final = 1 + 2 * (5 + 255) + 64
_CHUNK: Final = 1 << 20
_RECORD_BYTES: Final = 16
_SEGMENT: Final = 0x10000


class HexFileError(ImageFormatError):
    """An Intel HEX file is malformed; ``line`` is the 1-based line (0 when it is the whole file)."""

    def __init__(self, path: Path | str, line: int, message: str) -> None:
        where = f"{path}, line {line}" if line else str(path)
        super().__init__(f"{where}: {message}")
        self.line = line


def is_hex_path(path: Path | str) -> bool:
    """Whether ``path`` names an Intel HEX file (``.hex``, any case), as imgtool decides."""
    return Path(path).suffix.lower() == ".hex"


@dataclass(frozen=True)
class HexExtent:
    """The address range of a HEX file's data: ``start`` to ``end`` (exclusive)."""

    start: int
    end: int
    #: From a type 05 record (EIP) or a type 03 record (CS * 16 + IP); None if absent.
    start_address: int | None = None

    @property
    def size(self) -> int:
        return self.end - self.start


def _records(path: Path) -> Iterator[tuple[int, int, bytes]]:
    """Yield (line, address, data) for every data record, checking every record of the file."""
    base = 0
    next_free = -1
    ended = False
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise UnreadableInputError(f"HEX file {path}: cannot be read ({exc.strerror})") from exc
    with handle:
        for number, raw_line in enumerate(handle, start=1):
            if len(raw_line) > _MAX_LINE:
                raise HexFileError(path, number, "line too long for an Intel HEX record")
            line = raw_line.strip()
            if not line:
                continue
            if ended:
                raise HexFileError(path, number, "data after the end-of-file record")
            record = _decode(path, number, line)
            kind, offset, data = record[3], (record[1] << 8) | record[2], record[4:-1]
            if kind != 0x00:
                ended, base = _control(path, number, kind, offset, data, base)
                continue
            address = base + offset
            if address < next_free:
                raise HexFileError(
                    path,
                    number,
                    f"address 0x{address:x} is below the end of the data before it (0x{next_free:x}): "
                    "records must be in ascending address order without overlap",
                )
            if data:
                next_free = address + len(data)
                yield number, address, data
    if not ended:
        raise HexFileError(path, 0, "no end-of-file record (type 01): the file is truncated")


#: Record type -> (data bytes it must have, what it is).
_CONTROL: Final = {
    0x01: (0, "end-of-file"),
    0x02: (2, "extended segment address"),
    0x03: (4, "start segment address"),
    0x04: (2, "extended linear address"),
    0x05: (4, "start linear address"),
}


def _control(path: Path, number: int, kind: int, offset: int, data: bytes, base: int) -> tuple[bool, int]:  # noqa: PLR0917
    """Apply a non-data record: return (ended, new base)."""
    if kind not in _CONTROL:
        raise HexFileError(path, number, f"unknown record type 0x{kind:02x}")
    length, what = _CONTROL[kind]
    if len(data) != length or offset != 0:
        raise HexFileError(path, number, f"malformed {what} record (needs {length} data bytes at offset 0)")
    if kind == 0x02:
        return False, int.from_bytes(data, "big") << 4
    if kind == 0x04:
        return False, int.from_bytes(data, "big") << 16
    return kind == 0x01, base


def _decode(path: Path, number: int, line: bytes) -> bytes:
    if line[:1] != b":":
        raise HexFileError(path, number, "a record must start with ':'")
    try:
        record = binascii.a2b_hex(line[1:])
    except (binascii.Error, ValueError):
        raise HexFileError(path, number, "not an even number of hex digits") from None
    if len(record) < 5 or len(record) != 5 + record[0]:
        raise HexFileError(path, number, "the record length does not match its byte count")
    if sum(record) & 0xFF:
        raise HexFileError(path, number, f"bad checksum 0x{record[-1]:02x}")
    return record


def _start_address(path: Path) -> int | None:
    found: int | None = None
    with path.open("rb") as handle:
        for raw in handle:
            line = raw.strip()
            if line[:9] in (b":04000005", b":04000003"):
                data = binascii.a2b_hex(line[9:17])
                value = int.from_bytes(data, "big")
                found = value if line[8:9] == b"5" else (value >> 16) * 16 + (value & 0xFFFF)
    return found


def scan_hex(path: Path | str, *, max_span: int = DEFAULT_MAX_SPAN) -> HexExtent:
    """Check every record of the HEX file ``path`` and return the range its data spans."""
    path = Path(path)
    start = end = -1
    for _, address, data in _records(path):
        if start < 0:
            start = address
        end = address + len(data)
        if end - start > max_span:
            raise HexFileError(path, 0, f"the data spans more than the limit of 0x{max_span:x} bytes")
    if start < 0:
        raise HexFileError(path, 0, "no data records")
    return HexExtent(start, end, _start_address(path))


def iter_hex(path: Path | str, *, fill: int = 0xFF, chunk_size: int = _CHUNK) -> Iterator[bytes]:
    """The bytes of the HEX file from its lowest to its highest address, gaps filled with ``fill``.

    Call :func:`scan_hex` first (this re-checks each record, but the span limit is scan's).
    """
    path = Path(path)
    pending = bytearray()
    cursor = -1
    filler = bytes([fill]) * chunk_size
    for _, address, data in _records(path):
        if cursor >= 0:
            gap = address - cursor
            while gap:
                step = min(gap, chunk_size - len(pending))
                pending += filler[:step]
                gap -= step
                if len(pending) >= chunk_size:
                    yield bytes(pending)
                    pending.clear()
        pending += data
        cursor = address + len(data)
        if len(pending) >= chunk_size:
            yield bytes(pending)
            pending.clear()
    if pending:
        yield bytes(pending)


class _Writable(Protocol):
    def write(self, data: bytes, /) -> object: ...


class HexWriter:
    """Writes data given at ascending addresses as Intel HEX, exactly as ``intelhex`` lays it out.

    Lines are held back only while every address so far is below 64 KiB (at most 64 KiB of data),
    because an address above it later means the file must start with an extended address record.
    """

    def __init__(self, out: _Writable) -> None:
        self._out = out
        self._held: list[bytes] | None = []
        self._high = -1
        self._addr = 0
        self._pending = bytearray()

    def write(self, address: int, data: bytes) -> None:
        """Add ``data`` at ``address`` (at or after the end of what was written before)."""
        if not data:
            return
        end_before = self._addr + len(self._pending)
        if self._pending and address != end_before:
            if address < end_before:
                raise ValueError(f"HEX data at 0x{address:x} overlaps data ending at 0x{end_before:x}")
            self._emit_pending(all_of_it=True)
        if not self._pending:
            self._addr = address
        self._pending += data
        self._emit_pending(all_of_it=False)

    def close(self) -> None:
        """Write what is pending and the end-of-file record."""
        self._emit_pending(all_of_it=True)
        self._release()
        self._out.write(b":00000001FF\n")

    def _emit_pending(self, *, all_of_it: bool) -> None:
        pos = 0
        pending = self._pending
        while pos < len(pending):
            addr = self._addr + pos
            length = min(_RECORD_BYTES, _SEGMENT - (addr & 0xFFFF), len(pending) - pos)
            tail = pos + length == len(pending) and not all_of_it
            if tail and length < _RECORD_BYTES and _SEGMENT - (addr & 0xFFFF) > length:
                break  # may still grow into a full record
            self._record(addr, pending[pos : pos + length])
            pos += length
        del pending[:pos]
        self._addr += pos

    def _record(self, addr: int, data: bytes | bytearray) -> None:
        if addr > 0xFFFF and self._held is not None:
            held, self._held = self._held, None
            if held:  # everything so far lies in the first 64 KiB: announce it first
                self._line(bytes([2, 0, 0, 4, 0, 0]))
                self._high = 0
                for line in held:
                    self._out.write(line)
        if self._held is None and addr >> 16 != self._high:
            self._high = addr >> 16
            self._line(bytes([2, 0, 0, 4]) + self._high.to_bytes(2, "big"))
        self._line(bytes([len(data), (addr >> 8) & 0xFF, addr & 0xFF, 0]) + data)

    def _line(self, body: bytes) -> None:
        text = b":" + binascii.b2a_hex(body + bytes([-sum(body) & 0xFF])).upper() + b"\n"
        if self._held is not None:
            self._held.append(text)
        else:
            self._out.write(text)

    def _release(self) -> None:
        if self._held is not None:
            for line in self._held:
                self._out.write(line)
            self._held = []
