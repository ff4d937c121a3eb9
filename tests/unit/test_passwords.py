"""Derived and random device passwords: known answers, the encoder, the policy, the verifier, uniqueness."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from trustroot.context.schema import DevicePassword
from trustroot.errors import PolicyRefusal, UsageError
from trustroot.keys._interface import Algorithm, KeyHandle, KeyRole
from trustroot.keys.filestore import FileBackend
from trustroot.keys.passphrase import fixed_secrets
from trustroot.provision import passwords as pw
from trustroot.provision.identity import SerialError, format_serial
from trustroot.provision.passwords import (
    ALPHABETS,
    PasswordMismatchError,
    check_password_policy,
    derive_device_password,
    password_entropy_bits,
    password_verifier,
    random_device_password,
    verify_password,
)

REPO = Path(__file__).resolve().parents[2]
VECTORS = json.loads((REPO / "tests" / "vectors" / "passwords.json").read_text(encoding="utf-8"))
SERIAL = "ACMEPL-00000042"


def _backend(directory: Path) -> FileBackend:
    return FileBackend(directory, fixed_secrets("password test store passphrase"))


@pytest.fixture(scope="module")
def vector_secret(tmp_path_factory: pytest.TempPathFactory) -> KeyHandle:
    """The vectors' factory secret, imported into a real file backend."""
    backend = _backend(tmp_path_factory.mktemp("pw-keys"))
    info = backend.import_key(
        "factory-secret-1",
        KeyRole.FACTORY_SECRET,
        Algorithm.HMAC_SHA256,
        bytes.fromhex(VECTORS["secret_hex"]),
        domain="store",
    )
    return backend.unlock(info)


# ------------------------------------------------------------------------------------ known answers


@pytest.mark.parametrize("vector", VECTORS["vectors"], ids=lambda v: f"{v['serial']}-{v['alphabet']}-{v['length']}")
def test_known_answers(vector_secret: KeyHandle, vector: dict[str, object]) -> None:
    password = derive_device_password(
        vector_secret,
        str(vector["product"]),
        str(vector["serial"]),
        alphabet=str(vector["alphabet"]),
        length=int(str(vector["length"])),
        min_entropy_bits=0,
    )
    assert password == vector["password"]


def test_vectors_cover_the_encodings_and_the_counter() -> None:
    vectors = VECTORS["vectors"]
    assert {v["alphabet"] for v in vectors} == set(ALPHABETS)
    assert any(v["blocks"] > 1 for v in vectors)  # extension with HMAC counter blocks
    assert any(v["attempt"] > 0 and v["length"] == 6 for v in vectors)  # a common password re-derived
    assert any(v["attempt"] > 0 and v["length"] == 16 for v in vectors)  # the serial's counter re-derived
    assert any(any(ord(c) > 127 for c in v["product"]) for v in vectors)  # UTF-8 of the product


def test_message_encoding_is_the_documented_one() -> None:
    for vector in VECTORS["vectors"]:
        prefix = pw._message_prefix(vector["product"], vector["serial"], vector["alphabet"], vector["length"])
        assert (prefix + bytes(8)).hex() == vector["first_message_hex"]
    assert pw._message_prefix("P", "AB0001", "digits", 6) == (
        b"trustroot/pw/v1" + b"\x00\x01P" + b"\x00\x06AB0001" + b"\x00\x06digits" + b"\x00\x06"
    )


def test_vector_file_is_what_the_script_makes() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "make_password_vectors.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


# ------------------------------------------------------------------------------------ the derivation


def test_every_input_separates_the_passwords(vector_secret: KeyHandle) -> None:
    reference = derive_device_password(vector_secret, "Acme Plug", SERIAL, alphabet="base32", length=16)
    others = {
        derive_device_password(vector_secret, "Acme Plug2", SERIAL, alphabet="base32", length=16),
        derive_device_password(vector_secret, "Acme Plug", "ACMEPL-00000043", alphabet="base32", length=16),
        derive_device_password(vector_secret, "Acme Plug", SERIAL, alphabet="base32", length=17)[:16],
        derive_device_password(vector_secret, "Acme Plug", SERIAL, alphabet="alnum", length=16),
    }
    assert reference not in others
    assert len(others) == 4
    # field boundaries are length-prefixed: moving a character between product and serial changes the message
    assert pw._message_prefix("AB", "C0001", "base32", 16) != pw._message_prefix("A", "BC0001", "base32", 16)


def test_derivation_refuses_bad_settings(vector_secret: KeyHandle, tmp_path: Path) -> None:
    with pytest.raises(PolicyRefusal, match=r"8 digits characters give 26\.6 bits") as info:
        derive_device_password(vector_secret, "P", SERIAL, alphabet="digits", length=8)
    assert info.value.provision == "5.1-2"
    with pytest.raises(UsageError, match="alphabet 'hex' is unknown"):
        derive_device_password(vector_secret, "P", SERIAL, alphabet="hex", length=16)
    for length in (5, 65):
        with pytest.raises(UsageError, match=f"password length {length} is not allowed"):
            derive_device_password(vector_secret, "P", SERIAL, alphabet="base32", length=length)
    with pytest.raises(SerialError):
        derive_device_password(vector_secret, "P", "acme-1", alphabet="base32", length=16)
    for product in ("", "x" * 201, "tab\there"):
        with pytest.raises(UsageError, match="product"):
            derive_device_password(vector_secret, product, SERIAL, alphabet="base32", length=16)
    backend = _backend(tmp_path)
    signing = backend.unlock(backend.generate("sig", KeyRole.OTHER, Algorithm.ED25519, domain="store"))
    with pytest.raises(UsageError, match="is a ed25519 key; passwords derive from an hmac-sha256 secret"):
        derive_device_password(signing, "P", SERIAL, alphabet="base32", length=16)


def test_derivation_gives_up_after_max_attempts(vector_secret: KeyHandle, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    def always(password: str, serial: str, mac: str | None) -> tuple[str, str]:
        calls.append(password)
        return ("5.1-1", "test")

    monkeypatch.setattr(pw, "_content_problem", always)
    with pytest.raises(PolicyRefusal, match="no acceptable derived password in 1000 attempts"):
        derive_device_password(vector_secret, "P", SERIAL, alphabet="base32", length=16)
    assert len(calls) == pw.MAX_DERIVATION_ATTEMPTS
    assert len(set(calls)) == len(calls)  # every attempt is a new password


def test_uniqueness_and_uniformity_over_100000_devices(vector_secret: KeyHandle) -> None:
    """100,000 serials -> 100,000 distinct passwords; the characters are uniform (chi-square, fixed data)."""
    serials = [format_serial("ACMEPL-", 8, seq) for seq in range(100_000)]
    passwords = [derive_device_password(vector_secret, "Acme Plug", s, alphabet="base32", length=16) for s in serials]
    assert len(set(serials)) == len(set(passwords)) == 100_000
    counts = Counter("".join(passwords))
    assert set(counts) == set(ALPHABETS["base32"])
    expected = 16 * 100_000 / 32
    chi_square = sum((count - expected) ** 2 / expected for count in counts.values())
    assert chi_square < 80  # 31 degrees of freedom: P(chi2 > 80) ~ 3e-6; the data are fixed, so no flakiness
    first = Counter(p[0] for p in passwords)  # no position is biased either
    assert sum((c - 100_000 / 32) ** 2 / (100_000 / 32) for c in first.values()) < 80


# -------------------------------------------------------------------------------------- the encoder


@pytest.mark.parametrize("name", list(ALPHABETS))
def test_the_encoder_is_exactly_uniform_per_byte(name: str) -> None:
    chars = ALPHABETS[name]
    n = len(chars)
    outputs = [pw._encode(iter([bytes([b])]), chars, 1) for b in range(256)]
    accepted = [o for o in outputs if o is not None]
    assert len(accepted) == 256 - 256 % n
    assert set(Counter(accepted).values()) == {256 // n}  # every symbol from exactly 256 // n byte values
    assert all(o is None for o in outputs[256 - 256 % n :])


def test_alphabets_and_entropy() -> None:
    assert {k: len(v) for k, v in ALPHABETS.items()} == {"base32": 32, "base58": 58, "alnum": 62, "digits": 10}
    assert all(len(set(v)) == len(v) for v in ALPHABETS.values())
    assert not set("0OIl") & set(ALPHABETS["base58"])
    assert password_entropy_bits("base32", 16) == 80
    assert password_entropy_bits("digits", 6) == pytest.approx(19.93, abs=0.01)
    for alphabet in ALPHABETS:
        for length in (6, 16, 64):
            settings = DevicePassword(alphabet=alphabet, length=length)  # type: ignore[arg-type]
            assert password_entropy_bits(alphabet, length) == pytest.approx(settings.entropy_bits)


# -------------------------------------------------------------------------------------- the policy

REFUSED = [
    ("password", None, "5.1-1", "common-password list"),
    (" Admin ", None, "5.1-1", "common-password list"),
    ("123456", None, "5.1-1", "common-password list"),
    ("xxACMEPL-00000042yyZZ9!", None, "5.1-2", "contains the device serial"),
    ("acmepl-00000042-Secret!", None, "5.1-2", "contains the device serial"),
    ("Tr0ub4dor-00000042-&3x", None, "5.1-2", "sequence number"),
    ("aa:bb:cc:dd:ee:ff-Horse!", None, "5.1-2", "shape of a MAC address"),
    ("AA-BB-CC-DD-EE-FF", None, "5.1-2", "shape of a MAC address"),
    ("x0a1b.2c3d.4e5fx-long-enough", None, "5.1-2", "shape of a MAC address"),
    ("A1B2C3D4E5F6", None, "5.1-2", "shape of a MAC address"),
    ("Horse-a1b2c3d4e5f6-battery", "A1:B2:C3:D4:E5:F6", "5.1-2", "the device's MAC address"),
    ("Horse-A1:B2:C3:D4:E5:F6x", "a1b2.c3d4.e5f6", "5.1-2", "shape of a MAC address"),
    ("Kx9!q", None, "5.1-2", "bits of entropy, below the minimum of 60"),
    ("correcthorse", None, "5.1-2", "bits of entropy"),
    ("", None, "5.1-1", "empty"),
    ("tab\tinside-a-long-password", None, "5.1-2", "control characters"),
]


@pytest.mark.parametrize(("password", "mac", "provision", "reason"), REFUSED)
def test_policy_refusals(password: str, mac: str | None, provision: str, reason: str) -> None:
    with pytest.raises(PolicyRefusal) as info:
        check_password_policy(password, SERIAL, mac=mac)
    assert info.value.provision == provision
    assert reason in str(info.value)
    assert f"(EN 303 645 provision {provision})" in str(info.value)
    assert SERIAL in str(info.value)
    if len(password) > 8:
        assert password not in str(info.value)  # a refusal never shows the password
    assert repr(password) not in str(info.value)


def test_policy_accepts_good_passwords(vector_secret: KeyHandle) -> None:
    check_password_policy("correct horse battery staple", SERIAL)
    derived = derive_device_password(vector_secret, "Acme Plug", SERIAL, alphabet="base32", length=16)
    check_password_policy(derived, SERIAL, alphabet="base32", mac="00:11:22:33:44:55")
    check_password_policy("012345678912", SERIAL, min_entropy_bits=0)  # 12 digits, no letter: not a MAC shape
    with pytest.raises(UsageError, match="outside the base32 alphabet"):
        check_password_policy("abcdefghijklmnop", SERIAL, alphabet="base32")
    with pytest.raises(PolicyRefusal, match="about 80 bits"):
        check_password_policy("ABCDEFGHIJKLMNOP", SERIAL, alphabet="base32", min_entropy_bits=81)
    with pytest.raises(UsageError, match="is not 12 hexadecimal digits"):
        check_password_policy("correct horse battery staple", SERIAL, mac="00:11:22")


def test_estimated_entropy_classes() -> None:
    assert pw._estimated_entropy_bits("") == 0
    assert pw._estimated_entropy_bits("aaaa") == pytest.approx(4 * math.log2(26))
    assert pw._estimated_entropy_bits("aA1!") == pytest.approx(4 * math.log2(95))
    assert pw._estimated_entropy_bits("é") == pytest.approx(math.log2(100))


# ------------------------------------------------------------------------------------------ random


def test_random_passwords() -> None:
    drawn = {random_device_password(SERIAL, alphabet="base58", length=16) for _ in range(2000)}
    assert len(drawn) == 2000
    assert all(len(p) == 16 and set(p) <= set(ALPHABETS["base58"]) for p in drawn)
    for password in list(drawn)[:50]:
        check_password_policy(password, SERIAL, alphabet="base58")
    assert len(random_device_password(SERIAL, alphabet="digits", length=64, mac="00-11-22-33-44-55")) == 64
    with pytest.raises(PolicyRefusal, match="below min_entropy_bits = 60"):
        random_device_password(SERIAL, alphabet="base32", length=11)
    with pytest.raises(UsageError, match="MAC address"):
        random_device_password(SERIAL, alphabet="base32", length=16, mac="not a mac")


# ---------------------------------------------------------------------------------------- verifier


def test_verifier_round_trip() -> None:
    verifier = password_verifier("WGOJSDIFP4OEZ6P2")
    assert verifier.startswith("$scrypt$ln=10,r=8,p=1$")  # the suite's test-only cost
    assert "WGOJSDIFP4OEZ6P2" not in verifier
    verify_password("WGOJSDIFP4OEZ6P2", verifier)
    assert password_verifier("WGOJSDIFP4OEZ6P2") != verifier  # a fresh salt each time
    for wrong in ("WGOJSDIFP4OEZ6P3", "wgojsdifp4oez6p2", ""):
        with pytest.raises(PasswordMismatchError, match="does not match"):
            verify_password(wrong, verifier)
    with pytest.raises(UsageError, match="non-empty"):
        password_verifier("")


def test_verifier_uses_the_production_cost(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRUSTROOT_INSECURE_TEST_KDF")
    verifier = password_verifier("x")
    assert verifier.startswith("$scrypt$ln=14,r=8,p=1$")
    verify_password("x", verifier)


@pytest.mark.parametrize(
    ("verifier", "message"),
    [
        ("plain", "not a trustroot password verifier"),
        ("$scrypt$ln=10,r=8,p=1$AAAA$BBBB", "not a trustroot password verifier"),
        ("$scrypt$ln=21,r=8,p=1$" + "A" * 22 + "$" + "A" * 43, "out of the accepted range"),
        ("$scrypt$ln=20,r=8,p=1$" + "A" * 22 + "$" + "A" * 43, "out of the accepted range"),
        ("$scrypt$ln=0,r=8,p=1$" + "A" * 22 + "$" + "A" * 43, "out of the accepted range"),
    ],
)
def test_malformed_verifiers(verifier: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        verify_password("x", verifier)
