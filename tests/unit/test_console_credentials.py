"""Console credentials: TOTP against the RFC vectors, password hashing and policy."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest

from trustroot.errors import UsageError
from trustroot.fleet import totp
from trustroot.fleet.console_users import check_password_policy, hash_password, verify_password

#: RFC 4226 appendix D: HOTP values of "12345678901234567890" for counters 0..9.
RFC4226 = ["755224", "287082", "359152", "969429", "338314", "254676", "287922", "162583", "399871", "520489"]
RFC_SECRET = base64.b32encode(b"12345678901234567890").decode().rstrip("=")


@pytest.mark.parametrize(("counter", "expected"), list(enumerate(RFC4226)))
def test_hotp_matches_rfc4226(counter: int, expected: str) -> None:
    assert totp.hotp(b"12345678901234567890", counter) == expected


@pytest.mark.parametrize(
    ("unix", "eight_digits"),
    [(59, "94287082"), (1111111109, "07081804"), (1111111111, "14050471"), (1234567890, "89005924")],
)
def test_totp_matches_rfc6238_sha1(unix: int, eight_digits: str) -> None:
    moment = datetime.fromtimestamp(unix, UTC)
    assert totp.hotp(b"12345678901234567890", totp.step_of(moment), digits=8) == eight_digits
    assert totp.totp(RFC_SECRET, moment) == eight_digits[-6:]


def test_a_code_is_accepted_once_and_within_one_step_of_drift() -> None:
    secret = totp.new_secret()
    now = datetime(2026, 11, 22, 12, 0, 10, tzinfo=UTC)
    code = totp.totp(secret, now)
    step = totp.verify(secret, code, now, None)
    assert step == totp.step_of(now)
    assert totp.verify(secret, code, now, step) is None, "a replayed code must be refused"
    later = datetime.fromtimestamp(now.timestamp() + 30, UTC)
    assert totp.verify(secret, code, later, None) == step, "one step of drift is accepted"
    much_later = datetime.fromtimestamp(now.timestamp() + 90, UTC)
    assert totp.verify(secret, code, much_later, None) is None
    assert totp.verify(secret, "12345", now, None) is None
    assert totp.verify(secret, "abcdef", now, None) is None


def test_otpauth_uri_names_issuer_and_account() -> None:
    uri = totp.otpauth_uri("ABCDEFGH", "alice", "trustroot acme")
    assert uri.startswith("otpauth://totp/trustroot%20acme%3Aalice?secret=ABCDEFGH&issuer=trustroot%20acme")
    assert "digits=6" in uri and "period=30" in uri


def test_password_hash_is_salted_scrypt_and_verifies() -> None:
    first, second = hash_password("correct horse battery"), hash_password("correct horse battery")
    assert first.startswith("scrypt$") and first != second
    assert verify_password("correct horse battery", first)
    assert not verify_password("correct horse batterx", first)
    assert not verify_password("correct horse battery", "scrypt$40$8$1$AAAA$AAAA"), "absurd cost refused"
    assert not verify_password("correct horse battery", "md5$whatever")


@pytest.mark.parametrize("bad", ["short", "x" * 257, "password1234", "qwertyuiop123"])
def test_weak_console_passwords_are_refused_with_the_provision(bad: str) -> None:
    with pytest.raises(UsageError) as caught:
        check_password_policy(bad)
    assert caught.value.provision == "5.1-1"
