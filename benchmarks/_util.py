"""Shared helpers for the benchmarks: timing whole processes, peak memory, tables."""

from __future__ import annotations

import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOOLS_BIN = ROOT / ".tools" / "bin"
VENV_BIN = ROOT / ".venv" / "bin"


@dataclass(frozen=True)
class Run:
    """One whole-process run: wall seconds and the child's peak resident memory in MiB."""

    seconds: float
    peak_mib: float
    returncode: int


def run_process(argv: Sequence[str], *, env: dict[str, str] | None = None, cwd: Path | None = None) -> Run:
    """Run ``argv``; measure its wall time and its own peak RSS.

    The peak comes from GNU time (``/usr/bin/time -f %M``), which forks the command from a tiny
    process: ``wait4`` on a child of this (large) Python process would count the pages it shared
    with us before ``exec``.
    """
    with tempfile.NamedTemporaryFile(prefix="rss-", suffix=".txt") as rss:
        wrapped = ["/usr/bin/time", "-q", "-f", "%M", "-o", rss.name, *argv]
        start = time.perf_counter()
        proc = subprocess.run(wrapped, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=cwd, check=False)
        seconds = time.perf_counter() - start
        if proc.returncode != 0:
            err = proc.stderr.decode(errors="replace")
            raise RuntimeError(f"{argv[0]} failed ({proc.returncode}): {err.strip()[:400]}")
        peak_kib = int(Path(rss.name).read_text().split()[-1])
    return Run(seconds, peak_kib / 1024, proc.returncode)


def best_of(runs: int, fn: Callable[[], Run]) -> Run:
    """The median-time run of ``runs`` repetitions (peak memory is the largest seen)."""
    results = [fn() for _ in range(runs)]
    median = statistics.median(r.seconds for r in results)
    return Run(median, max(r.peak_mib for r in results), 0)


def timed(runs: int, fn: Callable[[], object]) -> float:
    """Median wall seconds of ``runs`` in-process calls of ``fn``."""
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def tool(name: str) -> str:
    """Path of an engine from the tools environment, or of a system command."""
    candidate = TOOLS_BIN / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if not found:
        raise SystemExit(f"benchmark needs {name}: run scripts/setup.sh --tools")
    return found


def table(title: str, header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain-text table (also valid Markdown)."""
    cells = [[str(c) for c in header], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = [f"### {title}", ""]
    for index, row in enumerate(cells):
        lines.append("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |")
        if index == 0:
            lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines) + "\n"
