"""``trustroot assess`` on a product made with the earlier commands: verdicts, artefacts, gate, history, compare."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jsonschema
import pytest
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

from trustroot.cli.main import main
from trustroot.compliance.assess import assess
from trustroot.compliance.readers import READERS
from trustroot.compliance.report_json import json_schema
from trustroot.compliance.verdicts import Verdict
from trustroot.evidence import EvidenceLog
from trustroot.product import open_product

if TYPE_CHECKING:
    from assess_fixtures import MadeProduct

pytest_plugins = ["assess_fixtures"]

ARTEFACTS = {"report.json", "report.html", "report.md", "psti-statement.html", "security.txt", "sbom.cdx.json"}


def _csaf_validator() -> jsonschema.protocols.Validator:
    """The OASIS CSAF 2.0 JSON schema as the csaf-lib package ships it, with the FIRST CVSS schemas it refers to."""
    schemas = resources.files("csaf_lib").joinpath("verification", "schemas")
    csaf = json.loads(schemas.joinpath("csaf_2_0.json").read_text("utf-8"))
    registry: Registry[Any] = Registry()
    for version in ("2_0", "3_0", "3_1"):
        cvss = json.loads(schemas.joinpath(f"cvss_v{version}.json").read_text("utf-8"))
        url = f"https://www.first.org/cvss/cvss-v{version.replace('_', '.')}.json"
        registry = registry.with_resource(url, Resource.from_contents(cvss, default_specification=DRAFT7))
    validator_class = jsonschema.validators.validator_for(csaf)
    return validator_class(csaf, registry=registry, format_checker=validator_class.FORMAT_CHECKER)


@pytest.fixture(scope="module")
def assessed(made_product: MadeProduct, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    """`trustroot assess` once on a copy of the made product; (out dir, exit code)."""
    import shutil

    root = tmp_path_factory.mktemp("assessed") / "acme"
    shutil.copytree(made_product.root, root, symlinks=True)
    out = root.parent / "out"
    code = main(
        [
            "assess",
            "--out",
            str(out),
            "--fleet-evidence",
            str(root / made_product.fleet_evidence.name),
            "--context",
            str(root / "security-context.toml"),
            "--signatory",
            "Jane Doe, Head of Product Security",
            "--quiet",
        ]
    )
    return out, code


def test_every_mandatory_provision_a_tool_can_check_is_decided(made_product: MadeProduct) -> None:
    result = assess(
        open_product(made_product.context), now=datetime.now(UTC), fleet_evidence=made_product.fleet_evidence
    )
    undecided = [
        p.id for p in result.provisions if p.mandatory and p.id in READERS and p.verdict is Verdict.INCONCLUSIVE
    ]
    assert undecided == []
    assert not [p.id for p in result.provisions if p.verdict is Verdict.FAIL]
    # Every verdict names its evidence: each decided unit rests on at least one record or setting.
    for p in result.provisions:
        for unit in p.units:
            if unit.verdict in (Verdict.PASS, Verdict.FAIL, Verdict.NOT_APPLICABLE):
                assert unit.evidence, unit.unit


def test_writes_every_artefact_and_the_report_validates(assessed: tuple[Path, int]) -> None:
    out, _ = assessed
    assert {p.name for p in out.iterdir()} >= ARTEFACTS
    report = json.loads((out / "report.json").read_text())
    jsonschema.validate(report, json_schema(), format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
    assert report["schema"] == "trustroot.assessment/1"
    assert len(report["provisions"]) == 68
    chain = report["evidence"]["chains"][0]
    assert chain["source"] == ".trustroot/evidence.jsonl" and chain["last_signed_seq"] >= 1


def test_gate_exit_code_follows_the_mandatory_verdicts(assessed: tuple[Path, int]) -> None:
    out, code = assessed
    report = json.loads((out / "report.json").read_text())
    blocking = report["summary"]["gate"]["blocking"]
    mandatory_open = [
        p["id"] for p in report["provisions"] if p["mandatory"] and p["verdict"] in ("fail", "inconclusive")
    ]
    assert blocking == mandatory_open == []
    assert code == 0
    declared = {p["id"] for p in report["provisions"] if p["verdict"] == "declared"}
    assert declared == {"4-1", "5.1-4", "5.4-2", "5.8-3", "6-1", "6-2", "6-3", "6-5"}
    assert all(p["declaration"]["by"] == "jane" for p in report["provisions"] if p["verdict"] == "declared")


def test_csaf_advisory_for_the_fixed_report_validates(assessed: tuple[Path, int]) -> None:
    out, _ = assessed
    advisories = sorted((out / "csaf").glob("*.json"))
    assert len(advisories) == 1
    document = json.loads(advisories[0].read_text())
    errors = sorted(_csaf_validator().iter_errors(document), key=str)
    assert errors == []
    vulnerability = document["vulnerabilities"][0]
    assert vulnerability["product_status"]["fixed"] == ["CSAFPID-0001"]
    assert vulnerability["threats"][0]["category"] == "exploit_status"
    # a document that breaks the schema is refused by the same validator (the test can fail)
    broken = dict(document, document={**document["document"], "csaf_version": "1.2"})
    assert list(_csaf_validator().iter_errors(broken))


def test_sbom_security_txt_and_psti_statement(assessed: tuple[Path, int]) -> None:
    out, _ = assessed
    bom = json.loads((out / "sbom.cdx.json").read_text())
    assert bom["bomFormat"] == "CycloneDX" and bom["specVersion"] == "1.5"
    assert bom["serialNumber"].startswith("urn:uuid:")
    assert bom["metadata"]["component"]["version"] == "1.0.1+0"
    txt = (out / "security.txt").read_text()
    assert "Contact: mailto:security@" in txt and "\nExpires: " in txt and "\nPolicy: https://" in txt
    psti = (out / "psti-statement.html").read_text()
    for needle in (
        "consumer connectable product",  # product type
        "batch-",  # batch identifier
        "Example Manufacturer Ltd",  # manufacturer
        "has been prepared by or on behalf of",  # declaration
        "Security updates are provided until",  # support period
        "mailto:security@",  # where to report
        "Jane Doe, Head of Product Security",  # signatory
    ):
        assert needle in psti, needle


def test_history_evidence_and_compare(assessed: tuple[Path, int], capsys: pytest.CaptureFixture[str]) -> None:
    out, _ = assessed
    root = out.parent / "acme"
    runs = sorted((root / ".trustroot" / "assessments").iterdir())
    assert len(runs) == 1 and (runs[0] / "report.json").read_bytes() == (out / "report.json").read_bytes()
    records = [
        r
        for r in EvidenceLog(root / ".trustroot" / "evidence.jsonl").iter_records()
        if r.type == "assessment.completed"
    ]
    assert len(records) == 1
    import hashlib

    assert records[0].data["report_sha256"] == hashlib.sha256((out / "report.json").read_bytes()).hexdigest()
    # A second run after a change: --compare names exactly the provisions that changed; trends show the first run.
    context = root / "security-context.toml"
    context.write_text(context.read_text().replace("anti_rollback = true", "anti_rollback = false"))
    code = main(
        [
            "assess",
            "--out",
            str(out.parent / "out2"),
            "--fleet-evidence",
            str(root / "fleet-audit.jsonl"),
            "--compare",
            str(out / "report.json"),
            "--context",
            str(context),
            "--json",
        ]
    )
    result = json.loads(capsys.readouterr().out)
    assert code == 1
    assert {c["id"] for c in result["changes"]} == {"5.3-7", "5.7-1", "5.12-3"}
    second = json.loads((out.parent / "out2" / "report.json").read_text())
    assert [t["generated_at"] for t in second["trends"]] == [
        json.loads((out / "report.json").read_text())["generated_at"]
    ]
    assert "Changes since report.json" in (out.parent / "out2" / "report.html").read_text()


def test_compare_refuses_a_foreign_file(
    product_copy: MadeProduct, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"schema": "something/9", "provisions": []}))
    code = main(
        ["assess", "--out", str(tmp_path / "o"), "--compare", str(other), "--context", str(product_copy.context)]
    )
    err = capsys.readouterr().err
    assert code == 2 and "is not 'trustroot.assessment/1'" in err and "Traceback" not in err


def test_fleet_evidence_read_from_the_store_matches_the_export(made_product: MadeProduct) -> None:
    """Without --fleet-evidence the audit chain is read from the embedded store through its evidence interface."""
    product = open_product(made_product.context)
    at = datetime.now(UTC)
    exported = assess(product, now=at, fleet_evidence=made_product.fleet_evidence)
    from_store = assess(product, now=at)
    assert from_store.evidence.fleet_source == "fleet:.trustroot/fleet.sqlite"
    assert [(p.id, p.verdict) for p in from_store.provisions] == [(p.id, p.verdict) for p in exported.provisions]
    assert from_store.evidence.chains[1].head_hash == exported.evidence.chains[1].head_hash


def test_hostile_text_in_the_context_is_escaped_in_every_page(product_copy: MadeProduct) -> None:
    context = product_copy.context
    hostile = 'Acme <script>alert(1)</script> | "x" <img src=y>'
    text = context.read_text()
    context.write_text(text.replace('name = "Acme Plug"', f"name = {json.dumps(hostile)}", 1))
    out = product_copy.root / "out"
    main(
        [
            "assess",
            "--out",
            str(out),
            "--fleet-evidence",
            str(product_copy.fleet_evidence),
            "--context",
            str(context),
            "-q",
        ]
    )
    for page in ("report.html", "psti-statement.html"):
        html = (out / page).read_text()
        assert "<script" not in html and "<img" not in html, page
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html, page
    markdown = (out / "report.md").read_text()
    assert "<script" not in markdown and "<img" not in markdown
    assert "# ETSI EN 303 645 V2.1.1 assessment: Acme &lt;script&gt;alert(1)&lt;/script&gt; \\|" in markdown


def test_fail_on_recommended_blocks_on_open_recommendations(
    product_copy: MadeProduct, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["assess", "--fleet-evidence", str(product_copy.fleet_evidence), "--context", str(product_copy.context)]
    code = main([*args, "--out", str(product_copy.root / "out"), "--fail-on", "recommended", "--json", "-q"])
    gate = json.loads(capsys.readouterr().out)["summary"]["gate"]
    assert code == 1 and gate["fail_on"] == "recommended" and gate["blocking"]
    assert {"5.3-6", "5.6-3", "5.12-1"} <= set(gate["blocking"])
    code = main([*args, "--out", str(product_copy.root / "out2"), "--fail-on", "everything"])
    assert code == 2 and "--fail-on 'everything'" in capsys.readouterr().err


@pytest.mark.parametrize("bad", ["", "x" * 201, "Jane\nDoe", "Jane\x1b[31m"])
def test_statement_texts_are_bounded(bad: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["assess", "--out", str(tmp_path / "o"), "--signatory", bad, "--context", str(tmp_path / "none.toml")])
    assert code == 2 and "--signatory: one line of 1 to 200 printable characters" in capsys.readouterr().err


def test_fleet_evidence_read_from_a_store_url(product_copy: MadeProduct, migrated_store_url: str) -> None:
    """--database: the audit chain of any store (SQLite file or PostgreSQL) is read through its evidence interface."""
    from trustroot.fleet.disclosures import DisclosureReport, receive, triage
    from trustroot.fleet.operators_models import DisclosureSeverity
    from trustroot.fleet.service import product_service

    product = open_product(product_copy.context)
    with product_service(product, migrated_store_url) as service:
        view = receive(service, DisclosureReport(summary="Weak pairing", details="The pairing code is guessable."))
        triage(service, view.id, severity=DisclosureSeverity("medium"), actively_exploited=False, actor="ops")
    result = assess(product, now=datetime.now(UTC), database=migrated_store_url)
    assert result.evidence.fleet_source is not None and result.evidence.fleet_source.startswith("fleet:")
    from sqlalchemy.engine import make_url

    if result.evidence.fleet_source.startswith("fleet:postgresql"):
        assert make_url(result.evidence.fleet_source.removeprefix("fleet:")).password in (None, "***")
    assert [d["id"] for d in result.disclosures] == [view.id]
    assert result.evidence.chains[1].records == 2
