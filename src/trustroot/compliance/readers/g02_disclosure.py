"""Guideline 2: a vulnerability disclosure policy, acted on (5.2-1, 5.2-2, 5.2-3)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from trustroot.compliance.cra import cra_clock, reports
from trustroot.compliance.readers import inconclusive, lint_unit, reader, scan_unit, unit
from trustroot.compliance.verdicts import EvidenceRef, UnitResult, Verdict
from trustroot.errors import TrustrootError

if TYPE_CHECKING:
    from trustroot.compliance.sources import EvidenceSet


@reader("5.2-1")
def disclosure_policy(ev: EvidenceSet) -> list[UnitResult]:
    p = "5.2-1"
    disclosure = ev.context.model.product.disclosure
    units = [
        lint_unit(
            ev,
            p,
            1,
            "A disclosure contact and policy are declared",
            "contact "
            + (", ".join(disclosure.contact) if disclosure else "")
            + f"; policy {disclosure.policy_url if disclosure else ''}",
            [("product", "disclosure", "contact"), ("product", "disclosure", "policy_url")],
        )
    ]
    from trustroot.context.security_txt import security_txt

    try:
        text = security_txt(ev.context.model, now=ev.now)
    except TrustrootError as exc:
        units.append(unit(p, 2, "security.txt (RFC 9116) can be published", Verdict.FAIL, exc.message))
    else:
        fields = {line.split(":", 1)[0] for line in text.splitlines() if ":" in line and not line.startswith("#")}
        missing = {"Contact", "Expires", "Policy"} - fields
        verdict = Verdict.FAIL if missing else Verdict.PASS
        reason = f"missing {', '.join(sorted(missing))}" if missing else "Contact, Expires and Policy present"
        units.append(
            unit(
                p, 2, "security.txt (RFC 9116) can be published", verdict, reason, [ev.setting("product", "disclosure")]
            )
        )
    return units


@reader("5.2-2")
def reports_acted_on(ev: EvidenceSet) -> list[UnitResult]:
    p = "5.2-2"
    if ev.fleet_source is None:
        return [inconclusive(p, 1, "Reports are acknowledged in time", "no fleet evidence (pass --fleet-evidence)")]
    found = reports(ev)
    if not found:
        return [
            unit(
                p,
                1,
                "Reports are acknowledged in time",
                Verdict.PASS,
                f"no vulnerability report received; the fleet's audit chain ({ev.fleet_source}) was read",
                [ev.chain_ref("no disclosure record up to this head", fleet=True)],
            )
        ]
    late: list[str] = []
    refs: list[EvidenceRef] = []
    for report in found:
        refs += report.evidence[-1:]
        due, done = report.at("acknowledge_due"), report.at("acknowledged_at")
        if due is not None and ((done is None and ev.now > due) or (done is not None and done > due)):
            late.append(f"{report.id} acknowledgement due {report.fields.get('acknowledge_due')}")
    units = [
        unit(
            p,
            1,
            "Reports are acknowledged in time",
            Verdict.FAIL if late else Verdict.PASS,
            "; ".join(late) if late else f"{len(found)} report(s), each acknowledged before its deadline",
            refs,
        )
    ]
    exploited = [r for r in found if r.actively_exploited]
    if exploited:
        missed = [
            f"{s.report} {s.step} ({s.status}, due {s.as_dict()['due']})"
            for r in exploited
            for s in cra_clock(r, ev.now)
            if s.status in ("overdue", "late")
        ]
        units.append(
            unit(
                p,
                2,
                "Actively exploited reports: CRA Art. 14 steps on time",
                Verdict.FAIL if missed else Verdict.PASS,
                "; ".join(missed) if missed else f"{len(exploited)} exploited report(s), no step overdue",
                [ref for r in exploited for ref in r.evidence[-1:]],
            )
        )
    return units


@reader("5.2-3")
def continuous_monitoring(ev: EvidenceSet) -> list[UnitResult]:
    return [scan_unit(ev, "5.2-3", 1, "Every scan target has a current scan", judge_findings=False)]
