"""Pure pieces of the assessment: roll-up, the CRA Art. 14 clock, compare, CSAF names, the SARIF reading."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from trustroot.compliance.catalogue import load_catalogue
from trustroot.compliance.cra import Report, cra_clock
from trustroot.compliance.csaf import advisory_file_name
from trustroot.compliance.outputs import compare_reports
from trustroot.compliance.readers import READERS
from trustroot.compliance.scans import _parse_sarif
from trustroot.compliance.verdicts import UnitResult, Verdict, roll_up

T0 = datetime(2026, 9, 20, 8, 0, tzinfo=UTC)


def _unit(verdict: Verdict, reason: str = "r") -> UnitResult:
    return UnitResult("x/1", "t", verdict, reason)


@pytest.mark.parametrize(
    ("verdicts", "expected"),
    [
        ([Verdict.PASS, Verdict.PASS], Verdict.PASS),
        ([Verdict.PASS, Verdict.INCONCLUSIVE], Verdict.INCONCLUSIVE),
        ([Verdict.INCONCLUSIVE, Verdict.FAIL, Verdict.PASS], Verdict.FAIL),
        ([Verdict.PASS, Verdict.DECLARED], Verdict.DECLARED),
        ([Verdict.DECLARED, Verdict.INCONCLUSIVE], Verdict.INCONCLUSIVE),
        ([], Verdict.INCONCLUSIVE),
    ],
)
def test_roll_up_takes_the_worst_unit(verdicts: list[Verdict], expected: Verdict) -> None:
    assert roll_up([_unit(v) for v in verdicts])[0] is expected


def test_the_failing_unit_gives_the_reason() -> None:
    assert roll_up([_unit(Verdict.PASS, "fine"), _unit(Verdict.FAIL, "broken")]) == (Verdict.FAIL, "broken")


def _exploited(**fields: str | None) -> Report:
    report = Report("VD-1", T0)
    report.fields.update(
        actively_exploited=True,
        early_warning_due=(T0 + timedelta(hours=24)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        notification_due=(T0 + timedelta(hours=72)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        **fields,
    )
    return report


def test_cra_clock_runs_from_intake() -> None:
    steps = {s.step: s.status for s in cra_clock(_exploited(), T0 + timedelta(hours=23))}
    assert steps == {"early_warning": "due", "notification": "due", "final_report": "not_started"}
    steps = {s.step: s.status for s in cra_clock(_exploited(), T0 + timedelta(hours=25))}
    assert steps == {"early_warning": "overdue", "notification": "due", "final_report": "not_started"}
    steps = {s.step: s.status for s in cra_clock(_exploited(), T0 + timedelta(hours=73))}
    assert steps["notification"] == "overdue"


def test_cra_steps_sent_late_or_in_time() -> None:
    report = _exploited(early_warning_at="2026-09-21T09:00:00Z", notification_at="2026-09-21T10:00:00Z")
    steps = {s.step: s.status for s in cra_clock(report, T0 + timedelta(days=10))}
    assert steps == {"early_warning": "late", "notification": "sent", "final_report": "not_started"}


def test_no_clock_for_a_report_not_exploited() -> None:
    report = Report("VD-2", T0)
    assert cra_clock(report, T0 + timedelta(days=30)) == []


def test_compare_names_every_change() -> None:
    old = {
        "provisions": [
            {"id": "5.1-1", "verdict": "pass"},
            {"id": "5.2-1", "verdict": "pass"},
            {"id": "x", "verdict": "fail"},
        ]
    }
    new = {
        "provisions": [
            {"id": "5.1-1", "verdict": "fail"},
            {"id": "5.2-1", "verdict": "pass"},
            {"id": "y", "verdict": "pass"},
        ]
    }
    assert compare_reports(old, new) == [
        {"id": "5.1-1", "old": "pass", "new": "fail"},
        {"id": "y", "old": "absent", "new": "pass"},
        {"id": "x", "old": "fail", "new": "absent"},
    ]


def test_csaf_file_names_follow_the_standard() -> None:
    assert advisory_file_name("VD-3F2A") == "vd-3f2a.json"
    assert advisory_file_name("ACME:2026/01") == "acme_2026_01.json"


def test_sarif_reading_keeps_provisions_and_drops_accepted_findings() -> None:
    document = {
        "runs": [
            {
                "results": [
                    {
                        "ruleId": "detect-secrets.private-key",
                        "level": "error",
                        "message": {"text": "a private key"},
                        "locations": [
                            {"physicalLocation": {"artifactLocation": {"uri": "etc/k.pem"}, "region": {"startLine": 1}}}
                        ],
                        "properties": {
                            "severity": "high",
                            "provisions": ["5.4-1", "5.4-3"],
                            "tags": ["external/cwe/cwe-321"],
                        },
                    },
                    {
                        "ruleId": "cppcheck.nullPointer",
                        "level": "warning",
                        "message": {"text": "accepted"},
                        "properties": {"provisions": ["5.6-9"]},
                        "suppressions": [{"kind": "external", "status": "accepted", "justification": "false positive"}],
                    },
                ]
            }
        ]
    }
    findings = _parse_sarif(document)
    assert len(findings) == 1
    assert findings[0].provisions == ("5.4-1", "5.4-3") and findings[0].cwe == (321,)
    assert findings[0].location == "etc/k.pem:1" and findings[0].rank == 4


def test_every_reader_is_a_provision_of_the_catalogue() -> None:
    ids = set(load_catalogue("2.1.1").ids())
    assert set(READERS) <= ids
    assert len(READERS) >= 45


def test_a_store_url_is_named_without_its_password() -> None:
    from pathlib import Path

    from trustroot.compliance.sources import _store_label

    root = Path("/p")
    label = _store_label("postgresql+psycopg://trust:s3cret@127.0.0.1:5432/fleet", root / "x", root)
    assert label == "fleet:postgresql+psycopg://trust:***@127.0.0.1:5432/fleet"
    assert _store_label("sqlite:////p/.trustroot/fleet.sqlite", root / "x", root) == "fleet:.trustroot/fleet.sqlite"
