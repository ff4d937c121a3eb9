"""Verdicts: per ETSI TS 103 701 test unit, rolled up per EN 303 645 provision.

Every verdict names the evidence it rests on (:class:`EvidenceRef`: the file, the record's seq and
hash, or the context's key path and line). The roll-up of a provision's test units::

    any unit fail            -> fail
    else any inconclusive    -> inconclusive   (no evidence for that unit; a signed declaration
                                                 of the provision turns it into declared)
    else any declared        -> declared
    else                     -> pass
    ICS says N/A (only where a condition or feature allows it) -> not_applicable, naming it
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["EvidenceRef", "ProvisionResult", "UnitResult", "Verdict", "roll_up"]


class Verdict(enum.StrEnum):
    """The five verdicts of an assessment."""

    PASS = "pass"  # noqa: S105  (a verdict, not a password)
    FAIL = "fail"
    NOT_APPLICABLE = "not_applicable"
    DECLARED = "declared"
    INCONCLUSIVE = "inconclusive"


#: Which verdict wins when test units disagree (higher wins).
_RANK = {
    Verdict.NOT_APPLICABLE: 0,
    Verdict.PASS: 1,
    Verdict.DECLARED: 2,
    Verdict.INCONCLUSIVE: 3,
    Verdict.FAIL: 4,
}


@dataclass(frozen=True, slots=True)
class EvidenceRef:
    """One piece of evidence a verdict rests on.

    ``source`` is a file (``.trustroot/evidence.jsonl``, the fleet's exported chain, the context
    file, a stored scan report); ``seq`` and ``hash`` identify an evidence record in it; ``key`` and
    ``line`` a setting of the context; ``type`` is the record type (or ``context``, ``lint``, ``scan``).
    """

    source: str
    type: str
    seq: int | None = None
    hash: str | None = None
    key: str | None = None
    line: int | None = None
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"source": self.source, "type": self.type}
        for name in ("seq", "hash", "key", "line"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        if self.note:
            out["note"] = self.note
        return out


@dataclass(frozen=True, slots=True)
class UnitResult:
    """The verdict of one test unit (a TS 103 701 test case, or one check of a provision)."""

    unit: str
    title: str
    verdict: Verdict
    reason: str
    evidence: tuple[EvidenceRef, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {
            "unit": self.unit,
            "title": self.title,
            "verdict": self.verdict.value,
            "reason": self.reason,
            "evidence": [e.as_dict() for e in self.evidence],
        }


@dataclass(slots=True)
class ProvisionResult:
    """A provision's rolled-up verdict with its test units."""

    id: str
    section: str
    guideline: int
    status: str
    title: str
    verdict: Verdict
    reason: str
    units: list[UnitResult] = field(default_factory=list)
    condition: str | None = None
    declaration: dict[str, Any] | None = None
    ics: dict[str, Any] | None = None
    psti: tuple[str, ...] = ()
    cra: tuple[str, ...] = ()
    test_group: str = ""
    test_cases: tuple[tuple[str, str], ...] = ()

    @property
    def mandatory(self) -> bool:
        return self.status.startswith("M")

    @property
    def evidence(self) -> list[EvidenceRef]:
        seen: dict[tuple[Any, ...], EvidenceRef] = {}
        for unit in self.units:
            for ref in unit.evidence:
                seen.setdefault((ref.source, ref.seq, ref.key, ref.type), ref)
        return list(seen.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "section": self.section,
            "guideline": self.guideline,
            "status": self.status,
            "mandatory": self.mandatory,
            "title": self.title,
            "verdict": self.verdict.value,
            "reason": self.reason,
            "condition": self.condition,
            "declaration": self.declaration,
            "ics": self.ics,
            "psti": list(self.psti),
            "cra": list(self.cra),
            "test_group": self.test_group,
            "test_cases": [{"id": case, "kind": kind} for case, kind in self.test_cases],
            "units": [u.as_dict() for u in self.units],
            "evidence": [e.as_dict() for e in self.evidence],
        }


def roll_up(units: Sequence[UnitResult]) -> tuple[Verdict, str]:
    """The provision's verdict from its units, and the reason of the unit that decided it."""
    if not units:
        return Verdict.INCONCLUSIVE, "no test unit of this provision can be decided from evidence"
    worst = max(units, key=lambda u: _RANK[u.verdict])
    if worst.verdict is Verdict.PASS:
        return Verdict.PASS, "; ".join(u.reason for u in units)
    return worst.verdict, worst.reason


def count(verdicts: Iterable[Verdict]) -> dict[str, int]:
    """How many of each verdict, every verdict named (zeros included)."""
    out = {v.value: 0 for v in Verdict}
    for verdict in verdicts:
        out[verdict.value] += 1
    return out
