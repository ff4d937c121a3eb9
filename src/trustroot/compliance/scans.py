"""The latest scan of each target the context lists, its stored SARIF report, and whether it is stale.

``trustroot scan`` run inside a product appends a ``scan.completed`` record (the SARIF report's
SHA-256, the target, counts per severity and the newest modification time of the files it covered)
and keeps a copy of the report under ``.trustroot/scans/``. Here, for each ``[[code_quality.targets]]``:

- the latest ``scan.completed`` of that target (by name, or by path) is taken;
- the stored report is read and its SHA-256 must equal the record's (else
  :class:`~trustroot.errors.UntrustedEvidenceError`: the report was swapped after the scan);
- the scan is *stale* when a file of the target is now newer than the newest file it covered
  (or the target is gone): a stale scan decides nothing, the provisions it serves are inconclusive.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from trustroot.errors import UntrustedEvidenceError
from trustroot.evidence import format_time

if TYPE_CHECKING:
    from trustroot.compliance.sources import EvidenceSet, Sourced

__all__ = ["MAX_SARIF_BYTES", "MAX_TREE_FILES", "ScanEvidence", "ScanFinding", "load_scans", "newest_mtime"]

#: Largest stored SARIF report read back.
MAX_SARIF_BYTES: Final = 64 << 20
#: Most files walked to find a target's newest modification time.
MAX_TREE_FILES: Final = 200_000
_LEVEL_SEVERITY: Final = {"error": "high", "warning": "medium", "note": "low", "none": "info"}
_SEVERITY_RANK: Final = {"inventory": 0, "info": 1, "low": 2, "medium": 3, "high": 4}


@dataclass(frozen=True, slots=True)
class ScanFinding:
    """One result of a stored SARIF report, as far as the assessment needs it."""

    rule_id: str
    severity: str
    provisions: tuple[str, ...]
    cwe: tuple[int, ...]
    location: str
    message: str
    #: The scan target (as given to ``trustroot scan``) the finding belongs to; None in older reports.
    target: str | None = None

    @property
    def rank(self) -> int:
        return _SEVERITY_RANK.get(self.severity, 0)


@dataclass
class ScanEvidence:
    """The latest scan of one target."""

    target: str
    path: str
    kind: str
    record: Sourced | None
    report_path: str | None = None
    stale: bool = False
    stale_reason: str = ""
    findings: list[ScanFinding] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    sbom: dict[str, Any] | None = None

    @property
    def usable(self) -> bool:
        return self.record is not None and not self.stale

    def findings_for(self, provision: str, min_severity: str = "medium") -> list[ScanFinding]:
        floor = _SEVERITY_RANK[min_severity]
        return [f for f in self.findings if provision in f.provisions and f.rank >= floor]


def _to_epoch(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None
    return None


def newest_mtime(path: Path) -> float | None:
    """The newest modification time of ``path`` (a file) or of any file under it; None if absent."""
    if path.is_file():
        return path.stat().st_mtime
    if not path.is_dir():
        return None
    newest = 0.0
    seen = 0
    for directory, _dirs, files in os.walk(path):
        for name in files:
            seen += 1
            if seen > MAX_TREE_FILES:
                return newest
            try:
                newest = max(newest, (Path(directory) / name).lstat().st_mtime)
            except OSError:
                continue
    return newest


def _first(data: Mapping[str, Any], *names: str) -> Any:
    for name in names:
        if data.get(name) is not None:
            return data[name]
    return None


def _parse_sarif(document: Mapping[str, Any]) -> list[ScanFinding]:
    found: list[ScanFinding] = []
    for run in document.get("runs", []) or []:
        for result in run.get("results", []) or []:
            if any(s.get("status", "accepted") == "accepted" for s in result.get("suppressions", []) or []):
                continue  # accepted in the scan's baseline, with a reason
            props = result.get("properties", {}) or {}
            provisions = props.get("provisions") or props.get("provision") or []
            if isinstance(provisions, str):
                provisions = [provisions]
            severity = str(props.get("severity") or _LEVEL_SEVERITY.get(str(result.get("level", "warning")), "medium"))
            cwe: list[int] = []
            for tag in props.get("tags", []) or []:
                if isinstance(tag, str) and tag.startswith("external/cwe/cwe-") and tag[17:].isdigit():
                    cwe.append(int(tag[17:]))
            where = ""
            locations = result.get("locations") or []
            if locations:
                physical = locations[0].get("physicalLocation", {})
                uri = physical.get("artifactLocation", {}).get("uri", "")
                line = physical.get("region", {}).get("startLine")
                where = f"{uri}:{line}" if line else str(uri)
            found.append(
                ScanFinding(
                    rule_id=str(result.get("ruleId", "")),
                    severity=severity,
                    provisions=tuple(str(p) for p in provisions),
                    cwe=tuple(cwe),
                    location=where,
                    message=str((result.get("message") or {}).get("text", ""))[:300],
                    target=str(props["target"]) if isinstance(props.get("target"), str) else None,
                )
            )
    return found


def _read_report(record: Sourced, state_dir: Path, root: Path) -> tuple[str, list[ScanFinding], dict[str, Any] | None]:
    data = record.data
    stored = _first(data, "stored", "sarif_path", "report", "sarif_file")
    digest = _first(data, "sarif_sha256", "sarif_digest", "digest")
    if not isinstance(stored, str) or not isinstance(digest, str):
        raise UntrustedEvidenceError(
            f"scan.completed record seq {record.record.seq} names no stored report and digest, so its findings "
            "cannot be checked"
        )
    candidates = [Path(stored)] if Path(stored).is_absolute() else [state_dir / stored, root / stored]
    path = next((c for c in candidates if c.is_file()), None)
    if path is None:
        raise UntrustedEvidenceError(
            f"the stored report {stored} of scan.completed record seq {record.record.seq} is missing",
            hint="run the scan again: trustroot scan",
        )
    raw = path.read_bytes()[: MAX_SARIF_BYTES + 1]
    if len(raw) > MAX_SARIF_BYTES or hashlib.sha256(raw).hexdigest() != digest.lower():
        raise UntrustedEvidenceError(
            f"the stored report {stored} does not match the SHA-256 in scan.completed record seq "
            f"{record.record.seq}: it was changed after the scan",
            hint="run the scan again: trustroot scan",
        )
    try:
        document = json.loads(raw)
    except ValueError as exc:
        raise UntrustedEvidenceError(f"the stored report {stored} is not JSON: {exc}") from exc
    sbom_path = data.get("sbom")
    sbom = None
    if isinstance(sbom_path, str):
        for candidate in (state_dir / sbom_path, root / sbom_path):
            if candidate.is_file():
                try:
                    sbom = json.loads(candidate.read_bytes()[:MAX_SARIF_BYTES])
                except ValueError:
                    sbom = None
                break
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path), _parse_sarif(document), sbom


def _matches(record: Sourced, name: str, target_path: Path, root: Path) -> bool:
    data = record.data
    if data.get("target") == name:
        return True
    for key in ("path", "target", "paths"):
        value = data.get(key)
        values = value if isinstance(value, list) else [value]
        for item in values:
            if isinstance(item, str):
                candidate = Path(item) if Path(item).is_absolute() else root / item
                if candidate.resolve() == target_path.resolve():
                    return True
    return False


def load_scans(evidence: EvidenceSet, root: Path) -> dict[str, ScanEvidence]:
    """The latest scan of every target of ``[[code_quality.targets]]``, keyed by the target's name."""
    out: dict[str, ScanEvidence] = {}
    records = evidence.of_type("scan.completed")
    for target in evidence.context.model.code_quality.targets:
        target_path = root / target.path
        latest = next((r for r in reversed(records) if _matches(r, target.name, target_path, root)), None)
        scan = ScanEvidence(target=target.name, path=target.path, kind=target.kind, record=latest)
        out[target.name] = scan
        if latest is None:
            continue
        scan.report_path, findings, scan.sbom = _read_report(latest, evidence.state_dir, root)
        # one report may cover several targets: this target's findings are those the report gives it
        given = latest.data.get("path")
        scan.findings = [f for f in findings if f.target is None or f.target == given]
        counts = latest.data.get("counts")
        if isinstance(counts, dict):
            scan.counts = {str(k): int(v) for k, v in counts.items() if isinstance(v, int)}
        covered = _to_epoch(_first(latest.data, "newest_mtime", "newest_file_mtime", "covered_mtime"))
        now_newest = newest_mtime(target_path)
        if now_newest is None:
            scan.stale, scan.stale_reason = True, f"the target {target.path} is gone"
        elif covered is None:
            scan.stale, scan.stale_reason = True, "the scan record does not say how new its files were"
        elif now_newest > covered + 1e-6:
            changed = format_time(datetime.fromtimestamp(now_newest, UTC))
            scan.stale = True
            scan.stale_reason = (
                f"a file of {target.path} changed at {changed}, after the scan (seq {latest.record.seq})"
            )
    return out
