"""Merging duplicate findings: one defect reported by several engines becomes one finding.

Two findings are the same defect when they point at the same place (file and line, or blob and
byte offset) and their CWE ids share a family (:func:`trustroot.scan.cwe.family`: CWE-120 from
flawfinder and CWE-787 from cppcheck on one ``strcpy`` line); findings without a CWE merge only
with the same rule at the same place, and two different rules of one engine never merge (they
are two defects). The merged finding keeps the most severe report's rule,
title and message, the union of CWE ids and provisions, and lists every engine in ``engines``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from trustroot.scan.cwe import family
from trustroot.scan.findings import SEVERITY_ORDER, Finding

__all__ = ["Merged", "merge_findings"]


@dataclass
class Merged:
    """A merged finding and the fingerprints of every report it stands for (a baseline may name any)."""

    finding: Finding
    fingerprints: set[str]


def _place(finding: Finding) -> tuple[str, int, int]:
    loc = finding.location
    if loc.byte_offset is not None:
        return (loc.path, -1, loc.byte_offset)
    return (loc.path, loc.line, 0)


def _keys(finding: Finding) -> set[str]:
    if finding.cwe:
        return {family(c) for c in finding.cwe}
    return {f"rule:{finding.rule_id}"}


def _other_report(into: Merged, other: Finding) -> bool:
    """Whether ``other`` may be another engine's report of ``into``'s defect.

    Two different rules of one engine at one place are two defects (an ELF file without NX and
    without PIE; a shadow line with a weak scheme and a cracked default), never one.
    """
    return other.rule_id == into.finding.rule_id or not set(other.engines) <= set(into.finding.engines)


def _absorb(into: Merged, other: Finding) -> None:
    base = into.finding
    if SEVERITY_ORDER[other.severity] > SEVERITY_ORDER[base.severity]:
        base.rule_id, base.title, base.message = other.rule_id, other.title, other.message
        base.severity = other.severity
        base.snippet = other.snippet or base.snippet
        base.location = other.location
    base.cwe = tuple(dict.fromkeys((*base.cwe, *other.cwe)))
    base.provisions = tuple(dict.fromkeys((*base.provisions, *other.provisions)))
    base.guideline = base.guideline or other.guideline
    base.snippet = base.snippet or other.snippet
    base.engines = sorted({*base.engines, *other.engines})
    into.fingerprints.add(other.fingerprint())


def merge_findings(findings: Iterable[Finding]) -> list[Merged]:
    """Merge duplicates; the result is sorted by severity (worst first), then place."""
    groups: dict[tuple[str, int, int], list[Merged]] = {}
    for finding in findings:
        bucket = groups.setdefault(_place(finding), [])
        keys = _keys(finding)
        target = next((m for m in bucket if _keys(m.finding) & keys and _other_report(m, finding)), None)
        if target is None:
            copy = Finding(
                rule_id=finding.rule_id,
                title=finding.title,
                severity=finding.severity,
                location=finding.location,
                cwe=finding.cwe,
                provisions=finding.provisions,
                guideline=finding.guideline,
                snippet=finding.snippet,
                engines=sorted(set(finding.engines)),
                message=finding.message,
            )
            bucket.append(Merged(copy, {finding.fingerprint()}))
        else:
            _absorb(target, finding)
    merged = [m for bucket in groups.values() for m in bucket]
    for m in merged:
        m.fingerprints.add(m.finding.fingerprint())
    merged.sort(key=lambda m: (-SEVERITY_ORDER[m.finding.severity], *_place(m.finding), m.finding.rule_id))
    return merged
