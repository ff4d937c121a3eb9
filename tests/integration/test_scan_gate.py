"""The scanning gate for real: every engine of the tools environment on small trees written here.

One session-scoped scan (a C tree, the same tree as a tar.gz, and a raw firmware image holding a
SquashFS root file system between random bytes) feeds most tests, because the engines are slow;
the CLI tests run one fast engine each.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from trustroot.cli.main import main
from trustroot.components import default_tools_dir
from trustroot.scan.engines import RunContext, Tree
from trustroot.scan.engines.semgrep import Semgrep
from trustroot.scan.findings import Finding
from trustroot.scan.gate import ScanRequest, ScanResult, run_scan
from trustroot.scan.report import to_json
from trustroot.scan.sarif import to_sarif

pytestmark = pytest.mark.integration

TOOLS = default_tools_dir()
SCHEMA = json.loads((Path(__file__).parent.parent / "data" / "sarif-schema-2.1.0.json").read_text())
MQTT_SECRET = "Xk9mQ2vL8pRw4Tz7"

SOURCES = {
    "src/buf.c": """#include <string.h>
void greet(void) {
    char name[4];
    strcpy(name, "a name far too long");
}
""",
    "src/null.c": """#include <stddef.h>
int first(void) {
    int *p = NULL;
    return *p;
}
""",
    "src/mqtt.c": f"""#include <stdio.h>
static const char *mqtt_password = "{MQTT_SECRET}";
const char *secret_of(void) {{ return mqtt_password; }}
""",
    "src/tls.c": """#include <openssl/ssl.h>
void insecure(SSL_CTX *ctx) {
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
}
""",
    "src/clean.c": """int add(int a, int b) {
    return a + b;
}
""",
}


def _pem_key() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _write_tree(root: Path) -> Path:
    for rel, text in SOURCES.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    (root / "keys").mkdir()
    (root / "keys" / "device.key").write_bytes(_pem_key())
    return root


def _image(tmp: Path) -> Path:
    rootfs = tmp / "rootfs"
    (rootfs / "etc" / "ssl").mkdir(parents=True)
    (rootfs / "bin").mkdir()
    (rootfs / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (rootfs / "etc" / "ssl" / "server.key").write_bytes(_pem_key())
    squashfs = tmp / "rootfs.sqsh"
    subprocess.run(["mksquashfs", rootfs, squashfs, "-quiet", "-noappend", "-no-progress"], check=True)
    image = tmp / "fw.bin"
    # incompressible bytes unblob cannot identify, a SquashFS it cannot extract itself, more bytes
    image.write_bytes(_random(8192, 1) + squashfs.read_bytes() + _random(4096, 2))
    return image


def _random(size: int, seed: int) -> bytes:
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{seed}:{counter}".encode()).digest()
        counter += 1
    return bytes(out[:size])


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("scan-corpus")
    tree = _write_tree(base / "fw")
    with tarfile.open(base / "fw.tar.gz", "w:gz") as archive:
        archive.add(tree, arcname=".")
    _image(base)
    return base


@pytest.fixture(scope="session")
def scanned(corpus: Path) -> ScanResult:
    if TOOLS is None:
        pytest.fail("no tools environment: run scripts/setup.sh --tools")
    paths = (corpus / "fw", corpus / "fw.tar.gz", corpus / "fw.bin")
    return run_scan(ScanRequest(paths=paths, tools_dir=TOOLS))


def _at(result: ScanResult, suffix: str, line: int | None = None) -> list[Finding]:
    return [
        m.finding
        for m in result.findings
        if m.finding.location.path.endswith(suffix) and (line is None or m.finding.location.line == line)
    ]


def test_every_engine_ran_on_the_source_tree(scanned: ScanResult, corpus: Path) -> None:
    tree = scanned.targets[0]
    assert tree.kind == "source"
    statuses = {name: o.status for name, o in tree.outcomes.items()}
    for engine in ("cppcheck", "clang-tidy", "flawfinder", "detect-secrets", "trustroot"):
        assert statuses[engine] == "ok", (engine, tree.outcomes[engine].detail)
    # semgrep runs the project's rule files; with none it says so instead of vanishing
    assert statuses["semgrep"] in ("ok", "skipped")
    assert all(v for k, v in scanned.versions.items()), scanned.versions


def test_duplicates_from_three_engines_merge_into_one_finding(scanned: ScanResult, corpus: Path) -> None:
    strcpy = _at(scanned, f"{corpus.as_posix()}/fw/src/buf.c", 4)
    assert len(strcpy) == 1, [(f.rule_id, f.cwe) for f in strcpy]
    finding = strcpy[0]
    assert {"cppcheck", "clang-tidy", "flawfinder"} <= set(finding.engines)
    assert finding.severity.value == "high"  # cppcheck's proven overflow, not flawfinder's inventory
    assert set(finding.cwe) & {119, 120, 787, 788}
    assert "5.13-1" in finding.provisions


def test_null_dereference_found_by_two_engines_as_cwe_476(scanned: ScanResult, corpus: Path) -> None:
    null = _at(scanned, "fw/src/null.c", 4)
    assert len(null) == 1
    assert null[0].cwe[0] == 476
    assert set(null[0].engines) >= {"cppcheck", "clang-tidy"}


def test_private_key_and_hard_coded_password_found_and_masked(scanned: ScanResult) -> None:
    key = _at(scanned, "fw/keys/device.key")
    assert [f.severity.value for f in key] == ["high"]
    assert 321 in key[0].cwe and key[0].guideline == 4
    assert "PRIVATE KEY" in key[0].snippet
    password = _at(scanned, "fw/src/mqtt.c", 2)
    assert password and 798 in password[0].cwe
    dumped = json.dumps(to_json(scanned)) + json.dumps(to_sarif(scanned))
    assert MQTT_SECRET not in dumped
    assert "********" in password[0].snippet


def test_clean_file_has_no_findings(scanned: ScanResult) -> None:
    assert _at(scanned, "fw/src/clean.c") == []


def test_archive_members_are_named_inside_the_archive(scanned: ScanResult, corpus: Path) -> None:
    archive = corpus.as_posix() + "/fw.tar.gz"
    inside = [m.finding for m in scanned.findings if m.finding.location.path.startswith(archive + "/")]
    assert {f.location.path for f in inside} >= {f"{archive}/src/buf.c", f"{archive}/keys/device.key"}
    assert all(f.location.container == archive for f in inside)
    assert scanned.targets[1].kind == "archive"


def test_image_is_unpacked_through_the_squashfs_fallback(scanned: ScanResult, corpus: Path) -> None:
    image = corpus.as_posix() + "/fw.bin"
    target = scanned.targets[2]
    assert target.kind == "image"
    assert target.outcomes["unblob"].status == "ok"
    assert any("unpacked by unsquashfs" in note for note in target.notes), target.notes
    keys = [m.finding for m in scanned.findings if m.finding.location.path.endswith("etc/ssl/server.key")]
    assert keys and keys[0].location.container == image
    assert keys[0].location.path.startswith(image + "/")


def test_bytes_nothing_could_unpack_are_reported_not_dropped(scanned: ScanResult, corpus: Path) -> None:
    image = corpus.as_posix() + "/fw.bin"
    gaps = [m.finding for m in scanned.findings if m.finding.rule_id == "trustroot.not-inspected"]
    offsets = {(g.location.path, g.location.byte_offset, g.location.byte_length) for g in gaps}
    assert (image, 0, 8192) in offsets, offsets


def test_sarif_validates_against_the_sarif_2_1_0_schema(scanned: ScanResult) -> None:
    log = to_sarif(scanned)
    jsonschema.Draft7Validator(SCHEMA).validate(log)
    results: list[dict[str, Any]] = log["runs"][0]["results"]
    levels = {r["properties"]["severity"]: r["level"] for r in results}
    assert levels["high"] == "error" and levels["medium"] == "warning"
    assert levels.get("inventory", "none") == "none" and levels.get("low", "note") == "note"
    assert all("level" in r and "security-severity" in r["properties"] for r in results)
    tagged = [r for r in results if "external/cwe/cwe-476" in r["properties"]["tags"]]
    assert tagged and tagged[0]["properties"]["provisions"]
    rules = log["runs"][0]["tool"]["driver"]["rules"]
    assert any("external/cwe/cwe-321" in rule["properties"]["tags"] for rule in rules)


def test_sarif_archive_members_have_parent_artifacts_and_blobs_byte_regions(scanned: ScanResult, corpus: Path) -> None:
    run = to_sarif(scanned)["runs"][0]
    artifacts = run["artifacts"]
    archive_uri = (corpus / "fw.tar.gz").as_uri()
    member = next(a for a in artifacts if a["location"]["uri"] == archive_uri + "/src/buf.c")
    assert artifacts[member["parentIndex"]]["location"]["uri"] == archive_uri
    gap = next(r for r in run["results"] if r["ruleId"] == "trustroot.not-inspected")
    region = gap["locations"][0]["physicalLocation"]["region"]
    assert region["byteOffset"] == 0 and region["byteLength"] == 8192


def test_semgrep_runs_local_rule_files_only(corpus: Path, tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "tls.yaml").write_text(
        """rules:
- id: trustroot.test-verify-none
  languages: [c]
  severity: ERROR
  message: certificate verification switched off
  pattern: SSL_CTX_set_verify($CTX, SSL_VERIFY_NONE, ...)
  metadata:
    cwe: ["CWE-295: Improper Certificate Validation"]
    guideline: 5
"""
    )
    assert TOOLS is not None
    ctx = RunContext(TOOLS, tmp_path, jobs=1)
    found = Semgrep(rules).run(Tree.walk(corpus / "fw"), ctx)
    assert [(f.location.path, f.location.line, f.cwe, f.severity.value) for f in found] == [
        ("src/tls.c", 3, (295,), "high")
    ]
    assert found[0].provisions == ("5.5-1",) and found[0].guideline == 5


# --- the command line: one fast engine per run ------------------------------------------------


@pytest.fixture
def one_bug(tmp_path: Path) -> Path:
    tree = tmp_path / "one"
    (tree / "src").mkdir(parents=True)
    (tree / "src" / "null.c").write_text(SOURCES["src/null.c"])
    return tree


def test_cli_exit_codes_follow_fail_on(one_bug: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["scan", str(one_bug), "--engine", "cppcheck", "--no-evidence", "--quiet"]
    assert main(base) == 1  # a high finding, default --fail-on medium
    assert main([*base, "--fail-on", "high"]) == 1
    assert main(["scan", str(one_bug), "--engine", "flawfinder", "--no-evidence", "--fail-on", "low", "-q"]) == 0
    assert main([*base, "--fail-on", "critical"]) == 2
    assert "--fail-on" in capsys.readouterr().err


def test_cli_sarif_out_file_and_baseline(one_bug: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "scan.json"
    base = ["scan", str(one_bug), "--engine", "cppcheck", "--no-evidence"]
    assert main([*base, "--format", "json", "--out", str(out)]) == 1
    findings = json.loads(out.read_text())["findings"]
    baseline = tmp_path / "baseline.json"
    baseline.write_text(
        json.dumps(
            {"version": 1, "accepted": [{"fingerprint": f["fingerprint"], "reason": "test fixture"} for f in findings]}
        )
    )
    sarif_out = tmp_path / "scan.sarif"
    assert main([*base, "--baseline", str(baseline), "--format", "sarif", "--out", str(sarif_out)]) == 0
    log = json.loads(sarif_out.read_text())
    jsonschema.Draft7Validator(SCHEMA).validate(log)
    suppressed = [r for r in log["runs"][0]["results"] if r.get("suppressions")]
    assert suppressed and suppressed[0]["suppressions"][0]["justification"] == "test fixture"
    assert not list(tmp_path.glob(".scan.sarif.*"))  # the atomic write left no temp file

    baseline.write_text(json.dumps({"version": 1, "accepted": [{"fingerprint": findings[0]["fingerprint"]}]}))
    capsys.readouterr()
    assert main([*base, "--baseline", str(baseline), "-q"]) == 2
    assert "has no reason" in capsys.readouterr().err


def test_cli_engines_lists_versions(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["scan", "--engines", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)["engines"]
    assert listed["cppcheck"].startswith("2.") and listed["unsquashfs"] == "installed"


def test_scan_inside_a_product_records_evidence(product_dir: Path, one_bug: Path) -> None:
    from trustroot.product import open_product

    context = product_dir / "security-context.toml"
    code = main(["scan", str(one_bug), "--engine", "cppcheck", "--context", str(context), "-q"])
    assert code == 1
    product = open_product(context)
    records = [r for r in product.evidence.iter_records() if r.type == "scan.completed"]
    assert len(records) == 1
    data = records[0].data
    stored = product.state_dir / str(data["sarif_path"])
    assert hashlib.sha256(stored.read_bytes()).hexdigest() == data["sarif_sha256"]
    assert data["counts"] == {"high": 1, "medium": 0, "low": 0, "info": 0, "inventory": 0}
    assert data["target"] == "one" and data["passed"] is False
    assert str(data["newest_mtime"]).endswith("Z")


def test_misra_addon_runs_when_asked(one_bug: Path, tmp_path: Path) -> None:
    from trustroot.scan.engines.cppcheck import Cppcheck

    assert TOOLS is not None
    found = Cppcheck().run(Tree.walk(one_bug), RunContext(TOOLS, tmp_path, misra=True, jobs=1))
    misra = [f for f in found if f.rule_id.startswith("cppcheck.misra-c2012-")]
    assert misra and all(f.severity.value == "low" for f in misra)
    plain = Cppcheck().run(Tree.walk(one_bug), RunContext(TOOLS, tmp_path, jobs=1))
    assert not [f for f in plain if "misra" in f.rule_id]
