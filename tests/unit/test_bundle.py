"""Per-device bundles: round trip, the documented format, one message for every tampering, material checks."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa, x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from trustroot.context.schema import SecurityContext
from trustroot.errors import UsageError
from trustroot.keys._interface import Algorithm, KeyHandle, KeyRole
from trustroot.keys.filestore import FileBackend
from trustroot.keys.passphrase import fixed_secrets
from trustroot.pki.certificates import dump_pem_certificate, validate_chain
from trustroot.product import ISSUING_CA_CERT, ROOT_CA_CERT, open_product
from trustroot.provision.bundle import (
    MAX_BUNDLE_BYTES,
    OPEN_FAILED,
    BundleError,
    BundleSealer,
    ContextExcerpt,
    DeviceMaterial,
    bundle_header,
    context_excerpt,
    make_bundle,
    open_bundle,
)
from trustroot.provision.claim import generate_claim_code
from trustroot.provision.identity import (
    DeviceCertificateIssuer,
    device_serial_of,
    generate_device_key,
    issue_device_certificate,
    private_key_der,
)

SERIAL = "ACMEPL-00000042"


@dataclass
class Factory:
    """The product's PKI, a context excerpt and station keys: everything to make material and bundles."""

    model: SecurityContext
    issuing: KeyHandle
    issuing_cert: x509.Certificate
    root_cert: x509.Certificate
    station: KeyHandle
    station_x25519: KeyHandle
    other_station: KeyHandle
    signing: KeyHandle

    def material(
        self, serial: str = SERIAL, algorithm: str = "ecdsa-p256", *, with_password: bool = True
    ) -> DeviceMaterial:
        key = generate_device_key(algorithm)
        settings = self.model.identity.certificate.model_copy(update={"algorithm": algorithm})
        cert = issue_device_certificate(
            self.issuing,
            self.issuing_cert,
            key.public_key(),
            serial,
            model=self.model.product.model,
            manufacturer=self.model.product.manufacturer,
            settings=settings,
            now=datetime.now(UTC),
        )
        return DeviceMaterial(
            serial=serial,
            private_key_der=private_key_der(key),
            chain_pem=tuple(dump_pem_certificate(c).decode() for c in (cert, self.issuing_cert, self.root_cert)),
            password="WGOJSDIFP4OEZ6P2" if with_password else None,
            claim_code=generate_claim_code(),
            service_url=self.model.communication.service_url,
            context=context_excerpt(self.model),
        )


@pytest.fixture(scope="module")
def factory(product_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Factory:
    product = open_product(
        product_template / "security-context.toml",
        secrets=fixed_secrets("test-store-passphrase", "test-root-passphrase"),
    )
    backend = FileBackend(tmp_path_factory.mktemp("station"), fixed_secrets("station passphrase"))

    def make(name: str, algorithm: Algorithm) -> KeyHandle:
        return backend.unlock(backend.generate(name, KeyRole.OTHER, algorithm, domain="store"))

    return Factory(
        model=product.context.model,
        issuing=product.keys.unlock(product.keys.active(KeyRole.ISSUING_CA).name),
        issuing_cert=product.certificate(ISSUING_CA_CERT),
        root_cert=product.certificate(ROOT_CA_CERT),
        station=make("station-1", Algorithm.ECIES_P256),
        station_x25519=make("station-x", Algorithm.ECIES_X25519),
        other_station=make("station-2", Algorithm.ECIES_P256),
        signing=make("signer", Algorithm.ECDSA_P256),
    )


@pytest.fixture(scope="module")
def sealed(factory: Factory) -> tuple[DeviceMaterial, bytes]:
    material = factory.material()
    return material, make_bundle(factory.station.public_key(), material)


# -------------------------------------------------------------------------------------------- round trip


@pytest.mark.parametrize("algorithm", ["ecdsa-p256", "ed25519"])
@pytest.mark.parametrize("kem", ["p256", "x25519"])
def test_round_trip(factory: Factory, algorithm: str, kem: str) -> None:
    station = factory.station if kem == "p256" else factory.station_x25519
    material = factory.material(algorithm=algorithm)
    bundle = make_bundle(station.public_key(), material)
    assert open_bundle(station, bundle) == material
    header = bundle_header(bundle)
    assert header.serial == SERIAL
    assert header.kem == kem
    assert header.station_key_id == station.info.fingerprint  # the id `trustroot keys list` shows
    for secret in (material.private_key_der, material.password.encode(), material.claim_code.encode()):  # type: ignore[union-attr]
        assert secret not in bundle
    assert b"BEGIN CERTIFICATE" not in bundle  # even the public part is sealed


def test_each_bundle_is_fresh(factory: Factory, sealed: tuple[DeviceMaterial, bytes]) -> None:
    material, bundle = sealed
    again = make_bundle(factory.station.public_key(), material)
    length = bundle[10]
    assert again[: 43 + length] == bundle[: 43 + length]  # magic, version, kem, serial, station key id
    assert again[43 + length : 108 + length] != bundle[43 + length : 108 + length]  # a new ephemeral key
    assert again[108 + length :] != bundle[108 + length :]


def test_material_without_password(factory: Factory) -> None:
    material = factory.material(with_password=False)
    assert open_bundle(factory.station, make_bundle(factory.station.public_key(), material)).password is None


def test_documented_format_can_be_reimplemented(factory: Factory, sealed: tuple[DeviceMaterial, bytes]) -> None:
    """Decrypt with the format of docs/provisioning.md, byte by byte, without trustroot's opener."""
    material, bundle = sealed
    assert bundle[:8] == b"TRBUNDLE"
    assert bundle[8] == 1
    assert bundle[9] == 1  # P-256
    length = bundle[10]
    assert bundle[11 : 11 + length] == SERIAL.encode()
    key_id = bundle[11 + length : 43 + length]
    assert key_id.hex() == factory.station.info.fingerprint
    ephemeral = bundle[43 + length : 108 + length]
    header = bundle[: 108 + length]
    peer = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), ephemeral)
    shared = factory.station.exchange(peer)
    okm = HKDF(hashes.SHA256(), 44, salt=None, info=b"trustroot/bundle/v1" + header).derive(shared)
    plaintext = AESGCM(okm[:32]).decrypt(okm[32:], bundle[len(header) :], header)
    assert plaintext == json.dumps(material.to_json(), sort_keys=True, separators=(",", ":")).encode()
    document = json.loads(plaintext)
    assert document["format"] == "trustroot.material/1"
    assert sorted(document) == [
        "chain",
        "claim_code",
        "context",
        "format",
        "password",
        "private_key",
        "serial",
        "service_url",
    ]


# ------------------------------------------------------------------------------------------- tampering


def test_every_tampered_byte_is_the_one_message(factory: Factory, sealed: tuple[DeviceMaterial, bytes]) -> None:
    _, bundle = sealed
    for position in range(len(bundle)):
        damaged = bytearray(bundle)
        damaged[position] ^= 0x80 if position % 2 else 0x01  # low and high bits, every byte
        with pytest.raises(BundleError) as info:
            open_bundle(factory.station, bytes(damaged))
        assert str(info.value) == OPEN_FAILED, position


def test_truncated_extended_and_foreign_bytes_are_the_one_message(
    factory: Factory, sealed: tuple[DeviceMaterial, bytes]
) -> None:
    _, bundle = sealed
    for data in (b"", bundle[:10], bundle[:-1], bundle[:-17], bundle + b"\x00", b"x" * (MAX_BUNDLE_BYTES + 1)):
        with pytest.raises(BundleError) as info:
            open_bundle(factory.station, data)
        assert str(info.value) == OPEN_FAILED
    with pytest.raises(BundleError) as info:
        open_bundle(factory.station, "text")  # type: ignore[arg-type]
    assert str(info.value) == OPEN_FAILED


def test_wrong_station_key_is_the_one_message(factory: Factory, sealed: tuple[DeviceMaterial, bytes]) -> None:
    _, bundle = sealed
    for station in (factory.other_station, factory.station_x25519):
        with pytest.raises(BundleError) as info:
            open_bundle(station, bundle)
        assert str(info.value) == OPEN_FAILED
    # a bundle whose header names the right key but was sealed to another one
    material = factory.material()
    foreign = make_bundle(factory.other_station.public_key(), material)
    length = foreign[10]
    forged = foreign[: 11 + length] + bytes.fromhex(factory.station.info.fingerprint) + foreign[43 + length :]
    with pytest.raises(BundleError) as info:
        open_bundle(factory.station, forged)
    assert str(info.value) == OPEN_FAILED


def test_invalid_ephemeral_points_are_the_one_message(factory: Factory, sealed: tuple[DeviceMaterial, bytes]) -> None:
    _, bundle = sealed
    length = bundle[10]
    start = 43 + length
    for point in (b"\x04" + b"\x00" * 64, b"\x02" + bundle[start + 1 : start + 33] + bytes(32)):
        with pytest.raises(BundleError) as info:
            open_bundle(factory.station, bundle[:start] + point + bundle[start + 65 :])
        assert str(info.value) == OPEN_FAILED
    x_bundle = make_bundle(factory.station_x25519.public_key(), factory.material())
    x_start = 43 + x_bundle[10]
    small_order = x_bundle[:x_start] + bytes(32) + x_bundle[x_start + 32 :]
    with pytest.raises(BundleError) as info:
        open_bundle(factory.station_x25519, small_order)
    assert str(info.value) == OPEN_FAILED


def test_station_must_be_an_agreement_key(factory: Factory, sealed: tuple[DeviceMaterial, bytes]) -> None:
    _, bundle = sealed
    with pytest.raises(UsageError, match="a station key is ecies-p256 or ecies-x25519"):
        open_bundle(factory.signing, bundle)
    for public in (
        ec.generate_private_key(ec.SECP384R1()).public_key(),
        rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key(),
    ):
        with pytest.raises(UsageError, match=r"P-256 .* or X25519"):
            make_bundle(public, sealed[0])
    with pytest.raises(UsageError, match="small-order"):
        make_bundle(x25519.X25519PublicKey.from_public_bytes(bytes(32)), sealed[0])
    with pytest.raises(UsageError, match="needs a DeviceMaterial"):
        make_bundle(factory.station.public_key(), {"serial": SERIAL})  # type: ignore[arg-type]


def _seal_raw(station_public: ec.EllipticCurvePublicKey, serial: str, plaintext: bytes) -> bytes:
    """A bundle made by the documented format around arbitrary plaintext (an authentic but odd content)."""
    ephemeral = ec.generate_private_key(ec.SECP256R1())
    der = station_public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    header = (
        b"TRBUNDLE\x01\x01"
        + bytes([len(serial)])
        + serial.encode()
        + hashes_sha256(der)
        + ephemeral.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    )
    shared = ephemeral.exchange(ec.ECDH(), station_public)
    okm = HKDF(hashes.SHA256(), 44, salt=None, info=b"trustroot/bundle/v1" + header).derive(shared)
    return header + AESGCM(okm[:32]).encrypt(okm[32:], plaintext, header)


def hashes_sha256(data: bytes) -> bytes:
    digest = hashes.Hash(hashes.SHA256())
    digest.update(data)
    return digest.finalize()


def test_authentic_but_invalid_content_is_named(factory: Factory, sealed: tuple[DeviceMaterial, bytes]) -> None:
    material, _ = sealed
    public = factory.station.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    canonical = json.dumps(material.to_json(), sort_keys=True, separators=(",", ":")).encode()
    assert open_bundle(factory.station, _seal_raw(public, SERIAL, canonical)) == material
    with pytest.raises(BundleError, match="header names ACMEPL-00000043 but its content is for ACMEPL-00000042"):
        open_bundle(factory.station, _seal_raw(public, "ACMEPL-00000043", canonical))
    for plaintext, message in (
        (b"\xff", "not valid trustroot.material/1"),
        (b"[]", "exactly the keys"),
        (canonical.replace(b"trustroot.material/1", b"trustroot.material/2"), "material format"),
    ):
        with pytest.raises(BundleError, match=message):
            open_bundle(factory.station, _seal_raw(public, SERIAL, plaintext))


def test_header_of_garbage(factory: Factory) -> None:
    with pytest.raises(BundleError, match="not a trustroot device bundle"):
        bundle_header(b"TRBUNDLE\x02")


# --------------------------------------------------------------------------------------- the material


def test_material_repr_hides_secrets(sealed: tuple[DeviceMaterial, bytes]) -> None:
    material, _ = sealed
    text = repr(material)
    assert SERIAL in text
    assert material.claim_code not in text
    assert str(material.password) not in text
    assert "private_key_der" not in text


def test_material_checks(factory: Factory, sealed: tuple[DeviceMaterial, bytes]) -> None:
    material, _ = sealed
    other = factory.material(serial="ACMEPL-00000043")
    p384 = ec.generate_private_key(ec.SECP384R1())
    cases: list[tuple[dict[str, object], str]] = [
        ({"serial": "bad"}, "is not a device serial"),
        ({"serial": "ACMEPL-00000043"}, "names ACMEPL-00000042, not ACMEPL-00000043"),
        ({"private_key_der": other.private_key_der}, "not for the device private key"),
        ({"private_key_der": b"\x30\x00"}, "not clear PKCS#8 DER"),
        ({"private_key_der": b"x" * 513}, "at most 512 bytes"),
        (
            {
                "private_key_der": p384.private_bytes(
                    serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
                )
            },
            "secp384r1",
        ),
        ({"chain_pem": material.chain_pem[:1]}, "2 to 4 PEM certificates"),
        ({"chain_pem": ("junk", *material.chain_pem[1:])}, "chain entry 0 is not a PEM certificate"),
        ({"chain_pem": (material.chain_pem[0] * 2, *material.chain_pem[1:])}, "holds 2 certificates"),
        ({"chain_pem": ("x" * 20000, *material.chain_pem[1:])}, "at most 16 KiB"),
        ({"chain_pem": other.chain_pem}, "not for the device private key"),
        ({"password": ""}, "password must be 1 to 128"),
        ({"password": "x" * 129}, "password must be 1 to 128"),
        ({"password": "new\nline"}, "password must be"),
        ({"claim_code": "1234"}, "claim code has 20 symbols"),
        ({"claim_code": 7}, "claim code must be"),
        ({"service_url": "http://plain.example"}, "is not an https URL"),
        ({"service_url": "https://" + "a" * 500}, "is not an https URL"),
        ({"context": {"product": "x"}}, "context must be a ContextExcerpt"),
    ]
    for change, message in cases:
        with pytest.raises(UsageError, match=message):
            dataclasses.replace(material, **change)  # type: ignore[arg-type]


def test_context_excerpt(factory: Factory) -> None:
    excerpt = ContextExcerpt.from_context(factory.model)
    assert excerpt.product == "Acme Plug"
    assert excerpt.min_tls_version == "1.2"
    assert excerpt.checkin_jitter_s == (0, 600)
    assert "auth_failures" in excerpt.telemetry_metrics
    assert excerpt.support_period_end == factory.model.product.support_period_end
    assert ContextExcerpt.from_json(json.loads(json.dumps(excerpt.to_json()))) == excerpt
    quiet = factory.model.model_copy(
        update={"telemetry": factory.model.telemetry.model_copy(update={"enabled": False})}
    )
    assert context_excerpt(quiet).telemetry_metrics == ()
    good = excerpt.to_json()
    for change, message in (
        ({"extra": 1}, "exactly the keys"),
        ({"support_period_end": "2031-1-1"}, "not an ISO date"),
        ({"support_period_end": 20310101}, "not an ISO date"),
        ({"min_tls_version": "1.4"}, "min_tls_version"),
        ({"checkin_interval_s": 5}, "checkin_interval_s"),
        ({"checkin_interval_s": True}, "checkin_interval_s"),
        ({"checkin_jitter_s": [600, 0]}, "checkin_jitter_s max"),
        ({"checkin_jitter_s": [1]}, r"\[min, max\]"),
        ({"telemetry_metrics": ["mood"]}, "unknown metric"),
        ({"telemetry_metrics": ["bytes_in", "bytes_in"]}, "twice"),
        ({"personal_data": ["Not A Slug"]}, "not a slug"),
        ({"personal_data": "wifi"}, "list of at most"),
        ({"model": "bad\nmodel"}, "not a model designation"),
        ({"product": ""}, "context product"),
    ):
        with pytest.raises(UsageError, match=message):
            ContextExcerpt.from_json({**good, **change})
    with pytest.raises(UsageError, match="support_period_end must be a date"):
        dataclasses.replace(excerpt, support_period_end="2031-01-01")  # type: ignore[arg-type]
    assert dataclasses.replace(excerpt, support_period_end=None).to_json()["support_period_end"] is None
    assert ContextExcerpt.from_json({**good, "support_period_end": "2031-12-31"}).support_period_end == date(
        2031, 12, 31
    )


def _self_signed(key: object, serial: str, *, extra: list[x509.ExtensionType] = (), hmn: bool = True) -> str:  # type: ignore[assignment]
    """A certificate for ``key`` naming ``serial`` (no CA involved): to build odd chains."""
    from cryptography.x509.oid import NameOID

    from trustroot.provision.identity import HARDWARE_MODULE_NAME_OID, hardware_module_name_der

    signer = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, serial), x509.NameAttribute(NameOID.SERIAL_NUMBER, serial)]
    )
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())  # type: ignore[attr-defined]
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now.replace(year=now.year + 1))
    )
    if hmn:
        other = x509.OtherName(
            x509.ObjectIdentifier(HARDWARE_MODULE_NAME_OID), hardware_module_name_der("1.3.6.1.4.1.61128.1.1", serial)
        )
        builder = builder.add_extension(x509.SubjectAlternativeName([other]), critical=False)
    for extension in extra:
        builder = builder.add_extension(extension, critical=False)
    return builder.sign(signer, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()


def test_material_key_and_certificate_oddities(sealed: tuple[DeviceMaterial, bytes]) -> None:
    material, _ = sealed
    x_key = x25519.X25519PrivateKey.generate()
    x_der = x_key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(UsageError, match="is a X25519PrivateKey, not P-256 or Ed25519"):
        dataclasses.replace(material, private_key_der=x_der)
    key = material.private_key()
    no_hmn = _self_signed(key, SERIAL, hmn=False)
    with pytest.raises(UsageError, match="the device certificate: the certificate has no subjectAltName"):
        dataclasses.replace(material, chain_pem=(no_hmn, *material.chain_pem[1:]))


def test_plaintext_limit(factory: Factory, sealed: tuple[DeviceMaterial, bytes]) -> None:
    """Four certificates of almost 16 KiB each pass the per-field limits but not the plaintext limit."""
    material, _ = sealed
    body = bytes(11_500)
    padding = x509.UnrecognizedExtension(
        x509.ObjectIdentifier("1.3.6.1.4.1.99999.9"), b"\x04\x82" + len(body).to_bytes(2, "big") + body
    )
    device = _self_signed(material.private_key(), SERIAL, extra=[padding])
    big = [_self_signed(ec.generate_private_key(ec.SECP256R1()), SERIAL, extra=[padding]) for _ in range(3)]
    assert all(15_500 < len(pem) <= 16 << 10 for pem in [device, *big])
    heavy = dataclasses.replace(material, chain_pem=(device, *big))
    with pytest.raises(UsageError, match="larger than the limit of 61440 bytes"):
        make_bundle(factory.station.public_key(), heavy)


def test_material_from_json_is_strict(sealed: tuple[DeviceMaterial, bytes]) -> None:
    material, _ = sealed
    document = material.to_json()
    assert DeviceMaterial.from_json(document) == material
    for change, message in (
        ({"private_key": 5}, "must be base64 text"),
        ({"chain": "pem"}, "chain a list"),
        ({"private_key": "not base64!"}, "is not base64"),
    ):
        with pytest.raises(UsageError, match=message):
            DeviceMaterial.from_json({**document, **change})


def test_header_without_room_for_a_tag(factory: Factory, sealed: tuple[DeviceMaterial, bytes]) -> None:
    _, bundle = sealed
    header_length = 108 + bundle[10]
    for data in (bundle[:header_length], bundle[: header_length + 15]):
        with pytest.raises(BundleError) as info:
            open_bundle(factory.station, data)
        assert str(info.value) == OPEN_FAILED
    assert ContextExcerpt.from_json({**context_excerpt(factory.model).to_json(), "support_period_end": None})


def test_device_certificate_with_an_unknown_key_type(sealed: tuple[DeviceMaterial, bytes]) -> None:
    material, _ = sealed
    der = material.certificates()[0].public_bytes(serialization.Encoding.DER)
    ec_public_key = bytes.fromhex("06072a8648ce3d0201")
    assert der.count(ec_public_key) == 1
    odd = x509.load_der_x509_certificate(der.replace(ec_public_key, bytes.fromhex("06072a8648ce3d0209")))
    pem = odd.public_bytes(serialization.Encoding.PEM).decode()
    with pytest.raises(UsageError, match="the device certificate's key cannot be read"):
        dataclasses.replace(material, chain_pem=(pem, *material.chain_pem[1:]))


# ------------------------------------------------------------------------- the batch path (DeviceMaker)


def _batch_material(factory: Factory, serial: str, algorithm: str) -> tuple[DeviceMaterial, x509.Certificate]:
    settings = factory.model.identity.certificate.model_copy(update={"algorithm": algorithm})
    issuer = DeviceCertificateIssuer(
        factory.issuing,
        factory.issuing_cert,
        model=factory.model.product.model,
        manufacturer=factory.model.product.manufacturer,
        settings=settings,
    )
    key = generate_device_key(algorithm)
    cert = issuer.issue(key.public_key(), serial, now=datetime.now(UTC))
    material = DeviceMaterial.for_new_device(
        serial=serial,
        private_key=key,
        certificate=cert,
        ca_chain_pem=tuple(dump_pem_certificate(c).decode() for c in (factory.issuing_cert, factory.root_cert)),
        password="WGOJSDIFP4OEZ6P2",
        claim_code=generate_claim_code(),
        service_url=factory.model.communication.service_url,
        context=context_excerpt(factory.model),
    )
    return material, cert


@pytest.mark.parametrize("algorithm", ["ecdsa-p256", "ed25519"])
def test_batch_material_is_what_the_checked_constructor_accepts(factory: Factory, algorithm: str) -> None:
    material, cert = _batch_material(factory, SERIAL, algorithm)
    again = DeviceMaterial(  # the full checks (key, chain, serials) accept the batch path's material
        serial=material.serial,
        private_key_der=material.private_key_der,
        chain_pem=material.chain_pem,
        password=material.password,
        claim_code=material.claim_code,
        service_url=material.service_url,
        context=material.context,
    )
    assert again == material
    assert device_serial_of(cert) == SERIAL
    single = factory.material(SERIAL, algorithm).certificates()[0]
    assert cert.subject == single.subject and cert.issuer == single.issuer
    assert [(e.oid, e.critical) for e in cert.extensions] == [(e.oid, e.critical) for e in single.extensions]
    assert cert.extensions.get_extension_for_class(x509.SubjectAlternativeName) == (
        single.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    )
    validate_chain(cert, [factory.issuing_cert], [factory.root_cert], now=datetime.now(UTC), purpose="client_auth")
    sealer = BundleSealer(factory.station.public_key())
    assert open_bundle(factory.station, sealer.seal(material)) == material


def test_batch_material_refuses_a_certificate_for_another_key(factory: Factory) -> None:
    material, cert = _batch_material(factory, SERIAL, "ecdsa-p256")
    with pytest.raises(UsageError, match="the device certificate is not for the device private key"):
        DeviceMaterial.for_new_device(
            serial=SERIAL,
            private_key=generate_device_key("ecdsa-p256"),
            certificate=cert,
            ca_chain_pem=material.chain_pem[1:],
            password=None,
            claim_code=material.claim_code,
            service_url=material.service_url,
            context=material.context,
        )
    with pytest.raises(UsageError, match="chain entry 1 is not a PEM certificate"):
        DeviceMaterial.for_new_device(
            serial=SERIAL,
            private_key=material.private_key(),
            certificate=cert,
            ca_chain_pem=("not a certificate",),
            password=None,
            claim_code=material.claim_code,
            service_url=material.service_url,
            context=material.context,
        )
    with pytest.raises(UsageError, match="https URL"):
        DeviceMaterial.for_new_device(
            serial=SERIAL,
            private_key=material.private_key(),
            certificate=cert,
            ca_chain_pem=material.chain_pem[1:],
            password=None,
            claim_code=material.claim_code,
            service_url="http://plain.example",
            context=material.context,
        )


def test_sealer_refuses_a_small_order_x25519_key_before_any_device() -> None:
    with pytest.raises(UsageError, match="small-order point"):
        BundleSealer(x25519.X25519PublicKey.from_public_bytes(bytes(32)))
