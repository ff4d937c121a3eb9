"""Unpacking raw firmware images: unblob first, then Debian's unsquashfs and binwalk for what it left.

unblob carves an image into chunks and extracts each with the extractors the set-up installed.
Its SquashFS extractor (``sasquatch``) cannot be had here, so every chunk unblob reports as not
extracted goes to ``unsquashfs`` (SquashFS chunks) or ``binwalk -e`` (anything else); a chunk that
none of them unpacked, an encrypted chunk, and a high-entropy stretch unblob could not identify
each become a ``trustroot.not-inspected`` finding with the chunk's byte offset and length: a gap
in the scan is reported, never dropped.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from trustroot.scan.engines._base import EngineFailure, EngineSkipped, RunContext, run_tool
from trustroot.scan.findings import Finding, Location, Severity

__all__ = ["NOT_INSPECTED_RULE", "ImageUnpack", "gap_finding", "unpack_image"]

NOT_INSPECTED_RULE: Final = "trustroot.not-inspected"
#: Mean Shannon entropy (percent of the maximum) above which an unidentified chunk is packed data.
HIGH_ENTROPY_PERCENT: Final = 90.0
#: Smallest unidentified chunk worth reporting (padding and headers are smaller).
MIN_REPORTED_CHUNK: Final = 4096


@dataclass
class NestedBlob:
    """A file inside the extraction that nothing could unpack (run through the blob checks)."""

    path: Path
    display: str


@dataclass
class ImageUnpack:
    """What an image unpacked to: the extraction tree (if any), gaps, blobs to check, notes."""

    root: Path | None
    not_inspected: list[Finding] = field(default_factory=list)
    nested_blobs: list[NestedBlob] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    unblob_status: str = "ok"


def gap_finding(display: str, container: str, start: int, size: int, what: str) -> Finding:
    return Finding(
        rule_id=NOT_INSPECTED_RULE,
        title=f"not inspected: {what}",
        severity=Severity.LOW,
        location=Location(path=display, byte_offset=start, byte_length=max(size, 1), container=container),
        provisions=("5.6-9",),
        guideline=6,
        engines=["unblob"],
        message=(
            f"bytes {start}..{start + size} ({size} bytes) could not be unpacked by unblob, unsquashfs or "
            f"binwalk: {what}. Nothing inside them was scanned; unpack them another way and scan the result."
        ),
    )


def _has_files(directory: Path) -> bool:
    return directory.is_dir() and any(p.is_file() and not p.is_symlink() for p in directory.rglob("*"))


def _fallback(chunk: Path, handler: str, out: Path, ctx: RunContext) -> str | None:
    """Unpack ``chunk`` with unsquashfs or binwalk into ``out``; the tool that did it, or ``None``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tools: list[tuple[str, list[object]]] = []
    if handler.startswith("squashfs") and shutil.which("unsquashfs"):
        tools.append(("unsquashfs", ["unsquashfs", "-no-xattrs", "-quiet", "-no-progress", "-d", out, chunk]))
    if shutil.which("binwalk"):
        tools.append(("binwalk", ["binwalk", "-e", "-q", "--run-as=root", "-C", out, chunk]))
    for name, argv in tools:
        shutil.rmtree(out, ignore_errors=True)
        try:
            run_tool(argv, timeout=ctx.limits.unpack_timeout)
        except EngineFailure:
            continue
        if _has_files(out):
            return name
    shutil.rmtree(out, ignore_errors=True)
    return None


def _display(path: Path, extract_root: Path, image: Path, given: str) -> str:
    if path == image:
        return given
    try:
        return f"{given}/{path.relative_to(extract_root).as_posix()}"
    except ValueError:
        return given


def unpack_image(image: Path, given: str, workdir: Path, ctx: RunContext) -> ImageUnpack:
    """Unpack the raw image ``image`` (shown as ``given``) below ``workdir``."""
    size = image.stat().st_size
    try:
        exe = ctx.executable("unblob")
    except EngineSkipped as why:
        result = ImageUnpack(root=None, unblob_status="skipped", notes=[str(why)])
        result.not_inspected.append(gap_finding(given, given, 0, size, "unblob is not installed"))
        return result
    out = workdir / "unblob"
    report = workdir / "unblob-report.json"
    argv: list[object] = [exe, "-e", out, "-d", ctx.limits.unblob_depth, "-p", max(ctx.jobs, 1)]
    argv += ["--report", report, "--log", workdir / "unblob.log", image]
    run = run_tool(argv, timeout=ctx.limits.unpack_timeout)
    if not report.is_file():
        raise EngineFailure(
            f"unblob exited {run.returncode} without a report: {run.stderr.decode('utf-8', 'replace')[-300:]}"
        )
    try:
        tasks: list[dict[str, Any]] = json.loads(report.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise EngineFailure(f"unblob wrote an unreadable report: {exc}") from exc
    extract_root = out / f"{image.name}_extract"
    result = ImageUnpack(root=extract_root)
    for task in tasks:
        _task(task, image, given, extract_root, result=result, ctx=ctx)
    if not extract_root.is_dir():
        extract_root.mkdir(parents=True, exist_ok=True)
    return result


def _task(
    task: dict[str, Any], image: Path, given: str, extract_root: Path, *, result: ImageUnpack, ctx: RunContext
) -> None:
    path = Path(str(task.get("task", {}).get("path", "")))
    reports: list[dict[str, Any]] = [r for r in task.get("reports", []) if isinstance(r, dict)]
    carve_dir = next((Path(r["carve_dir"]) for r in reports if r.get("__typename__") == "CarveDirectoryReport"), None)
    display = _display(path, extract_root, image, given)
    nested = path != image
    for chunk in reports:
        kind = chunk.get("__typename__")
        start, end = int(chunk.get("start_offset", 0)), int(chunk.get("end_offset", 0))
        if kind == "UnknownChunkReport":
            shannon = ((chunk.get("randomness") or {}).get("shannon") or {}).get("mean", 0.0)
            if end - start >= MIN_REPORTED_CHUNK and float(shannon) >= HIGH_ENTROPY_PERCENT:
                result.not_inspected.append(
                    gap_finding(display, given, start, end - start, f"unidentified high-entropy data ({shannon:.0f}%)")
                )
            continue
        if kind != "ChunkReport":
            continue
        handler = str(chunk.get("handler_name", "chunk"))
        failed = [r for r in chunk.get("extraction_reports", []) if r.get("severity") in ("ERROR", "CRITICAL")]
        if chunk.get("is_encrypted"):
            result.not_inspected.append(gap_finding(display, given, start, end - start, f"encrypted {handler} chunk"))
            continue
        if not failed:
            continue
        chunk_file = carve_dir / f"{start}-{end}.{handler}" if carve_dir else path
        if not chunk_file.is_file():
            chunk_file = path
        target = (carve_dir or extract_root) / f"{start}-{end}.{handler}_fallback"
        tool = _fallback(chunk_file, handler, target, ctx)
        why = ", ".join(str(r.get("__typename__", "error")) for r in failed)
        if tool is not None:
            result.notes.append(f"{display}@{start}: {handler} unpacked by {tool} (unblob: {why})")
            continue
        result.not_inspected.append(gap_finding(display, given, start, end - start, f"{handler} chunk ({why})"))
        if nested and chunk_file.is_file():
            result.nested_blobs.append(NestedBlob(chunk_file, _display(chunk_file, extract_root, image, given)))
