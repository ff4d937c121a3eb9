"""Merging duplicate findings, baselines, masking and the exit decision (no engines needed)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from trustroot.errors import BaselineError
from trustroot.scan.baseline import load_baseline
from trustroot.scan.findings import Finding, Location, Severity
from trustroot.scan.gate import ScanRequest, ScanResult
from trustroot.scan.masking import mask_secrets
from trustroot.scan.merge import merge_findings


def _f(
    rule: str, severity: Severity, cwe: tuple[int, ...], *, line: int = 4, engine: str = "e", path: str = "a.c"
) -> Finding:
    return Finding(
        rule_id=rule,
        title=rule,
        severity=severity,
        location=Location(path=path, line=line),
        cwe=cwe,
        provisions=("5.13-1",) if cwe else (),
        engines=[engine],
    )


def test_same_cwe_family_at_one_place_merges_keeping_the_worst() -> None:
    merged = merge_findings(
        [
            _f("flawfinder.strcpy", Severity.INVENTORY, (120,), engine="flawfinder"),
            _f("cppcheck.bufferAccessOutOfBounds", Severity.HIGH, (788,), engine="cppcheck"),
            _f("clang-tidy.strcpy", Severity.LOW, (119,), engine="clang-tidy"),
        ]
    )
    assert len(merged) == 1
    only = merged[0].finding
    assert only.rule_id == "cppcheck.bufferAccessOutOfBounds" and only.severity is Severity.HIGH
    assert only.engines == ["clang-tidy", "cppcheck", "flawfinder"]
    assert set(only.cwe) == {120, 788, 119}
    assert len(merged[0].fingerprints) == 4  # each report's and the merged one's


@pytest.mark.parametrize(
    "other",
    [
        _f("cppcheck.nullPointer", Severity.HIGH, (476,)),  # another family
        _f("cppcheck.bufferAccessOutOfBounds", Severity.HIGH, (788,), line=5),  # another line
        _f("cppcheck.bufferAccessOutOfBounds", Severity.HIGH, (788,), path="b.c"),  # another file
    ],
)
def test_different_defects_stay_apart(other: Finding) -> None:
    assert len(merge_findings([_f("flawfinder.strcpy", Severity.INVENTORY, (120,)), other])) == 2


def test_findings_without_cwe_merge_only_with_the_same_rule() -> None:
    a = _f("trustroot.telnet", Severity.MEDIUM, ())
    b = _f("trustroot.telnet", Severity.MEDIUM, (), engine="semgrep")
    c = _f("trustroot.ftp", Severity.MEDIUM, ())
    merged = merge_findings([a, b, c])
    assert sorted(len(m.finding.engines) for m in merged) == [1, 2]


def test_two_rules_of_one_engine_at_one_place_are_two_defects() -> None:
    nx = _f("trustroot.elf.no-nx", Severity.MEDIUM, (693,), engine="trustroot", line=0, path="bin/x")
    pie = _f("trustroot.elf.no-pie", Severity.LOW, (693,), engine="trustroot", line=0, path="bin/x")
    again = _f("trustroot.elf.no-nx", Severity.MEDIUM, (693,), engine="semgrep", line=0, path="bin/x")
    merged = merge_findings([nx, pie, again])
    assert sorted((m.finding.rule_id, tuple(m.finding.engines)) for m in merged) == [
        ("trustroot.elf.no-nx", ("semgrep", "trustroot")),
        ("trustroot.elf.no-pie", ("trustroot",)),
    ]


def test_blob_findings_merge_by_byte_offset() -> None:
    def blob(offset: int, engine: str) -> Finding:
        return Finding(
            "k", "key", Severity.HIGH, Location("fw.bin", byte_offset=offset, byte_length=10), (321,), engines=[engine]
        )

    assert len(merge_findings([blob(64, "a"), blob(64, "b"), blob(128, "a")])) == 2


def _baseline(tmp_path: Path, document: object) -> Path:
    path = tmp_path / "baseline.json"
    path.write_text(json.dumps(document))
    return path


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"version": 1, "accepted": [{"fingerprint": "476|a.c:4"}]}, "has no reason"),
        ({"version": 1, "accepted": [{"fingerprint": "476|a.c:4", "reason": "   "}]}, "has no reason"),
        ({"version": 1, "accepted": [{"reason": "ok"}]}, "'fingerprint' must be"),
        ({"version": 2, "accepted": []}, "not a version 1"),
        ({"version": 1, "accepted": {}}, "must be a list"),
        ([], "not a version 1"),
    ],
)
def test_malformed_baselines_are_refused(tmp_path: Path, document: object, message: str) -> None:
    with pytest.raises(BaselineError, match=message):
        load_baseline(_baseline(tmp_path, document))


def test_baseline_accepts_a_merged_finding_by_any_of_its_fingerprints(tmp_path: Path) -> None:
    parts = [
        _f("flawfinder.strcpy", Severity.INVENTORY, (120,), engine="flawfinder"),
        _f("cppcheck.x", Severity.HIGH, (788,), engine="cppcheck"),
    ]
    merged = merge_findings(parts)[0]
    baseline = load_baseline(
        _baseline(tmp_path, {"version": 1, "accepted": [{"fingerprint": parts[0].fingerprint(), "reason": "reviewed"}]})
    )
    assert baseline.reason_for(merged.fingerprints) == "reviewed"
    assert baseline.reason_for({"other|x.c:1"}) is None


def test_not_json_baseline_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "b.json"
    path.write_text("{not json")
    with pytest.raises(BaselineError, match="not JSON"):
        load_baseline(path)


@pytest.mark.parametrize(
    ("line", "secret"),
    [
        ('static const char *pw = "hunter2hunter2";', "hunter2hunter2"),
        ("password=Sup3rS3cret!", "Sup3rS3cret!"),
        ("mqtt://user:Tr0ub4dor@broker:8883", "Tr0ub4dor"),
        ("token: ghp_abcdefghijklmnopqrstuvwxyz0123456789", "ghp_abcdefghijklmnopqrstuvwxyz0123456789"),
    ],
)
def test_masking_never_shows_the_secret(line: str, secret: str) -> None:
    masked = mask_secrets(line)
    assert secret not in masked
    assert secret[:4] not in masked
    assert "********" in masked


def _result(findings: list[Finding], fail_on: Severity) -> ScanResult:
    merged = merge_findings(findings)
    return ScanResult([], merged, [], {}, fail_on, datetime.now(UTC), 0.0)


@pytest.mark.parametrize(
    ("severity", "fail_on", "code"),
    [
        (Severity.HIGH, Severity.HIGH, 1),
        (Severity.MEDIUM, Severity.HIGH, 0),
        (Severity.MEDIUM, Severity.MEDIUM, 1),
        (Severity.LOW, Severity.MEDIUM, 0),
        (Severity.LOW, Severity.LOW, 1),
        (Severity.INFO, Severity.LOW, 0),
        (Severity.INVENTORY, Severity.LOW, 0),
    ],
)
def test_exit_code_follows_fail_on(severity: Severity, fail_on: Severity, code: int) -> None:
    assert _result([_f("r", severity, (476,))], fail_on).exit_code() == code


def test_request_refuses_unknown_engines_and_levels() -> None:
    from trustroot.errors import UsageError

    with pytest.raises(UsageError, match="unknown engine 'grep'"):
        ScanRequest(paths=(Path("."),), engines=("grep",))
    with pytest.raises(UsageError, match="--fail-on info"):
        ScanRequest(paths=(Path("."),), fail_on=Severity.INFO)
    with pytest.raises(UsageError, match="at least one PATH"):
        ScanRequest(paths=())


def test_missing_engines_are_reported_as_skipped_never_silently(tmp_path: Path) -> None:
    from trustroot.scan.gate import run_scan

    tree = tmp_path / "src"
    tree.mkdir()
    (tree / "main.c").write_text("int main(void) { return 0; }\n")
    image = tmp_path / "fw.bin"
    image.write_bytes(b"\x00" * 1000)
    empty_tools = tmp_path / "tools"
    (empty_tools / "bin").mkdir(parents=True)
    result = run_scan(ScanRequest(paths=(tree, image), tools_dir=empty_tools))
    source, blob = result.targets
    for engine in ("cppcheck", "clang-tidy", "flawfinder", "semgrep", "detect-secrets"):
        assert source.outcomes[engine].status == "skipped"
        assert "not installed" in source.outcomes[engine].detail or "no rule files" in source.outcomes[engine].detail
    assert source.outcomes["trustroot"].status == "ok"
    assert blob.outcomes["unblob"].status == "skipped"
    gap = [m.finding for m in result.findings if m.finding.rule_id == "trustroot.not-inspected"]
    assert [(g.location.path, g.location.byte_offset, g.location.byte_length) for g in gap] == [
        (image.as_posix(), 0, 1000)
    ]


def test_cli_vuln_db_and_sbom_through_the_gate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from trustroot.cli.main import main

    rootfs = tmp_path / "rootfs"
    (rootfs / "bin").mkdir(parents=True)
    (rootfs / "bin" / "busybox").write_bytes(b"\x00" * 64 + b"BusyBox v1.19.4 \x00" + b"\x00" * 64)
    osv = tmp_path / "osv.json"
    osv.write_text(
        json.dumps(
            [
                {
                    "id": "BB-1",
                    "summary": "s",
                    "affected": [
                        {
                            "package": {"name": "busybox"},
                            "ranges": [{"type": "SEMVER", "events": [{"introduced": "0"}, {"fixed": "1.30"}]}],
                        }
                    ],
                }
            ]
        )
    )
    sbom = tmp_path / "sbom.json"
    args = ["scan", str(rootfs), "--engine", "trustroot", "--no-evidence", "--format", "json"]
    code = main([*args, "--vuln-db", str(osv), "--sbom", str(sbom)])
    findings = json.loads(capsys.readouterr().out)["findings"]
    vulnerable = [f for f in findings if f["rule_id"] == "trustroot.component.vulnerable"]
    assert code == 1 and vulnerable
    assert vulnerable[0]["location"]["path"] == f"{rootfs.as_posix()}/bin/busybox"
    document = json.loads(sbom.read_text())
    assert [c["name"] for c in document["components"]] == ["busybox"]
    assert document["vulnerabilities"][0]["id"] == "BB-1"
    osv.write_text("{not json")
    assert main([*args, "--vuln-db", str(osv)]) == 2


def test_a_request_takes_what_it_is_not_given_from_the_context() -> None:
    from trustroot.context.schema import CodeQuality
    from trustroot.errors import UsageError
    from trustroot.scan.gate import ALL_ENGINES, request_for

    quality = CodeQuality(engines=["cppcheck", "trustroot"], fail_on="high", misra=True)
    from_context = request_for([Path("src")], quality)
    assert (from_context.engines, from_context.fail_on, from_context.misra) == (
        ("cppcheck", "trustroot"),
        Severity.HIGH,
        True,
    )
    given = request_for([Path("src")], quality, engines=["semgrep"], fail_on="low", misra=False)
    assert (given.engines, given.fail_on, given.misra) == (("semgrep",), Severity.LOW, False)
    bare = request_for([Path("src")], None)
    assert (bare.engines, bare.fail_on, bare.misra) == (ALL_ENGINES, Severity.MEDIUM, False)
    with pytest.raises(UsageError, match="--fail-on 'severe': use low, medium or high"):
        request_for([Path("src")], quality, fail_on="severe")
