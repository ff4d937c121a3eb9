"""Vulnerability reports as the evidence tells them, and the EU CRA Article 14 clock.

The fleet service computes every deadline from the intake time and writes it into its
``disclosure.changed`` records (``fleet/disclosures.py``); nothing is recomputed here. For a report
marked actively exploited (CRA Art. 14(2))::

    early warning   due intake + 24 h      (a)
    notification    due intake + 72 h      (b)
    final report    due 14 days after a corrective or mitigating measure is available   (c)

A step is *overdue* when its due time has passed (at the assessment's ``now``) and the evidence
records no submission; *late* when it was submitted after its due time. :func:`notification_drafts`
writes the text of each step still to be sent, to be completed and submitted by a person through
the single reporting platform (ENISA).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

from trustroot.compliance.verdicts import EvidenceRef

if TYPE_CHECKING:
    from trustroot.compliance.sources import EvidenceSet

__all__ = ["CRA_STEPS", "ClockStep", "Report", "cra_clock", "notification_drafts", "reports"]

#: (step name, due field, submitted field, CRA Art. 14 paragraph)
CRA_STEPS: Final = (
    ("early_warning", "early_warning_due", "early_warning_at", "14(2)(a)"),
    ("notification", "notification_due", "notification_at", "14(2)(b)"),
    ("final_report", "final_report_due", "final_report_at", "14(2)(c)"),
)
_DEFAULT_ACK_DAYS: Final = 5


def _time(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Report:
    """One vulnerability report: its latest state from the evidence."""

    id: str
    received_at: datetime
    fields: dict[str, Any] = field(default_factory=dict)
    evidence: list[EvidenceRef] = field(default_factory=list)

    def at(self, name: str) -> datetime | None:
        return _time(self.fields.get(name))

    @property
    def state(self) -> str:
        return str(self.fields.get("state") or "received")

    @property
    def actively_exploited(self) -> bool:
        return self.fields.get("actively_exploited") is True

    @property
    def resolution(self) -> str | None:
        value = self.fields.get("resolution")
        return str(value) if value else None

    @property
    def severity(self) -> str | None:
        value = self.fields.get("severity")
        return str(value) if value else None


def reports(ev: EvidenceSet) -> list[Report]:
    """Every report, in intake order, with its latest ``disclosure.changed`` fields merged in."""
    ack_days = _DEFAULT_ACK_DAYS
    disclosure = ev.context.model.product.disclosure
    if disclosure is not None:
        ack_days = disclosure.acknowledge_within_days
    found: dict[str, Report] = {}
    for sourced in ev.of_type("disclosure.received", "disclosure.changed"):
        data = sourced.data
        report_id = str(data.get("id") or sourced.record.subject)
        received = _time(data.get("received_at")) or _time(sourced.record.time) or ev.now
        report = found.get(report_id)
        if report is None:
            report = found[report_id] = Report(report_id, received)
            report.fields["acknowledge_due"] = _iso(received + timedelta(days=ack_days))
        if sourced.record.type == "disclosure.changed":
            report.fields.update({k: v for k, v in data.items() if k != "id"})
            report.received_at = _time(data.get("received_at")) or report.received_at
        report.evidence.append(sourced.ref(str(data.get("change", "received"))))
    return sorted(found.values(), key=lambda r: r.received_at)


@dataclass(frozen=True)
class ClockStep:
    """One step of the Article 14 clock for one report."""

    report: str
    step: str
    article: str
    due: datetime | None
    submitted: datetime | None
    status: str  # "sent", "late", "overdue", "due", "not_started"

    def as_dict(self) -> dict[str, Any]:
        return {
            "report": self.report,
            "step": self.step,
            "article": self.article,
            "due": _iso(self.due),
            "submitted": _iso(self.submitted),
            "status": self.status,
        }


def cra_clock(report: Report, now: datetime) -> list[ClockStep]:
    """The Article 14 steps of an actively exploited report (empty for any other)."""
    if not report.actively_exploited:
        return []
    steps = []
    for step, due_field, at_field, article in CRA_STEPS:
        due, sent = report.at(due_field), report.at(at_field)
        if sent is not None:
            status = "late" if due is not None and sent > due else "sent"
        elif due is None:
            status = "not_started"
        else:
            status = "overdue" if now > due else "due"
        steps.append(ClockStep(report.id, step, article, due, sent, status))
    return steps


_DRAFT_TITLES: Final = {
    "early_warning": "Early warning of an actively exploited vulnerability (CRA Art. 14(2)(a))",
    "notification": "Vulnerability notification (CRA Art. 14(2)(b))",
    "final_report": "Final report on an actively exploited vulnerability (CRA Art. 14(2)(c))",
}


def notification_drafts(ev: EvidenceSet, report: Report) -> dict[str, str]:
    """Markdown drafts of every step of ``report`` not yet submitted (by step name)."""
    model = ev.context.model
    product = model.product
    drafts: dict[str, str] = {}
    for step in cra_clock(report, ev.now):
        if step.submitted is not None:
            continue
        due = _iso(step.due) or "14 days after a corrective or mitigating measure is available"
        lines = [
            f"# {_DRAFT_TITLES[step.step]}",
            "",
            f"- Manufacturer: {product.manufacturer}, {product.manufacturer_address.replace(chr(10), ', ')}",
            f"- Product: {product.name}, model {product.model}, hardware {', '.join(product.hardware_versions)}",
            f"- Our reference: {report.id}",
            f"- Became aware (intake): {_iso(report.received_at)}",
            f"- Due: {due} ({'OVERDUE' if step.status == 'overdue' else step.status})",
            f"- Severity (our triage): {report.severity or 'not yet triaged'}",
            "- Actively exploited: yes",
        ]
        if step.step == "early_warning":
            lines += ["", "Member States where the product is made available: [complete]"]
        if step.step in ("notification", "final_report"):
            lines += [
                "",
                "General nature of the exploit and of the vulnerability: [complete]",
                "Corrective or mitigating measures taken: "
                + (_iso(report.at("corrective_measure_at")) or "[none yet: describe what users can do meanwhile]"),
                "Sensitivity of the information notified: [complete]",
            ]
        if step.step == "final_report":
            lines += ["Severity and impact: [complete]", "Threat actor information, if known: [complete]"]
        lines += ["", f"Contact for this report: {', '.join(product.disclosure.contact) if product.disclosure else ''}"]
        drafts[step.step] = "\n".join(lines) + "\n"
    return drafts
