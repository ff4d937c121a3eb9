"""The streaming plumbing of image signing: inputs read in chunks, outputs written as they come.

Inputs (:class:`Input`) give the bytes after the header area and can be read again (a key that
needs another hash than guessed has the input hashed once more). Outputs (:class:`Sink`) are a
binary file or Intel HEX; both end with :meth:`Sink.finish`, which adds the fill and trailer of a
padded image (a HEX image gets only the image_ok slot and the magic, as imgtool writes it).
:func:`atomic_output` is the temp file that becomes the output only when everything succeeded.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Final, Protocol

from trustroot._fsutil import fsync_dir
from trustroot._mcuboot import ImageFormatError, boot_magic, image_ok_offset, trailer_bytes
from trustroot.errors import UnreadableInputError
from trustroot.image.hexfile import HexWriter, iter_hex, scan_hex

__all__ = [
    "BinarySink",
    "Collect",
    "DigestingFile",
    "HexSink",
    "Input",
    "Padding",
    "Sink",
    "atomic_output",
    "binary_input",
    "check_header_area",
    "file_chunks",
    "hex_input",
    "open_input",
    "split_head",
]

_CHUNK: Final = 1 << 20


@dataclass(frozen=True)
class Padding:
    """How a padded image ends: fill to ``slot_size`` less the ``tsize``-byte trailer."""

    slot_size: int
    tsize: int
    max_align: int
    confirm: bool
    erased_val: int


# --- output ----------------------------------------------------------------------------------------


class Sink(Protocol):
    size: int

    def write(self, data: bytes | memoryview) -> None: ...

    def finish(self, padding: Padding | None) -> None: ...


class Writable(Protocol):
    def write(self, data: bytes | memoryview, /) -> object: ...


class DigestingFile:
    """A binary file that also hashes what goes through it (SHA-256), when asked to."""

    def __init__(self, handle: Writable, digest: bool) -> None:
        self._handle = handle
        self.hasher = hashlib.sha256() if digest else None

    def write(self, data: bytes | memoryview) -> None:
        self._handle.write(data)
        if self.hasher is not None:
            self.hasher.update(data)


class BinarySink:
    def __init__(self, out: DigestingFile) -> None:
        self._out = out
        self.size = 0

    def write(self, data: bytes | memoryview) -> None:
        self._out.write(data)
        self.size += len(data)

    def finish(self, padding: Padding | None) -> None:
        if padding is None:
            return
        fill = padding.slot_size - self.size - padding.tsize
        block = bytes([padding.erased_val]) * min(_CHUNK, fill)
        while fill > 0:
            step = min(fill, _CHUNK)
            self.write(block[:step])
            fill -= step
        self.write(
            trailer_bytes(padding.tsize, padding.max_align, confirm=padding.confirm, erased_val=padding.erased_val)
        )


class HexSink:
    def __init__(self, out: DigestingFile, base: int) -> None:
        self._hex = HexWriter(out)
        self._base = base
        self.size = 0

    def write(self, data: bytes | memoryview) -> None:
        self._hex.write(self._base + self.size, bytes(data))
        self.size += len(data)

    def finish(self, padding: Padding | None) -> None:
        if padding is not None:  # a HEX image leaves the fill out: only the image_ok slot and the magic
            end = self._base + padding.slot_size
            if padding.confirm:
                flag = bytes([0x01]) + bytes([padding.erased_val]) * (padding.max_align - 1)
                self._hex.write(end + image_ok_offset(padding.max_align), flag)
            self._hex.write(end - 16, boot_magic(padding.max_align))
        self._hex.close()


@contextlib.contextmanager
def atomic_output(destination: Path, *, durable: bool) -> Iterator[BinaryIO]:
    """A temp file beside ``destination``, renamed onto it only if the block succeeds."""
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{destination.name}.", suffix=".tmp", dir=destination.parent)
    except OSError as exc:
        raise UnreadableInputError(f"output {destination}: cannot be written ({exc.strerror})") from exc
    tmp = Path(tmp_name)
    try:
        os.fchmod(fd, 0o644)
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        tmp.replace(destination)
        if durable:
            fsync_dir(destination.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


# --- input -----------------------------------------------------------------------------------------


@dataclass
class Input:
    """The bytes after the header area: their length, and a way to read exactly those (again)."""

    length: int
    chunks: Callable[[], Iterator[bytes | memoryview]]
    #: For HEX input: the address of the first byte (before any --pad-header adjustment).
    address: int | None = None


def check_header_area(head: bytes, header_size: int, label: str) -> None:
    if len(head) < header_size:
        raise ImageFormatError(f"{label}: {len(head)} bytes, shorter than the header size {header_size}")
    if any(head):
        raise ImageFormatError(
            f"{label}: the first {header_size} bytes (the header area) are not all zeros",
            hint="add --pad-header to put a header in front of the input instead",
        )


def file_chunks(handle: io.BufferedReader, length: int, label: str) -> Iterator[memoryview]:
    buffer = bytearray(min(_CHUNK, max(length, 1)))
    view = memoryview(buffer)
    left = length
    while left:
        n = handle.readinto(view[: min(left, len(buffer))])
        if not n:
            raise UnreadableInputError(f"{label}: the file shrank while it was read")
        left -= n
        yield view[:n]


def split_head(chunks: Iterator[bytes], size: int) -> tuple[bytes, Iterator[bytes]]:
    head = bytearray()
    rest: list[bytes] = []
    for chunk in chunks:
        need = size - len(head)
        head += chunk[:need]
        if len(chunk) > need:
            rest.append(chunk[need:])
        if len(head) >= size:
            break

    def remaining() -> Iterator[bytes]:
        yield from rest
        yield from chunks

    return bytes(head), remaining()


def hex_input(path: Path, *, header_size: int, pad_header: bool) -> Input:
    """A HEX file from its lowest address, gaps 0xff (as intelhex fills them for imgtool)."""
    extent = scan_hex(path)
    if pad_header:
        return Input(extent.size, lambda: iter_hex(path, fill=0xFF), extent.start)
    head, _ = split_head(iter_hex(path, fill=0xFF), header_size)
    check_header_area(head, header_size, f"input {path}")

    def body() -> Iterator[bytes]:
        return split_head(iter_hex(path, fill=0xFF), header_size)[1]

    return Input(extent.size - header_size, body, extent.start)


def binary_input(handle: io.BufferedReader, *, header_size: int, pad_header: bool, label: str) -> Input:
    """A binary file, read in chunks into one reused buffer."""
    length = os.fstat(handle.fileno()).st_size
    start = 0
    if not pad_header:
        check_header_area(handle.read(header_size), header_size, label)
        start = header_size
        length -= header_size

    def body() -> Iterator[memoryview]:
        handle.seek(start)
        return file_chunks(handle, length, label)

    return Input(length, body)


def open_input(path: Path) -> io.BufferedReader:
    try:
        return path.open("rb")
    except FileNotFoundError as exc:
        raise UnreadableInputError(f"input {path}: no such file") from exc
    except IsADirectoryError as exc:
        raise UnreadableInputError(f"input {path}: is a directory, expected a file") from exc
    except OSError as exc:
        raise UnreadableInputError(f"input {path}: cannot be read ({exc.strerror})") from exc


class Collect:
    """An in-memory writable (for signing bytes)."""

    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, chunk: bytes | memoryview, /) -> object:
        self.data += chunk
        return None
