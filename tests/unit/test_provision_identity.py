"""Device identities: serials, IDevID-style certificates under the product's PKI, the CSR flow, uniqueness."""

from __future__ import annotations

import hashlib
import re
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed25519, rsa, x25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from trustroot.context.schema import DeviceCertificate, SecurityContext
from trustroot.errors import ChainValidationError, PKIError, UsageError
from trustroot.keys._interface import KeyHandle, KeyRole, public_key_fingerprint
from trustroot.keys.passphrase import fixed_secrets
from trustroot.pki.certificates import certificate_fingerprint, validate_chain
from trustroot.product import ISSUING_CA_CERT, ROOT_CA_CERT, open_product
from trustroot.provision import claim
from trustroot.provision.claim import (
    CLAIM_ALPHABET,
    CLAIM_CODE_BITS,
    ClaimCodeError,
    claim_code_hash,
    generate_claim_code,
    normalize_claim_code,
    verify_claim_code,
)
from trustroot.provision.identity import (
    DEFAULT_HARDWARE_TYPE_OID,
    HARDWARE_MODULE_NAME_OID,
    MAX_CSR_BYTES,
    CsrError,
    SerialError,
    build_device_csr,
    device_serial_of,
    device_subject,
    format_serial,
    generate_device_key,
    hardware_module_name,
    hardware_module_name_der,
    issue_device_certificate,
    parse_serial,
    private_key_der,
    sign_csr,
    validate_serial,
)

STORE = "test-store-passphrase"
ROOT = "test-root-passphrase"
SERIAL = "ACMEPL-00000042"
OTHER = "ACMEPL-00000043"
P256 = DeviceCertificate(algorithm="ecdsa-p256")
ED25519 = DeviceCertificate(algorithm="ed25519")


@dataclass
class Pki:
    issuing: KeyHandle
    issuing_cert: x509.Certificate
    root_cert: x509.Certificate
    model: SecurityContext
    now: datetime

    def issue(self, public_key: object, serial: str = SERIAL, settings: DeviceCertificate = P256) -> x509.Certificate:
        return issue_device_certificate(
            self.issuing,
            self.issuing_cert,
            public_key,  # type: ignore[arg-type]
            serial,
            model=self.model.product.model,
            manufacturer=self.model.product.manufacturer,
            settings=settings,
            now=self.now,
        )

    def sign(self, csr_pem: bytes, settings: DeviceCertificate = P256, serial: str = SERIAL) -> x509.Certificate:
        return sign_csr(
            csr_pem,
            self.issuing,
            self.issuing_cert,
            expected_serial=serial,
            model=self.model.product.model,
            manufacturer=self.model.product.manufacturer,
            settings=settings,
            now=self.now,
        )

    def validate(self, cert: x509.Certificate) -> None:
        validate_chain(cert, [self.issuing_cert], [self.root_cert], now=self.now, purpose="client_auth")


@pytest.fixture(scope="module")
def pki(product_template: Path) -> Pki:
    product = open_product(product_template / "security-context.toml", secrets=fixed_secrets(STORE, ROOT))
    issuing = product.keys.unlock(product.keys.active(KeyRole.ISSUING_CA).name)
    return Pki(
        issuing=issuing,
        issuing_cert=product.certificate(ISSUING_CA_CERT),
        root_cert=product.certificate(ROOT_CA_CERT),
        model=product.context.model,
        now=datetime.now(UTC),
    )


# ------------------------------------------------------------------------------------------- serials


def test_format_and_parse_serials() -> None:
    assert format_serial("ACMEPL-", 8, 42) == "ACMEPL-00000042"
    assert format_serial("X", 4, 9999) == "X9999"
    assert format_serial("AB12", 16, 0) == "AB120000000000000000"
    assert parse_serial("ACMEPL-00000042", "ACMEPL-", 8) == 42
    assert validate_serial("ACMEPL-00000042") == "ACMEPL-00000042"


@pytest.mark.parametrize(
    ("prefix", "digits", "seq", "message"),
    [
        ("ACMEPL-", 8, 10**8, "does not fit 8 digits"),
        ("ACMEPL-", 8, -1, "does not fit"),
        ("ACMEPL-", 8, True, "does not fit"),
        ("acme-", 8, 1, "serial prefix 'acme-' is not allowed"),
        ("-ACME", 8, 1, "is not allowed"),
        ("", 8, 1, "is not allowed"),
        ("A" * 17, 8, 1, "is not allowed"),
        ("ACME", 3, 1, "serial digits 3 is not allowed"),
        ("ACME", 17, 1, "serial digits 17 is not allowed"),
    ],
)
def test_format_serial_refuses(prefix: str, digits: int, seq: int, message: str) -> None:
    with pytest.raises(SerialError, match=message):
        format_serial(prefix, digits, seq)


@pytest.mark.parametrize(
    "serial",
    [
        "ACMEPL-0000004",  # a digit short
        "ACMEPL-000000042",  # a digit more
        "ACMEPL-0000004A",
        " ACMEPL-00000042",
        "ACMEPL-00000042\n",
        "acmepl-00000042",
        "ACMEPL-+0000042",
        "ACMEPL-0000004\u0662",  # ARABIC-INDIC DIGIT TWO
        "ACMEPL-\uff10\uff10\uff10\uff10\uff10\uff10\uff14\uff12",  # full-width digits
        "OTHER-00000042",
    ],
)
def test_parse_serial_is_strict(serial: str) -> None:
    with pytest.raises(SerialError):
        parse_serial(serial, "ACMEPL-", 8)


@pytest.mark.parametrize("serial", ["", "A123", "ACMEPL-", "acme-0001", "A" * 17 + "0001", "AB-" + "1" * 30, 42])
def test_validate_serial_refuses(serial: object) -> None:
    with pytest.raises(SerialError, match="is not a device serial"):
        validate_serial(serial)


# ----------------------------------------------------------------------------------- the certificate


@pytest.mark.parametrize("settings", [P256, ED25519], ids=["p256", "ed25519"])
def test_device_certificate_profile(pki: Pki, settings: DeviceCertificate) -> None:
    key = generate_device_key(settings.algorithm)
    cert = pki.issue(key.public_key(), settings=settings)
    pki.validate(cert)
    assert cert.issuer == pki.issuing_cert.subject
    subject = cert.subject
    assert subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == SERIAL
    assert subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)[0].value == SERIAL
    assert subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == pki.model.product.manufacturer
    assert subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)[0].value == pki.model.product.model
    assert hardware_module_name(cert) == (DEFAULT_HARDWARE_TYPE_OID, SERIAL)
    assert device_serial_of(cert) == SERIAL
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical
    assert usage.value.digital_signature
    assert not (usage.value.key_encipherment or usage.value.key_agreement or usage.value.content_commitment)
    assert list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.CLIENT_AUTH
    ]
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert not san.critical
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == timedelta(days=7300)
    assert public_key_fingerprint(cert.public_key()) == public_key_fingerprint(key.public_key())
    with pytest.raises(ChainValidationError, match="wrong EKU for server_auth"):
        validate_chain(cert, [pki.issuing_cert], [pki.root_cert], now=pki.now, purpose="server_auth")


def test_no_expiry_uses_the_8021ar_date(pki: Pki) -> None:
    settings = DeviceCertificate(algorithm="ed25519", no_expiry=True)
    cert = pki.issue(ed25519.Ed25519PrivateKey.generate().public_key(), settings=settings)
    assert cert.not_valid_after_utc == datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
    der = cert.public_bytes(serialization.Encoding.DER)
    assert b"\x18\x0f99991231235959Z" in der  # GeneralizedTime, as RFC 5280 4.1.2.5 asks
    pki.validate(cert)


def test_hardware_module_name_der_is_exact() -> None:
    der = hardware_module_name_der("1.3.6.1.4.1.61128.1.1", "AB0001")
    oid = bytes.fromhex("06 0a 2b 06 01 04 01 83 dd 48 01 01")
    assert der == b"\x30" + bytes([len(oid) + 8]) + oid + b"\x04\x06AB0001"
    assert HARDWARE_MODULE_NAME_OID == "1.3.6.1.5.5.7.8.4"
    with pytest.raises(UsageError, match="is not an object identifier"):
        hardware_module_name_der("not.an.oid", "AB0001")


def test_custom_hardware_type(pki: Pki) -> None:
    cert = issue_device_certificate(
        pki.issuing,
        pki.issuing_cert,
        ec.generate_private_key(ec.SECP256R1()).public_key(),
        SERIAL,
        model="M1",
        manufacturer="",
        settings=P256,
        now=pki.now,
        hardware_type_oid="1.3.6.1.4.1.99999.7",
    )
    assert hardware_module_name(cert) == ("1.3.6.1.4.1.99999.7", SERIAL)
    assert not cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)


def test_openssl_reads_and_verifies_the_certificate(pki: Pki, tmp_path: Path) -> None:
    cert = pki.issue(ec.generate_private_key(ec.SECP256R1()).public_key())
    for name, item in (("device", cert), ("issuing", pki.issuing_cert), ("root", pki.root_cert)):
        (tmp_path / f"{name}.pem").write_bytes(item.public_bytes(serialization.Encoding.PEM))
    text = subprocess.run(
        ["openssl", "x509", "-noout", "-text", "-in", str(tmp_path / "device.pem")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert f"CN = {SERIAL}" in text or f"CN={SERIAL}" in text
    assert "TLS Web Client Authentication" in text
    assert "othername" in text.lower()
    result = subprocess.run(
        [
            "openssl",
            "verify",
            "-purpose",
            "sslclient",
            "-CAfile",
            str(tmp_path / "root.pem"),
            "-untrusted",
            str(tmp_path / "issuing.pem"),
            str(tmp_path / "device.pem"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("public_key", "message"),
    [
        (ec.generate_private_key(ec.SECP384R1()).public_key(), "an EC secp384r1 key is not allowed as a device key"),
        (x25519.X25519PrivateKey.generate().public_key(), "X25519PublicKey is not allowed as a device key"),
        (ed25519.Ed25519PrivateKey.generate().public_key(), "the device key is ed25519 but"),
    ],
)
def test_device_key_types_are_refused(pki: Pki, public_key: object, message: str) -> None:
    with pytest.raises(PKIError, match=message):
        pki.issue(public_key)


def test_rsa_device_key_is_refused(pki: Pki) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(PKIError, match="RSAPublicKey is not allowed as a device key"):
        pki.issue(key.public_key())
    with pytest.raises(UsageError, match="device key algorithm 'rsa-3072' is not allowed"):
        generate_device_key("rsa-3072")


def test_subject_and_serial_checks() -> None:
    name = device_subject(SERIAL, "ACME-PLUG", manufacturer="Acme Ltd")
    assert name.rfc4514_string() == f"2.5.4.5={SERIAL},CN={SERIAL},OU=ACME-PLUG,O=Acme Ltd"
    assert device_subject(SERIAL).rfc4514_string() == f"2.5.4.5={SERIAL},CN={SERIAL}"
    with pytest.raises(UsageError, match="longer than 64"):
        device_subject(SERIAL, "M" * 65)
    with pytest.raises(SerialError):
        device_subject("bad serial")


def test_device_serial_of_refuses_inconsistent_certificates(pki: Pki) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    base = (
        x509.CertificateBuilder()
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")]))
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(pki.now)
        .not_valid_after(pki.now + timedelta(days=1))
    )
    builder = base.subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, SERIAL), x509.NameAttribute(NameOID.SERIAL_NUMBER, SERIAL)])
    )
    no_san = builder.sign(key, hashes.SHA256())
    with pytest.raises(PKIError, match="no subjectAltName"):
        device_serial_of(no_san)
    other = x509.OtherName(
        x509.ObjectIdentifier(HARDWARE_MODULE_NAME_OID), hardware_module_name_der(DEFAULT_HARDWARE_TYPE_OID, OTHER)
    )
    mismatch = builder.add_extension(x509.SubjectAlternativeName([other]), critical=False).sign(key, hashes.SHA256())
    with pytest.raises(PKIError, match="names different serials"):
        device_serial_of(mismatch)
    broken = x509.OtherName(x509.ObjectIdentifier(HARDWARE_MODULE_NAME_OID), b"\x30\x03\x02\x01\x00")
    malformed = builder.add_extension(x509.SubjectAlternativeName([broken]), critical=False).sign(key, hashes.SHA256())
    with pytest.raises(PKIError, match="hardwareModuleName is malformed"):
        device_serial_of(malformed)
    no_cn = base.subject_name(x509.Name([x509.NameAttribute(NameOID.SERIAL_NUMBER, SERIAL)]))
    with pytest.raises(PKIError, match="exactly one commonName"):
        device_serial_of(no_cn.sign(key, hashes.SHA256()))


# --------------------------------------------------------------------------------------- flow (a): CSR


def _csr(
    key: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey,
    attributes: list[x509.NameAttribute[str]],
    extensions: list[tuple[x509.ExtensionType, bool]] = (),  # type: ignore[assignment]
    request_attributes: list[tuple[x509.ObjectIdentifier, bytes]] = (),  # type: ignore[assignment]
) -> bytes:
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(attributes))
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    for oid, value in request_attributes:
        builder = builder.add_attribute(oid, value)
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(key, algorithm).public_bytes(serialization.Encoding.PEM)


def _cn(serial: str = SERIAL) -> list[x509.NameAttribute[str]]:
    return [x509.NameAttribute(NameOID.COMMON_NAME, serial)]


@pytest.mark.parametrize("settings", [P256, ED25519], ids=["p256", "ed25519"])
def test_csr_flow_issues_for_the_device_key(pki: Pki, settings: DeviceCertificate) -> None:
    key = generate_device_key(settings.algorithm)
    csr = build_device_csr(key, SERIAL)
    cert = pki.sign(csr, settings=settings)
    pki.validate(cert)
    assert device_serial_of(cert) == SERIAL
    assert public_key_fingerprint(cert.public_key()) == public_key_fingerprint(key.public_key())
    assert private_key_der(key) not in csr


def test_csr_content_comes_from_the_arguments_not_the_request(pki: Pki) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    hmn = x509.OtherName(
        x509.ObjectIdentifier(HARDWARE_MODULE_NAME_OID), hardware_module_name_der(DEFAULT_HARDWARE_TYPE_OID, SERIAL)
    )
    csr = _csr(
        key,
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Mallory Inc"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "whatever"),
            x509.NameAttribute(NameOID.SERIAL_NUMBER, SERIAL),
        ],
        [
            (x509.BasicConstraints(ca=False, path_length=None), True),
            (x509.KeyUsage(True, False, False, False, False, False, False, False, False), True),
            (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False),
            (x509.SubjectAlternativeName([hmn]), False),
            (x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False),
        ],
    )
    cert = pki.sign(csr)
    assert cert.subject == device_subject(SERIAL, pki.model.product.model, manufacturer=pki.model.product.manufacturer)


def _tampered_signature(csr_pem: bytes) -> bytes:
    """The same request with the serial in its signed part changed: the signature no longer covers it."""
    der = x509.load_pem_x509_csr(csr_pem).public_bytes(serialization.Encoding.DER)
    altered = der.replace(SERIAL.encode(), OTHER.encode())
    assert altered != der
    return x509.load_der_x509_csr(altered).public_bytes(serialization.Encoding.PEM)


@pytest.mark.parametrize("algorithm", ["ecdsa-p256", "ed25519"])
def test_csr_with_a_wrong_signature_is_refused(pki: Pki, algorithm: str) -> None:
    key = generate_device_key(algorithm)
    bad = _tampered_signature(build_device_csr(key, SERIAL))
    settings = DeviceCertificate(algorithm=algorithm)  # type: ignore[arg-type]
    for serial in (SERIAL, OTHER):
        with pytest.raises(CsrError, match="the signature does not verify: the request was altered"):
            pki.sign(bad, settings=settings, serial=serial)


@pytest.mark.parametrize(
    ("attributes", "message"),
    [
        (_cn(OTHER), f"names serial '{OTHER}' in commonName, expected '{SERIAL}': refusing a request for another"),
        (
            [*_cn(), x509.NameAttribute(NameOID.SERIAL_NUMBER, OTHER)],
            f"names serial '{OTHER}' in serialNumber",
        ),
        ([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Acme")], "names no serial"),
        ([], "names no serial"),
        ([*_cn(), x509.NameAttribute(NameOID.EMAIL_ADDRESS, "a@b.c")], "subject attribute emailAddress"),
        ([*_cn(), x509.NameAttribute(NameOID.COUNTRY_NAME, "GB")], "subject attribute countryName"),
    ],
)
def test_csr_with_a_foreign_subject_is_refused(
    pki: Pki, attributes: list[x509.NameAttribute[str]], message: str
) -> None:
    csr = _csr(ec.generate_private_key(ec.SECP256R1()), attributes)
    with pytest.raises(CsrError, match=message.replace("(", r"\(")):
        pki.sign(csr)


def test_csr_with_a_multi_valued_name_is_refused(pki: Pki) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.RelativeDistinguishedName(
                [x509.NameAttribute(NameOID.COMMON_NAME, SERIAL), x509.NameAttribute(NameOID.SERIAL_NUMBER, SERIAL)]
            )
        ]
    )
    csr = x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, hashes.SHA256())
    with pytest.raises(CsrError, match="multi-valued"):
        pki.sign(csr.public_bytes(serialization.Encoding.PEM))


@pytest.mark.parametrize(
    ("key", "settings", "message"),
    [
        (ec.generate_private_key(ec.SECP384R1()), P256, "an EC secp384r1 key is not allowed as a device key"),
        (rsa.generate_private_key(public_exponent=65537, key_size=2048), P256, "RSAPublicKey is not allowed"),
        (ed25519.Ed25519PrivateKey.generate(), P256, "the key is ed25519 but the Security Context's device key"),
        (ec.generate_private_key(ec.SECP256R1()), ED25519, "the key is ecdsa-p256 but"),
    ],
    ids=["p384", "rsa", "ed25519-vs-p256", "p256-vs-ed25519"],
)
def test_csr_with_a_wrong_key_type_is_refused(pki: Pki, key: object, settings: DeviceCertificate, message: str) -> None:
    csr = _csr(key, _cn())  # type: ignore[arg-type]
    with pytest.raises(CsrError, match=message):
        pki.sign(csr, settings=settings)


_OTHER_HMN = x509.OtherName(
    x509.ObjectIdentifier(HARDWARE_MODULE_NAME_OID), hardware_module_name_der(DEFAULT_HARDWARE_TYPE_OID, OTHER)
)
_FOREIGN_TYPE_HMN = x509.OtherName(
    x509.ObjectIdentifier(HARDWARE_MODULE_NAME_OID), hardware_module_name_der("1.3.6.1.4.1.99999.1", SERIAL)
)


@pytest.mark.parametrize(
    ("extension", "message"),
    [
        (x509.BasicConstraints(ca=True, path_length=0), "asks for a CA certificate"),
        (x509.KeyUsage(True, False, False, False, False, True, False, False, False), "key usages beyond"),
        (x509.KeyUsage(False, False, True, False, False, False, False, False, False), "key usages beyond"),
        (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), "beyond clientAuth: 1.3.6.1.5.5.7.3.1"),
        (x509.SubjectAlternativeName([x509.DNSName("evil.example")]), "other than hardwareModuleName"),
        (x509.SubjectAlternativeName([_OTHER_HMN]), f"names serial b'{OTHER}'"),
        (x509.SubjectAlternativeName([_FOREIGN_TYPE_HMN]), "of type 1.3.6.1.4.1.99999.1"),
        (
            x509.SubjectAlternativeName(
                [x509.OtherName(x509.ObjectIdentifier(HARDWARE_MODULE_NAME_OID), b"\x30\x03\x02\x01\x00")]
            ),
            "hardwareModuleName is malformed",
        ),
        (x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.99999.2"), b"\x05\x00"), "is not allowed"),
        (x509.OCSPNoCheck(), "is not allowed"),
    ],
)
def test_csr_with_disallowed_extensions_is_refused(pki: Pki, extension: x509.ExtensionType, message: str) -> None:
    csr = _csr(ec.generate_private_key(ec.SECP256R1()), _cn(), [(extension, False)])
    with pytest.raises(CsrError, match=message):
        pki.sign(csr)


def test_csr_with_a_challenge_password_is_refused(pki: Pki) -> None:
    challenge = x509.ObjectIdentifier("1.2.840.113549.1.9.7")
    csr = _csr(ec.generate_private_key(ec.SECP256R1()), _cn(), request_attributes=[(challenge, b"secret")])
    with pytest.raises(CsrError, match="request attribute challengePassword"):
        pki.sign(csr)


def test_malformed_csr_input(pki: Pki) -> None:
    with pytest.raises(CsrError, match="not a PEM certificate signing request"):
        pki.sign(b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n")
    with pytest.raises(CsrError, match=f"larger than the limit of {MAX_CSR_BYTES} bytes"):
        pki.sign(b"x" * (MAX_CSR_BYTES + 1))
    with pytest.raises(CsrError, match="expected PEM bytes"):
        pki.sign("text")  # type: ignore[arg-type]
    with pytest.raises(SerialError):
        pki.sign(build_device_csr(ec.generate_private_key(ec.SECP256R1()), SERIAL), serial="nope")


# ------------------------------------------------------------------------------------------ uniqueness


def test_uniqueness_of_serials_and_device_keys_over_100000() -> None:
    """100,000 identities' serials (with round trip) and 100,000 fresh device keys (both algorithms).

    Certificates are checked at 2,000 (below): issuing one costs three EC operations, and a
    certificate is unique when its serial and key are.
    """
    serials = [format_serial("ACMEPL-", 8, seq) for seq in range(100_000)]
    assert len(set(serials)) == 100_000
    assert [parse_serial(s, "ACMEPL-", 8) for s in serials[::997]] == list(range(0, 100_000, 997))
    fingerprints = {
        public_key_fingerprint(generate_device_key("ecdsa-p256" if i % 2 else "ed25519").public_key())
        for i in range(100_000)
    }
    assert len(fingerprints) == 100_000


def test_uniqueness_over_2000_full_certificates(pki: Pki) -> None:
    """2,000 complete identities (key + certificate): distinct keys, certificate serial numbers and subjects."""
    certs = [
        pki.issue(generate_device_key("ecdsa-p256").public_key(), serial=format_serial("ACMEPL-", 8, seq))
        for seq in range(2000)
    ]
    assert len({c.serial_number for c in certs}) == 2000
    assert len({public_key_fingerprint(c.public_key()) for c in certs}) == 2000
    assert len({certificate_fingerprint(c) for c in certs}) == 2000
    assert [device_serial_of(c) for c in certs] == [format_serial("ACMEPL-", 8, seq) for seq in range(2000)]
    for cert in certs[::250]:
        pki.validate(cert)


# ----------------------------------------------------------------------------------------- claim codes

CLAIM_SHAPE = re.compile(r"([0-9A-HJKMNP-TV-Z]{4}-){4}[0-9A-HJKMNP-TV-Z]{4}")


def test_claim_code_format_and_check_symbol() -> None:
    code = generate_claim_code()
    assert CLAIM_SHAPE.fullmatch(code)
    assert CLAIM_CODE_BITS == 95
    # Luhn mod 32 by hand: data ...0001, the rightmost data symbol doubled -> 2, check = 32 - 2 = 30 = 'Y'
    assert normalize_claim_code("0000-0000-0000-0000-001Y") == "0000000000000000001Y"
    assert normalize_claim_code("0000 0000 0000 0000 0000") == "0" * 20
    assert normalize_claim_code(" oooo-oooo-oooo-oooo-ooiy ") == "0000000000000000001Y"
    for mistyped in ("0000-0000-0000-0000-001Z", "0000-0000-0000-0000-010Y"):
        with pytest.raises(ClaimCodeError, match="mistyped"):
            normalize_claim_code(mistyped)
    with pytest.raises(ClaimCodeError, match="has 20 symbols, this one has 19"):
        normalize_claim_code("0000-0000-0000-0000-000")
    with pytest.raises(ClaimCodeError, match="has no 'U'"):
        normalize_claim_code("U000-0000-0000-0000-0000")
    with pytest.raises(ClaimCodeError, match="a claim code is 20 symbols"):
        normalize_claim_code("0" * 65)


def test_claim_code_check_misses_only_zero_z_swaps() -> None:
    """Exhaustively: every substitution is caught; of all neighbour swaps only 0 <-> Z goes unseen."""
    code = normalize_claim_code(generate_claim_code())
    for position in range(20):
        for other in CLAIM_ALPHABET.replace(code[position], ""):
            with pytest.raises(ClaimCodeError, match="mistyped"):
                normalize_claim_code(code[:position] + other + code[position + 1 :])
    missed: set[tuple[str, str, int]] = set()
    for a in CLAIM_ALPHABET:
        for b in CLAIM_ALPHABET.replace(a, ""):
            for position in (17, 18):  # a pair of each parity, next to the check symbol
                data = [0] * 19
                data[position - 1], data[position] = CLAIM_ALPHABET.index(a), CLAIM_ALPHABET.index(b)
                text = "".join(CLAIM_ALPHABET[v] for v in [*data, claim._check_symbol(data)])
                swapped = text[: position - 1] + b + a + text[position + 1 :]
                try:
                    normalize_claim_code(swapped)
                except ClaimCodeError:
                    continue
                missed.add((a, b, position))
    assert {(a, b) for a, b, _ in missed} == {("0", "Z"), ("Z", "0")}


def test_claim_code_hash_and_verification() -> None:
    code = "0000-0000-0000-0000-001Y"
    expected = hashlib.sha256(b"trustroot/claim/v1:0000000000000000001Y").hexdigest()
    assert claim_code_hash(code) == expected
    assert claim_code_hash("0000 0000 0000 0000 001y") == expected
    verify_claim_code(code.lower(), expected)
    other = generate_claim_code()
    with pytest.raises(ClaimCodeError, match="does not match this device"):
        verify_claim_code(other, expected)
    with pytest.raises(UsageError, match="64 lower-case hexadecimal digits"):
        verify_claim_code(code, expected.upper())
    with pytest.raises(ClaimCodeError, match="mistyped"):
        verify_claim_code("0000-0000-0000-0000-001Z", expected)


def test_claim_codes_unique_over_100000() -> None:
    codes = [generate_claim_code() for _ in range(100_000)]
    assert len(set(codes)) == 100_000
    assert len({claim_code_hash(c) for c in codes[:20_000]}) == 20_000


def test_hardware_module_name_must_be_one(pki: Pki) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    hmn = x509.OtherName(
        x509.ObjectIdentifier(HARDWARE_MODULE_NAME_OID), hardware_module_name_der(DEFAULT_HARDWARE_TYPE_OID, SERIAL)
    )
    for names, count in (([x509.DNSName("a.example")], 0), ([hmn, hmn], 2)):
        cert = (
            x509.CertificateBuilder()
            .subject_name(device_subject(SERIAL))
            .issuer_name(device_subject(SERIAL))
            .public_key(key.public_key())
            .serial_number(1)
            .not_valid_before(pki.now)
            .not_valid_after(pki.now + timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .sign(key, hashes.SHA256())
        )
        with pytest.raises(PKIError, match=f"has {count} hardwareModuleName entries, expected one"):
            hardware_module_name(cert)


def test_csr_with_unparsable_extensions_or_unknown_key_is_refused(pki: Pki) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    broken = x509.UnrecognizedExtension(x509.oid.ExtensionOID.KEY_USAGE, b"\x05\x00")
    with pytest.raises(CsrError, match="its requested extensions cannot be parsed"):
        pki.sign(_csr(key, _cn(), [(broken, False)]))
    der = x509.load_pem_x509_csr(build_device_csr(key, SERIAL)).public_bytes(serialization.Encoding.DER)
    ec_public_key = bytes.fromhex("06072a8648ce3d0201")
    unknown = der.replace(ec_public_key, bytes.fromhex("06072a8648ce3d0209"))
    assert unknown != der
    pem = x509.load_der_x509_csr(unknown).public_bytes(serialization.Encoding.PEM)
    with pytest.raises(CsrError, match="its key or signature algorithm is not supported"):
        pki.sign(pem)
    dsa_key = dsa.generate_private_key(key_size=1024)  # noqa: S505 - only to be refused, and quick to make
    with pytest.raises(CsrError, match="DSAPublicKey is not allowed as a device key"):
        pki.sign(_csr(dsa_key, _cn()))  # type: ignore[arg-type]


def test_unparsable_certificate_extensions(pki: Pki) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(device_subject(SERIAL))
        .issuer_name(device_subject(SERIAL))
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(pki.now)
        .not_valid_after(pki.now + timedelta(days=1))
        .add_extension(
            x509.UnrecognizedExtension(x509.oid.ExtensionOID.SUBJECT_ALTERNATIVE_NAME, b"\x05\x00"), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    with pytest.raises(PKIError, match="extensions cannot be parsed"):
        device_serial_of(cert)
