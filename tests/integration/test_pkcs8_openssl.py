"""Interop of trustroot's key files with pyca/cryptography and the OpenSSL command line.

Known limitation, asserted below so that we notice when it goes away: OpenSSL 3.0's PKCS#8 scrypt
path caps scrypt memory at 32 MiB and refuses the production cost (N=2^17, r=8: 128 MiB) with
"illegal scrypt parameters" / "memory limit exceeded". Production key files therefore load with
pyca/cryptography (and trustroot) but not with ``openssl pkcs8``; files at N=2^14 load with both.
And OpenSSL 3.0 writes 8-byte scrypt salts, which trustroot's strict reader refuses for its own
key files (it wants 16) but accepts for a team's foreign files.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa, x25519

from trustroot.errors import KeyFileCorruptError
from trustroot.keys import _pkcs8
from trustroot.keys.filestore import load_pem_private_key_file
from trustroot.limits import PRODUCTION_SCRYPT, ScryptCost

pytestmark = [pytest.mark.integration]


def test_the_openssl_command_line_is_installed() -> None:
    """scripts/setup.sh installs openssl: the interop tests below must never be skipped silently."""
    assert shutil.which("openssl"), "openssl is missing: run scripts/setup.sh"


PASSWORD = "interop passphrase 1"
OPENSSL_MAX = ScryptCost(n=2**14, r=8, p=1)  # 16 MiB: within OpenSSL 3.0's 32 MiB cap


def _der(key: object) -> bytes:
    return key.private_bytes(  # type: ignore[attr-defined, no-any-return]
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _openssl(*args: str, env_password: str = PASSWORD) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "TR_INTEROP_PASS": env_password}
    return subprocess.run(["openssl", *args], env=env, capture_output=True, check=False, timeout=60)


@pytest.fixture(scope="module")
def keys() -> dict[str, bytes]:
    return {
        "p256": _der(ec.generate_private_key(ec.SECP256R1())),
        "p384": _der(ec.generate_private_key(ec.SECP384R1())),
        "ed25519": _der(ed25519.Ed25519PrivateKey.generate()),
        "x25519": _der(x25519.X25519PrivateKey.generate()),
        "rsa3072": _der(rsa.generate_private_key(public_exponent=65537, key_size=3072)),
    }


@pytest.fixture(scope="module")
def production_file(keys: dict[str, bytes]) -> bytes:
    """A P-256 key file at the production cost (about half a second to make)."""
    return _pkcs8.encrypt_pem(keys["p256"], PASSWORD.encode(), cost=PRODUCTION_SCRYPT)


def test_production_cost_loads_with_cryptography(keys: dict[str, bytes], production_file: bytes) -> None:
    pem = production_file
    envelope = _pkcs8.parse_envelope(_pkcs8.pem_decode(pem, source="prod"), source="prod")
    assert envelope.cost == ScryptCost(n=2**17, r=8, p=1)
    key = serialization.load_pem_private_key(pem, PASSWORD.encode())
    assert _der(key) == keys["p256"]


@pytest.mark.parametrize("kind", ["p256", "p384", "ed25519", "x25519", "rsa3072"])
def test_openssl_reads_our_files(tmp_path: Path, keys: dict[str, bytes], kind: str) -> None:
    path = tmp_path / f"{kind}.key.pem"
    path.write_bytes(_pkcs8.encrypt_pem(keys[kind], PASSWORD.encode(), cost=OPENSSL_MAX))
    result = _openssl("pkcs8", "-in", str(path), "-passin", "env:TR_INTEROP_PASS", "-outform", "DER")
    assert result.returncode == 0, result.stderr.decode()
    # OpenSSL re-encodes (e.g. drops the optional EC public key); compare the keys themselves.
    assert _der(serialization.load_der_private_key(result.stdout, None)) == keys[kind]
    wrong = _openssl("pkcs8", "-in", str(path), "-passin", "env:TR_INTEROP_PASS", env_password="wrong")
    assert wrong.returncode != 0


def test_openssl_3_refuses_the_production_cost(tmp_path: Path, production_file: bytes) -> None:
    """Documents OpenSSL's 32 MiB scrypt cap. If this fails, OpenSSL lifted it: update the docs."""
    path = tmp_path / "prod.key.pem"
    path.write_bytes(production_file)
    result = _openssl("pkcs8", "-in", str(path), "-passin", "env:TR_INTEROP_PASS")
    assert result.returncode != 0
    stderr = result.stderr.decode()
    assert "illegal scrypt parameters" in stderr or "memory limit exceeded" in stderr, stderr


@pytest.mark.parametrize("kind", ["p256", "ed25519", "rsa3072"])
def test_openssl_scrypt_output_decodes_with_ours(tmp_path: Path, keys: dict[str, bytes], kind: str) -> None:
    clear = tmp_path / "clear.der"
    clear.write_bytes(keys[kind])
    out = tmp_path / "openssl.key.pem"
    result = _openssl(
        "pkcs8", "-topk8", "-inform", "DER", "-in", str(clear), "-scrypt", "-scrypt_N", "16384",
        "-scrypt_r", "8", "-scrypt_p", "1", "-passout", "env:TR_INTEROP_PASS", "-out", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr.decode()
    data = out.read_bytes()
    der = _pkcs8.pem_decode(data, source=str(out))
    assert _pkcs8.pbes2_kdf_oid(der) == _pkcs8.SCRYPT_OID
    # OpenSSL 3.0 writes an 8-byte salt: refused for the store's own files ...
    with pytest.raises(KeyFileCorruptError, match="scrypt salt of 8 bytes is shorter than 16"):
        _pkcs8.decrypt_pem(data, PASSWORD.encode(), source=str(out))
    # ... decoded when the caller allows OpenSSL's salt length, and by the foreign-key helper.
    plain = _pkcs8.decrypt_pem(data, PASSWORD.encode(), source=str(out), min_salt_bytes=_pkcs8.OPENSSL_MIN_SALT_BYTES)
    assert plain == keys[kind]
    assert load_pem_private_key_file(out, PASSWORD) == keys[kind]
