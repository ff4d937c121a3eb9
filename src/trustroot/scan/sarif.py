"""SARIF 2.1.0 output of a scan, as code-scanning services (GitHub, GitLab) read it.

* one run, tool ``trustroot`` with the engines that ran as ``tool.extensions``;
* one rule per rule id, tagged ``security`` and ``external/cwe/cwe-NNN``, with the highest
  ``security-severity`` of its results;
* every result carries its ``level`` (high ``error``, medium ``warning``, low ``note``, info and
  inventory ``none``), ``properties.security-severity`` (a CVSS-like number), the provisions,
  guideline, engines and CWE ids, a ``partialFingerprints`` entry (the baseline fingerprint), and
  ``suppressions`` when a baseline accepted it (with the reason as justification);
* a member of an archive or image has the URI ``<archive>/<member>`` and an ``artifacts[]`` entry
  whose ``parentIndex`` points at the archive's entry; a blob finding has
  ``region.byteOffset``/``byteLength``, a text finding ``startLine`` (and ``startColumn``).
"""

from __future__ import annotations

import json
import urllib.parse
from pathlib import Path
from typing import Any, Final

from trustroot import __version__
from trustroot.scan.findings import Finding, Severity
from trustroot.scan.gate import ScanResult
from trustroot.scan.merge import Merged

__all__ = ["LEVELS", "SARIF_SCHEMA", "SECURITY_SEVERITY", "sarif_bytes", "to_sarif"]

SARIF_SCHEMA: Final = "https://json.schemastore.org/sarif-2.1.0.json"
LEVELS: Final = {
    Severity.HIGH: "error",
    Severity.MEDIUM: "warning",
    Severity.LOW: "note",
    Severity.INFO: "none",
    Severity.INVENTORY: "none",
}
#: CVSS-like numbers GitHub maps back to critical/high/medium/low.
SECURITY_SEVERITY: Final = {
    Severity.HIGH: "8.0",
    Severity.MEDIUM: "5.5",
    Severity.LOW: "3.0",
    Severity.INFO: "0.0",
    Severity.INVENTORY: "0.0",
}
_FINGERPRINT_KEY: Final = "trustroot/v1"


def _uri(path: str) -> str:
    if path.startswith("/"):
        return Path(path).as_uri()
    return urllib.parse.quote(path, safe="/:@!$&'()*+,;=-._~")


class _Artifacts:
    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []
        self.index: dict[str, int] = {}

    def of(self, path: str, container: str | None) -> int:
        if path in self.index:
            return self.index[path]
        parent = self.of(container, None) if container is not None and container != path else None
        entry: dict[str, Any] = {"location": {"uri": _uri(path)}}
        if parent is not None:
            entry["parentIndex"] = parent
        self.entries.append(entry)
        self.index[path] = len(self.entries) - 1
        return self.index[path]


def _region(finding: Finding) -> dict[str, Any] | None:
    loc = finding.location
    region: dict[str, Any] = {}
    if loc.byte_offset is not None:
        region["byteOffset"] = loc.byte_offset
        region["byteLength"] = max(loc.byte_length or 1, 0)
    elif loc.line >= 1:
        region["startLine"] = loc.line
        if loc.column >= 1:
            region["startColumn"] = loc.column
    else:
        return None
    if finding.snippet:
        region["snippet"] = {"text": finding.snippet}
    return region


def _tags(finding: Finding) -> list[str]:
    return ["security", *(f"external/cwe/cwe-{c}" for c in finding.cwe)]


def _result(merged: Merged, rule_index: int, artifacts: _Artifacts, reason: str | None) -> dict[str, Any]:
    finding = merged.finding
    loc = finding.location
    physical: dict[str, Any] = {
        "artifactLocation": {"uri": _uri(loc.path), "index": artifacts.of(loc.path, loc.container)}
    }
    region = _region(finding)
    if region is not None:
        physical["region"] = region
    result: dict[str, Any] = {
        "ruleId": finding.rule_id,
        "ruleIndex": rule_index,
        "level": LEVELS[finding.severity],
        "message": {"text": finding.message or finding.title},
        "locations": [{"physicalLocation": physical}],
        "partialFingerprints": {_FINGERPRINT_KEY: finding.fingerprint()},
        "properties": {
            "severity": finding.severity.value,
            "security-severity": SECURITY_SEVERITY[finding.severity],
            "provisions": list(finding.provisions),
            "guideline": finding.guideline,
            "engines": list(finding.engines),
            "cwe": [f"CWE-{c}" for c in finding.cwe],
            "tags": _tags(finding),
        },
    }
    if loc.container is not None:
        result["properties"]["container"] = loc.container
    if reason is not None:
        result["suppressions"] = [{"kind": "external", "status": "accepted", "justification": reason}]
    return result


def to_sarif(result: ScanResult) -> dict[str, Any]:
    """The SARIF 2.1.0 log of ``result`` as a JSON-ready dict."""
    rules: list[dict[str, Any]] = []
    rule_index: dict[str, int] = {}
    artifacts = _Artifacts()
    results: list[dict[str, Any]] = []
    items: list[tuple[Merged, str | None]] = [(m, None) for m in result.findings]
    items += [(m, reason) for m, reason in result.suppressed]
    for merged, reason in items:
        finding = merged.finding
        index = rule_index.get(finding.rule_id)
        if index is None:
            index = rule_index[finding.rule_id] = len(rules)
            rules.append(
                {
                    "id": finding.rule_id,
                    "name": finding.rule_id.replace(".", "/"),
                    "shortDescription": {"text": finding.title},
                    "defaultConfiguration": {"level": LEVELS[finding.severity]},
                    "properties": {"tags": _tags(finding), "security-severity": SECURITY_SEVERITY[finding.severity]},
                }
            )
            if finding.cwe:
                rules[-1]["helpUri"] = f"https://cwe.mitre.org/data/definitions/{finding.cwe[0]}.html"
        elif float(SECURITY_SEVERITY[finding.severity]) > float(rules[index]["properties"]["security-severity"]):
            rules[index]["properties"]["security-severity"] = SECURITY_SEVERITY[finding.severity]
        entry = _result(merged, index, artifacts, reason)
        given = result.target_of.get(id(merged))
        if given is not None:  # which of the scan's targets it belongs to (the assessment splits by it)
            entry["properties"]["target"] = given
        results.append(entry)
    extensions = [
        {"name": name, **({"version": version} if version else {})}
        for name, version in sorted(result.versions.items())
        if version is not None
    ]
    run: dict[str, Any] = {
        "tool": {
            "driver": {
                "name": "trustroot",
                "version": __version__,
                "informationUri": "https://www.etsi.org/deliver/etsi_en/303600_303699/303645/",
                "rules": rules,
            },
            "extensions": extensions,
        },
        "artifacts": artifacts.entries,
        "results": results,
        "invocations": [
            {
                "executionSuccessful": True,
                "startTimeUtc": result.started.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "toolExecutionNotifications": [
                    {
                        "level": "warning" if outcome.status in ("failed", "timeout") else "note",
                        "message": {"text": f"{target.given}: {name} {outcome.status}: {outcome.detail}".strip()},
                    }
                    for target in result.targets
                    for name, outcome in target.outcomes.items()
                    if outcome.status != "ok"
                ],
            }
        ],
        "properties": {"fail-on": result.fail_on.value, "targets": [t.given for t in result.targets]},
    }
    return {"$schema": SARIF_SCHEMA, "version": "2.1.0", "runs": [run]}


def sarif_bytes(result: ScanResult) -> bytes:
    """The SARIF log as UTF-8 JSON (stable key order, so equal scans give equal digests)."""
    return (json.dumps(to_sarif(result), indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")
