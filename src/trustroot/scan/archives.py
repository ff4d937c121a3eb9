"""Safe unpacking of tar, zip and cpio archives in Python, for the scanning gate.

An archive is untrusted input. Whatever it says, unpacking it writes only regular files and
directories below the destination:

* a member name that is absolute, climbs out with ``..``, holds a NUL or is too long refuses the
  whole archive (:class:`~trustroot.errors.UnsafeArchiveError`), and so does a member written
  through a symbolic link the archive itself made (the classic link-then-write escape);
* symbolic links are never created (a firmware root file system is full of absolute ones: they are
  counted in :attr:`Unpacked.links` and their targets kept for the checks); hard links become
  copies of a member already written; device files, FIFOs and sockets are never created (counted
  in :attr:`Unpacked.skipped_special`); set-uid bits are dropped;
* the bytes actually written are counted (headers are not trusted): more than
  ``max_unpacked_bytes`` in all, ``max_member_bytes`` in one member, or an unpacked size that
  exceeds ``max_ratio`` times the archive's own size refuses it as a bomb; so do more than
  ``max_members`` members.

A malformed archive (truncated, bad checksum, unsupported compression) raises
:class:`~trustroot.errors.ScanInputError` naming the archive and what is wrong.
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import lzma
import os
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Literal, Protocol, cast

from trustroot.errors import ScanInputError, UnsafeArchiveError
from trustroot.scan.config import DEFAULT_SCAN_LIMITS, ScanLimits

__all__ = ["ArchiveKind", "Unpacked", "sniff_archive", "unpack_archive"]

ArchiveKind = Literal["tar", "zip", "cpio"]

_CHUNK = 1024 * 1024
_CPIO_NEWC = (b"070701", b"070702")
_CPIO_ODC = b"070707"
_CPIO_TRAILER = "TRAILER!!!"
_COMPRESSED_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x1f\x8b", "gzip"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"BZh", "bzip2"),
)
_FOREIGN_ERRORS = (tarfile.TarError, zipfile.BadZipFile, zlib.error, lzma.LZMAError, EOFError, OSError, ValueError)


class _Readable(Protocol):
    def read(self, n: int = -1, /) -> bytes: ...


@dataclass
class Unpacked:
    """What an archive unpacked to: the counts the report shows, and the links that were not made."""

    root: Path
    kind: ArchiveKind
    members: int = 0
    files: int = 0
    bytes_written: int = 0
    links: dict[str, str] = field(default_factory=dict)
    skipped_special: int = 0
    newest_mtime: float = 0.0


def _open_compressed(path: Path) -> IO[bytes]:
    """``path`` opened for reading, through gzip, xz or bzip2 when its first bytes say so."""
    with path.open("rb") as handle:
        head = handle.read(6)
    for magic, name in _COMPRESSED_MAGIC:
        if head.startswith(magic):
            if name == "gzip":
                return cast("IO[bytes]", gzip.open(path, "rb"))
            if name == "xz":
                return lzma.open(path, "rb")
            return bz2.open(path, "rb")
    return path.open("rb")


def _tar_header(block: bytes) -> bool:
    """Whether ``block`` is a tar header with a valid checksum (Python calls all-zero bytes a tar)."""
    if len(block) < 512 or not block.strip(b"\x00"):
        return False
    try:
        stored = int(block[148:156].replace(b"\x00", b" ").strip() or b"-1", 8)
    except ValueError:
        return False
    return stored == sum(block[:148]) + 8 * 0x20 + sum(block[156:512])


def sniff_archive(path: Path) -> ArchiveKind | None:
    """Which archive format ``path`` is by its content (never its name), or ``None``."""
    try:
        with path.open("rb") as handle:
            head = handle.read(8)
        if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
            return "zip"
        with _open_compressed(path) as stream:
            inner = stream.read(512)
        if inner[:6] in (*_CPIO_NEWC, _CPIO_ODC):
            return "cpio"
        if _tar_header(inner) and tarfile.is_tarfile(path):
            return "tar"
    except (OSError, EOFError, zlib.error, lzma.LZMAError, ValueError):
        return None
    return None


class _Sink:
    """Writes members below ``root`` and enforces every rule and limit of the module docstring."""

    def __init__(self, archive: Path, root: Path, kind: ArchiveKind, limits: ScanLimits) -> None:
        self.archive = archive
        self.result = Unpacked(root=root, kind=kind)
        self.limits = limits
        self.archive_size = max(archive.stat().st_size, 1)
        self.written: dict[str, Path] = {}

    def refuse(self, name: str, why: str) -> UnsafeArchiveError:
        return UnsafeArchiveError(
            f"{self.archive}: member {name[:200]!r} {why}; nothing of the archive was scanned",
            provision="5.13-1",
        )

    def safe_name(self, raw: str) -> str | None:
        """The member's relative path, ``None`` for the archive's own root, or a refusal."""
        if "\x00" in raw:
            raise self.refuse(raw, "holds a NUL character")
        if len(raw) > self.limits.max_name_length:
            raise self.refuse(raw, f"has a name longer than {self.limits.max_name_length} characters")
        text = raw.replace("\\", "/") if self.result.kind == "zip" else raw
        if text.startswith("/") or (len(text) > 1 and text[1] == ":"):
            raise self.refuse(raw, "has an absolute path (path traversal)")
        parts = [p for p in PurePosixPath(text).parts if p not in ("", ".")]
        if ".." in parts:
            raise self.refuse(raw, "climbs out of the archive with '..' (path traversal)")
        if not parts:
            return None
        name = "/".join(parts)
        for depth in range(1, len(parts)):
            prefix = "/".join(parts[:depth])
            if prefix in self.result.links:
                raise self.refuse(raw, f"is written through the symbolic link {prefix!r} (link escape)")
        return name

    def count_member(self) -> None:
        self.result.members += 1
        if self.result.members > self.limits.max_members:
            raise self.refuse("*", f"makes the archive hold more than {self.limits.max_members} members")

    def note_mtime(self, mtime: float) -> None:
        self.result.newest_mtime = max(self.result.newest_mtime, mtime)

    def directory(self, name: str) -> None:
        target = self.result.root / name
        if name in self.result.links:
            raise self.refuse(name, "turns a symbolic link into a directory (link escape)")
        target.mkdir(parents=True, exist_ok=True)

    def link(self, name: str, target: str) -> None:
        self.result.links[name] = target[:4096]

    def special(self) -> None:
        self.result.skipped_special += 1

    def file(self, name: str, stream: _Readable, mode: int) -> None:
        if name in self.result.links:
            raise self.refuse(name, "overwrites a symbolic link of the archive (link escape)")
        target = self.result.root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.is_dir() and not target.is_symlink():
            raise self.refuse(name, "replaces a directory with a file")
        with contextlib.suppress(FileNotFoundError):
            target.unlink()
        perm = 0o755 if mode & 0o111 else 0o644
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, perm)
        size = 0
        with os.fdopen(fd, "wb") as out:
            while chunk := stream.read(_CHUNK):
                size += len(chunk)
                self.result.bytes_written += len(chunk)
                self.check_budget(name, size)
                out.write(chunk)
        self.result.files += 1
        self.written[name] = target

    def hardlink(self, name: str, link_target: str) -> None:
        source_name = self.safe_name(link_target)
        source = self.written.get(source_name or "")
        if source is None:  # a link to nothing written: kept as a link, never followed
            self.link(name, link_target)
            return
        with source.open("rb") as stream:
            self.file(name, stream, source.stat().st_mode)

    def check_budget(self, name: str, member_size: int) -> None:
        limits = self.limits
        total = self.result.bytes_written
        if member_size > limits.max_member_bytes:
            raise self.refuse(name, f"unpacks to more than {limits.max_member_bytes} bytes (a bomb?)")
        if total > limits.max_unpacked_bytes:
            raise self.refuse(
                name, f"makes the archive unpack to more than {limits.max_unpacked_bytes} bytes (a bomb?)"
            )
        if total > limits.ratio_floor_bytes and total > limits.max_ratio * self.archive_size:
            raise self.refuse(
                name,
                f"makes the archive unpack to over {limits.max_ratio} times its own size of "
                f"{self.archive_size} bytes (a compression bomb)",
            )


def unpack_archive(
    path: Path, kind: ArchiveKind, destination: Path, limits: ScanLimits = DEFAULT_SCAN_LIMITS
) -> Unpacked:
    """Unpack the archive ``path`` of format ``kind`` into the empty directory ``destination``."""
    destination.mkdir(parents=True, exist_ok=True)
    sink = _Sink(path, destination, kind, limits)
    try:
        if kind == "tar":
            _unpack_tar(path, sink)
        elif kind == "zip":
            _unpack_zip(path, sink)
        else:
            _unpack_cpio(path, sink)
    except UnsafeArchiveError:
        raise
    except (*_FOREIGN_ERRORS, NotImplementedError, RuntimeError) as exc:
        raise ScanInputError(f"{path}: not a well-formed {kind} archive ({type(exc).__name__}: {exc})") from exc
    return sink.result


def _unpack_tar(path: Path, sink: _Sink) -> None:
    with tarfile.open(path, "r:*") as archive:
        for member in archive:
            sink.count_member()
            name = sink.safe_name(member.name)
            if name is None:
                continue
            sink.note_mtime(float(member.mtime))
            if member.isdir():
                sink.directory(name)
            elif member.issym():
                sink.link(name, member.linkname)
            elif member.islnk():
                sink.hardlink(name, member.linkname)
            elif member.isreg():
                stream = archive.extractfile(member)
                if stream is None:
                    raise ScanInputError(f"{path}: member {name!r} has no data")
                with stream:
                    sink.file(name, stream, member.mode)
            else:
                sink.special()


def _unpack_zip(path: Path, sink: _Sink) -> None:
    limits = sink.limits
    with zipfile.ZipFile(path) as archive:
        infos = archive.infolist()
        if len(infos) > limits.max_members:
            raise sink.refuse("*", f"makes the archive hold {len(infos)} members (at most {limits.max_members})")
        declared = sum(info.file_size for info in infos)
        if declared > limits.max_unpacked_bytes:
            raise sink.refuse("*", f"makes the archive declare {declared} unpacked bytes (a bomb?)")
        for info in infos:
            sink.count_member()
            name = sink.safe_name(info.filename)
            if name is None:
                continue
            sink.note_mtime(_zip_mtime(info))
            unix_mode = info.external_attr >> 16
            if info.is_dir():
                sink.directory(name)
            elif stat.S_ISLNK(unix_mode):
                sink.link(name, archive.read(info)[:4096].decode("utf-8", "replace"))
            elif stat.S_IFMT(unix_mode) not in (0, stat.S_IFREG):
                sink.special()
            else:
                with archive.open(info) as stream:
                    sink.file(name, stream, unix_mode)


def _zip_mtime(info: zipfile.ZipInfo) -> float:
    import datetime as dt

    try:
        return dt.datetime(*info.date_time, tzinfo=dt.UTC).timestamp()
    except ValueError:
        return 0.0


class _Bounded:
    """A reader of exactly ``size`` bytes of ``stream`` (a cpio member's data)."""

    def __init__(self, stream: _Readable, size: int) -> None:
        self.stream = stream
        self.left = size

    def read(self, n: int = -1) -> bytes:
        if self.left <= 0:
            return b""
        want = self.left if n < 0 else min(n, self.left)
        data = self.stream.read(want)
        if len(data) < want:
            raise EOFError("truncated member data")
        self.left -= len(data)
        return data


def _read_exact(stream: _Readable, size: int, what: str) -> bytes:
    data = stream.read(size)
    if len(data) != size:
        raise EOFError(f"truncated {what}")
    return data


def _cpio_headers(stream: _Readable) -> Iterator[tuple[str, int, int, float]]:
    """Yield ``(name, mode, size, mtime)`` per member; the caller reads ``size`` data bytes each time."""
    while True:
        magic = _read_exact(stream, 6, "cpio header")
        if magic in _CPIO_NEWC:
            raw = _read_exact(stream, 104, "cpio header")
            fields = [int(raw[i : i + 8], 16) for i in range(0, 104, 8)]
            mode, mtime, size, namesize = fields[1], fields[5], fields[6], fields[11]
            name_raw = _read_exact(stream, namesize, "cpio member name")
            pad = (4 - (110 + namesize) % 4) % 4
            _read_exact(stream, pad, "cpio padding")
            data_pad = (4 - size % 4) % 4
        elif magic == _CPIO_ODC:
            raw = _read_exact(stream, 70, "cpio header")
            mode = int(raw[12:18], 8)
            mtime = int(raw[42:53], 8)
            namesize = int(raw[53:59], 8)
            size = int(raw[59:70], 8)
            name_raw = _read_exact(stream, namesize, "cpio member name")
            data_pad = 0
        else:
            raise ValueError(f"bad cpio header magic {magic!r} (only newc, crc and odc cpio are read)")
        name = name_raw.rstrip(b"\x00").decode("utf-8", "surrogateescape")
        if name == _CPIO_TRAILER:
            return
        yield name, mode, size, float(mtime)
        _read_exact(stream, data_pad, "cpio padding")


def _unpack_cpio(path: Path, sink: _Sink) -> None:
    with _open_compressed(path) as stream:
        for raw_name, mode, size, mtime in _cpio_headers(stream):
            sink.count_member()
            data = _Bounded(stream, size)
            name = sink.safe_name(raw_name)
            if name is not None:
                sink.note_mtime(mtime)
                kind = stat.S_IFMT(mode)
                if kind == stat.S_IFDIR:
                    sink.directory(name)
                elif kind == stat.S_IFLNK:
                    sink.link(name, data.read(4096).decode("utf-8", "replace"))
                elif kind == stat.S_IFREG:
                    sink.file(name, data, mode)
                else:
                    sink.special()
            while data.read(_CHUNK):
                pass
