"""Evidence flips: change one source of evidence and assert exactly which provisions change verdict.

Every flip starts from a private copy of the session's made product. A change to the context also
takes 5.12-3 from pass to inconclusive: the set-up now differs from the one ``context check`` passed.
"""

from __future__ import annotations

import json
import os
import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from trustroot.cli.main import main
from trustroot.compliance.assess import assess
from trustroot.errors import UntrustedEvidenceError
from trustroot.product import open_product

if TYPE_CHECKING:
    from assess_fixtures import MadeProduct

pytest_plugins = ["assess_fixtures"]

SETUP_CHANGED = {"5.12-3": ("pass", "inconclusive")}


def _verdicts(made: MadeProduct, *, at: datetime | None = None) -> dict[str, str]:
    product = open_product(made.context)
    result = assess(product, now=at or datetime.now(UTC), fleet_evidence=made.fleet_evidence)
    return {p.id: p.verdict.value for p in result.provisions}


def _changed(before: dict[str, str], after: dict[str, str]) -> dict[str, tuple[str, str]]:
    return {pid: (before[pid], after[pid]) for pid in before if before[pid] != after[pid]}


def _edit(made: MadeProduct, old: str, new: str) -> None:
    text = made.context.read_text()
    assert old in text, old
    made.context.write_text(text.replace(old, new, 1))


@pytest.fixture(scope="module")
def baseline(made_product: MadeProduct) -> dict[str, str]:
    return _verdicts(made_product)


def test_remove_the_disclosure_contact(baseline: dict[str, str], product_copy: MadeProduct) -> None:
    text = product_copy.context.read_text()
    product_copy.context.write_text(re.sub(r"\[product\.disclosure\]\n(?:[^\[\n].*\n|\n)*", "", text, count=1))
    assert _changed(baseline, _verdicts(product_copy)) == {"5.2-1": ("pass", "fail"), **SETUP_CHANGED}


def test_let_the_support_period_lapse(baseline: dict[str, str], product_copy: MadeProduct) -> None:
    yesterday = (date.today() - timedelta(days=1)).isoformat()
    text = product_copy.context.read_text()
    product_copy.context.write_text(
        re.sub(r"support_period_end = \d{4}-\d{2}-\d{2}", f"support_period_end = {yesterday}", text)
    )
    assert _changed(baseline, _verdicts(product_copy)) == {"5.3-13": ("pass", "fail"), **SETUP_CHANGED}


def test_a_shared_password(
    baseline: dict[str, str], product_copy: MadeProduct, capsys: pytest.CaptureFixture[str]
) -> None:
    _edit(product_copy, 'mode = "derived"', 'mode = "shared"\nshared_value = "admin"')
    # Provisioning with it is refused outright, so no device ever gets the shared password ...
    code = main(["provision", "batch", "--factory", "line-1", "--count", "1", "--context", str(product_copy.context)])
    err = capsys.readouterr().err
    assert code == 1 and "5.1-1" in err, err
    # ... and the assessment fails 5.1-1 on the policy itself.
    assert _changed(baseline, _verdicts(product_copy)) == {"5.1-1": (baseline["5.1-1"], "fail"), **SETUP_CHANGED}


def test_tls_below_1_2(baseline: dict[str, str], product_copy: MadeProduct) -> None:
    _edit(product_copy, 'min_tls_version = "1.2"', 'min_tls_version = "1.0"')
    changed = _changed(baseline, _verdicts(product_copy))
    expected = {"5.1-3", "5.1-5", "5.5-1", "5.5-4", "5.5-5", "5.5-6", "5.5-7", "5.8-1", "5.8-2"}
    assert set(changed) == expected | set(SETUP_CHANGED)
    assert all(changed[p][1] == "fail" for p in expected)


def test_anti_rollback_off(baseline: dict[str, str], product_copy: MadeProduct) -> None:
    _edit(product_copy, "anti_rollback = true", "anti_rollback = false")
    assert _changed(baseline, _verdicts(product_copy)) == {
        "5.3-7": ("pass", "fail"),
        "5.7-1": ("pass", "fail"),
        **SETUP_CHANGED,
    }


def test_an_image_signed_with_a_foreign_key(
    baseline: dict[str, str], product_copy: MadeProduct, capsys: pytest.CaptureFixture[str]
) -> None:
    """An image not signed by the product's firmware key: publishing it is refused, and 5.3-10 fails."""
    foreign = product_copy.root / "foreign.pem"
    key = ec.generate_private_key(ec.SECP256R1())
    foreign.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    cwd = Path.cwd()
    os.chdir(product_copy.root)
    try:
        code = main(
            ["image", "sign", "fw.bin", "rogue.img", "--version", "9.0.0", "--pad-header", "--key", "foreign.pem"]
        )
    finally:
        os.chdir(cwd)
    assert code == 0
    code = main(
        [
            "release",
            "publish",
            str(product_copy.root / "rogue.img"),
            "--channel",
            "stable",
            "--context",
            str(product_copy.context),
        ]
    )
    err = capsys.readouterr().err
    assert code == 1 and "5.3-10" in err
    assert _changed(baseline, _verdicts(product_copy)) == {"5.3-10": ("pass", "fail")}


def test_an_unsigned_image_is_never_published(product_copy: MadeProduct, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "release",
            "publish",
            str(product_copy.root / "fw.bin"),
            "--channel",
            "stable",
            "--context",
            str(product_copy.context),
        ]
    )
    err = capsys.readouterr().err
    assert code == 1 and "5.3-10" in err and "not published" in err


def test_an_exploited_report_whose_cra_steps_are_overdue(baseline: dict[str, str], product_copy: MadeProduct) -> None:
    from trustroot.fleet.disclosures import DisclosureReport, receive, triage
    from trustroot.fleet.operators_models import DisclosureSeverity
    from trustroot.fleet.service import product_service

    product = open_product(product_copy.context)
    with product_service(product, None) as service:
        view = receive(service, DisclosureReport(summary="Remote reset", details="An unauthenticated reset."))
        triage(service, view.id, severity=DisclosureSeverity("critical"), actively_exploited=True, actor="ops")
    assert (
        main(
            [
                "fleet",
                "export-evidence",
                "--out",
                str(product_copy.fleet_evidence),
                "--context",
                str(product_copy.context),
                "-q",
            ]
        )
        == 0
    )
    # Within 24 hours nothing is overdue; four days on, the early warning and the notification are.
    assert _changed(baseline, _verdicts(product_copy)) == {}
    later = datetime.now(UTC) + timedelta(days=4)
    assert _changed(baseline, _verdicts(product_copy, at=later)) == {"5.2-2": ("pass", "fail")}
    result = assess(open_product(product_copy.context), now=later, fleet_evidence=product_copy.fleet_evidence)
    report = next(d for d in json.loads(json.dumps(_disclosures(result))) if d["id"] == view.id)
    assert report["overdue"] == ["early_warning", "notification"]
    assert set(report["drafts"]) == {"early_warning", "notification", "final_report"}


def _disclosures(result: object) -> list[dict[str, object]]:
    return list(result.disclosures)  # type: ignore[attr-defined]


def test_a_broken_evidence_chain_stops_the_assessment(
    product_copy: MadeProduct, capsys: pytest.CaptureFixture[str]
) -> None:
    log = product_copy.root / ".trustroot" / "evidence.jsonl"
    lines = log.read_bytes().splitlines(keepends=True)
    edited = lines[1].replace(b'"role":"issuing-ca"', b'"role":"issuing-cb"')
    assert edited != lines[1]
    lines[1] = edited
    log.write_bytes(b"".join(lines))
    with pytest.raises(UntrustedEvidenceError, match="does not verify"):
        _verdicts(product_copy)
    code = main(["assess", "--out", str(product_copy.root / "out"), "--context", str(product_copy.context)])
    err = capsys.readouterr().err
    assert code == 2
    assert "evidence log .trustroot/evidence.jsonl does not verify" in err and "Traceback" not in err
    assert not (product_copy.root / "out").exists()


def test_an_edited_fleet_export_stops_the_assessment(product_copy: MadeProduct) -> None:
    path = product_copy.fleet_evidence
    text = path.read_text().replace('"actively_exploited":true', '"actively_exploited":false', 1)
    assert text != path.read_text()
    path.write_text(text)
    with pytest.raises(UntrustedEvidenceError, match="fleet's exported audit chain"):
        _verdicts(product_copy)


#: Provisions decided from the scans of the root file system (all pass on the made product).
ROOTFS_SCANNED = {
    "5.1-1", "5.2-3", "5.4-1", "5.4-3", "5.5-1", "5.5-7",
    "5.6-1", "5.6-2", "5.6-4", "5.6-5", "5.6-7", "5.6-9", "5.13-1",
}  # fmt: skip


def test_plant_a_private_key_in_the_firmware_tree(baseline: dict[str, str], product_copy: MadeProduct) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    planted = product_copy.root / "firmware" / "rootfs" / "etc" / "device-key.pem"
    planted.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    # The last scan is now older than the tree it covered: nothing it said counts any more.
    stale = _changed(baseline, _verdicts(product_copy))
    assert stale == dict.fromkeys(ROOTFS_SCANNED, ("pass", "inconclusive"))
    # Scanned again, the key is found: exactly the key-storage provisions fail.
    cwd = Path.cwd()
    os.chdir(product_copy.root)
    try:
        assert main(["scan", "firmware/rootfs", "--fail-on", "high", "--quiet"]) == 1
    finally:
        os.chdir(cwd)
    assert _changed(baseline, _verdicts(product_copy)) == {"5.4-1": ("pass", "fail"), "5.4-3": ("pass", "fail")}


def test_a_swapped_scan_report_stops_the_assessment(product_copy: MadeProduct) -> None:
    report = sorted((product_copy.root / ".trustroot" / "scans").glob("*.sarif"))[-1]
    document = json.loads(report.read_text())
    document["runs"][0]["results"] = []
    report.write_text(json.dumps(document))
    with pytest.raises(UntrustedEvidenceError, match="changed after the scan"):
        _verdicts(product_copy)


def test_revoke_the_declarers_key(baseline: dict[str, str], product_copy: MadeProduct) -> None:
    """Declarations signed by a revoked key no longer count: what they covered is undecided again."""
    assert (
        main(["keys", "revoke", "jane", "--reason", "left the company", "--context", str(product_copy.context), "-q"])
        == 0
    )
    declared = {"4-1", "5.1-4", "5.4-2", "5.8-3", "6-1", "6-2", "6-3", "6-5"}
    assert _changed(baseline, _verdicts(product_copy)) == dict.fromkeys(declared, ("declared", "inconclusive"))


def test_an_ics_row_marked_not_applicable_names_its_condition(
    baseline: dict[str, str], product_copy: MadeProduct
) -> None:
    ctx = ["--context", str(product_copy.context), "-q"]
    assert main(["compliance", "fill", "--edition", "2.1.1", *ctx]) == 0
    assert _changed(baseline, _verdicts(product_copy)) == {}  # the derived ICS agrees with the evidence
    ics = product_copy.root / "compliance" / "ics.toml"
    text = ics.read_text()
    pending = re.search(r'\[provision\."5\.6-4"\]\nsource = "pending"\n(digest = "[0-9a-f]+"\n)?', text)
    assert pending is not None
    ics.write_text(
        text.replace(
            pending.group(0),
            '[provision."5.6-4"]\nsupport = "N/A"\nbecause = ["C(13)"]\n'
            'justification = "The enclosure is sealed and the board has no debug header populated."\n',
        )
    )
    product = open_product(product_copy.context)
    result = assess(product, now=datetime.now(UTC), fleet_evidence=product_copy.fleet_evidence)
    row = next(p for p in result.provisions if p.id == "5.6-4")
    assert row.verdict.value == "not_applicable"
    assert row.condition == "condition 13: a debug interface is physically accessible"
    assert _changed(baseline, {p.id: p.verdict.value for p in result.provisions}) == {
        "5.6-4": ("pass", "not_applicable")
    }


def test_an_unsigned_context_declaration_does_not_count(product_copy: MadeProduct) -> None:
    text = product_copy.context.read_text()
    product_copy.context.write_text(
        text.replace(
            "[declarations]\n", '[declarations]\n"5.6-3" = { statement = "No exposed ports", by = "CTO" }\n', 1
        )
    )
    result = assess(
        open_product(product_copy.context), now=datetime.now(UTC), fleet_evidence=product_copy.fleet_evidence
    )
    row = next(p for p in result.provisions if p.id == "5.6-3")
    assert row.verdict.value == "inconclusive"
    assert "statement by CTO is not signed, so it does not count" in row.reason


def test_the_cli_flags_overdue_cra_steps_and_writes_their_drafts(
    product_copy: MadeProduct, capsys: pytest.CaptureFixture[str]
) -> None:
    from trustroot.fleet.disclosures import DisclosureReport, receive, triage
    from trustroot.fleet.operators_models import DisclosureSeverity
    from trustroot.fleet.service import product_service

    four_days_ago = datetime.now(UTC) - timedelta(days=4)
    product = open_product(product_copy.context, clock=lambda: four_days_ago)
    with product_service(product, None) as service:
        view = receive(service, DisclosureReport(summary="Botnet login", details="Exploited in the wild."))
        triage(service, view.id, severity=DisclosureSeverity("critical"), actively_exploited=True, actor="ops")
    ctx = ["--context", str(product_copy.context)]
    assert main(["fleet", "export-evidence", "--out", str(product_copy.fleet_evidence), *ctx, "-q"]) == 0
    capsys.readouterr()
    out = product_copy.root / "out"
    code = main(["assess", "--out", str(out), "--fleet-evidence", str(product_copy.fleet_evidence), *ctx, "-q"])
    printed = capsys.readouterr().out
    assert code == 0  # 5.2-2 is a recommendation: the mandatory gate still passes
    assert f"CRA Art. 14 overdue: {view.id} early_warning" in printed
    assert f"CRA Art. 14 overdue: {view.id} notification" in printed
    drafts = sorted(p.name for p in (out / "cra").glob(f"{view.id}-*.md"))
    assert drafts == [f"{view.id}-early_warning.md", f"{view.id}-final_report.md", f"{view.id}-notification.md"]
    assert "(OVERDUE)" in (out / "cra" / f"{view.id}-early_warning.md").read_text()
