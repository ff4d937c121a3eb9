"""Production tokens and station reports as pure functions: signing, verification, every refusal."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from trustroot.errors import UsageError
from trustroot.keys._interface import Algorithm, KeyInfo, KeyRole, public_key_fingerprint
from trustroot.provision.tokens import (
    InvalidProductionToken,
    InvalidStationReport,
    ReportBatch,
    ReportToken,
    TrustedKey,
    canonical_json,
    issue_token,
    parse_expiry,
    sign_envelope,
    station_report,
    verify_station_report,
    verify_token,
)

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
ROOT = "ab" * 32


class _Handle:
    """A P-256 key handle for the pure tests (the key store's handles behave the same)."""

    def __init__(self) -> None:
        self._key = ec.generate_private_key(ec.SECP256R1())
        pem = self._key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.info = KeyInfo(
            name="production-authority",
            role=KeyRole.OTHER,
            algorithm=Algorithm.ECDSA_P256,
            backend="file",
            created=NOW,
            fingerprint=public_key_fingerprint(self._key.public_key()),
            public_pem=pem.decode(),
        )

    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self._key.public_key()

    def sign(self, data: bytes) -> bytes:
        from cryptography.hazmat.primitives import hashes

        return self._key.sign(data, ec.ECDSA(hashes.SHA256()))

    @property
    def trusted(self) -> TrustedKey:
        return TrustedKey(self.public_key(), Algorithm.ECDSA_P256)


@pytest.fixture(scope="module")
def authority() -> _Handle:
    return _Handle()


def _token(authority: _Handle, **changes: object) -> bytes:
    args: dict[str, object] = {
        "product": "Acme Plug",
        "root_ca": ROOT,
        "factory": "shenzhen-1",
        "count": 100,
        "expires": NOW + timedelta(days=30),
        "station_key": None,
        "now": NOW,
    }
    args.update(changes)
    return issue_token(authority, **args)[1]  # type: ignore[arg-type]


def _verify(data: bytes, authority: _Handle, *, now: datetime = NOW, product: str = "Acme Plug") -> object:
    return verify_token(data, [authority.trusted], product=product, root_ca=ROOT, now=now, source="token.json")


def _resign(data: bytes, authority: _Handle, change: dict[str, object]) -> bytes:
    """A token whose signed content was changed, then signed again with ``authority``."""
    signed = json.loads(data)["signed"]
    signed.update(change)
    return sign_envelope(signed, authority)


def test_a_token_round_trips(authority: _Handle) -> None:
    token = _verify(_token(authority, station_key="cd" * 32), authority)
    assert token.count == 100  # type: ignore[attr-defined]
    assert token.factory == "shenzhen-1"  # type: ignore[attr-defined]
    assert token.station_key == "cd" * 32  # type: ignore[attr-defined]
    assert token.token_id.startswith("tok-")  # type: ignore[attr-defined]


def test_the_token_file_is_canonical_json(authority: _Handle) -> None:
    data = _token(authority)
    assert data == canonical_json(json.loads(data)) + b"\n"


def _edit(data: bytes, **changes: object) -> bytes:
    document = json.loads(data)
    document["signed"].update(changes)
    return json.dumps(document).encode()


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: _edit(d, count=1_000_000), "the signature does not verify (forged or altered)"),
        (lambda d: _edit(d, expires="2099-01-01T00:00:00.000000Z"), "the signature does not verify"),
        (lambda d: _edit(d, factory="elsewhere"), "the signature does not verify"),
        (lambda d: b"not json", "not valid JSON"),
        (lambda d: d.replace(b'"count":100', b'"count":100.0'), "not valid JSON"),
        (lambda d: d.replace(b'{"signature":', b'{"signed":{},"signature":', 1), "duplicate key"),
        (lambda d: json.dumps({"signed": json.loads(d)["signed"]}).encode(), "not a signed envelope"),
        (lambda d: b" " * (20 << 10), "larger than the limit"),
    ],
    ids=["count", "expiry", "factory", "garbage", "float", "duplicate-key", "no-signature", "oversized"],
)
def test_a_forged_or_malformed_token_is_refused(authority: _Handle, mutate: object, message: str) -> None:
    data = mutate(_token(authority))  # type: ignore[operator]
    with pytest.raises(
        InvalidProductionToken, match="token.json: .*" + message.replace("(", r"\(").replace(")", r"\)")
    ):
        _verify(data, authority)


def test_a_token_signed_by_another_key_is_refused(authority: _Handle) -> None:
    with pytest.raises(InvalidProductionToken, match=r"signed by an unknown key .*, not by a trusted key"):
        _verify(_token(_Handle()), authority)


def test_a_signature_moved_to_another_key_id_is_refused(authority: _Handle) -> None:
    document = json.loads(_token(authority))
    document["signature"]["algorithm"] = "ed25519"
    with pytest.raises(InvalidProductionToken, match="the signature claims ed25519, the key is ecdsa-p256"):
        _verify(json.dumps(document).encode(), authority)


def test_an_expired_token_is_refused(authority: _Handle) -> None:
    data = _token(authority, expires=NOW + timedelta(days=1))
    _verify(data, authority, now=NOW + timedelta(hours=23))
    with pytest.raises(InvalidProductionToken, match=r"expired on 2026-06-02T12:00:00\.000000Z"):
        _verify(data, authority, now=NOW + timedelta(days=1, seconds=1))


def test_a_token_for_another_product_is_refused(authority: _Handle) -> None:
    with pytest.raises(InvalidProductionToken, match=r"is for product 'Acme Plug' .* not for this product 'Acme Lamp'"):
        _verify(_token(authority), authority, product="Acme Lamp")


def test_an_unknown_major_version_is_refused_after_the_signature(authority: _Handle) -> None:
    data = _resign(_token(authority), authority, {"version": 2})
    with pytest.raises(InvalidProductionToken, match=r"version 2 of trustroot\.production-token; .* version 1 only"):
        _verify(data, authority)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"count": 0}, "count must be an integer from 1"),
        ({"count": "5"}, "field 'count' must be an integer"),
        ({"token": "tok-XYZ"}, "token id 'tok-XYZ' is not of the form"),
        ({"extra": 1}, r"unknown \['extra'\]"),
        ({"expires": "2026-01-01"}, "is not of the form YYYY-MM-DDTHH:MM:SS.ffffffZ"),
        ({"type": "trustroot.station-report"}, "not a trustroot.production-token"),
    ],
)
def test_a_signed_but_malformed_token_is_refused(authority: _Handle, change: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidProductionToken, match=message):
        _verify(_resign(_token(authority), authority, change), authority)


def test_issue_refuses_a_past_expiry_and_a_bad_factory(authority: _Handle) -> None:
    with pytest.raises(UsageError, match="is not in the future"):
        _token(authority, expires=NOW - timedelta(seconds=1))
    with pytest.raises(UsageError, match="factory 'bad factory' is not allowed"):
        _token(authority, factory="bad factory")


def test_expiry_parsing() -> None:
    assert parse_expiry("2026-12-31") == datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC)
    assert parse_expiry("2026-12-31T10:00:00+02:00") == datetime(2026, 12, 31, 8, 0, tzinfo=UTC)
    with pytest.raises(UsageError, match="a time needs a zone"):
        parse_expiry("2026-12-31T10:00:00")
    with pytest.raises(UsageError, match="use a date"):
        parse_expiry("tomorrow")


def _report(signing: _Handle) -> bytes:
    batch = ReportBatch("batch-000000000001", "open", 10, 4, "ACME-00000001", "ACME-00000004")
    token = ReportToken("tok-0123456789abcdef", "f1", 10, "2026-07-01T00:00:00.000000Z", 10, 4, (batch,))
    return station_report(
        signing, product="Acme Plug", root_ca=ROOT, store="s" * 32, station_key="ef" * 32, tokens=[token], now=NOW
    )


def test_a_station_report_round_trips_and_refuses_tampering() -> None:
    signing = _Handle()
    report = verify_station_report(_report(signing))
    assert report.tokens[0].spent == 4
    assert report.tokens[0].batches[0].last_serial == "ACME-00000004"
    assert report.signing_key == signing.info.fingerprint
    tampered = _report(signing).replace(b'"spent":4', b'"spent":1')
    with pytest.raises(InvalidStationReport, match="the signature does not verify"):
        verify_station_report(tampered)
    document = json.loads(_report(signing))
    document["signature"]["value"] = base64.b64encode(b"\x00" * 70).decode()
    with pytest.raises(InvalidStationReport, match="the signature does not verify"):
        verify_station_report(json.dumps(document).encode())
