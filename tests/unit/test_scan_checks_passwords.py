# ruff: noqa: E501  (table-driven cases: one case per line)
"""Password databases: crypt(3) known answers, weak schemes, cracked defaults, uid 0, masking."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from trustroot.scan.checks import run_tree
from trustroot.scan.checks._crypt import check_password, pure_crypt
from trustroot.scan.checks.passwords import check_password_file


@pytest.mark.parametrize(
    ("flag", "salt", "password"),
    [("-1", "Xa9bQ2zR", "admin"), ("-apr1", "kq8Zw3Lp", "123456"), ("-5", "saltsalt", "päss word"),
     ("-6", "p1Q9zLm2w8Rt", "x" * 80), ("-6", "s", "a")],
)  # fmt: skip
def test_pure_crypt_matches_openssl(flag: str, salt: str, password: str) -> None:
    want = subprocess.run(
        ["openssl", "passwd", flag, "-salt", salt, "-stdin"], input=password.encode() + b"\n",
        capture_output=True, check=True,
    ).stdout.decode().strip()  # fmt: skip
    assert pure_crypt(password, want) == want
    assert check_password(password, want)
    assert not check_password(password + "x", want)


def test_sha_crypt_rounds_and_refusals() -> None:
    h = pure_crypt("admin", "$6$rounds=6000$abcdefgh")
    assert h is not None and h.startswith("$6$rounds=6000$abcdefgh$")
    assert check_password("admin", h)
    assert pure_crypt("admin", "$6$rounds=900000$abc") is None  # too costly to try
    assert pure_crypt("admin", "$2b$10$abcdefghijklmnopqrstuv") is None
    assert not check_password("admin\0", h)


def _rules(findings: list) -> set[str]:  # type: ignore[type-arg]
    return {f.rule_id.removeprefix("trustroot.") for f in findings}


def test_shadow_entries() -> None:
    md5 = pure_crypt("admin", "$1$abcdefgh")
    strong = pure_crypt("Zq8#vLp2!unlisted", "$6$abcdefgh")
    data = f"root:{md5}:1:0:99999:7:::\nguest::1:0:::\nlocked:!$6$x$y:1::::\nok:{strong}:1::::\n".encode()
    findings = check_password_file("etc/shadow", data)
    by_line: dict[int, set[str]] = {}
    for f in findings:
        by_line.setdefault(f.location.line, set()).add(f.rule_id.removeprefix("trustroot."))
    assert by_line == {1: {"passwd.weak-hash", "passwd.default-password"}, 2: {"passwd.empty-password"}}
    for f in findings:
        assert md5 not in f.snippet and "admin" not in f.message
        assert "<masked:" in f.snippet or f.location.line == 2


def test_passwd_uid0_and_hash() -> None:
    data = b"root:x:0:0::/root:/bin/sh\nbackdoor:x:0:0::/:/bin/sh\nsvc::100:100::/:/bin/false\nold:abOV.DfJmdnYw:5:5::/:/bin/sh\n"
    rules = {(f.location.line, f.rule_id.removeprefix("trustroot.")) for f in check_password_file("etc/passwd", data)}
    assert (2, "passwd.extra-uid0") in rules
    assert (4, "passwd.hash-in-passwd") in rules and (4, "passwd.weak-hash") in rules
    assert (4, "passwd.default-password") in rules  # DES crypt of "admin"
    assert not any(line in (1, 3) for line, _ in rules)


def test_htpasswd_plaintext_and_sha1() -> None:
    data = b"admin:password\nops:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n"  # SHA-1 of "password"
    rules = {
        (f.location.line, f.rule_id.removeprefix("trustroot.")) for f in check_password_file("www/.htpasswd", data)
    }
    assert rules == {(1, "passwd.plaintext"), (2, "passwd.weak-hash"), (2, "passwd.default-password")}


def test_backups_are_found_and_symlinks_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "shadow").write_text("root::1::::\n")
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "shadow.bak").write_text("root::1::::\n")
    (root / "etc" / "shadow").symlink_to(outside / "shadow")
    (root / "etc" / "up").symlink_to(outside, target_is_directory=True)
    findings = run_tree(root)
    assert {(f.location.path, f.rule_id) for f in findings} == {("etc/shadow.bak", "trustroot.passwd.empty-password")}
