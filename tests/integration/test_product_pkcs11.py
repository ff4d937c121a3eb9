"""A whole product whose root of trust lives on a PKCS#11 token (SoftHSM2, for real)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from trustroot.cli.main import main
from trustroot.keys._softhsm import SoftHsmToken
from trustroot.keys.passphrase import fixed_secrets
from trustroot.pki.certificates import load_pem_certificate, validate_chain
from trustroot.product import open_product

PIN = "7731-2208-acme"


@pytest.fixture(scope="module")
def hsm_product(softhsm_token: SoftHsmToken, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A product made by ``trustroot init --backend pkcs11`` on a token of its own."""
    # the token "acme-hsm" is made up front by the softhsm_token fixture (tests/integration/conftest.py)
    directory = tmp_path_factory.mktemp("hsm") / "acme"
    os.environ["TRUSTROOT_PKCS11_PIN"] = PIN
    try:
        code = main(
            [
                "init", str(directory), "--product", "Acme HSM", "--backend", "pkcs11",
                "--pkcs11-module", softhsm_token.module_path, "--token-label", "acme-hsm", "--quiet",
            ]
        )  # fmt: skip
    finally:
        del os.environ["TRUSTROOT_PKCS11_PIN"]
    assert code == 0
    return directory


def test_keys_live_on_the_token(hsm_product: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    os.environ["TRUSTROOT_PKCS11_PIN"] = PIN
    try:
        assert main(["keys", "list", "--context", str(hsm_product), "--json"]) == 0
    finally:
        del os.environ["TRUSTROOT_PKCS11_PIN"]
    keys = {k["name"]: k for k in json.loads(capsys.readouterr().out)}
    assert len(keys) == 9
    assert {k["backend"] for k in keys.values()} == {"pkcs11"}
    assert list((hsm_product / ".trustroot" / "keys").glob("*.key.pem")) == []  # no key file at all


def test_token_keys_sign_certificates_and_evidence(hsm_product: Path) -> None:
    product = open_product(hsm_product / "security-context.toml", secrets=fixed_secrets("x", pin=PIN))
    root = load_pem_certificate(hsm_product / ".trustroot" / "pki" / "root-ca.pem")
    issuing = load_pem_certificate(hsm_product / ".trustroot" / "pki" / "issuing-ca.pem")
    path = validate_chain(issuing, [], [root], now=datetime.now(UTC))
    assert path[0] == issuing
    report = product.evidence.verify(product.evidence_public_keys())
    assert report.last_signed_seq == 10  # the checkpoint was signed by the Ed25519 key on the token
    handle = product.keys.unlock("firmware-signing-1")
    signature = handle.sign(b"image")
    product.keys.verify("firmware-signing-1", b"image", signature)


def test_backup_of_token_keys_is_refused(hsm_product: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    os.environ["TRUSTROOT_PKCS11_PIN"] = PIN
    try:
        code = main(["keys", "backup", "--out", str(tmp_path / "usb"), "--context", str(hsm_product)])
    finally:
        del os.environ["TRUSTROOT_PKCS11_PIN"]
    err = capsys.readouterr().err
    assert code == 1
    assert "sensitive and non-extractable; export refused" in err
    assert not (tmp_path / "usb").exists() or not any((tmp_path / "usb").iterdir())


def test_wrong_pin_is_one_clear_line(hsm_product: Path, softhsm_token: SoftHsmToken) -> None:
    # a new process: this one holds the handles it unlocked (each key is unlocked once per process)
    result = subprocess.run(
        [sys.executable, "-m", "trustroot.cli", "evidence", "checkpoint", "--context", str(hsm_product)],
        check=False,
        capture_output=True,
        text=True,
        env={**os.environ, **softhsm_token.environ(), "TRUSTROOT_PKCS11_PIN": "0000-wrong"},
    )
    assert result.returncode == 1
    assert "the PIN does not open PKCS#11 token" in result.stderr
    assert "acme-hsm" in result.stderr
    assert "Traceback" not in result.stderr
