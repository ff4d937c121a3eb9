# ruff: noqa: E501  (table-driven cases: one case per line)
"""Component versions, the OSV matcher, the end-of-life table and the CycloneDX SBOM."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from trustroot.errors import UnreadableInputError
from trustroot.scan.checks import Component, load_osv, run_blob, run_tree, sbom
from trustroot.scan.checks.components import end_of_life, find_components
from trustroot.scan.checks.osv import compare_versions


@pytest.mark.parametrize(
    ("a", "b", "want"),
    [("1.0.2k", "1.0.2", 1), ("1.0.2k", "1.0.2l", -1), ("1.1.0-rc1", "1.1.0", -1), ("2019.78", "2020.79", -1),
     ("7.9p1", "7.9", 1), ("1.30.1", "1.30.1", 0), ("v2.0.0", "2.0.0", 0), ("1.10", "1.9", 1), ("3.0", "3.0.0", 0)],
)  # fmt: skip
def test_compare_versions(a: str, b: str, want: int) -> None:
    assert compare_versions(a, b) == want
    assert compare_versions(b, a) == -want


def _db(tmp_path: Path, records: object) -> Path:
    p = tmp_path / "osv.json"
    p.write_text(json.dumps(records))
    return p


def test_osv_ranges(tmp_path: Path) -> None:
    db = load_osv(_db(tmp_path, {"vulns": [
        {"id": "A", "affected": [{"package": {"name": "BusyBox"},
          "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "1.20.0"}, {"fixed": "1.30.0"}]}]}]},
        {"id": "B", "affected": [{"package": {"purl": "pkg:generic/openssl"},
          "ranges": [{"type": "SEMVER", "events": [{"introduced": "0"}, {"last_affected": "1.0.2k"}]}]}]},
        {"id": "C", "affected": [{"package": {"name": "dropbear"}, "versions": ["2019.78"]}]},
        {"id": "D", "affected": [{"package": {"name": "openssl"},
          "ranges": [{"type": "GIT", "events": [{"introduced": "0"}]}]}]},
    ]}))  # fmt: skip
    assert len(db) == 4
    assert [v.id for v in db.matches("busybox", "1.29.3")] == ["A"]
    assert db.matches("busybox", "1.30.0") == [] and db.matches("busybox", "1.19.4") == []
    assert [v.id for v in db.matches("openssl", "1.0.2k")] == ["B"]
    assert db.matches("openssl", "1.0.2l") == []
    assert [v.id for v in db.matches("dropbear", "2019.78")] == ["C"]


def test_osv_refuses_garbage(tmp_path: Path) -> None:
    for bad in ('{"no": "id"}', "[1, 2]", "not json {"):
        p = tmp_path / "bad.json"
        p.write_text(bad)
        with pytest.raises(UnreadableInputError, match="--vuln-db"):
            load_osv(p)
    lines = tmp_path / "lines.jsonl"
    lines.write_text('{"id": "X", "affected": []}\n{"id": "Y", "affected": []}\n')
    assert len(load_osv(lines)) == 2
    d = tmp_path / "dir"
    d.mkdir()
    (d / "1.json").write_text('{"id": "Z", "affected": []}')
    assert len(load_osv(d)) == 1


def test_signatures() -> None:
    data = (b"\0BusyBox v1.31.1 (2020-03-04)\0SSH-2.0-dropbear_2019.78\0OpenSSL 1.1.1w  11 Sep 2023\0"
            b"Linux version 4.14.180 (gcc)\0lighttpd/1.4.55\0dnsmasq-2.80\0libcurl/7.68.0\0")  # fmt: skip
    got = {(c.name, c.version) for c in find_components("fw", data)}
    assert got == {("busybox", "1.31.1"), ("dropbear", "2019.78"), ("openssl", "1.1.1w"), ("linux", "4.14.180"),
                   ("lighttpd", "1.4.55"), ("dnsmasq", "2.80"), ("curl", "7.68.0")}  # fmt: skip


def test_opkg_status() -> None:
    data = b"Package: busybox\nVersion: 1.33.2-1\nStatus: install ok installed\n\nPackage: libopenssl1.1\nVersion: 1.1.1t-1\n"
    got = {(c.name, c.version) for c in find_components("usr/lib/opkg/status", data)}
    assert got == {("busybox", "1.33.2"), ("openssl", "1.1.1t")}


def test_end_of_life_uses_the_injected_date() -> None:
    assert end_of_life("openssl", "3.0.13", date(2026, 9, 8)) is not None
    assert end_of_life("openssl", "3.0.13", date(2026, 9, 6)) is None
    assert end_of_life("openssl", "3.5.1", date(2026, 11, 1)) is None
    assert end_of_life("linux", "4.4.60", date(2026, 1, 1)) is not None
    assert end_of_life("openssl", "1.0.2u", date(2026, 1, 1))["cycle"] == "1.0.2"  # type: ignore[index]


def test_blob_findings_and_sbom(tmp_path: Path) -> None:
    blob = tmp_path / "fw.bin"
    blob.write_bytes(b"\xff" * 100 + b"BusyBox v1.19.4 \0" + b"\xff" * 50 + b"OpenSSL 1.0.2k  26 Jan 2017\0")
    db = load_osv(_db(tmp_path, [{"id": "BB-1", "aliases": ["CVE-2099-1"], "summary": "s", "affected": [
        {"package": {"name": "busybox"}, "ranges": [{"type": "SEMVER", "events": [{"introduced": "0"}, {"fixed": "1.30"}]}]}]}]))  # fmt: skip
    inventory: list[Component] = []
    findings = run_blob(blob, vuln_db=db, inventory=inventory, today=date(2026, 1, 1))
    rules = {(f.rule_id, f.location.byte_offset) for f in findings}
    assert ("trustroot.component.vulnerable", 100) in rules
    assert ("trustroot.component.end-of-life", 167) in rules
    doc = sbom(inventory, db, now=datetime(2026, 1, 1, tzinfo=UTC))
    assert doc["bomFormat"] == "CycloneDX" and doc["specVersion"] == "1.5"
    assert doc["metadata"]["timestamp"] == "2026-01-01T00:00:00Z"
    assert {(c["name"], c["version"], c["purl"]) for c in doc["components"]} == {
        ("busybox", "1.19.4", "pkg:generic/busybox@1.19.4"), ("openssl", "1.0.2k", "pkg:generic/openssl@1.0.2k")}  # fmt: skip
    assert doc["vulnerabilities"][0]["id"] == "BB-1"
    assert doc["vulnerabilities"][0]["affects"] == [{"ref": "pkg:generic/busybox@1.19.4"}]
    json.dumps(doc)


def test_tree_inventory(tmp_path: Path) -> None:
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "busybox").write_bytes(b"\0" * 10 + b"BusyBox v1.36.1 (2024)\0")
    inventory: list[Component] = []
    findings = run_tree(tmp_path, inventory=inventory, today=date(2026, 1, 1))
    assert [(c.name, c.version, c.path) for c in inventory] == [("busybox", "1.36.1", "bin/busybox")]
    assert [f.severity for f in findings] == ["info"]
