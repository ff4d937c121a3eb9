"""The vulnerability disclosure intake and its handling, over the in-process application (SQLite store).

Public intake (size limit, validation, per-address rate limit, evidence without personal data),
operator triage / acknowledge / close, the EU CRA Art. 14 clock and the overdue list, and the CLI.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from service_fixtures import InProcess, in_process
from typer.testing import CliRunner

from trustroot.cli.app import build_app as build_cli
from trustroot.errors import UsageError
from trustroot.fleet.disclosures import rfc3339
from trustroot.fleet.operators import add_operator
from trustroot.fleet.store.audit import audit_log

pytest_plugins = ["service_fixtures"]
pytestmark = pytest.mark.integration

REPORT: dict[str, Any] = {
    "summary": "Telnet debug shell reachable on port 2323",
    "details": "Connect to 2323 and type 'debug'; a root shell opens.",
    "affected_versions": ["1.0.0", "1.1.0"],
    "reporter_contact": "mailto:finder@example.org",
}


def request(
    fleet: InProcess, method: str, path: str, *, token: str | None = None, client: str = "192.0.2.1", **kw: Any
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=fleet.app, client=(client, 40000))
        async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as http:
            return await http.request(method, path, headers=headers, **kw)

    return asyncio.run(go())


@pytest.fixture
def fleet(product_dir: Path, sqlite_store: str) -> Iterator[InProcess]:
    with in_process(product_dir, sqlite_store) as running:
        yield running


@pytest.fixture
def token(fleet: InProcess) -> str:
    return add_operator(fleet.service, "dora", "disclosure", actor="user:admin").token


def test_intake_answers_tracking_id_and_deadline_and_records_no_personal_data(fleet: InProcess) -> None:
    answer = request(fleet, "POST", "/api/v1/disclosures", json=REPORT)
    assert answer.status_code == 201, answer.text
    receipt = answer.json()
    assert receipt["id"].startswith("VD-")
    days = fleet.service.context.product.disclosure.acknowledge_within_days  # type: ignore[union-attr]
    assert receipt["acknowledge_by"] == rfc3339(fleet.now[0] + timedelta(days=days))
    [evidence] = [r for r in audit_log(fleet.service).iter_records() if r.type == "disclosure.received"]
    assert evidence.subject == receipt["id"] and evidence.data == {"id": receipt["id"]}
    assert "finder" not in json.dumps(evidence.data) + evidence.actor


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"summary": "x"}, 422),
        ({**REPORT, "extra": 1}, 422),
        ({**REPORT, "summary": ""}, 422),
        ({**REPORT, "affected_versions": ["v"] * 51}, 422),
        ({**REPORT, "details": "x" * (70 << 10)}, 413),
    ],
)
def test_intake_refuses_malformed_and_oversized_reports(fleet: InProcess, body: dict[str, Any], status: int) -> None:
    assert request(fleet, "POST", "/api/v1/disclosures", json=body).status_code == status
    assert request(fleet, "POST", "/api/v1/disclosures", content=b"{not json").status_code == 422


def test_intake_is_rate_limited_per_address(fleet: InProcess) -> None:
    limit = fleet.service.config.limits.disclosure_per_ip_per_hour
    answers = [request(fleet, "POST", "/api/v1/disclosures", json=REPORT).status_code for _ in range(limit)]
    assert answers == [201] * limit
    refused = request(fleet, "POST", "/api/v1/disclosures", json=REPORT)
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["retry-after"]) <= 3600
    assert request(fleet, "POST", "/api/v1/disclosures", json=REPORT, client="198.51.100.7").status_code == 201
    fleet.now[0] += timedelta(hours=1, seconds=1)
    assert request(fleet, "POST", "/api/v1/disclosures", json=REPORT).status_code == 201


def test_triage_starts_the_cra_clock_from_intake_and_lists_overdue(fleet: InProcess, token: str) -> None:
    intake = fleet.now[0]
    report_id = request(fleet, "POST", "/api/v1/disclosures", json=REPORT).json()["id"]
    quiet_id = request(fleet, "POST", "/api/v1/disclosures", json=REPORT).json()["id"]
    fleet.now[0] = intake + timedelta(hours=30)  # triaged late: the clock still runs from intake
    answer = request(
        fleet,
        "POST",
        f"/api/v1/disclosures/{report_id}/triage",
        token=token,
        json={"severity": "critical", "actively_exploited": True},
    )
    assert answer.status_code == 200, answer.text
    view = answer.json()
    assert view["state"] == "triaged" and view["acknowledged_at"] is not None
    assert datetime.fromisoformat(view["early_warning_due"]) == intake + timedelta(hours=24)
    assert datetime.fromisoformat(view["notification_due"]) == intake + timedelta(hours=72)
    assert view["final_report_due"] is None
    overdue = request(fleet, "GET", "/api/v1/disclosures/overdue", token=token).json()
    assert [(o["id"], o["obligation"]) for o in overdue] == [(report_id, "early_warning")]
    fleet.now[0] = intake + timedelta(days=6)
    overdue = request(fleet, "GET", "/api/v1/disclosures/overdue", token=token).json()
    assert {(o["id"], o["obligation"]) for o in overdue} == {
        (report_id, "early_warning"),
        (report_id, "notification"),
        (quiet_id, "acknowledge"),
    }
    fixed_at = "2026-12-01T00:00:00Z"
    path = f"/api/v1/disclosures/{report_id}"
    view = request(fleet, "POST", f"{path}/corrective-measure", token=token, json={"available_at": fixed_at}).json()
    assert view["final_report_due"].startswith("2026-12-15T00:00:00")
    for obligation in ("early_warning", "notification"):
        sent = request(fleet, "POST", f"{path}/submitted", token=token, json={"obligation": obligation})
        assert sent.status_code == 200, sent.text
    assert request(fleet, "POST", f"{path}/triage", token=token, json={"severity": "low"}).status_code == 409
    assert request(fleet, "POST", f"{path}/close", token=token, json={"resolution": "fixed"}).status_code == 200
    assert request(fleet, "POST", f"{path}/acknowledge", token=token).status_code == 409
    assert request(fleet, "GET", "/api/v1/disclosures/VD-0000000000000000", token=token).status_code == 404
    changes = [r for r in audit_log(fleet.service).iter_records() if r.type == "disclosure.changed"]
    assert [r.data["change"] for r in changes] == [  # type: ignore[call-overload]
        "triaged",
        "corrective_measure",
        "early_warning_sent",
        "notification_sent",
        "closed",
    ]
    first = changes[0].data
    assert isinstance(first, dict)
    assert first["early_warning_due"] == rfc3339(intake + timedelta(hours=24))
    assert first["notification_due"] == rfc3339(intake + timedelta(hours=72))
    assert changes[0].actor == "operator:dora"
    assert not any(isinstance(v, float) for r in changes for v in r.data.values())  # type: ignore[union-attr]


def test_operator_list_and_acknowledge(fleet: InProcess, token: str) -> None:
    report_id = request(fleet, "POST", "/api/v1/disclosures", json=REPORT).json()["id"]
    listed = request(fleet, "GET", "/api/v1/disclosures", token=token).json()
    assert [d["id"] for d in listed] == [report_id]
    assert listed[0]["reporter_contact"] == REPORT["reporter_contact"]
    acked = request(fleet, "POST", f"/api/v1/disclosures/{report_id}/acknowledge", token=token)
    assert acked.json()["state"] == "acknowledged"
    assert request(fleet, "GET", "/api/v1/disclosures?state=received", token=token).json() == []


def test_cli_operator_and_disclosure_commands(product_dir: Path) -> None:
    runner = CliRunner()
    cli = build_cli()
    context = ["--context", str(product_dir)]

    def run(*args: str) -> Any:
        result = runner.invoke(cli, [*args, *context, "--json"])
        assert result.exit_code == 0, result.output
        return json.loads(result.output)

    added = run("operator", "add", "erin", "--scope", "read,disclosure")
    assert added["token"].startswith("tr_") and added["scopes"] == ["disclosure", "read"]
    assert [o["name"] for o in run("operator", "list")] == ["erin"]
    assert added["token"] not in json.dumps(run("operator", "list"))
    refused = runner.invoke(cli, ["operator", "add", "erin", "--scope", "read", *context])
    assert refused.exit_code != 0
    # a report through the library (the intake is HTTP only), then the CLI handles it
    from trustroot.fleet.disclosures import DisclosureReport, receive
    from trustroot.fleet.service import product_service as fleet_service
    from trustroot.product import open_product

    product = open_product(product_dir / "security-context.toml")
    with fleet_service(product, None) as service:
        report_id = receive(service, DisclosureReport.model_validate(REPORT)).id
    assert [d["id"] for d in run("disclosure", "list")] == [report_id]
    triaged = run("disclosure", "triage", report_id, "--severity", "high", "--actively-exploited")
    assert triaged["actively_exploited"] is True and triaged["early_warning_due"].endswith("Z")
    assert run("disclosure", "overdue") == []
    closed = run("disclosure", "close", report_id, "--resolution", "fixed")
    assert closed["state"] == "closed"
    assert run("operator", "revoke", "erin")["revoked_at"] is not None


def _t(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def _steps(view: dict[str, Any]) -> dict[str, tuple[datetime | None, datetime | None, bool]]:
    return {s["step"]: (_t(s["due"]), _t(s["sent_at"]), s["overdue"]) for s in view["cra_clock"]}


def test_the_cra_clock_shows_each_step_and_flags_overdue_ones_as_the_clock_moves(fleet: InProcess, token: str) -> None:
    intake = fleet.now[0]
    report_id = request(fleet, "POST", "/api/v1/disclosures", json=REPORT).json()["id"]
    path = f"/api/v1/disclosures/{report_id}"
    before = request(fleet, "GET", path, token=token).json()
    assert before["cra_clock"] == [] and before["overdue"] == []  # not exploited: no CRA clock

    fleet.now[0] = intake + timedelta(hours=25)
    triage = {"severity": "critical", "actively_exploited": True}
    assert request(fleet, "POST", f"{path}/triage", token=token, json=triage).status_code == 200
    view = request(fleet, "GET", path, token=token).json()
    early, notify = intake + timedelta(hours=24), intake + timedelta(hours=72)
    assert _steps(view) == {
        "early_warning": (early, None, True),
        "notification": (notify, None, False),
        "final_report": (None, None, False),
    }
    assert view["overdue"] == ["early_warning"] and _t(view["as_of"]) == fleet.now[0]
    assert "CRA Art. 14(2)(c)" in view["cra_clock"][2]["rule"]
    [listed] = request(fleet, "GET", "/api/v1/disclosures", token=token).json()
    assert listed["overdue"] == ["early_warning"] and _steps(listed) == _steps(view)

    sent = request(fleet, "POST", f"{path}/submitted", token=token, json={"obligation": "early_warning"})
    assert sent.json()["overdue"] == [] and _steps(sent.json())["early_warning"][1] == fleet.now[0]

    fleet.now[0] = intake + timedelta(hours=73)
    assert request(fleet, "GET", path, token=token).json()["overdue"] == ["notification"]
    fixed = intake + timedelta(days=4)
    fleet.now[0] = fixed
    body = {"available_at": fixed.isoformat()}
    assert request(fleet, "POST", f"{path}/corrective-measure", token=token, json=body).status_code == 200
    request(fleet, "POST", f"{path}/submitted", token=token, json={"obligation": "notification"})

    fleet.now[0] = fixed + timedelta(days=14, seconds=1)  # the final report: 14 days after the fix
    view = request(fleet, "GET", path, token=token).json()
    assert _steps(view)["final_report"] == (fixed + timedelta(days=14), None, True)
    assert view["overdue"] == ["final_report"]
    done = request(fleet, "POST", f"{path}/submitted", token=token, json={"obligation": "final_report"}).json()
    assert done["overdue"] == [] and not any(s["overdue"] for s in done["cra_clock"])

    # the evidence carries the clock as of each change: the assessment needs no service table
    changes = [r.data for r in audit_log(fleet.service).iter_records() if r.type == "disclosure.changed"]
    assert isinstance(changes[0], dict) and isinstance(changes[-1], dict)
    assert changes[0]["overdue"] == ["early_warning"] and changes[0]["as_of"] == rfc3339(intake + timedelta(hours=25))
    assert [s["step"] for s in changes[0]["cra_clock"]] == ["early_warning", "notification", "final_report"]  # type: ignore[index, union-attr]
    final = changes[-1]["cra_clock"][2]  # type: ignore[index]
    assert final["sent_at"] == rfc3339(fleet.now[0]) and final["overdue"] is False  # type: ignore[index]


def test_cli_shows_the_cra_clock_and_records_each_step(product_dir: Path) -> None:
    from trustroot.fleet.disclosures import DisclosureReport, receive
    from trustroot.fleet.service import product_service as fleet_service
    from trustroot.product import open_product

    product = open_product(product_dir / "security-context.toml")
    intake = datetime.now(UTC) - timedelta(hours=30)  # received 30 hours ago
    with fleet_service(product, None) as service:
        service.clock = lambda: intake
        report_id = receive(service, DisclosureReport.model_validate(REPORT)).id
    runner = CliRunner()
    cli = build_cli()
    context = ["--context", str(product_dir)]
    triaged = runner.invoke(
        cli, ["disclosure", "triage", report_id, "--severity", "high", "--actively-exploited", *context, "--json"]
    )
    assert triaged.exit_code == 0, triaged.output
    assert json.loads(triaged.output)["overdue"] == ["early_warning"]
    shown = runner.invoke(cli, ["disclosure", "show", report_id, *context])
    assert shown.exit_code == 0, shown.output
    assert "early warning" in shown.output and "OVERDUE" in shown.output and "not sent" in shown.output
    listed = runner.invoke(cli, ["disclosure", "list", *context])
    assert "OVERDUE: early_warning" in listed.output
    at = rfc3339(intake + timedelta(hours=20))
    sent = runner.invoke(
        cli, ["disclosure", "report", report_id, "--step", "early-warning", "--at", at, *context, "--json"]
    )
    assert sent.exit_code == 0, sent.output
    view = json.loads(sent.output)
    assert view["overdue"] == [] and view["cra_clock"][0]["sent_at"] == at
    wrong = runner.invoke(cli, ["disclosure", "report", report_id, "--step", "early_warning", *context])
    assert isinstance(wrong.exception, UsageError) and "early-warning, notification or final" in str(wrong.exception)
    naive = runner.invoke(
        cli, ["disclosure", "report", report_id, "--step", "final", "--at", "2026-01-01T00:00", *context]
    )
    assert isinstance(naive.exception, UsageError) and "time zone" in str(naive.exception)
    assert runner.invoke(cli, ["disclosure", "overdue", *context]).exit_code == 0
