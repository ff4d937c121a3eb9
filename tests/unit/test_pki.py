"""Certificates and CRLs signed through a KeyHandle: issuance, chain validation, openssl interop."""

from __future__ import annotations

import hashlib
import subprocess
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa, x25519
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from trustroot import _der
from trustroot.errors import ChainValidationError, PKIError, UnreadableInputError
from trustroot.keys._interface import Algorithm, KeyInfo, KeyRole
from trustroot.limits import Limits
from trustroot.pki import _signing
from trustroot.pki import certificates as certs
from trustroot.pki.crl import dump_pem_crl, issue_crl, load_pem_crl, parse_pem_crl

NOW = datetime(2026, 1, 15, 12, 0, 0, tzinfo=UTC)
PRIVATE_OID = x509.ObjectIdentifier("1.3.6.1.4.1.99999.1")
ALGORITHMS = [Algorithm.ECDSA_P256, Algorithm.ECDSA_P384, Algorithm.ED25519, Algorithm.RSA_3072]


# ------------------------------------------------------------------------------------- test KeyHandle


def _generate(algorithm: Algorithm) -> Any:
    if algorithm is Algorithm.ECDSA_P256:
        return ec.generate_private_key(ec.SECP256R1())
    if algorithm is Algorithm.ECDSA_P384:
        return ec.generate_private_key(ec.SECP384R1())
    if algorithm is Algorithm.ED25519:
        return ed25519.Ed25519PrivateKey.generate()
    return rsa.generate_private_key(public_exponent=65537, key_size=3072)


@dataclass
class LocalHandle:
    """A KeyHandle around a cryptography private key, signing by the keys/_interface conventions."""

    key: Any
    info: KeyInfo = field(init=False)
    algorithm: Algorithm = Algorithm.ECDSA_P256
    name: str = "test-key"
    corrupt: bool = False

    def __post_init__(self) -> None:
        self.info = KeyInfo(
            name=self.name,
            role=KeyRole.OTHER,
            algorithm=self.algorithm,
            backend="file",
            created=NOW,
        )

    def public_key(self) -> PublicKeyTypes:
        public: PublicKeyTypes = self.key.public_key()
        return public

    def sign(self, data: bytes) -> bytes:
        if self.corrupt:
            data = data + b"x"
        if self.algorithm is Algorithm.ED25519:
            return bytes(self.key.sign(data))
        if self.algorithm is Algorithm.RSA_3072:
            pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
            return bytes(self.key.sign(data, pss, hashes.SHA256()))
        digest = hashes.SHA384() if self.algorithm is Algorithm.ECDSA_P384 else hashes.SHA256()
        return bytes(self.key.sign(data, ec.ECDSA(digest)))

    def sign_digest(self, digest: bytes) -> bytes:
        raise NotImplementedError

    def mac(self, data: bytes) -> bytes:
        raise NotImplementedError

    def exchange(self, peer_public: PublicKeyTypes) -> bytes:
        raise NotImplementedError


def handle_for(algorithm: Algorithm, name: str = "test-key") -> LocalHandle:
    return LocalHandle(_generate(algorithm), algorithm=algorithm, name=name)


# ---------------------------------------------------------------------------------------------- helpers


def device_name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Acme Devices"),
            x509.NameAttribute(NameOID.SERIAL_NUMBER, "SN-0001"),
        ]
    )


def write(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


def openssl_verify(
    tmp_path: Path, root: x509.Certificate, inter: x509.Certificate, leaf: x509.Certificate, *extra: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            "openssl",
            "verify",
            "-x509_strict",
            "-attime",
            str(int(NOW.timestamp()) + 60),
            "-CAfile",
            write(tmp_path / "root.pem", certs.dump_pem_certificate(root)),
            "-untrusted",
            write(tmp_path / "inter.pem", certs.dump_pem_certificate(inter)),
            *extra,
            write(tmp_path / "leaf.pem", certs.dump_pem_certificate(leaf)),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )


@dataclass
class Chain:
    root_handle: LocalHandle
    inter_handle: LocalHandle
    leaf_key: Any
    root: x509.Certificate
    inter: x509.Certificate
    leaf: x509.Certificate


def make_chain(algorithm: Algorithm, tag: str = "A", *, leaf_days: int | certs.NoExpiration = 365) -> Chain:
    root_handle = handle_for(algorithm, f"root-{tag}")
    inter_handle = handle_for(algorithm, f"inter-{tag}")
    root = certs.create_root_ca(root_handle, f"Root CA {tag}", "Acme", 3650, now=NOW)
    inter = certs.issue_intermediate_ca(
        root_handle, root, inter_handle.public_key(), f"Issuing CA {tag}", "Acme", 1825, now=NOW
    )
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = certs.issue_leaf(
        inter_handle,
        inter,
        leaf_key.public_key(),
        device_name(f"device-{tag}"),
        validity_days=leaf_days,
        now=NOW,
        extended_key_usage=[ExtendedKeyUsageOID.CLIENT_AUTH],
    )
    return Chain(root_handle, inter_handle, leaf_key, root, inter, leaf)


@pytest.fixture(scope="module", params=ALGORITHMS, ids=str)
def chain(request: pytest.FixtureRequest) -> Chain:
    return make_chain(request.param, leaf_days=certs.NO_WELL_DEFINED_EXPIRATION)


@pytest.fixture(scope="module")
def world() -> Chain:
    return make_chain(Algorithm.ECDSA_P256)


@pytest.fixture(scope="module")
def other() -> Chain:
    return make_chain(Algorithm.ECDSA_P256, "B")


def raw_ca(
    issuer_key: Any,
    issuer: x509.Certificate,
    subject_key: Any,
    cn: str,
    *,
    ca: bool = True,
    path_length: int | None = None,
    key_cert_sign: bool = True,
    crl_sign: bool | None = None,
    key_usage: bool = True,
    eku: list[x509.ObjectIdentifier] | None = None,
    subject: x509.Name | None = None,
) -> x509.Certificate:
    """A certificate built with cryptography directly (no SKI/AKI): for shapes the recipes refuse."""
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject or x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .issuer_name(issuer.subject)
        .public_key(subject_key.public_key())
        .serial_number(certs.random_serial())
        .not_valid_before(NOW)
        .not_valid_after(NOW + timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=path_length), critical=True)
    )
    if key_usage:
        usage = x509.KeyUsage(
            digital_signature=True,
            content_commitment=False,
            key_encipherment=False,
            data_encipherment=False,
            key_agreement=False,
            key_cert_sign=key_cert_sign,
            crl_sign=key_cert_sign if crl_sign is None else crl_sign,
            encipher_only=False,
            decipher_only=False,
        )
        builder = builder.add_extension(usage, critical=True)
    if eku is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage(eku), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def raw_crl(
    issuer_key: Any,
    issuer: x509.Certificate,
    *,
    this_update: datetime = NOW,
    extensions: tuple[tuple[x509.ExtensionType, bool], ...] = (),
) -> x509.CertificateRevocationList:
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.subject)
        .last_update(this_update)
        .next_update(this_update + timedelta(days=7))
    )
    for value, critical in extensions:
        builder = builder.add_extension(value, critical=critical)
    return builder.sign(issuer_key, hashes.SHA256())


def resign_with_duplicate_extension(cert: x509.Certificate, key: Any) -> x509.Certificate:
    """Re-sign ``cert`` with its first extension repeated: something no builder will write."""
    tbs = _der.parse_sequence(cert.tbs_certificate_bytes)
    wrapper = tbs[-1]  # [3] EXPLICIT Extensions
    assert wrapper.tag == 0xA3
    extensions = _der.parse_sequence(wrapper.content)
    doubled = _der.tlv(0xA3, _der.sequence(*(e.raw for e in [extensions[0], *extensions])))
    new_tbs = _der.sequence(*(t.raw for t in tbs[:-1]), doubled)
    algorithm = _der.parse_sequence(cert.public_bytes(serialization.Encoding.DER))[1].raw
    signature = key.sign(new_tbs, ec.ECDSA(hashes.SHA256()))
    return x509.load_der_x509_certificate(_der.sequence(new_tbs, algorithm, _der.bit_string(signature)))


def leaf_under(issuer_key: Any, issuer: x509.Certificate, cn: str = "device-deep") -> x509.Certificate:
    return raw_ca(issuer_key, issuer, ec.generate_private_key(ec.SECP256R1()), cn, ca=False)


# -------------------------------------------------------------------------------- positive, per algorithm


def test_chain_validates_and_openssl_accepts(chain: Chain, tmp_path: Path) -> None:
    path = certs.validate_chain(chain.leaf, [chain.inter], [chain.root], now=NOW, purpose="client_auth")
    assert path == [chain.leaf, chain.inter, chain.root]
    crl = issue_crl(
        chain.inter_handle,
        chain.inter,
        [],
        this_update=NOW,
        next_update=NOW + timedelta(days=7),
        crl_number=1,
    )
    certs.validate_chain(chain.leaf, [chain.inter], [chain.root], now=NOW + timedelta(days=1), crls=[crl])
    result = openssl_verify(tmp_path, chain.root, chain.inter, chain.leaf)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().endswith(": OK")
    crl_path = write(tmp_path / "crl.pem", dump_pem_crl(crl))
    result = openssl_verify(tmp_path, chain.root, chain.inter, chain.leaf, "-crl_check", "-CRLfile", crl_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_recipe_shapes(chain: Chain) -> None:
    root, inter, leaf = chain.root, chain.inter, chain.leaf
    assert root.subject == root.issuer
    root_bc = root.extensions.get_extension_for_class(x509.BasicConstraints)
    assert root_bc.critical and root_bc.value.ca and root_bc.value.path_length == 1
    inter_bc = inter.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert inter_bc.ca and inter_bc.path_length == 0
    for ca in (root, inter):
        ku = ca.extensions.get_extension_for_class(x509.KeyUsage)
        assert ku.critical and ku.value.key_cert_sign and ku.value.crl_sign
    root_ski = root.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    root_aki = root.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    inter_aki = inter.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert root_aki.key_identifier == root_ski.digest == inter_aki.key_identifier
    assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    # RFC 5280 "no well-defined expiration": GeneralizedTime 99991231235959Z
    assert leaf.not_valid_after_utc == datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
    assert b"\x18\x0f99991231235959Z" in leaf.tbs_certificate_bytes
    for cert in (root, inter, leaf):
        assert 0 < cert.serial_number < 2**159
    if chain.root_handle.info.algorithm is Algorithm.RSA_3072:
        params = root.signature_algorithm_parameters
        assert isinstance(params, padding.PSS)


def test_server_certificate_with_san(world: Chain, tmp_path: Path) -> None:
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = certs.issue_leaf(
        world.inter_handle,
        world.inter,
        server_key.public_key(),
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fleet.example.com")]),
        validity_days=90,
        now=NOW,
        subject_alt_names=[x509.DNSName("fleet.example.com")],
        extended_key_usage=[ExtendedKeyUsageOID.SERVER_AUTH],
    )
    certs.validate_chain(server, [world.inter], [world.root], now=NOW, purpose="server_auth")
    assert server.not_valid_after_utc == NOW + timedelta(days=90)
    result = openssl_verify(tmp_path, world.root, world.inter, server, "-purpose", "sslserver")
    assert result.returncode == 0, result.stdout + result.stderr


def test_empty_subject_makes_san_critical(world: Chain) -> None:
    leaf = certs.issue_leaf(
        world.inter_handle,
        world.inter,
        ec.generate_private_key(ec.SECP256R1()).public_key(),
        x509.Name([]),
        validity_days=30,
        now=NOW,
        subject_alt_names=[x509.DNSName("d.example")],
    )
    assert leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).critical
    with pytest.raises(PKIError, match="empty subject needs subject_alt_names"):
        certs.issue_leaf(
            world.inter_handle,
            world.inter,
            ec.generate_private_key(ec.SECP256R1()).public_key(),
            x509.Name([]),
            validity_days=30,
            now=NOW,
        )


# ----------------------------------------------------------------------------------- negative, validation


def _tampered(cert: x509.Certificate) -> x509.Certificate:
    der = bytearray(cert.public_bytes(serialization.Encoding.DER))
    der[-1] ^= 0x01  # the last byte belongs to the signature value
    return x509.load_der_x509_certificate(bytes(der))


def _case_other_ca(w: Chain, o: Chain) -> dict[str, Any]:
    return {"leaf": o.leaf, "intermediates": [w.inter]}


def _case_other_ca_intermediate(w: Chain, o: Chain) -> dict[str, Any]:
    return {"leaf": o.leaf, "intermediates": [o.inter]}


def _case_impostor_issuer(w: Chain, o: Chain) -> dict[str, Any]:
    # A CA with the same name as the real issuing CA, but another key: its leaf does not verify.
    impostor_handle = handle_for(Algorithm.ECDSA_P256, "impostor")
    impostor = certs.issue_intermediate_ca(
        o.root_handle, o.root, impostor_handle.public_key(), "Issuing CA A", "Acme", 365, now=NOW
    )
    assert impostor.subject == w.inter.subject
    forged = certs.issue_leaf(
        impostor_handle,
        impostor,
        ec.generate_private_key(ec.SECP256R1()).public_key(),
        device_name("device-forged"),
        validity_days=30,
        now=NOW,
    )
    return {"leaf": forged}


def _case_expired(w: Chain, o: Chain) -> dict[str, Any]:
    return {"now": NOW + timedelta(days=366)}


def _case_not_yet_valid(w: Chain, o: Chain) -> dict[str, Any]:
    later = certs.issue_leaf(
        w.inter_handle,
        w.inter,
        ec.generate_private_key(ec.SECP256R1()).public_key(),
        device_name("device-later"),
        validity_days=30,
        now=NOW + timedelta(days=10),
    )
    return {"leaf": later, "now": NOW + timedelta(days=1)}


def _case_leaf_as_issuer(w: Chain, o: Chain) -> dict[str, Any]:
    return {"leaf": leaf_under(w.leaf_key, w.leaf, "rogue"), "intermediates": [w.leaf, w.inter]}


def _case_missing_key_cert_sign(w: Chain, o: Chain) -> dict[str, Any]:
    key = ec.generate_private_key(ec.SECP256R1())
    weak = raw_ca(w.root_handle.key, w.root, key, "Weak CA", path_length=0, key_cert_sign=False)
    return {"leaf": leaf_under(key, weak), "intermediates": [weak]}


def _case_path_length(w: Chain, o: Chain) -> dict[str, Any]:
    key = ec.generate_private_key(ec.SECP256R1())
    sub_ca = raw_ca(w.inter_handle.key, w.inter, key, "Sub CA", path_length=None)
    return {"leaf": leaf_under(key, sub_ca), "intermediates": [sub_ca, w.inter]}


def _case_revoked(w: Chain, o: Chain) -> dict[str, Any]:
    crl = issue_crl(
        w.inter_handle,
        w.inter,
        [(w.leaf.serial_number, NOW, x509.ReasonFlags.key_compromise)],
        this_update=NOW,
        next_update=NOW + timedelta(days=7),
        crl_number=2,
    )
    return {"crls": [crl]}


def _case_crl_expired(w: Chain, o: Chain) -> dict[str, Any]:
    crl = issue_crl(w.inter_handle, w.inter, [], this_update=NOW, next_update=NOW + timedelta(hours=1), crl_number=3)
    return {"crls": [crl], "now": NOW + timedelta(days=1)}


def _case_crl_forged(w: Chain, o: Chain) -> dict[str, Any]:
    crl = issue_crl(w.inter_handle, w.inter, [], this_update=NOW, next_update=NOW + timedelta(days=1), crl_number=4)
    der = bytearray(crl.public_bytes(serialization.Encoding.DER))
    der[-1] ^= 0x01
    return {"crls": [x509.load_der_x509_crl(bytes(der))]}


def _case_tampered(w: Chain, o: Chain) -> dict[str, Any]:
    return {"leaf": _tampered(w.leaf)}


def _case_wrong_eku(w: Chain, o: Chain) -> dict[str, Any]:
    return {"purpose": "server_auth"}


def _case_no_eku(w: Chain, o: Chain) -> dict[str, Any]:
    bare = certs.issue_leaf(
        w.inter_handle,
        w.inter,
        ec.generate_private_key(ec.SECP256R1()).public_key(),
        device_name("device-bare"),
        validity_days=30,
        now=NOW,
    )
    return {"leaf": bare, "purpose": "code_signing"}


def _case_unknown_anchor(w: Chain, o: Chain) -> dict[str, Any]:
    return {"anchors": [o.root]}


def _case_self_signed_not_anchor(w: Chain, o: Chain) -> dict[str, Any]:
    return {"intermediates": [w.inter, w.root], "anchors": [o.root]}


def _case_critical_extension(w: Chain, o: Chain) -> dict[str, Any]:
    odd = certs.issue_leaf(
        w.inter_handle,
        w.inter,
        ec.generate_private_key(ec.SECP256R1()).public_key(),
        device_name("device-odd"),
        validity_days=30,
        now=NOW,
        extra_extensions=[(x509.UnrecognizedExtension(PRIVATE_OID, b"\x05\x00"), True)],
    )
    return {"leaf": odd}


def _case_ca_eku_excludes_purpose(w: Chain, o: Chain) -> dict[str, Any]:
    key = ec.generate_private_key(ec.SECP256R1())
    server_only = raw_ca(w.root_handle.key, w.root, key, "TLS CA", path_length=0, eku=[ExtendedKeyUsageOID.SERVER_AUTH])
    leaf = raw_ca(
        key,
        server_only,
        ec.generate_private_key(ec.SECP256R1()),
        "device-eku",
        ca=False,
        eku=[ExtendedKeyUsageOID.CLIENT_AUTH],
    )
    return {"leaf": leaf, "intermediates": [server_only], "purpose": "client_auth"}


def _case_crl_issuer_lacks_crl_sign(w: Chain, o: Chain) -> dict[str, Any]:
    key = ec.generate_private_key(ec.SECP256R1())
    no_crl = raw_ca(w.root_handle.key, w.root, key, "No-CRL CA", path_length=0, crl_sign=False)
    return {"leaf": leaf_under(key, no_crl), "intermediates": [no_crl], "crls": [raw_crl(key, no_crl)]}


def _case_crl_not_yet_valid(w: Chain, o: Chain) -> dict[str, Any]:
    crl = issue_crl(
        w.inter_handle,
        w.inter,
        [],
        this_update=NOW + timedelta(days=2),
        next_update=NOW + timedelta(days=9),
        crl_number=6,
    )
    return {"crls": [crl]}


def _case_crl_critical_extension(w: Chain, o: Chain) -> dict[str, Any]:
    crl = raw_crl(w.inter_handle.key, w.inter, extensions=((x509.DeltaCRLIndicator(1), True),))
    return {"crls": [crl]}


def _case_revoked_without_reason(w: Chain, o: Chain) -> dict[str, Any]:
    crl = issue_crl(
        w.inter_handle,
        w.inter,
        [(w.leaf.serial_number, NOW, None)],
        this_update=NOW,
        next_update=NOW + timedelta(days=7),
        crl_number=7,
    )
    return {"crls": [crl]}


def _case_too_deep(w: Chain, o: Chain) -> dict[str, Any]:
    chain_keys = [ec.generate_private_key(ec.SECP256R1()) for _ in range(10)]
    issuer_cert, issuer_key, intermediates = w.root, w.root_handle.key, []
    for depth, key in enumerate(chain_keys):
        issuer_cert = raw_ca(issuer_key, issuer_cert, key, f"CA {depth}")
        issuer_key = key
        intermediates.append(issuer_cert)
    return {"leaf": leaf_under(issuer_key, issuer_cert), "intermediates": intermediates}


def _case_duplicate_extension(w: Chain, o: Chain) -> dict[str, Any]:
    return {"leaf": resign_with_duplicate_extension(w.leaf, w.inter_handle.key)}


def _case_no_common_name(w: Chain, o: Chain) -> dict[str, Any]:
    key = ec.generate_private_key(ec.SECP256R1())
    anonymous = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Nameless")])
    stray = raw_ca(o.root_handle.key, o.root, key, "", subject=anonymous)
    return {"leaf": leaf_under(key, stray, "device-stray")}


NEGATIVE = [
    pytest.param(
        _case_other_ca,
        "certificate 'device-B': unknown anchor: its issuer 'Issuing CA B'",
        id="other CA leaf",
    ),
    pytest.param(
        _case_other_ca_intermediate,
        "certificate 'Issuing CA B': unknown anchor: its issuer 'Root CA B'",
        id="other CA chain",
    ),
    pytest.param(
        _case_impostor_issuer,
        "certificate 'device-forged': signature not by the issuer: it does not verify against 'Issuing CA A'",
        id="impostor issuer",
    ),
    pytest.param(_case_expired, "certificate 'device-A': expired on 2027-01-15T12:00:00+00:00", id="expired"),
    pytest.param(
        _case_not_yet_valid,
        "certificate 'device-later': not yet valid: valid from 2026-01-25",
        id="not yet valid",
    ),
    pytest.param(
        _case_leaf_as_issuer,
        "certificate 'device-A': not a CA (no BasicConstraints CA:TRUE) but it issued 'rogue'",
        id="leaf as issuer",
    ),
    pytest.param(
        _case_missing_key_cert_sign,
        "certificate 'Weak CA': missing keyCertSign key usage but it issued 'device-deep'",
        id="no keyCertSign",
    ),
    pytest.param(
        _case_path_length,
        "certificate 'Issuing CA A': path length exceeded: pathLenConstraint 0 allows 0 intermediate CA(s) "
        "below it, the path has 1",
        id="path length",
    ),
    pytest.param(
        _case_revoked,
        "certificate 'device-A': revoked by 'Issuing CA A' on 2026-01-15T12:00:00+00:00 (serial 0x",
        id="revoked",
    ),
    pytest.param(_case_crl_expired, "certificate 'device-A': the CRL of 'Issuing CA A' expired", id="CRL expired"),
    pytest.param(
        _case_crl_forged, "certificate 'device-A': the CRL of 'Issuing CA A' does not verify", id="CRL forged"
    ),
    pytest.param(_case_tampered, "certificate 'device-A': signature not by the issuer", id="tampered signature"),
    pytest.param(
        _case_wrong_eku,
        "certificate 'device-A': wrong EKU for server_auth: needs serverAuth, has clientAuth",
        id="wrong EKU",
    ),
    pytest.param(
        _case_no_eku,
        "certificate 'device-bare': wrong EKU for code_signing: needs codeSigning, has none",
        id="no EKU",
    ),
    pytest.param(
        _case_unknown_anchor,
        "certificate 'Issuing CA A': unknown anchor: its issuer 'Root CA A' is neither a trust anchor "
        "nor among the intermediates",
        id="unknown anchor",
    ),
    pytest.param(
        _case_self_signed_not_anchor,
        "certificate 'Root CA A': unknown anchor: it is self-signed and not one of the trust anchors",
        id="self-signed, not an anchor",
    ),
    pytest.param(
        _case_critical_extension,
        "certificate 'device-odd': unrecognised critical extension 1.3.6.1.4.1.99999.1",
        id="critical extension",
    ),
    pytest.param(
        _case_ca_eku_excludes_purpose,
        "certificate 'TLS CA': wrong EKU for client_auth: this CA's EKU does not include clientAuth",
        id="CA EKU",
    ),
    pytest.param(
        _case_crl_issuer_lacks_crl_sign,
        "certificate 'device-deep': the CRL of 'No-CRL CA' is not usable: the issuer lacks cRLSign",
        id="CRL issuer without cRLSign",
    ),
    pytest.param(
        _case_crl_not_yet_valid,
        "certificate 'device-A': the CRL of 'Issuing CA A' is not yet valid",
        id="CRL not yet valid",
    ),
    pytest.param(
        _case_crl_critical_extension,
        "certificate 'device-A': the CRL of 'Issuing CA A' has an unsupported critical extension 2.5.29.27",
        id="CRL critical extension",
    ),
    pytest.param(
        _case_revoked_without_reason,
        "certificate 'device-A': revoked by 'Issuing CA A'",
        id="revoked, no reason",
    ),
    pytest.param(
        _case_too_deep,
        "certificate 'device-deep': unknown anchor: no trust anchor within 8 certificates",
        id="too deep",
    ),
    pytest.param(
        _case_duplicate_extension,
        "certificate 'device-A': its extensions cannot be parsed",
        id="duplicate extension",
    ),
    pytest.param(
        _case_no_common_name,
        "certificate 'device-stray': unknown anchor: its issuer 'O=Nameless' is neither",
        id="issuer without CN",
    ),
]


@pytest.mark.parametrize(("case", "expected"), NEGATIVE)
def test_chain_refused(world: Chain, other: Chain, case: Any, expected: str) -> None:
    args = case(world, other)
    with pytest.raises(ChainValidationError) as info:
        certs.validate_chain(
            args.get("leaf", world.leaf),
            args.get("intermediates", [world.inter]),
            args.get("anchors", [world.root]),
            now=args.get("now", NOW),
            purpose=args.get("purpose", "any"),
            crls=args.get("crls", ()),
        )
    assert str(info.value).startswith(expected), str(info.value)


def test_revoked_leaf_refused_by_openssl_too(world: Chain, tmp_path: Path) -> None:
    crl = issue_crl(
        world.inter_handle,
        world.inter,
        [(world.leaf.serial_number, NOW, None)],
        this_update=NOW,
        next_update=NOW + timedelta(days=7),
        crl_number=5,
    )
    crl_path = write(tmp_path / "crl.pem", dump_pem_crl(crl))
    result = openssl_verify(tmp_path, world.root, world.inter, world.leaf, "-crl_check", "-CRLfile", crl_path)
    assert result.returncode != 0
    assert "revoked" in result.stdout + result.stderr


def test_unrelated_crls_are_ignored(world: Chain, other: Chain) -> None:
    other_crl = issue_crl(
        other.inter_handle,
        other.inter,
        [(world.leaf.serial_number, NOW, None)],
        this_update=NOW,
        next_update=NOW + timedelta(days=7),
        crl_number=1,
    )
    certs.validate_chain(world.leaf, [world.inter], [world.root], now=NOW, crls=[other_crl])


def test_anchor_as_leaf_and_no_anchors(world: Chain) -> None:
    assert certs.validate_chain(world.root, [], [world.root], now=NOW) == [world.root]
    with pytest.raises(ChainValidationError, match="no trust anchors were given"):
        certs.validate_chain(world.leaf, [world.inter], [], now=NOW)


# -------------------------------------------------------------------------------------- issuance refusals


def test_issuance_refusals(world: Chain) -> None:
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    leaf_handle = LocalHandle(world.leaf_key, name="leaf-key")
    with pytest.raises(PKIError, match="'device-A' is not a CA certificate"):
        certs.issue_leaf(leaf_handle, world.leaf, key, device_name("x"), validity_days=1, now=NOW)
    with pytest.raises(PKIError, match="key 'root-A' does not belong to issuer certificate 'Issuing CA A'"):
        certs.issue_leaf(world.root_handle, world.inter, key, device_name("x"), validity_days=1, now=NOW)
    with pytest.raises(PKIError, match="pathLenConstraint 0 and cannot issue CA certificates"):
        certs.issue_intermediate_ca(world.inter_handle, world.inter, key, "Sub", "Acme", 10, now=NOW)
    with pytest.raises(PKIError, match="path_length 1 is too long"):
        certs.issue_intermediate_ca(world.root_handle, world.root, key, "Sub", "Acme", 10, path_length=1, now=NOW)
    with pytest.raises(PKIError, match="timezone-aware"):
        certs.create_root_ca(world.root_handle, "R", "Acme", 10, now=datetime(2026, 1, 1))
    with pytest.raises(PKIError, match="validity_days must be a positive number"):
        certs.create_root_ca(world.root_handle, "R", "Acme", 0, now=NOW)
    with pytest.raises(PKIError, match="is not valid at"):
        certs.issue_leaf(
            world.inter_handle,
            world.inter,
            key,
            device_name("x"),
            validity_days=1,
            now=NOW + timedelta(days=5000),
        )
    with pytest.raises(PKIError, match="key_usage must name at least one use"):
        certs.issue_leaf(world.inter_handle, world.inter, key, device_name("x"), validity_days=1, now=NOW, key_usage=())
    with pytest.raises(PKIError, match="cannot be added"):
        certs.issue_leaf(
            world.inter_handle,
            world.inter,
            key,
            device_name("x"),
            validity_days=1,
            now=NOW,
            extra_extensions=[(x509.BasicConstraints(ca=True, path_length=None), True)],
        )
    secret = LocalHandle(world.leaf_key, algorithm=Algorithm.HMAC_SHA256, name="factory")
    with pytest.raises(PKIError, match="cannot sign certificates"):
        certs.create_root_ca(secret, "R", "Acme", 10, now=NOW)
    liar = LocalHandle(world.leaf_key, algorithm=Algorithm.ED25519, name="liar")
    with pytest.raises(PKIError, match="claims algorithm ed25519"):
        certs.create_root_ca(liar, "R", "Acme", 10, now=NOW)


def test_self_check_refuses_a_bad_signature(world: Chain) -> None:
    broken = LocalHandle(world.inter_handle.key, name="inter-A", corrupt=True)
    with pytest.raises(PKIError, match="self-check failed: the certificate signed with key 'inter-A'"):
        certs.issue_leaf(broken, world.inter, world.leaf_key.public_key(), device_name("x"), validity_days=1, now=NOW)
    with pytest.raises(PKIError, match="self-check failed: the CRL"):
        issue_crl(broken, world.inter, [], this_update=NOW, next_update=NOW + timedelta(days=1), crl_number=9)


def test_crl_contents_and_refusals(world: Chain) -> None:
    entries = [
        (11, NOW, x509.ReasonFlags.key_compromise),
        (12, NOW, x509.ReasonFlags.unspecified),
        (13, NOW, None),
    ]
    crl = issue_crl(
        world.inter_handle,
        world.inter,
        entries,
        this_update=NOW,
        next_update=NOW + timedelta(days=7),
        crl_number=42,
    )
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 42
    entry = crl.get_revoked_certificate_by_serial_number(11)
    assert entry is not None
    assert entry.extensions.get_extension_for_class(x509.CRLReason).value.reason is x509.ReasonFlags.key_compromise
    for serial in (12, 13):
        entry = crl.get_revoked_certificate_by_serial_number(serial)
        assert entry is not None
        assert len(entry.extensions) == 0
    assert parse_pem_crl(dump_pem_crl(crl)) == crl
    with pytest.raises(PKIError, match="is not after this_update"):
        issue_crl(world.inter_handle, world.inter, [], this_update=NOW, next_update=NOW, crl_number=1)
    with pytest.raises(PKIError, match="crl_number must be between"):
        issue_crl(
            world.inter_handle,
            world.inter,
            [],
            this_update=NOW,
            next_update=NOW + timedelta(1),
            crl_number=-1,
        )
    with pytest.raises(PKIError, match="listed twice"):
        issue_crl(
            world.inter_handle,
            world.inter,
            [(5, NOW, None), (5, NOW, None)],
            this_update=NOW,
            next_update=NOW + timedelta(1),
            crl_number=1,
        )
    with pytest.raises(PKIError, match="'device-A' lacks the cRLSign key usage"):
        issue_crl(
            LocalHandle(world.leaf_key),
            world.leaf,
            [],
            this_update=NOW,
            next_update=NOW + timedelta(1),
            crl_number=1,
        )


# ------------------------------------------------------------------------------------------- PEM and ids


def test_fingerprint(world: Chain) -> None:
    der = world.leaf.public_bytes(serialization.Encoding.DER)
    assert certs.certificate_fingerprint(world.leaf) == hashlib.sha256(der).hexdigest()
    assert certs.certificate_fingerprint(world.leaf) == world.leaf.fingerprint(hashes.SHA256()).hex()


def test_pem_round_trip_and_files(world: Chain, tmp_path: Path) -> None:
    bundle = certs.dump_pem_certificates([world.leaf, world.inter])
    assert certs.parse_pem_certificates(bundle) == [world.leaf, world.inter]
    assert certs.parse_pem_certificate(certs.dump_pem_certificate(world.root).decode()) == world.root
    (tmp_path / "root.pem").write_bytes(certs.dump_pem_certificate(world.root))
    (tmp_path / "bundle.pem").write_bytes(bundle)
    assert certs.load_pem_certificate(tmp_path / "root.pem") == world.root
    assert certs.load_pem_certificates(tmp_path / "bundle.pem") == [world.leaf, world.inter]
    crl = issue_crl(world.inter_handle, world.inter, [], this_update=NOW, next_update=NOW + timedelta(1), crl_number=1)
    (tmp_path / "ca.crl.pem").write_bytes(dump_pem_crl(crl))
    assert load_pem_crl(tmp_path / "ca.crl.pem") == crl


def test_pem_refusals(world: Chain, tmp_path: Path) -> None:
    small = Limits(max_certificate_bytes=100)
    with pytest.raises(PKIError, match=r"^uploaded cert: larger than the limit of 100 bytes"):
        certs.parse_pem_certificate(certs.dump_pem_certificate(world.root), what="uploaded cert", limits=small)
    with pytest.raises(PKIError, match=r"^uploaded cert: not a PEM certificate"):
        certs.parse_pem_certificate(b"hello", what="uploaded cert")
    with pytest.raises(PKIError, match="expected one certificate, found 2"):
        certs.parse_pem_certificate(certs.dump_pem_certificates([world.leaf, world.inter]))
    (tmp_path / "junk.pem").write_bytes(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    with pytest.raises(PKIError, match=r"junk\.pem: not a PEM certificate"):
        certs.load_pem_certificate(tmp_path / "junk.pem")
    with pytest.raises(UnreadableInputError, match="no such file"):
        certs.load_pem_certificate(tmp_path / "missing.pem")
    with pytest.raises(PKIError, match=r"^revocations: not a PEM CRL"):
        parse_pem_crl("nope", what="revocations")
    with pytest.raises(PKIError, match="larger than the limit"):
        parse_pem_crl(b"x" * 101, limits=small)


# ------------------------------------------------------------------------------------------ more edges


def test_more_issuance_refusals(world: Chain) -> None:
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    x25519_key = x25519.X25519PrivateKey.generate()
    with pytest.raises(PKIError, match="a CA certificate needs a non-empty common name"):
        certs.create_root_ca(world.root_handle, "", "Acme", 10, now=NOW)
    with pytest.raises(PKIError, match="runs past the year 9999"):
        certs.create_root_ca(world.root_handle, "R", "Acme", 3_000_000, now=NOW)
    with pytest.raises(PKIError, match="key 'x' cannot be a CA key"):
        certs.create_root_ca(LocalHandle(x25519_key, name="x"), "R", "Acme", 10, now=NOW)
    with pytest.raises(PKIError, match="path_length must be 0 or more, got -1"):
        certs.issue_intermediate_ca(world.root_handle, world.root, key, "S", "Acme", 10, path_length=-1, now=NOW)
    with pytest.raises(PKIError, match="a X25519PublicKey cannot be a CA key"):
        certs.issue_intermediate_ca(world.root_handle, world.root, x25519_key.public_key(), "S", "Acme", 10, now=NOW)
    no_sign_key = ec.generate_private_key(ec.SECP256R1())
    no_sign = raw_ca(world.root_handle.key, world.root, no_sign_key, "Sign-less CA", key_cert_sign=False)
    with pytest.raises(PKIError, match="'Sign-less CA' lacks the keyCertSign key usage"):
        certs.issue_leaf(LocalHandle(no_sign_key), no_sign, key, device_name("x"), validity_days=1, now=NOW)
    with pytest.raises(PKIError, match="a bytes cannot be put in a certificate"):
        certs.issue_leaf(world.inter_handle, world.inter, b"key", device_name("x"), validity_days=1, now=NOW)  # type: ignore[arg-type]
    with pytest.raises(PKIError, match="unknown purpose 'email'"):
        certs.validate_chain(world.leaf, [world.inter], [world.root], now=NOW, purpose="email")  # type: ignore[arg-type]


def test_root_without_organization(world: Chain) -> None:
    root = certs.create_root_ca(world.root_handle, "Bare Root", "", 10, now=NOW)
    assert root.subject.rfc4514_string() == "CN=Bare Root"


def test_issuer_without_ski_or_key_usage_details(world: Chain) -> None:
    """A CA made elsewhere (no SKI): AKI falls back to the issuer key, its CRL carries no AKI."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    foreign = raw_ca(world.root_handle.key, world.root, ca_key, "Foreign CA", path_length=0)
    handle = LocalHandle(ca_key, name="foreign")
    leaf = certs.issue_leaf(
        handle,
        foreign,
        ec.generate_private_key(ec.SECP256R1()).public_key(),
        device_name("device-f"),
        validity_days=30,
        now=NOW,
    )
    aki = leaf.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()).digest
    crl = issue_crl(
        handle,
        foreign,
        [(leaf.serial_number, NOW, None)],
        this_update=NOW,
        next_update=NOW + timedelta(days=1),
        crl_number=1,
    )
    with pytest.raises(x509.ExtensionNotFound):
        crl.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)
    with pytest.raises(ChainValidationError, match="certificate 'device-f': revoked by 'Foreign CA'"):
        certs.validate_chain(leaf, [foreign], [world.root], now=NOW, crls=[crl])
    bare = raw_ca(
        world.root_handle.key, world.root, ec.generate_private_key(ec.SECP256R1()), "KU-less", key_usage=False
    )
    with pytest.raises(PKIError, match="'KU-less' lacks the cRLSign key usage"):
        issue_crl(LocalHandle(ca_key), bare, [], this_update=NOW, next_update=NOW + timedelta(1), crl_number=1)


def test_crl_entry_refusals(world: Chain) -> None:
    with pytest.raises(PKIError, match="this_update must be a timezone-aware datetime"):
        issue_crl(
            world.inter_handle,
            world.inter,
            [],
            this_update=datetime(2026, 1, 1),
            next_update=NOW,
            crl_number=1,
        )
    with pytest.raises(PKIError, match="serial 0 cannot be listed in a CRL"):
        issue_crl(
            world.inter_handle,
            world.inter,
            [(0, NOW, None)],
            this_update=NOW,
            next_update=NOW + timedelta(1),
            crl_number=1,
        )


def test_builder_errors_are_wrapped(world: Chain) -> None:
    with pytest.raises(PKIError, match="the certificate cannot be built"):
        _signing.sign_certificate(x509.CertificateBuilder(), world.root_handle, None)
    with pytest.raises(PKIError, match="the CRL cannot be built"):
        _signing.sign_crl(x509.CertificateRevocationListBuilder(), world.inter_handle, world.inter)


def test_labels() -> None:
    assert _signing.name_label(x509.Name([])) == "(empty name)"
    assert _signing.name_label(x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "DE")])) == "C=DE"


def _utc_time(moment: datetime) -> bytes:
    return _der.tlv(0x17, moment.strftime("%y%m%d%H%M%SZ").encode())


def _extension(dotted: str, value: bytes) -> bytes:
    return _der.sequence(_der.oid(dotted), _der.octet_string(value))


def crafted_crl(
    key: Any,
    issuer: x509.Certificate,
    *,
    next_update: bool = True,
    extensions: tuple[bytes, ...] = (),
    entry: bytes | None = None,
) -> x509.CertificateRevocationList:
    """A CRL written byte by byte (ECDSA-SHA256): shapes cryptography's builder will not make."""
    parts = [
        _der.integer(1),
        _der.sequence(_der.oid("1.2.840.10045.4.3.2")),
        issuer.subject.public_bytes(),
        _utc_time(NOW),
    ]
    if next_update:
        parts.append(_utc_time(NOW + timedelta(days=7)))
    if entry is not None:
        parts.append(_der.sequence(entry))
    if extensions:
        parts.append(_der.tlv(0xA0, _der.sequence(*extensions)))
    tbs = _der.sequence(*parts)
    signature = key.sign(tbs, ec.ECDSA(hashes.SHA256()))
    crl_der = _der.sequence(tbs, _der.sequence(_der.oid("1.2.840.10045.4.3.2")), _der.bit_string(signature))
    return x509.load_der_x509_crl(crl_der)


def test_crafted_crls(world: Chain) -> None:
    key, inter = world.inter_handle.key, world.inter
    crl_number = _extension("2.5.29.20", _der.integer(1))
    reason = _extension("2.5.29.21", _der.tlv(0x0A, b"\x01"))
    serial = world.leaf.serial_number

    def validate(crl: x509.CertificateRevocationList) -> None:
        certs.validate_chain(world.leaf, [inter], [world.root], now=NOW + timedelta(hours=1), crls=[crl])

    validate(crafted_crl(key, inter, extensions=(crl_number,)))  # the crafting itself is sound
    with pytest.raises(ChainValidationError, match="has no nextUpdate, so its freshness is unknown"):
        validate(crafted_crl(key, inter, next_update=False))
    with pytest.raises(ChainValidationError, match="a CRL naming 'Issuing CA A' as issuer cannot be parsed"):
        validate(crafted_crl(key, inter, extensions=(crl_number, crl_number)))
    doubled_reason = _der.sequence(_der.integer(serial), _utc_time(NOW), _der.sequence(reason, reason))
    with pytest.raises(ChainValidationError, match=r"revoked by 'Issuing CA A' .* reason unreadable\)"):
        validate(crafted_crl(key, inter, entry=doubled_reason))


def test_pool_duplicates_and_foreign_key_crls(world: Chain, other: Chain) -> None:
    path = certs.validate_chain(world.leaf, [world.inter, world.inter, world.root], [world.root], now=NOW)
    assert path == [world.leaf, world.inter, world.root]
    # a CRL under the issuer's name but for another key (AKI differs from the issuer's SKI) is not its CRL
    impostor_handle = handle_for(Algorithm.ECDSA_P256, "impostor")
    impostor = certs.issue_intermediate_ca(
        other.root_handle, other.root, impostor_handle.public_key(), "Issuing CA A", "Acme", 365, now=NOW
    )
    crl = issue_crl(
        impostor_handle,
        impostor,
        [(world.leaf.serial_number, NOW, None)],
        this_update=NOW,
        next_update=NOW + timedelta(days=1),
        crl_number=1,
    )
    certs.validate_chain(world.leaf, [world.inter], [world.root], now=NOW, crls=[crl])


def test_unparsable_issuer_refused_at_issuance(world: Chain) -> None:
    broken = resign_with_duplicate_extension(world.inter, world.root_handle.key)
    with pytest.raises(PKIError, match="certificate 'Issuing CA A': its extensions cannot be parsed"):
        certs.issue_leaf(
            world.inter_handle,
            broken,
            world.leaf_key.public_key(),
            device_name("x"),
            validity_days=1,
            now=NOW,
        )
