"""The CLI on a real product: init, context check, keys ceremonies, evidence; errors without tracebacks."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import load_der_private_key, load_pem_private_key

from trustroot.cli.main import main
from trustroot.keys.passphrase import fixed_secrets
from trustroot.product import open_product

SECRETS = fixed_secrets(os.environ["TRUSTROOT_PASSPHRASE"], os.environ["TRUSTROOT_ROOT_PASSPHRASE"])


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_a_path_the_system_refuses_is_one_line_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TRUSTROOT_DEBUG", raising=False)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    code, _, err = run(capsys, "init", str(blocker / "acme"), "--product", "Acme Plug", "--quiet")
    assert code == 2 and "Traceback" not in err
    assert err.startswith("error: Not a directory: ") and str(blocker) in err
    assert blocker.read_text() == "not a directory"


def test_init_then_context_check_is_clean(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    demo = tmp_path / "demo"
    code, out, err = run(capsys, "init", str(demo), "--product", "Acme Plug", "--quiet")
    assert code == 0, err
    assert (demo / "security-context.toml").is_file()
    code, out, err = run(capsys, "context", "check", "--context", str(demo))
    assert code == 0, out + err
    assert "context OK" in out


def test_init_refuses_to_overwrite(product_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = (product_dir / "security-context.toml").read_bytes()
    code, _, err = run(capsys, "init", str(product_dir), "--product", "Other", "--quiet")
    assert code == 1
    assert "exists already; refusing to overwrite a product" in err
    assert "Traceback" not in err
    assert (product_dir / "security-context.toml").read_bytes() == before


def test_tls_1_0_fails_naming_provision_and_line(product_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = product_dir / "security-context.toml"
    text = path.read_text().replace('min_tls_version = "1.2"', 'min_tls_version = "1.0"')
    path.write_text(text)
    line = next(i for i, t in enumerate(text.splitlines(), 1) if t.startswith("min_tls_version"))
    code, out, _ = run(capsys, "context", "check", "--context", str(path))
    assert code == 1
    assert f"security-context.toml:{line}: communication.min_tls_version" in out
    assert "5.5-1" in out
    code, out, _ = run(capsys, "context", "check", "--context", str(path), "--json")
    report = json.loads(out)
    assert code == 1 and report["ok"] is False
    assert {"key": "communication.min_tls_version", "line": line, "provision": "5.5-1"}.items() <= report["findings"][
        0
    ].items()


def test_schema_error_exits_1_with_key_and_line(product_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = product_dir / "security-context.toml"
    path.write_text(path.read_text().replace("mutual_tls = true", "mutual_tls = true\nmutal_tls = false"))
    code, out, _ = run(capsys, "context", "check", "--context", str(path))
    assert code == 1
    assert re.search(r"security-context.toml:\d+: communication.mutal_tls: unknown key", out)


def test_missing_context_exits_2_without_traceback(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "trustroot.cli", "context", "check"],
        check=False,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": ""},
    )
    assert result.returncode == 2
    assert "error: no security-context.toml" in result.stderr
    assert "fix: run 'trustroot init" in result.stderr
    assert "Traceback" not in result.stderr


def test_usage_error_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "keys", "list", "--no-such-option")
    assert code == 2
    code, _, err = run(capsys, "init", "x")
    assert code == 2 and "--product NAME is required" in err


def test_no_private_key_in_clear_after_init(product_template: Path) -> None:
    files = [p for p in product_template.rglob("*") if p.is_file()]
    product = open_product(product_template / "security-context.toml", secrets=SECRETS)
    secrets_in_clear = [product.keys.export_private_der(k.name) for k in product.keys.list()]
    assert len(secrets_in_clear) >= 9
    for path in files:
        data = path.read_bytes()
        for header in re.findall(rb"-----BEGIN ([A-Z0-9 ]*PRIVATE KEY)-----", data):
            assert header == b"ENCRYPTED PRIVATE KEY", path
        with pytest.raises((ValueError, TypeError)):
            load_der_private_key(data, None)
        if b"-----BEGIN" in data and b"PRIVATE KEY" in data:
            with pytest.raises(TypeError):  # needs a password: it is encrypted
                load_pem_private_key(data, None)
        for clear in secrets_in_clear:
            assert clear not in data, path
            assert clear[-32:] not in data, path  # the raw private scalar / secret


def test_wrong_passphrase_is_one_clear_line(
    product_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRUSTROOT_PASSPHRASE", "not the passphrase")
    code, _, err = run(capsys, "evidence", "checkpoint", "--context", str(product_dir))
    assert code == 1
    assert err.startswith("error: the passphrase does not unlock key file")
    assert "Traceback" not in err


def test_corrupt_key_file_is_named(product_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key_file = next((product_dir / ".trustroot" / "keys").glob("evidence-*.key.pem"))
    key_file.write_text("-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n")
    code, _, err = run(capsys, "evidence", "checkpoint", "--context", str(product_dir))
    assert code == 1
    assert key_file.name in err
    assert "Traceback" not in err


def test_edited_evidence_is_found(product_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = product_dir / ".trustroot" / "evidence.jsonl"
    lines = log.read_text().splitlines()
    lines[2] = lines[2].replace('"key.created"', '"key.imported"')
    log.write_text("\n".join(lines) + "\n")
    code, _, err = run(capsys, "evidence", "verify", "--context", str(product_dir))
    assert code == 1
    assert "line 3" in err
    assert "Traceback" not in err


def test_evidence_verify_reports_signed_head(product_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "evidence", "verify", "--context", str(product_dir), "--json")
    report = json.loads(out)
    assert code == 0 and report["ok"]
    # 9 key.created + rootoftrust.created, then the checkpoint that signs them
    assert report["records"] == 11
    assert report["last_signed_seq"] == 10
    code, out, _ = run(capsys, "evidence", "show", "--context", str(product_dir), "--json", "--tail", "100")
    types = [r["type"] for r in json.loads(out)]
    assert types == ["key.created"] * 9 + ["rootoftrust.created", "evidence.checkpoint"]


def test_keys_rotate_revoke_export(product_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ctx = ("--context", str(product_dir))
    code, out, _ = run(capsys, "keys", "rotate", "firmware-signing", *ctx, "--json")
    assert code == 0
    rotated = json.loads(out)
    assert rotated["retired"]["status"] == "retired" and rotated["active"]["generation"] == 2
    code, out, _ = run(capsys, "keys", "export-public", rotated["active"]["name"], *ctx)
    assert code == 0 and out.startswith("-----BEGIN PUBLIC KEY-----")
    code, _, err = run(capsys, "keys", "revoke", rotated["retired"]["name"], *ctx)
    assert code == 2 and "--reason is required" in err
    code, out, _ = run(
        capsys, "keys", "revoke", rotated["retired"]["name"], "--reason", "laptop stolen", *ctx, "--json"
    )
    assert code == 0 and json.loads(out)["status"] == "revoked"
    code, out, _ = run(capsys, "evidence", "show", *ctx, "--json", "--type", "key.revoked")
    assert json.loads(out)[0]["data"]["reason"] == "laptop stolen"


def test_import_an_imgtool_style_pem_key(product_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    subprocess.run(
        [
            "openssl",
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            str(tmp_path / "k.pem"),
        ],
        check=True,
        capture_output=True,
    )
    code, out, err = run(
        capsys,
        "keys",
        "import",
        "other",
        str(tmp_path / "k.pem"),
        "--algorithm",
        "ecdsa-p256",
        "--name",
        "legacy-fw",
        "--context",
        str(product_dir),
        "--json",
    )
    assert code == 0, err
    assert json.loads(out)["backend"] == "file"
    stored = (product_dir / ".trustroot" / "keys" / "legacy-fw.key.pem").read_text()
    assert stored.startswith("-----BEGIN ENCRYPTED PRIVATE KEY-----")
    code, _, err = run(
        capsys,
        "keys",
        "import",
        "other",
        str(tmp_path / "k.pem"),
        "--algorithm",
        "ed25519",
        "--name",
        "wrong-alg",
        "--context",
        str(product_dir),
    )
    assert code == 1 and "ed25519" in err


def test_backup_and_restore_of_the_offline_root(
    product_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ctx = ("--context", str(product_dir))
    code, out, err = run(capsys, "keys", "backup", "--out", str(tmp_path / "usb"), "-m", "2", "-n", "3", *ctx, "--json")
    assert code == 0, err
    made = json.loads(out)
    assert set(made["keys"]) == {"root-ca-1", "update-root-1"}
    # lose the root key files and their index entries: a fresh product directory without them
    keys_dir = product_dir / ".trustroot" / "keys"
    product = open_product(product_dir / "security-context.toml", secrets=SECRETS)
    root_public = product.keys.export_public_pem("root-ca-1")
    index = json.loads((keys_dir / "index.json").read_text())
    index["keys"] = [k for k in index["keys"] if k["name"] not in made["keys"]]
    (keys_dir / "index.json").write_text(json.dumps(index))
    for name in made["keys"]:
        (keys_dir / f"{name}.key.pem").unlink()
    code, _, err = run(capsys, "keys", "restore", made["backup"], "--share", made["shares"][0], *ctx)
    assert code == 1 and "share" in err  # one share of a 2-of-3 backup is not enough
    code, out, err = run(
        capsys,
        "keys",
        "restore",
        made["backup"],
        "--share",
        made["shares"][0],
        "--share",
        made["shares"][2],
        *ctx,
        "--json",
    )
    assert code == 0, err
    assert {k["name"] for k in json.loads(out)} == set(made["keys"])
    again = open_product(product_dir / "security-context.toml", secrets=SECRETS)
    assert again.keys.export_public_pem("root-ca-1") == root_public
    signature = again.keys.unlock("root-ca-1").sign(b"after recovery")
    assert signature


def test_doctor_lists_components(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "doctor", "--json")
    components = {c["name"]: c for c in json.loads(out)}
    assert components["softhsm2"]["status"] == "ok"
    assert components["cryptography"]["version"]
    assert code in (0, 1)


@pytest.mark.xdist_group("simulated-fleet")  # with the simulator's scenarios (tests/integration/test_simulator.py)
def test_demo_runs_the_whole_life_and_replaces_only_a_demo(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "demo"
    code, out, err = run(capsys, "demo", "--dir", str(target), "--devices", "60", "--time-scale", "12", "--json")
    assert code == 0, err
    made = json.loads(out)
    steps = made["steps"]
    assert [item["version"] for item in steps["firmware"]] == ["1.0.0+0", "1.1.0+0"]
    assert steps["provisioning"]["devices"] == 60 and steps["fleet"]["imported"] == 60
    assert [r["version"] for r in steps["fleet"]["releases"]] == ["1.0.0+0", "1.1.0+0"]
    # the fleet run: real agents against `trustroot serve`, on the product's own store
    sim = steps["simulation"]
    figures = sim["figures"]
    assert figures["scenario"] == "life" and figures["devices"] == 60 and figures["lost_messages"] == 0
    # a fifth of the devices fail 1.1.0's health check: once 20 were offered (the rollout's minimum sample)
    # the service pauses the rollout by itself
    assert sim["rollout"]["state"] == "paused" and "failed install" in sim["rollout"]["reason"], sim["rollout"]
    assert sim["rollout"]["succeeded"] >= 1, "the devices that passed the health check run 1.1.0"
    (attacked,) = sim["detections"].values()
    assert attacked["first_alert_after_s"] is not None, "the compromised device raised an alert"
    assert figures["false_alarm_rate"] == 0.0
    assert sim["deletion"] == {
        "owners": 1,
        "deleted": 1,
        "devices_wiped": 1,
        "reports_linked": 1,
        "completed_share": 1.0,
    }
    # the scan found what the sample tree plants, and was recorded; the assessment read it all
    assert steps["scan"]["findings"]["high"] >= 1 and Path(steps["scan"]["sarif"]).is_file()
    assessed = steps["assessment"]
    report = json.loads((Path(assessed["out"]) / "report.json").read_text())
    assert report["summary"]["verdicts"] == assessed["verdicts"] and Path(assessed["report_html"]).is_file()
    assert report["evidence"]["scans"], "the assessment saw the demo's scan"
    login = made["console_login"]
    assert login["name"] == "demo-operator" and len(login["password"]) >= 12 and login["totp_secret"]
    assert login["password"] not in "".join(p.read_text(errors="ignore") for p in target.rglob("*") if p.is_file()), (
        "the login's password is never written to disk"
    )
    # every step left evidence in one verified chain: the key ceremony, two images, the devices, the batch
    assert made["evidence_records"] >= 11 + 2 + 60 + 3
    code, _, err = run(capsys, "demo", "--dir", str(target))
    assert code == 1 and "--replace" in err
    # without passphrases in the environment the demo makes its own: shown once, never on disk
    monkeypatch.delenv("TRUSTROOT_PASSPHRASE", raising=False)
    monkeypatch.delenv("TRUSTROOT_ROOT_PASSPHRASE", raising=False)
    code, out, err = run(capsys, "demo", "--dir", str(target), "--replace", "--devices", "2", "--time-scale", "60")
    assert code == 0, err
    made_up = dict(re.findall(r"export (TRUSTROOT_(?:ROOT_)?PASSPHRASE)='([^']+)'", out))
    assert set(made_up) == {"TRUSTROOT_PASSPHRASE", "TRUSTROOT_ROOT_PASSPHRASE"}, out
    on_disk = b"".join(p.read_bytes() for p in target.rglob("*") if p.is_file())
    assert all(len(value) >= 20 and value.encode() not in on_disk for value in made_up.values())
    other = tmp_path / "precious"
    other.mkdir()
    (other / "file.txt").write_text("keep me")
    code, _, err = run(capsys, "demo", "--dir", str(other), "--replace")
    assert code == 1 and "not a trustroot demo" in err
    assert (other / "file.txt").read_text() == "keep me"
    code, _, err = run(capsys, "demo", "--dir", str(other / "file.txt"))
    assert code == 2 and "is a file, not a directory" in err and "Traceback" not in err
    assert (other / "file.txt").read_text() == "keep me"


@pytest.mark.parametrize("role", ["issuing-ca", "root-ca"])
def test_rotating_a_ca_reissues_a_valid_chain(product_dir: Path, role: str, capsys: pytest.CaptureFixture[str]) -> None:
    from datetime import UTC, datetime

    from trustroot.pki.certificates import load_pem_certificate, validate_chain

    pki = product_dir / ".trustroot" / "pki"
    old_root = (pki / "root-ca.pem").read_bytes()
    old_issuing = load_pem_certificate(pki / "issuing-ca.pem")
    code, _, err = run(capsys, "keys", "rotate", role, "--context", str(product_dir))
    assert code == 0, err
    root = load_pem_certificate(pki / "root-ca.pem")
    issuing = load_pem_certificate(pki / "issuing-ca.pem")
    assert issuing.public_key() != old_issuing.public_key() or role == "root-ca"
    assert validate_chain(issuing, [], [root], now=datetime.now(UTC))[0] == issuing
    assert ((pki / "root-ca.pem").read_bytes() != old_root) == (role == "root-ca")
    assert list(pki.glob("issuing-ca.retired-*.pem"))
