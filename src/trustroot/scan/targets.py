"""What a scan target is, and turning it into the trees and blobs the engines and checks read.

A PATH given to ``trustroot scan`` is one of:

``source`` / ``rootfs``
    a directory: a C/C++ source tree, or a firmware root file system (``etc/`` beside ``bin/``,
    ``sbin/`` or ``usr/``). Scanned in place.
``archive``
    a tar (plain, gzip, xz, bzip2), zip or cpio file, recognised by content; unpacked safely in
    Python (:mod:`trustroot.scan.archives`) into a scratch directory. Findings inside it have
    the path ``<archive path>/<member path>`` and ``Location.container`` set to the archive.
``image``
    anything else: a raw firmware image or blob. The blob checks read its bytes; unblob (with
    unsquashfs and binwalk behind it, :mod:`trustroot.scan.firmware`) unpacks what it can.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from trustroot.errors import ScanInputError
from trustroot.scan.archives import sniff_archive, unpack_archive
from trustroot.scan.engines._base import EngineFailure, EngineOutcome, RunContext
from trustroot.scan.findings import Finding
from trustroot.scan.firmware import ImageUnpack, gap_finding, unpack_image

__all__ = ["PreparedTarget", "TargetKind", "Unit", "display_path", "prepare_target"]

TargetKind = Literal["source", "rootfs", "archive", "image"]


@dataclass(frozen=True)
class Unit:
    """One thing to scan: a tree (engines + tree checks) or a blob (blob checks).

    ``display`` is the path findings inside it are shown under; ``container`` the archive or image
    it came out of (``None`` for a tree scanned in place).
    """

    kind: Literal["tree", "blob"]
    path: Path
    display: str
    container: str | None = None


@dataclass
class PreparedTarget:
    """A target ready to scan: its units, gaps already found, and facts for the report."""

    given: str
    path: Path
    kind: TargetKind
    units: list[Unit] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    files: int = 0
    size: int = 0
    newest_mtime: float = 0.0
    unblob: EngineOutcome | None = None


def display_path(given: Path) -> str:
    """The path as findings show it: as given, ``/``-separated, without ``./``."""
    text = given.as_posix()
    while text.startswith("./"):
        text = text[2:]
    return text.rstrip("/") or "."


def _is_rootfs(directory: Path) -> bool:
    return (directory / "etc").is_dir() and any((directory / d).is_dir() for d in ("bin", "sbin", "usr"))


def _tree_facts(root: Path) -> tuple[int, int, float]:
    files = size = 0
    newest = 0.0
    for directory, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = [d for d in dirnames if d not in (".git", ".trustroot")]
        for name in filenames:
            try:
                info = (Path(directory) / name).lstat()
            except OSError:
                continue
            files += 1
            size += info.st_size
            newest = max(newest, info.st_mtime)
    return files, size, newest


def prepare_target(path: Path, workdir: Path, ctx: RunContext, *, unpack_images: bool = True) -> PreparedTarget:
    """Classify ``path`` and unpack it below ``workdir`` when it is an archive or an image."""
    given = display_path(path)
    try:
        info = path.stat()
    except OSError as exc:
        raise ScanInputError(f"{path}: cannot be scanned ({exc.strerror or exc})") from exc
    if path.is_dir():
        kind: TargetKind = "rootfs" if _is_rootfs(path) else "source"
        files, size, newest = _tree_facts(path)
        return PreparedTarget(
            given, path, kind, [Unit("tree", path, given)], files=files, size=size, newest_mtime=newest
        )
    if not path.is_file():
        raise ScanInputError(f"{path}: neither a directory nor a regular file")
    archive = sniff_archive(path)
    if archive is not None:
        unpacked = unpack_archive(path, archive, workdir / "archive", ctx.limits)
        target = PreparedTarget(given, path, "archive", [Unit("tree", unpacked.root, given, given)])
        target.files, target.size = unpacked.files, info.st_size
        target.newest_mtime = max(unpacked.newest_mtime, info.st_mtime)
        target.notes.append(f"{archive} archive: {unpacked.members} members, {unpacked.bytes_written} bytes unpacked")
        if unpacked.links:
            target.notes.append(f"{len(unpacked.links)} links kept as links (never followed)")
        if unpacked.skipped_special:
            target.notes.append(f"{unpacked.skipped_special} device files, FIFOs or sockets not created")
        return target
    target = PreparedTarget(given, path, "image", [Unit("blob", path, given, None)], files=1, size=info.st_size)
    target.newest_mtime = info.st_mtime
    started = time.monotonic()
    if not unpack_images:
        image = ImageUnpack(root=None, unblob_status="skipped")
        image.not_inspected.append(gap_finding(given, given, 0, info.st_size, "unblob was not among the engines"))
        detail = "not among the engines: the image's inside is reported as not inspected"
    else:
        try:
            image = unpack_image(path, given, workdir, ctx)
            detail = "; ".join(image.notes)
        except EngineFailure as why:
            image = ImageUnpack(root=None, unblob_status="failed")
            image.not_inspected.append(gap_finding(given, given, 0, info.st_size, f"unblob failed ({why})"))
            detail = str(why)
    status = image.unblob_status if image.unblob_status in ("ok", "skipped", "failed") else "skipped"
    target.unblob = EngineOutcome("unblob", status, detail or image.unblob_status, time.monotonic() - started)  # type: ignore[arg-type]
    target.findings.extend(image.not_inspected)
    target.notes.extend(image.notes)
    if image.root is not None and any(image.root.iterdir()):
        target.units.append(Unit("tree", image.root, given, given))
    target.units.extend(Unit("blob", blob.path, blob.display, given) for blob in image.nested_blobs)
    return target
