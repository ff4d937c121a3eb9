"""``trustroot provision`` through the CLI: the factory flow end to end and every refusal, with its message."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from trustroot.cli.main import main
from trustroot.keys.passphrase import fixed_secrets
from trustroot.keys.store import forget_unlocked_keys
from trustroot.pki.certificates import validate_chain
from trustroot.pki.crl import load_pem_crl
from trustroot.product import open_product
from trustroot.provision.bundle import open_bundle
from trustroot.provision.identity import build_device_csr, device_serial_of, generate_device_key
from trustroot.provision.tokens import AUTHORITY_KEY, STATION_KEY, issue_token, root_ca_fingerprint

SECRETS = fixed_secrets(os.environ["TRUSTROOT_PASSPHRASE"], os.environ["TRUSTROOT_ROOT_PASSPHRASE"])


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def run_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, object]:
    code, out, err = run(capsys, *args, "--json")
    assert code == 0, err
    result = json.loads(out)
    assert isinstance(result, dict)
    return result


def _refused(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    code, _, err = run(capsys, *args, "--quiet")
    assert code != 0, f"expected a refusal of {args}"
    assert "Traceback" not in err
    return err


def test_init_then_batch_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    demo = tmp_path / "demo"
    assert run(capsys, "init", str(demo), "--product", "Acme Plug", "--quiet")[0] == 0
    ctx = str(demo / "security-context.toml")
    made = run_json(capsys, "provision", "batch", "--factory", "line-1", "--count", "3", "--context", ctx)
    assert (made["made"], made["first_serial"], made["last_serial"]) == (3, "ACMEPL-00000001", "ACMEPL-00000003")
    batch_id, out_dir = str(made["batch"]), Path(str(made["out_dir"]))
    assert sorted(p.name for p in out_dir.iterdir()) == [f"ACMEPL-0000000{i}.bundle" for i in (1, 2, 3)]

    status = run_json(capsys, "provision", "status", "--context", ctx)
    assert status["ok"] is True and status["next_serial"] == "ACMEPL-00000004"
    assert status["devices"] == {"active": 3, "revoked": 0, "reserved": 0, "void": 0}
    tokens = status["tokens"]
    assert isinstance(tokens, list) and tokens[0]["count"] == 3 and tokens[0]["remaining"] == 0

    product = open_product(Path(ctx), secrets=SECRETS)
    root, issuing = product.certificate("root-ca.pem"), product.certificate("issuing-ca.pem")
    station = product.keys.unlock(STATION_KEY)
    material = open_bundle(station, (out_dir / "ACMEPL-00000002.bundle").read_bytes())
    device_cert = material.certificates()[0]
    validate_chain(device_cert, [issuing], [root], now=product.clock(), purpose="client_auth")
    assert device_serial_of(device_cert) == "ACMEPL-00000002"
    assert device_cert.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)[0].value == "ACMEPL-00000002"

    closed = run_json(capsys, "provision", "close", batch_id, "--context", ctx)
    manifest_path = Path(str(closed["manifest"]))
    verified = run_json(capsys, "provision", "verify-manifest", str(manifest_path), "--context", ctx)
    assert verified == {"ok": True, "batch": batch_id, "devices": 3, "factory": "line-1"}
    document = json.loads(manifest_path.read_bytes())
    document["signed"]["devices"][1]["claim_code_hash"] = "0" * 64
    tampered = tmp_path / "tampered.json"
    tampered.write_text(json.dumps(document))
    err = _refused(capsys, "provision", "verify-manifest", str(tampered), "--context", ctx)
    assert "the signature does not verify (forged or altered)" in err

    revoked = run_json(capsys, "provision", "revoke", "ACMEPL-00000002", "--reason", "keyCompromise", "--context", ctx)
    assert revoked["revoked"] == ["ACMEPL-00000002"] and revoked["crl_number"] == 2
    crl = load_pem_crl(product.pki_dir / "issuing-ca.crl.pem")
    assert crl.get_revoked_certificate_by_serial_number(device_cert.serial_number) is not None
    with pytest.raises(Exception, match="revoked by 'Acme Plug Device Issuing CA'"):
        validate_chain(device_cert, [issuing], [root], now=product.clock(), purpose="client_auth", crls=[crl])

    report = product.evidence.verify(product.evidence_public_keys())
    kinds = [r.type for r in product.evidence.iter_records()]
    assert report.records == len(kinds)
    assert kinds.count("device.provisioned") == 3
    for kind in ("batch.authorized", "batch.opened", "batch.closed", "device.revoked"):
        assert kind in kinds
    records = [r for r in product.evidence.iter_records() if r.type == "device.provisioned"]
    assert records[0].data["certificate"] == product_cert_fingerprint(product, "ACMEPL-00000001")
    assert not any(isinstance(v, float) for r in records for v in r.data.values())


def product_cert_fingerprint(product: object, serial: str) -> str:
    from trustroot.provision.tokens import production_store

    with production_store(product) as store:  # type: ignore[arg-type]
        record = store.device(serial)
    assert record is not None and record.cert_fingerprint is not None
    return record.cert_fingerprint


def test_program_writes_the_device_directory(
    product_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx = str(product_dir / "security-context.toml")
    code, out, err = run(capsys, "provision", "batch", "--factory", "f1", "--count", "1", "--context", ctx)
    assert code == 0, err  # text mode, with the progress bar
    assert "1 devices made (ACMEPL-00000001..ACMEPL-00000001)" in out
    status = run_json(capsys, "provision", "status", "--context", ctx)
    batches = status["batches"]
    assert isinstance(batches, list)
    bundle = Path(str(batches[0]["out_dir"])) / "ACMEPL-00000001.bundle"
    err = _refused(
        capsys, "provision", "program", "--bundle", str(bundle), "--out", str(product_dir / "dev"), "--context", ctx
    )
    assert "no device secret: set TRUSTROOT_DEVICE_SECRET" in err
    monkeypatch.setenv("TRUSTROOT_DEVICE_SECRET", "a-device-secret-of-enough-bytes")
    done = run_json(
        capsys, "provision", "program", "--bundle", str(bundle), "--out", str(product_dir / "dev"), "--context", ctx
    )
    assert done["serial"] == "ACMEPL-00000001"
    assert (product_dir / "dev" / "device.json").is_file()
    label = done["label"]
    assert isinstance(label, dict) and len(str(label["password"])) == 16 and label["claim_code"]


# --------------------------------------------------------------------------------------- tokens


@pytest.fixture
def ctx(product_dir: Path) -> str:
    return str(product_dir / "security-context.toml")


def _authorize(capsys: pytest.CaptureFixture[str], ctx: str, tmp: Path, count: int, *extra: str) -> Path:
    path = tmp / f"token-{count}-{len(list(tmp.glob('token-*')))}.json"
    result = run_json(
        capsys,
        "provision",
        "authorize",
        "--factory",
        "f1",
        "--count",
        str(count),
        "--expires",
        (datetime.now(UTC) + timedelta(days=2)).date().isoformat(),
        "--out",
        str(path),
        "--context",
        ctx,
        *extra,
    )
    assert result["count"] == count
    return path


def test_a_token_is_spent_once_and_never_beyond_its_count(
    ctx: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    token = _authorize(capsys, ctx, tmp_path, 2)
    err = _refused(capsys, "provision", "batch", "--token", str(token), "--count", "3", "--context", ctx)
    assert "has 2 of 2 devices left; 3 asked for" in err
    made = run_json(capsys, "provision", "batch", "--token", str(token), "--context", ctx)
    assert made["made"] == 2
    err = _refused(capsys, "provision", "batch", "--token", str(token), "--count", "1", "--context", ctx)
    assert "has 0 of 2 devices left; 1 asked for" in err


def test_forged_expired_and_foreign_tokens_are_refused(
    ctx: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    token = _authorize(capsys, ctx, tmp_path, 2)
    document = json.loads(token.read_bytes())
    document["signed"]["count"] = 2000
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps(document))
    err = _refused(capsys, "provision", "batch", "--token", str(forged), "--context", ctx)
    assert f"production token {forged}: the signature does not verify (forged or altered)" in err

    product = open_product(Path(ctx), secrets=SECRETS)
    authority = product.keys.unlock(AUTHORITY_KEY)
    past = datetime.now(UTC) - timedelta(days=10)
    common = {"root_ca": root_ca_fingerprint(product), "factory": "f1", "count": 5, "station_key": None}
    _, expired = issue_token(authority, product="Acme Plug", expires=past + timedelta(days=1), now=past, **common)
    (tmp_path / "expired.json").write_bytes(expired)
    err = _refused(capsys, "provision", "batch", "--token", str(tmp_path / "expired.json"), "--context", ctx)
    assert "expired on" in err

    now = datetime.now(UTC)
    _, other = issue_token(authority, product="Acme Lamp", expires=now + timedelta(days=1), now=now, **common)
    (tmp_path / "other.json").write_bytes(other)
    err = _refused(capsys, "provision", "batch", "--token", str(tmp_path / "other.json"), "--context", ctx)
    assert "is for product 'Acme Lamp'" in err and "not for this product 'Acme Plug'" in err

    station = tmp_path / "elsewhere.pub.pem"
    station.write_bytes(
        generate_device_key("ecdsa-p256")
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    pinned = _authorize(capsys, ctx, tmp_path, 2, "--station-key", str(station))
    err = _refused(capsys, "provision", "batch", "--token", str(pinned), "--context", ctx)
    assert "is for the station with key" in err and "not for this station" in err


def test_a_token_of_another_product_is_not_signed_by_a_trusted_key(
    ctx: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lamp = tmp_path / "lamp"
    assert run(capsys, "init", str(lamp), "--product", "Acme Lamp", "--quiet")[0] == 0
    foreign = _authorize(capsys, str(lamp / "security-context.toml"), tmp_path, 2)
    err = _refused(capsys, "provision", "batch", "--token", str(foreign), "--context", ctx)
    assert "no usable 'production-authority' key in the key store" in err  # this product never authorized
    _authorize(capsys, ctx, tmp_path, 1)
    err = _refused(capsys, "provision", "batch", "--token", str(foreign), "--context", ctx)
    assert "signed by an unknown key" in err


def test_a_missing_factory_secret_is_a_clear_error(
    ctx: str, product_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (product_dir / ".trustroot" / "keys" / "factory-secret-1.key.pem").unlink()
    forget_unlocked_keys()
    err = _refused(capsys, "provision", "batch", "--factory", "f1", "--count", "1", "--context", ctx)
    assert "the factory-secret key cannot be used, so device passwords cannot be derived" in err
    assert "factory-secret-1.key.pem is missing" in err and "EN 303 645 provision 5.1-1" in err
    assert "fix: restore the factory-secret key" in err


def test_an_edited_or_copied_back_store_is_detected(
    ctx: str, product_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    token = _authorize(capsys, ctx, tmp_path, 4)
    run_json(capsys, "provision", "batch", "--token", str(token), "--count", "1", "--context", ctx)
    db = product_dir / ".trustroot" / "production" / "production.sqlite"
    saved = tmp_path / "saved.sqlite"
    shutil.copy(db, saved)
    run_json(capsys, "provision", "batch", "--token", str(token), "--count", "2", "--context", ctx)
    shutil.copy(saved, db)  # the station puts its older store back to get the quota again
    err = _refused(capsys, "provision", "batch", "--token", str(token), "--count", "3", "--context", ctx)
    assert "the evidence log records 3 devices of this token but the store only 1" in err
    assert "a copied-back store file?" in err

    conn = sqlite3.connect(db)
    conn.execute("UPDATE tokens SET reserved = 0, spent = 0")
    conn.commit()
    conn.close()
    err = _refused(capsys, "provision", "batch", "--token", str(token), "--count", "1", "--context", ctx)
    assert "the station's signature over its spent counter does not verify" in err


def test_report_and_reconcile(ctx: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    token = _authorize(capsys, ctx, tmp_path, 3)
    run_json(capsys, "provision", "batch", "--token", str(token), "--count", "2", "--context", ctx)
    report = tmp_path / "report.json"
    run_json(capsys, "provision", "report", "--out", str(report), "--context", ctx)
    result = run_json(capsys, "provision", "reconcile", "--station-report", str(report), "--context", ctx)
    lines = result["tokens"]
    assert isinstance(lines, list) and result["ok"] is True
    assert (lines[0]["authorized"], lines[0]["spent"], lines[0]["reserved"]) == (3, 2, 2)
    report.write_bytes(report.read_bytes().replace(b'"spent":2', b'"spent":1'))
    err = _refused(capsys, "provision", "reconcile", "--station-report", str(report), "--context", ctx)
    assert "the signature does not verify" in err


# ---------------------------------------------------------------------------------------- flow (a)


def _csr(tmp: Path, serial: str, *, cn: str | None = None, name: str = "device.csr") -> Path:
    key = generate_device_key("ecdsa-p256")
    path = tmp / name
    if cn is None:
        path.write_bytes(build_device_csr(key, serial))
    else:
        from cryptography.hazmat.primitives import hashes

        subject = x509.Name(
            [x509.NameAttribute(NameOID.COMMON_NAME, cn), x509.NameAttribute(NameOID.SERIAL_NUMBER, serial)]
        )
        csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
        path.write_bytes(csr.public_bytes(serialization.Encoding.PEM))
    return path


def test_sign_csr_reserved_next_duplicate_and_foreign(
    ctx: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reserved = run_json(capsys, "provision", "batch", "--csr", "--factory", "f1", "--count", "2", "--context", ctx)
    assert reserved["serials"] == ["ACMEPL-00000001", "ACMEPL-00000002"]
    signed = run_json(
        capsys, "provision", "sign-csr", str(_csr(tmp_path, "ACMEPL-00000002")), "--factory", "f1", "--context", ctx
    )
    assert signed["serial"] == "ACMEPL-00000002" and signed["batch"] == reserved["batch"]
    chain = x509.load_pem_x509_certificates(Path(str(signed["chain"])).read_bytes())
    product = open_product(Path(ctx), secrets=SECRETS)
    validate_chain(
        chain[0], chain[1:2], [product.certificate("root-ca.pem")], now=product.clock(), purpose="client_auth"
    )
    label = json.loads(Path(str(signed["label"])).read_text())
    assert label["serial"] == "ACMEPL-00000002" and label["claim_code"]
    assert Path(str(signed["label"])).stat().st_mode & 0o777 == 0o600

    err = _refused(
        capsys, "provision", "sign-csr", str(_csr(tmp_path, "ACMEPL-00000002")), "--factory", "f1", "--context", ctx
    )
    assert "serial ACMEPL-00000002 is already issued (status active" in err

    err = _refused(
        capsys, "provision", "sign-csr", str(_csr(tmp_path, "ACMEPL-00000001")), "--factory", "f2", "--context", ctx
    )
    assert "serial ACMEPL-00000001 is reserved for factory f1, not for f2" in err

    err = _refused(
        capsys, "provision", "sign-csr", str(_csr(tmp_path, "ACMEPL-00000007")), "--factory", "f1", "--context", ctx
    )
    assert "names serial ACMEPL-00000007, which is neither the next serial (ACMEPL-00000003)" in err

    nxt = run_json(
        capsys, "provision", "sign-csr", str(_csr(tmp_path, "ACMEPL-00000003")), "--factory", "f1", "--context", ctx
    )
    assert nxt["serial"] == "ACMEPL-00000003" and nxt["batch"] != reserved["batch"]

    foreign = _csr(tmp_path, "ACMEPL-00000001", cn="ACMEPL-00000099", name="foreign.csr")
    err = _refused(capsys, "provision", "sign-csr", str(foreign), "--factory", "f1", "--context", ctx)
    assert "the subject names serial 'ACMEPL-00000099' in commonName, expected 'ACMEPL-00000001'" in err

    broken = tmp_path / "broken.csr"
    der = bytearray(
        x509.load_pem_x509_csr(_csr(tmp_path, "ACMEPL-00000001").read_bytes()).public_bytes(serialization.Encoding.DER)
    )
    der[-3] ^= 0x01  # a bit of the signature
    broken.write_bytes(x509.load_der_x509_csr(bytes(der)).public_bytes(serialization.Encoding.PEM))
    err = _refused(capsys, "provision", "sign-csr", str(broken), "--factory", "f1", "--context", ctx)
    assert "the signature does not verify: the request was altered" in err

    status = run_json(capsys, "provision", "status", "--context", ctx)
    assert status["ok"] is True
    assert status["devices"] == {"active": 2, "revoked": 0, "reserved": 1, "void": 0}


def test_a_replaced_store_cannot_spend_a_token_again(
    ctx: str, product_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    token = _authorize(capsys, ctx, tmp_path, 2)
    run_json(capsys, "provision", "batch", "--token", str(token), "--count", "2", "--context", ctx)
    production = product_dir / ".trustroot" / "production"
    for path in production.glob("production.sqlite*"):
        path.unlink()  # a fresh store, as if the station started over
    err = _refused(capsys, "provision", "batch", "--token", str(token), "--count", "2", "--context", ctx)
    assert "was spent here before (2 devices in the evidence log) but the production store does not know it" in err
