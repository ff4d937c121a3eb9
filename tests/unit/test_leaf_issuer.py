"""The batch leaf issuer: same certificates as issue_leaf, issuer checks once, a sampled self-check."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID
from test_pki import ALGORITHMS, NOW, LocalHandle, device_name, make_chain, openssl_verify

from trustroot.errors import KeyStateError, PKIError
from trustroot.keys._interface import Algorithm, KeyInfo
from trustroot.pki import certificates as certs
from trustroot.pki.leaf_issuer import SELF_CHECK_INTERVAL, LeafIssuer


def _without_key_ids(cert: x509.Certificate) -> list[tuple[str, bool, object]]:
    return [
        (ext.oid.dotted_string, ext.critical, ext.value)
        for ext in cert.extensions
        if ext.oid.dotted_string != "2.5.29.14"  # the SKI differs with the subject key
    ]


@pytest.mark.parametrize("algorithm", ALGORITHMS, ids=str)
def test_same_profile_as_issue_leaf_and_validates(algorithm: Algorithm, tmp_path: Path) -> None:
    chain = make_chain(algorithm, "L")
    issuer = LeafIssuer(chain.inter_handle, chain.inter)
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    san = [x509.DNSName("device.example")]
    kwargs = {"validity_days": 30, "now": NOW, "subject_alt_names": san}
    eku = [ExtendedKeyUsageOID.CLIENT_AUTH]
    batch = issuer.issue(key, device_name("d1"), extended_key_usage=eku, **kwargs)  # type: ignore[arg-type]
    single = certs.issue_leaf(
        chain.inter_handle,
        chain.inter,
        key,
        device_name("d1"),
        extended_key_usage=eku,
        **kwargs,  # type: ignore[arg-type]
    )
    assert batch.subject == single.subject and batch.issuer == single.issuer
    assert batch.signature_algorithm_oid == single.signature_algorithm_oid
    assert batch.not_valid_before_utc == single.not_valid_before_utc
    assert batch.not_valid_after_utc == single.not_valid_after_utc
    assert _without_key_ids(batch) == _without_key_ids(single)
    batch.verify_directly_issued_by(chain.inter)
    path = certs.validate_chain(
        batch, [chain.inter], [chain.root], now=NOW + timedelta(minutes=1), purpose="client_auth"
    )
    assert path[0] == batch
    result = openssl_verify(tmp_path, chain.root, chain.inter, batch, "-purpose", "sslclient")
    assert result.returncode == 0, result.stderr


def test_a_handle_that_signs_wrongly_fails_on_the_first_certificate() -> None:
    chain = make_chain(Algorithm.ECDSA_P256, "C")
    broken = LocalHandle(chain.inter_handle.key, name="inter-C", corrupt=True)
    issuer = LeafIssuer(broken, chain.inter)
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    with pytest.raises(PKIError, match="self-check failed: the certificate signed with key 'inter-C'"):
        issuer.issue(key, device_name("d"), validity_days=1, now=NOW)


def test_self_check_is_sampled_every_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    chain = make_chain(Algorithm.ED25519, "S")
    issuer = LeafIssuer(chain.inter_handle, chain.inter)
    checked: list[int] = []
    original = issuer._self_check
    monkeypatch.setattr(issuer, "_self_check", lambda cert: (checked.append(1), original(cert)))
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    for index in range(SELF_CHECK_INTERVAL + 1):
        issuer.issue(key, device_name(f"d{index}"), validity_days=1, now=NOW)
    assert len(checked) == 2


def test_refuses_a_foreign_handle_and_an_issuer_out_of_validity() -> None:
    chain = make_chain(Algorithm.ECDSA_P256, "F")
    other = make_chain(Algorithm.ECDSA_P256, "G")
    with pytest.raises(PKIError, match="does not belong to issuer certificate 'Issuing CA F'"):
        LeafIssuer(other.inter_handle, chain.inter)
    issuer = LeafIssuer(chain.inter_handle, chain.inter)
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    with pytest.raises(PKIError, match="'Issuing CA F' is not valid at"):
        issuer.issue(key, device_name("late"), validity_days=1, now=NOW + timedelta(days=4000))
    leaf_handle = LocalHandle(chain.leaf_key, name="leaf")
    with pytest.raises(PKIError, match="'device-F' is not a CA certificate"):
        LeafIssuer(leaf_handle, chain.leaf).issue(key, device_name("x"), validity_days=1, now=NOW)


def test_image_key_id_equals_the_key_store_fingerprint() -> None:
    from trustroot.image._crypto import public_key_fingerprint as image_fingerprint
    from trustroot.keys._interface import public_key_fingerprint

    public = ec.generate_private_key(ec.SECP256R1()).public_key()
    assert image_fingerprint(public) == public_key_fingerprint(public)


@dataclass
class _RevokedHandle:
    """The issuing key as the store hands it out after a revocation: signing refuses."""

    inner: LocalHandle

    @property
    def info(self) -> KeyInfo:
        return self.inner.info

    def public_key(self) -> PublicKeyTypes:
        return self.inner.public_key()

    def sign(self, data: bytes) -> bytes:
        raise KeyStateError(f"key '{self.inner.info.name}' cannot sign: it is revoked")


def test_a_revoked_issuing_key_refuses_through_the_one_step_signer() -> None:
    chain = make_chain(Algorithm.ECDSA_P256, "R")
    issuer = LeafIssuer(_RevokedHandle(chain.inter_handle), chain.inter)  # type: ignore[arg-type]
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    with pytest.raises(KeyStateError, match="'inter-R' cannot sign: it is revoked"):
        issuer.issue(key, device_name("d"), validity_days=1, now=NOW)
