"""The firmware corpora: every planted problem found with the right CWE, in the tree, in its tar.gz
and cpio packings, and carved from its raw blob; nothing of medium severity or above on the clean twin."""

from __future__ import annotations

import json
import subprocess
import tarfile
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from scan_corpus import (
    OSV_RECORDS,
    PLANTED,
    PLANTED_IN_BLOB,
    build_clean,
    build_planted,
    pack_blob,
    pack_cpio,
    pack_tar_gz,
)
from trustroot.scan.checks import Component, VulnDB, load_osv, run_blob, run_tree, sbom
from trustroot.scan.findings import SEVERITY_ORDER, Finding, Severity

TODAY = date(2026, 11, 22)
SECRETS = ("admin:password", "FactoryWifi2024", "k9!Qw-7zP", "hunter2", "sk_live_4eC39HqLyjWDarjtT1zdp7dc",
           "s3cr3t-pub", "Hunter2-mqtt", "0123456789abcdef", "root:toor")  # fmt: skip


@pytest.fixture(scope="module")
def corpora(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path, VulnDB]]:
    base = tmp_path_factory.mktemp("corpora")
    db_file = base / "osv.json"

    db_file.write_text(json.dumps(OSV_RECORDS))
    yield build_planted(base / "planted"), build_clean(base / "clean"), load_osv(db_file)


def _assert_planted(findings: list[Finding], prefix: str = "") -> None:
    got = {(f.rule_id, cwe, f.location.path) for f in findings for cwe in f.cwe}
    missing = [p for p in PLANTED if (p[0], p[1], prefix + p[2]) not in got]
    assert not missing, f"planted problems not found: {missing}"
    for f in findings:
        assert f.engines == ["trustroot"] and f.provisions and f.guideline
        for secret in SECRETS:
            assert secret not in f.snippet and secret not in f.message, f"{f.rule_id} prints a secret"


def _assert_clean(findings: list[Finding]) -> None:
    loud = [f for f in findings if SEVERITY_ORDER[f.severity] >= SEVERITY_ORDER[Severity.MEDIUM]]
    assert not loud, [(f.rule_id, f.location.path, f.location.line, f.message) for f in loud]


def test_tree(corpora: tuple[Path, Path, VulnDB]) -> None:
    planted, clean, db = corpora
    _assert_planted(run_tree(planted, vuln_db=db, today=TODAY))
    _assert_clean(run_tree(clean, vuln_db=db, today=TODAY))


def test_tar_gz(corpora: tuple[Path, Path, VulnDB], tmp_path: Path) -> None:
    planted, clean, db = corpora
    for name, root, check in (("planted", planted, _assert_planted), ("clean", clean, _assert_clean)):
        archive = pack_tar_gz(root, tmp_path / f"{name}.tar.gz")
        out = tmp_path / name
        with tarfile.open(archive) as tar:
            tar.extractall(out, filter="data")
        check(run_tree(out, vuln_db=db, today=TODAY))


def test_cpio(corpora: tuple[Path, Path, VulnDB], tmp_path: Path) -> None:
    planted, clean, db = corpora
    for name, root, check in (("planted", planted, _assert_planted), ("clean", clean, _assert_clean)):
        archive = pack_cpio(root, tmp_path / f"{name}.cpio")
        out = tmp_path / f"{name}-x"
        out.mkdir()
        with archive.open("rb") as fh:
            subprocess.run(["cpio", "-idm", "--quiet", "--no-absolute-filenames"], cwd=out, stdin=fh, check=True)
        check(run_tree(out, vuln_db=db, today=TODAY))


def test_raw_blob(corpora: tuple[Path, Path, VulnDB], tmp_path: Path) -> None:
    planted, clean, db = corpora
    findings = run_blob(pack_blob(planted, tmp_path / "planted.bin"), vuln_db=db, today=TODAY)
    got = {(f.rule_id, cwe) for f in findings for cwe in f.cwe}
    assert not [p for p in PLANTED_IN_BLOB if p not in got]
    assert all(f.location.byte_offset is not None and f.location.byte_length for f in findings)
    keys = [f for f in findings if f.rule_id == "trustroot.keys.private-key"]
    assert len(keys) == 3  # PEM RSA, OpenSSH Ed25519, DER EC inside a binary
    _assert_clean(run_blob(pack_blob(clean, tmp_path / "clean.bin"), vuln_db=db, today=TODAY))


def test_sbom_of_the_planted_tree(corpora: tuple[Path, Path, VulnDB]) -> None:
    planted, _clean, db = corpora
    inventory: list[Component] = []
    run_tree(planted, vuln_db=db, inventory=inventory, today=TODAY)
    doc = sbom(inventory, db)
    names = {(c["name"], c["version"]) for c in doc["components"]}
    assert names == {("busybox", "1.19.4"), ("openssl", "1.0.2k")}
    assert [v["id"] for v in doc["vulnerabilities"]] == ["TEST-BUSYBOX-1"]


def test_through_the_cli(corpora: tuple[Path, Path, VulnDB], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real ``trustroot scan`` over the packed corpora: the archive's members keep their CWE and
    provision under ``<archive>/<member>``, the blob is carved with offsets, the clean twin passes."""
    from trustroot.cli.main import main

    planted, clean, _db = corpora
    tar = pack_tar_gz(planted, tmp_path / "planted.tar.gz")
    blob = pack_blob(planted, tmp_path / "planted.bin")
    cpio = pack_cpio(clean, tmp_path / "clean.cpio")
    out = tmp_path / "scan.json"
    monkeypatch.chdir(tmp_path)  # targets named relative to here are reported under those names
    osv = tmp_path / "osv.json"
    osv.write_text(json.dumps(OSV_RECORDS))
    sbom_file = tmp_path / "sbom.json"
    argv = ["scan", tar.name, blob.name, "--engine", "trustroot", "--format", "json", "--out", str(out)]
    assert main([*argv, "--vuln-db", str(osv), "--sbom", str(sbom_file), "--no-evidence", "-q"]) == 1
    doc = json.loads(out.read_text())
    got = {(f["rule_id"], cwe, f["location"]["path"]) for f in doc["findings"] for cwe in f["cwe"]}
    missing = [p for p in PLANTED if (p[0], p[1], f"planted.tar.gz/{p[2]}") not in got]
    assert not missing, missing
    bom = json.loads(sbom_file.read_text())
    assert bom["specVersion"] == "1.5"
    assert {(c["name"], c["version"]) for c in bom["components"]} == {("busybox", "1.19.4"), ("openssl", "1.0.2k")}
    assert [v["id"] for v in bom["vulnerabilities"]] == ["TEST-BUSYBOX-1"]
    carved = {(f["rule_id"], f["location"]["byte_offset"] is not None) for f in doc["findings"]
              if f["location"]["path"] == "planted.bin"}  # fmt: skip
    assert ("trustroot.keys.private-key", True) in carved and ("trustroot.passwd.default-password", True) in carved
    for f in doc["findings"]:
        for secret in SECRETS:
            assert secret not in f["snippet"] and secret not in f["message"]
    assert main(["scan", cpio.name, "--engine", "trustroot", "--no-evidence", "-q", "--fail-on", "medium"]) == 0
