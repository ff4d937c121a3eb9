"""The assessment: every provision of the catalogue decided from the verified evidence.

::

    assess(product, now, fleet_evidence | database)
      ├─ load_evidence()          chains verified first (UntrustedEvidenceError on a broken one)
      ├─ per provision            its reader's test units (readers/), rolled up (verdicts.roll_up)
      │    ├─ no reader           declared when a signed declaration covers it, else inconclusive
      │    ├─ inconclusive        declared when a signed declaration covers it
      │    └─ ICS N/A             not_applicable naming the condition (only where one allows it)
      └─ Assessment               the report model every artefact is rendered from
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

from trustroot.compliance.catalogue import Catalogue, Edition, Provision, load_catalogue
from trustroot.compliance.cra import cra_clock, notification_drafts, reports
from trustroot.compliance.declared import Declarations, load_declarations, load_ics_if_any
from trustroot.compliance.readers import READERS
from trustroot.compliance.sources import EvidenceSet, load_evidence
from trustroot.compliance.verdicts import ProvisionResult, UnitResult, Verdict, count, roll_up
from trustroot.evidence import format_time

if TYPE_CHECKING:
    from trustroot.compliance.ics import Ics
    from trustroot.product import Product

__all__ = ["SCHEMA", "Assessment", "FailOn", "assess", "status_text"]

#: The report format this module writes (report.json ``schema``).
SCHEMA: Final = "trustroot.assessment/1"
FailOn = Literal["mandatory", "recommended"]


def status_text(provision: Provision) -> str:
    """``M``, ``R C (12)``, ``M C (11, 12)``: the status as the standard's Table B.1 writes it."""
    text = provision.status.value
    if provision.conditions:
        text += " C (" + ", ".join(str(c) for c in provision.conditions) + ")"
    if provision.features:
        text += " F (" + ", ".join(provision.features) + ")"
    return text


@dataclass
class Assessment:
    """One assessment of one product: the verdicts and everything the artefacts need."""

    evidence: EvidenceSet
    catalogue: Catalogue
    provisions: list[ProvisionResult]
    generated_at: datetime
    declarations: Declarations
    disclosures: list[dict[str, Any]] = field(default_factory=list)

    @property
    def tool_checked(self) -> list[str]:
        return [p.id for p in self.provisions if p.id in READERS]

    def blocking(self, fail_on: FailOn = "mandatory") -> list[ProvisionResult]:
        """Provisions that fail the release gate: fail or inconclusive (mandatory only, or every one)."""
        bad = (Verdict.FAIL, Verdict.INCONCLUSIVE)
        return [p for p in self.provisions if p.verdict in bad and (p.mandatory or fail_on == "recommended")]

    def guideline_summary(self) -> list[dict[str, Any]]:
        out = []
        for number, title in sorted(self.catalogue.guidelines.items()):
            members = [p for p in self.provisions if p.guideline == number]
            if members:
                out.append({"number": number, "title": title, "verdicts": count(p.verdict for p in members)})
        return out

    def counts(self, mandatory: bool | None = None) -> dict[str, int]:
        return count(p.verdict for p in self.provisions if mandatory is None or p.mandatory == mandatory)


def _condition_text(catalogue: Catalogue, provision: Provision, reason: str) -> str:
    for number in provision.conditions:
        if f"condition {number}" in reason:
            return f"condition {number}: {catalogue.conditions.get(number, '')}".rstrip(": ")
    return reason


def _ics_condition(catalogue: Catalogue, because: list[str]) -> str:
    parts = []
    for item in because:
        if item.startswith("C("):
            number = int(item[2:-1])
            parts.append(f"condition {number}: {catalogue.conditions.get(number, '')}")
        elif item.startswith("F("):
            letter = item[2:-1]
            parts.append(f"feature ({letter}) absent: {catalogue.features.get(letter, '')}")
    return "; ".join(parts)


def _decide(
    ev: EvidenceSet, catalogue: Catalogue, provision: Provision, declarations: Declarations, ics: Ics | None
) -> ProvisionResult:
    result = ProvisionResult(
        id=provision.id,
        section=provision.section,
        guideline=provision.guideline,
        status=status_text(provision),
        title=provision.title,
        verdict=Verdict.INCONCLUSIVE,
        reason="",
        psti=provision.psti,
        cra=provision.cra,
        test_group=provision.test_group,
        test_cases=tuple((case.id, case.kind) for case in provision.test_units),
    )
    declaration = declarations.get(provision.id)
    if declaration is not None:
        result.declaration = declaration.as_dict()
    row = ics.entry(provision.id) if ics is not None else None
    if row is not None:
        result.ics = {
            "support": row.support,
            "justification": row.justification,
            "because": list(row.because),
            "source": row.source,
        }
    reader = READERS.get(provision.id)
    units: list[UnitResult] = reader(ev) if reader is not None else []
    result.units = units
    if units and all(u.verdict is Verdict.NOT_APPLICABLE for u in units):
        result.verdict = Verdict.NOT_APPLICABLE
        result.reason = units[0].reason
        result.condition = _condition_text(catalogue, provision, units[0].reason)
        return result
    verdict, reason = roll_up([u for u in units if u.verdict is not Verdict.NOT_APPLICABLE])
    if row is not None and row.support == "N/A" and row.because and verdict is not Verdict.FAIL:
        result.verdict = Verdict.NOT_APPLICABLE
        result.condition = _ics_condition(catalogue, list(row.because))
        result.reason = f"N/A in the ICS ({', '.join(row.because)}): {row.justification}".rstrip(": ")
        return result
    if reader is None:
        reason = "no tool can check this provision from evidence; a person must declare it"
    if verdict is Verdict.INCONCLUSIVE and declaration is not None:
        verdict = Verdict.DECLARED
        reason = f"declared by {declaration.by}: {declaration.justification}"
    elif verdict is Verdict.INCONCLUSIVE and reader is None:
        reason += f" (trustroot declare {provision.id} --by NAME --justification TEXT)"
        unsigned = ev.context.model.declarations.get(provision.id)
        if unsigned is not None:
            reason += f"; the context's [declarations] statement by {unsigned.by} is not signed, so it does not count"
    result.verdict, result.reason = verdict, reason
    return result


def _disclosures(ev: EvidenceSet) -> list[dict[str, Any]]:
    out = []
    for report in reports(ev):
        steps = cra_clock(report, ev.now)
        out.append(
            {
                "id": report.id,
                "state": report.state,
                "severity": report.severity,
                "actively_exploited": report.actively_exploited,
                "resolution": report.resolution,
                "received_at": format_time(report.received_at),
                "acknowledge_due": report.fields.get("acknowledge_due"),
                "acknowledged_at": report.fields.get("acknowledged_at"),
                "corrective_measure_at": report.fields.get("corrective_measure_at"),
                "cra_clock": [s.as_dict() for s in steps],
                "overdue": [s.step for s in steps if s.status == "overdue"],
                "drafts": notification_drafts(ev, report),
                "evidence": [r.as_dict() for r in report.evidence],
            }
        )
    return out


def assess(
    product: Product,
    *,
    now: datetime,
    fleet_evidence: Path | None = None,
    database: str | None = None,
    edition: Edition = "2.1.1",
) -> Assessment:
    """Assess ``product`` at ``now`` against the catalogue of ``edition`` (V2.1.1, the PSTI one)."""
    ev = load_evidence(product, now=now, fleet_evidence=fleet_evidence, database=database)
    catalogue = load_catalogue(edition)
    declarations = load_declarations(ev, product, edition)
    ics = load_ics_if_any(product, edition)
    provisions = [_decide(ev, catalogue, p, declarations, ics) for p in catalogue]
    return Assessment(
        evidence=ev,
        catalogue=catalogue,
        provisions=provisions,
        generated_at=now,
        declarations=declarations,
        disclosures=_disclosures(ev),
    )
