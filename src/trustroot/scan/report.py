"""The text and JSON renderings of a scan result (SARIF is in :mod:`trustroot.scan.sarif`)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from trustroot.scan.findings import Finding
from trustroot.scan.gate import ScanResult
from trustroot.scan.merge import Merged

__all__ = ["finding_dict", "to_json", "to_json_text", "to_text"]

_SHOWN_SEVERITIES = ("high", "medium", "low", "info", "inventory")


def _esc(text: str) -> str:
    """``text`` safe inside Rich markup (a ``[`` in a path or snippet is not a tag)."""
    return text.replace("\\", "\\\\").replace("[", "\\[")


def _where(finding: Finding) -> str:
    loc = finding.location
    if loc.byte_offset is not None:
        return f"{loc.path}@0x{loc.byte_offset:x}"
    return f"{loc.path}:{loc.line}" if loc.line else loc.path


def finding_dict(merged: Merged) -> dict[str, Any]:
    """One finding as JSON: every field of the model plus its fingerprint."""
    f = merged.finding
    loc = f.location
    return {
        "rule_id": f.rule_id,
        "title": f.title,
        "severity": f.severity.value,
        "cwe": list(f.cwe),
        "provisions": list(f.provisions),
        "guideline": f.guideline,
        "location": {
            "path": loc.path,
            "line": loc.line,
            "column": loc.column,
            "byte_offset": loc.byte_offset,
            "byte_length": loc.byte_length,
            "container": loc.container,
        },
        "snippet": f.snippet,
        "engines": list(f.engines),
        "message": f.message,
        "fingerprint": f.fingerprint(),
    }


def to_json(result: ScanResult) -> dict[str, Any]:
    """The whole result as a JSON-ready dict."""
    return {
        "started": result.started.isoformat().replace("+00:00", "Z"),
        "seconds": round(result.seconds, 2),
        "fail_on": result.fail_on.value,
        "exit_code": result.exit_code(),
        "counts": result.counts(),
        "engines": result.versions,
        "targets": [
            {
                "path": t.given,
                "kind": t.kind,
                "files": t.files,
                "bytes": t.size,
                "newest_mtime": datetime.fromtimestamp(t.newest_mtime, UTC).isoformat().replace("+00:00", "Z")
                if t.newest_mtime
                else None,
                "counts": result.counts(t.given),
                "engines": {
                    name: {"status": o.status, "detail": o.detail, "seconds": round(o.seconds, 2)}
                    for name, o in t.outcomes.items()
                },
                "notes": t.notes,
            }
            for t in result.targets
        ],
        "findings": [finding_dict(m) for m in result.findings],
        "suppressed": [{**finding_dict(m), "reason": reason} for m, reason in result.suppressed],
    }


def to_json_text(result: ScanResult) -> str:
    return json.dumps(to_json(result), indent=2, sort_keys=True) + "\n"


def to_text(result: ScanResult, *, show_inventory: bool = False) -> str:
    """A human summary: per target what each engine did, then the findings, worst first."""
    lines: list[str] = []
    for target in result.targets:
        lines.append(f"[bold]{_esc(target.given)}[/bold] ({target.kind}, {target.files} files)")
        for name, outcome in target.outcomes.items():
            colour = {"ok": "green", "skipped": "yellow"}.get(outcome.status, "red")
            detail = f": {_esc(outcome.detail)}" if outcome.detail else ""
            lines.append(f"  [{colour}]{name:<15} {outcome.status:<8}[/{colour}] {outcome.seconds:6.1f} s{detail}")
        lines += [f"  note: {_esc(note)}" for note in target.notes]
    lines.append("")
    inventory = 0
    for merged in result.findings:
        f = merged.finding
        if f.severity.value == "inventory" and not show_inventory:
            inventory += 1
            continue
        cwe = ",".join(f"CWE-{c}" for c in f.cwe) or "-"
        prov = ",".join(f.provisions) or "-"
        lines.append(f"{f.severity.value.upper():<9} {_esc(_where(f))}  {_esc(f.title)}")
        lines.append(f"          {_esc(f.rule_id)}  {cwe}  EN 303 645 {prov}  \\[{', '.join(f.engines)}]")
        if f.snippet:
            lines.append(f"          | {_esc(f.snippet)}")
    if inventory:
        lines.append(f"({inventory} inventory items not shown: risky calls to review, not defects; see --format json)")
    counts = result.counts()
    summary = ", ".join(f"{counts[s]} {s}" for s in _SHOWN_SEVERITIES)
    lines.append(f"findings: {summary}; {len(result.suppressed)} accepted by the baseline")
    verdict = "FAIL" if result.exit_code() else "PASS"
    colour = "red" if result.exit_code() else "green"
    failing = f"{len(result.failing)} at or above {result.fail_on.value}"
    lines.append(f"[{colour}]{verdict}[/{colour}]: {failing} ({result.seconds:.1f} s)")
    return "\n".join(lines)
