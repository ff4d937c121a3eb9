"""What every engine driver shares: the tree it scans, running a tool with a time limit, snippets."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

from trustroot.scan.config import DEFAULT_SCAN_LIMITS, ScanLimits
from trustroot.scan.findings import Finding

__all__ = [
    "C_EXTENSIONS",
    "Driver",
    "EngineFailure",
    "EngineOutcome",
    "EngineSkipped",
    "RunContext",
    "Tree",
    "read_line",
    "run_tool",
]

C_EXTENSIONS = frozenset({".c", ".h", ".cc", ".cpp", ".cxx", ".c++", ".hpp", ".hh", ".hxx", ".h++", ".ino"})
C_SOURCES = frozenset({".c", ".cc", ".cpp", ".cxx", ".c++", ".ino"})

# Engines must never phone home (semgrep's update check waits for a network that is not there).
QUIET_ENV = {
    "SEMGREP_ENABLE_VERSION_CHECK": "0",
    "SEMGREP_SEND_METRICS": "off",
    "NO_COLOR": "1",
    "PYTHONWARNINGS": "ignore",
}


class EngineFailure(Exception):
    """An engine ran and failed (a crash, unreadable output); the gate reports it, never hides it."""


class EngineSkipped(Exception):
    """An engine was not run (missing, or nothing it applies to); the reason is reported."""


@dataclass
class Tree:
    """A directory the engines scan: its regular files (relative, ``/``-separated), listed once."""

    root: Path
    files: list[str] = field(default_factory=list)

    @classmethod
    def walk(cls, root: Path) -> Tree:
        """List ``root`` (made absolute: engines run with the tree as their working directory)."""
        root = root.resolve()
        files: list[str] = []
        for directory, dirnames, filenames in os.walk(root, followlinks=False):
            dirnames[:] = sorted(d for d in dirnames if d not in (".git", ".hg", ".svn", ".trustroot"))
            base = Path(directory)
            for name in sorted(filenames):
                path = base / name
                if path.is_file() and not path.is_symlink():
                    files.append(path.relative_to(root).as_posix())
        return cls(root=root, files=files)

    @property
    def c_files(self) -> list[str]:
        return [f for f in self.files if Path(f).suffix.lower() in C_EXTENSIONS]

    @property
    def c_sources(self) -> list[str]:
        return [f for f in self.files if Path(f).suffix.lower() in C_SOURCES]

    @property
    def compile_database(self) -> Path | None:
        """``compile_commands.json`` at the root or in ``build/`` (where CMake writes it)."""
        for candidate in (self.root / "compile_commands.json", self.root / "build" / "compile_commands.json"):
            if candidate.is_file():
                return candidate
        return None

    def relative(self, reported: str) -> str | None:
        """An engine's reported path as relative to the root, or ``None`` when outside it."""
        path = Path(reported)
        if not path.is_absolute():
            path = self.root / path
        try:
            return Path(os.path.normpath(path)).relative_to(os.path.normpath(self.root.resolve())).as_posix()
        except ValueError:
            try:
                return Path(os.path.normpath(path)).relative_to(os.path.normpath(self.root)).as_posix()
            except ValueError:
                return None


@dataclass(frozen=True)
class RunContext:
    """How to run engines: where they are, the limits, scratch space, and what the context asks."""

    tools_dir: Path | None
    scratch: Path
    limits: ScanLimits = DEFAULT_SCAN_LIMITS
    misra: bool = False
    jobs: int = 2

    def executable(self, name: str) -> Path:
        if self.tools_dir is None:
            raise EngineSkipped("no tools environment (scripts/setup.sh --tools, or set TRUSTROOT_TOOLS_DIR)")
        path = self.tools_dir / "bin" / name
        if not path.is_file() or not os.access(path, os.X_OK):
            raise EngineSkipped(f"{name} is not installed in {self.tools_dir}")
        return path


@dataclass
class EngineOutcome:
    """What one engine did on one tree: ``ok``, ``skipped`` (with why), ``failed`` or ``timeout``."""

    engine: str
    status: Literal["ok", "skipped", "failed", "timeout"]
    detail: str = ""
    seconds: float = 0.0
    findings: list[Finding] = field(default_factory=list)


class Driver(Protocol):
    """An engine driver: runs its tool on a tree and returns findings with tree-relative paths."""

    name: str

    def run(self, tree: Tree, ctx: RunContext) -> list[Finding]: ...


@dataclass
class ToolRun:
    returncode: int
    stdout: bytes
    stderr: bytes
    seconds: float


class EngineTimeout(EngineFailure):
    """The engine ran past its time limit and was killed with its process group."""


def run_tool(argv: Sequence[object], *, timeout: float, cwd: Path | None = None) -> ToolRun:
    """Run ``argv`` in its own process group; kill the whole group when ``timeout`` passes."""
    env = {**os.environ, **QUIET_ENV}
    started = time.monotonic()
    try:
        process = subprocess.Popen(
            [str(a) for a in argv],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
    except OSError as exc:
        raise EngineFailure(f"cannot start {argv[0]}: {exc}") from exc
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise EngineTimeout(f"{Path(str(argv[0])).name} ran longer than {timeout:.0f} s and was stopped") from None
    except BaseException:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise
    return ToolRun(process.returncode, stdout, stderr, time.monotonic() - started)


class LineCache:
    """Lines of the files findings point into, read once each (for snippets)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.cache: dict[str, list[str]] = {}

    def line(self, rel: str, number: int) -> str:
        if number < 1:
            return ""
        lines = self.cache.get(rel)
        if lines is None:
            try:
                with (self.root / rel).open("rb") as handle:
                    lines = handle.read(8 * 1024 * 1024).decode("utf-8", "replace").splitlines()
            except OSError:
                lines = []
            self.cache[rel] = lines
        return lines[number - 1].strip() if number <= len(lines) else ""


def read_line(root: Path, rel: str, number: int) -> str:
    """Line ``number`` (1-based) of ``root/rel``, stripped; empty when unreadable."""
    return LineCache(root).line(rel, number)
