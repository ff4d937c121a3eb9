"""Per-device identity: serial numbers, device keys and IEEE 802.1AR IDevID-style certificates.

Serial numbers are ``<serial_prefix><zero-padded sequence number>`` ([identity] of the Security
Context), e.g. ``ACMEPL-00000042``: ASCII upper-case letters, digits and ``-``, at most 32 characters.

The device certificate (one profile for both flows)::

    issuer           the product's issuing CA
    subject          O=<manufacturer> (if given), OU=<model>, CN=<serial>, serialNumber=<serial>
    validity         now .. now + validity_days, or 99991231235959Z with no_expiry (802.1AR §8.5)
    basicConstraints CA:FALSE                                        critical
    keyUsage         digitalSignature                                critical
    extKeyUsage      clientAuth (1.3.6.1.5.5.7.3.2)
    subjectAltName   otherName hardwareModuleName (RFC 4108, 1.3.6.1.5.5.7.8.4):
                         HardwareModuleName ::= SEQUENCE {
                             hwType       OBJECT IDENTIFIER,   -- hardware_type_oid
                             hwSerialNum  OCTET STRING }       -- the serial, ASCII
    SKI, AKI         as every trustroot leaf
    device key       P-256 or Ed25519, the algorithm the context names (nothing else)

Two flows make one:

(a) the device makes its key and sends a PKCS#10 request; :func:`sign_csr` checks the request's
    signature, its subject (it may only name the expected serial), its extensions and key type, and
    issues the certificate above. The private key never leaves the device.
(b) the factory makes the key (:func:`generate_device_key`) and delivers it inside an encrypted
    bundle (:mod:`trustroot.provision.bundle`), then :func:`issue_device_certificate`.

Errors::

    UsageError
    └── SerialError       a serial (or its prefix, digits, sequence number) is malformed
    PKIError
    └── CsrError          sign_csr refused the request: "CSR for '<serial>': <reason>"

``SerialError`` and ``CsrError`` are defined here until they move to :mod:`trustroot.errors`.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Final

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from trustroot import _der
from trustroot.context.schema import DeviceCertificate
from trustroot.errors import CsrError, PKIError, SerialError, UsageError
from trustroot.keys._interface import KeyHandle
from trustroot.pki.certificates import NO_WELL_DEFINED_EXPIRATION, NoExpiration, issue_leaf
from trustroot.pki.leaf_issuer import LeafIssuer

__all__ = [
    "DEFAULT_HARDWARE_TYPE_OID",
    "DEVICE_KEY_ALGORITHMS",
    "HARDWARE_MODULE_NAME_OID",
    "MAX_CSR_BYTES",
    "SERIAL_PATTERN",
    "CsrError",
    "DeviceCertificateIssuer",
    "DevicePrivateKey",
    "SerialError",
    "build_device_csr",
    "device_key_algorithm",
    "device_serial_of",
    "device_subject",
    "format_serial",
    "generate_device_key",
    "hardware_module_name",
    "hardware_module_name_der",
    "issue_device_certificate",
    "parse_serial",
    "private_key_der",
    "sign_csr",
    "validate_serial",
]

#: RFC 4108 id-on-hardwareModuleName, the otherName IEEE 802.1AR puts in an IDevID's subjectAltName.
HARDWARE_MODULE_NAME_OID: Final = "1.3.6.1.5.5.7.8.4"
#: trustroot's default hwType (under its private enterprise arc); a product may register its own.
DEFAULT_HARDWARE_TYPE_OID: Final = "1.3.6.1.4.1.61128.1.1"
#: Device key algorithms (the names of ``[identity.certificate].algorithm``).
DEVICE_KEY_ALGORITHMS: Final = ("ecdsa-p256", "ed25519")
#: Upper bound on a PEM certificate signing request (a P-256 or Ed25519 CSR is well under 1 KiB).
MAX_CSR_BYTES: Final = 16 << 10

_PREFIX = re.compile(r"[A-Z0-9][A-Z0-9-]{0,15}", re.ASCII)
#: Any serial trustroot makes: a prefix as the schema allows, then 4 to 16 digits.
SERIAL_PATTERN: Final = re.compile(r"[A-Z0-9][A-Z0-9-]{0,15}[0-9]{4,16}", re.ASCII)
_MIN_DIGITS, _MAX_DIGITS = 4, 16
_MAX_MODEL_CHARS = 64
_EXTENSION_REQUEST_OID = x509.ObjectIdentifier("1.2.840.113549.1.9.14")
_HARDWARE_MODULE_NAME = x509.ObjectIdentifier(HARDWARE_MODULE_NAME_OID)
_CLIENT_AUTH = (ExtendedKeyUsageOID.CLIENT_AUTH,)
_CSR_SUBJECT_ATTRIBUTES = frozenset(
    {NameOID.COMMON_NAME, NameOID.SERIAL_NUMBER, NameOID.ORGANIZATION_NAME, NameOID.ORGANIZATIONAL_UNIT_NAME}
)

#: A device private key as pyca/cryptography holds it.
DevicePrivateKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


# ---------------------------------------------------------------------------------------------- serials


def _check_prefix_digits(prefix: str, digits: int) -> None:
    if _PREFIX.fullmatch(prefix) is None:
        raise SerialError(
            f"serial prefix {prefix!r} is not allowed: 1 to 16 of A-Z, 0-9 and '-', starting with a letter or digit"
        )
    if type(digits) is not int or not _MIN_DIGITS <= digits <= _MAX_DIGITS:
        raise SerialError(f"serial digits {digits!r} is not allowed: {_MIN_DIGITS} to {_MAX_DIGITS}")


def format_serial(prefix: str, digits: int, seq: int) -> str:
    """``prefix`` followed by ``seq`` zero-padded to ``digits`` digits: ``("ACME-", 8, 42)`` -> ``"ACME-00000042"``.

    ``seq`` runs from 0 to 10**digits - 1; anything else (or a malformed prefix) raises :class:`SerialError`.
    """
    _check_prefix_digits(prefix, digits)
    if type(seq) is not int or not 0 <= seq < 10**digits:
        raise SerialError(f"sequence number {seq!r} does not fit {digits} digits (0 to {10**digits - 1})")
    return f"{prefix}{seq:0{digits}d}"


def parse_serial(serial: str, prefix: str, digits: int) -> int:
    """The sequence number of ``serial``, which must be exactly ``prefix`` + ``digits`` ASCII digits.

    Strict: no white space, no other case, no Unicode digits, no sign, no missing or extra digit.
    """
    _check_prefix_digits(prefix, digits)
    if not serial.startswith(prefix):
        raise SerialError(f"serial {serial!r} does not start with the prefix {prefix!r}")
    tail = serial[len(prefix) :]
    if len(tail) != digits or re.fullmatch(r"[0-9]+", tail, re.ASCII) is None:
        raise SerialError(f"serial {serial!r} must end in exactly {digits} digits 0-9 after {prefix!r}")
    return int(tail)


def validate_serial(serial: object) -> str:
    """Return ``serial`` if it has the shape of any trustroot serial (:data:`SERIAL_PATTERN`), else raise."""
    if not isinstance(serial, str) or SERIAL_PATTERN.fullmatch(serial) is None:
        raise SerialError(
            f"serial {serial!r} is not a device serial: a prefix of A-Z, 0-9, '-' then 4 to 16 digits, "
            "at most 32 characters"
        )
    return serial


# ------------------------------------------------------------------------------------------- device keys


def generate_device_key(algorithm: str) -> DevicePrivateKey:
    """A new device private key for flow (b): ``"ecdsa-p256"`` or ``"ed25519"``."""
    if algorithm == "ecdsa-p256":
        return ec.generate_private_key(ec.SECP256R1())
    if algorithm == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    raise UsageError(
        f"device key algorithm {algorithm!r} is not allowed: use one of {', '.join(DEVICE_KEY_ALGORITHMS)}"
    )


def device_key_algorithm(public_key: PublicKeyTypes) -> str:
    """``"ecdsa-p256"`` or ``"ed25519"`` for an allowed device public key; raise :class:`PKIError` otherwise."""
    if isinstance(public_key, ec.EllipticCurvePublicKey) and isinstance(public_key.curve, ec.SECP256R1):
        return "ecdsa-p256"
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        return "ed25519"
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        kind = f"an EC {public_key.curve.name} key"
    else:
        kind = f"a {type(public_key).__name__.removeprefix('_')}"
    raise PKIError(f"{kind} is not allowed as a device key: use P-256 (ecdsa-p256) or Ed25519")


def private_key_der(key: DevicePrivateKey) -> bytes:
    """The clear PKCS#8 DER of a device key: for the encrypted bundle and memory only, never for a file."""
    return key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


# ------------------------------------------------------------------------------------- the certificate


def device_subject(serial: str, model: str | None = None, *, manufacturer: str | None = None) -> x509.Name:
    """The device certificate's subject: O=manufacturer (if given), OU=model (if given), CN=serial, serialNumber=serial.

    CN carries the serial so that an MQTT broker that maps the certificate's CN to a user name
    (Mosquitto's ``use_identity_as_username``) sees the device id.
    """
    validate_serial(serial)
    attributes: list[x509.NameAttribute[str]] = []
    if manufacturer:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, manufacturer))
    if model:
        if len(model) > _MAX_MODEL_CHARS:
            raise UsageError(f"model {model!r} is longer than {_MAX_MODEL_CHARS} characters")
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, model))
    attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, serial))
    attributes.append(x509.NameAttribute(NameOID.SERIAL_NUMBER, serial))
    return x509.Name(attributes)


def _check_oid(dotted: str, what: str) -> str:
    try:
        _der.oid(dotted)
        x509.ObjectIdentifier(dotted)
    except (ValueError, _der.DerError) as exc:
        raise UsageError(f"{what} {dotted!r} is not an object identifier") from exc
    return dotted


def hardware_module_name_der(hardware_type_oid: str, serial: str) -> bytes:
    """DER of ``HardwareModuleName ::= SEQUENCE { hwType OID, hwSerialNum OCTET STRING }`` (RFC 4108)."""
    _check_oid(hardware_type_oid, "hardware type")
    return _der.sequence(_der.oid(hardware_type_oid), _der.octet_string(serial.encode("ascii")))


def _parse_hardware_module_name(value: bytes) -> tuple[str, bytes]:
    children = _der.parse_sequence(value)
    if len(children) != 2 or children[1].tag != _der.OCTET_STRING:
        raise _der.DerError("HardwareModuleName is not SEQUENCE { OID, OCTET STRING }")
    return _der.decode_oid(children[0]), children[1].content


def hardware_module_name(cert: x509.Certificate) -> tuple[str, str]:
    """``(hwType, hwSerialNum)`` of the certificate's one hardwareModuleName; raise :class:`PKIError` if absent."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound as exc:
        raise PKIError("the certificate has no subjectAltName, so no hardwareModuleName") from exc
    except (ValueError, x509.DuplicateExtension) as exc:
        raise PKIError(f"the certificate's extensions cannot be parsed ({exc})") from exc
    names = [n for n in san.get_values_for_type(x509.OtherName) if n.type_id.dotted_string == HARDWARE_MODULE_NAME_OID]
    if len(names) != 1:
        raise PKIError(f"the certificate has {len(names)} hardwareModuleName entries, expected one")
    try:
        hw_type, raw_serial = _parse_hardware_module_name(names[0].value)
        return hw_type, raw_serial.decode("ascii")
    except (_der.DerError, UnicodeDecodeError) as exc:
        raise PKIError(f"the certificate's hardwareModuleName is malformed ({exc})") from exc


def device_serial_of(cert: x509.Certificate) -> str:
    """The device serial a device certificate names, after checking CN, serialNumber and hardwareModuleName agree."""
    values: list[str] = []
    for oid in (NameOID.COMMON_NAME, NameOID.SERIAL_NUMBER):
        attributes = cert.subject.get_attributes_for_oid(oid)
        if len(attributes) != 1 or not isinstance(attributes[0].value, str):
            raise PKIError(f"the certificate subject needs exactly one {oid._name} naming the device serial")
        values.append(attributes[0].value)
    values.append(hardware_module_name(cert)[1])
    if len(set(values)) != 1:
        raise PKIError(
            f"the certificate names different serials: CN {values[0]!r}, serialNumber {values[1]!r}, "
            f"hardwareModuleName {values[2]!r}"
        )
    return validate_serial(values[0])


def issue_device_certificate(
    issuing: KeyHandle,
    issuing_cert: x509.Certificate,
    device_public_key: PublicKeyTypes,
    serial: str,
    *,
    model: str,
    manufacturer: str,
    settings: DeviceCertificate,
    now: datetime,
    hardware_type_oid: str = DEFAULT_HARDWARE_TYPE_OID,
) -> x509.Certificate:
    """The IDevID-style certificate of device ``serial`` (profile in the module docstring), signed by ``issuing``.

    The device key must be of the algorithm ``settings`` names (P-256 or Ed25519). ``manufacturer``
    may be empty (no O in the subject). Raises :class:`PKIError` (or :class:`UsageError` for a
    malformed serial or OID).
    """
    validate_serial(serial)
    _check_oid(hardware_type_oid, "hardware type")
    algorithm = device_key_algorithm(device_public_key)
    if algorithm != settings.algorithm:
        raise PKIError(
            f"device {serial}: the device key is {algorithm} but the Security Context's "
            f"[identity.certificate].algorithm is {settings.algorithm}"
        )
    validity: int | NoExpiration = NO_WELL_DEFINED_EXPIRATION if settings.no_expiry else settings.validity_days
    hmn = x509.OtherName(
        x509.ObjectIdentifier(HARDWARE_MODULE_NAME_OID), hardware_module_name_der(hardware_type_oid, serial)
    )
    return issue_leaf(
        issuing,
        issuing_cert,
        device_public_key,
        device_subject(serial, model, manufacturer=manufacturer),
        validity_days=validity,
        now=now,
        subject_alt_names=[hmn],
        key_usage=("digital_signature",),
        extended_key_usage=[ExtendedKeyUsageOID.CLIENT_AUTH],
    )


class DeviceCertificateIssuer:
    """Issues many device certificates (the profile above) under one issuing CA, as a factory batch does.

    The issuer's checks run once (:class:`~trustroot.pki.leaf_issuer.LeafIssuer`: handle matches the
    certificate, issuer valid at each new ``now``, a sampled signature self-check); the hwType and
    subject attributes are checked once here. Each certificate is the one :func:`issue_device_certificate`
    would make for the same arguments.
    """

    def __init__(
        self,
        issuing: KeyHandle,
        issuing_cert: x509.Certificate,
        *,
        model: str,
        manufacturer: str,
        settings: DeviceCertificate,
        hardware_type_oid: str = DEFAULT_HARDWARE_TYPE_OID,
    ) -> None:
        _check_oid(hardware_type_oid, "hardware type")
        device_subject("X0000", model, manufacturer=manufacturer)  # the model's length, once
        self._leaf = LeafIssuer(issuing, issuing_cert)
        self._model = model
        self._manufacturer = manufacturer
        self._settings = settings
        self._hw_type = _der.oid(hardware_type_oid)
        self._validity: int | NoExpiration = (
            NO_WELL_DEFINED_EXPIRATION if settings.no_expiry else settings.validity_days
        )

    def issue(self, device_public_key: PublicKeyTypes, serial: str, *, now: datetime) -> x509.Certificate:
        """The certificate of device ``serial`` for ``device_public_key`` (of the context's algorithm)."""
        validate_serial(serial)
        algorithm = device_key_algorithm(device_public_key)
        if algorithm != self._settings.algorithm:
            raise PKIError(
                f"device {serial}: the device key is {algorithm} but the Security Context's "
                f"[identity.certificate].algorithm is {self._settings.algorithm}"
            )
        hmn = _der.sequence(self._hw_type, _der.octet_string(serial.encode("ascii")))
        return self._leaf.issue(
            device_public_key,
            device_subject(serial, self._model, manufacturer=self._manufacturer),
            validity_days=self._validity,
            now=now,
            subject_alt_names=[x509.OtherName(_HARDWARE_MODULE_NAME, hmn)],
            extended_key_usage=_CLIENT_AUTH,
        )


# --------------------------------------------------------------------------------------------- flow (a)


def build_device_csr(private_key: DevicePrivateKey, serial: str) -> bytes:
    """A PEM PKCS#10 request as a device (or the reference agent) makes it for flow (a): CN=serialNumber=serial."""
    validate_serial(serial)
    builder = x509.CertificateSigningRequestBuilder().subject_name(device_subject(serial))
    algorithm = None if isinstance(private_key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(private_key, algorithm).public_bytes(serialization.Encoding.PEM)


def _load_csr(csr_pem: bytes, expected_serial: str) -> x509.CertificateSigningRequest:
    label = f"CSR for '{expected_serial}'"
    if not isinstance(csr_pem, bytes | bytearray):
        raise CsrError(f"{label}: expected PEM bytes, got {type(csr_pem).__name__}")
    if len(csr_pem) > MAX_CSR_BYTES:
        raise CsrError(f"{label}: larger than the limit of {MAX_CSR_BYTES} bytes")
    try:
        return x509.load_pem_x509_csr(bytes(csr_pem))
    except ValueError as exc:
        raise CsrError(f"{label}: not a PEM certificate signing request ({exc})") from exc


def _check_csr_subject(csr: x509.CertificateSigningRequest, expected_serial: str, label: str) -> None:
    named: list[str] = []
    try:
        rdns = csr.subject.rdns
    except ValueError as exc:  # pragma: no cover - cryptography parses the subject when loading
        raise CsrError(f"{label}: its subject cannot be parsed ({exc})") from exc
    for rdn in rdns:
        if len(rdn) != 1:
            raise CsrError(f"{label}: the subject has a multi-valued name component, which is not allowed")
        (attribute,) = tuple(rdn)
        if attribute.oid not in _CSR_SUBJECT_ATTRIBUTES:
            raise CsrError(
                f"{label}: the subject attribute {attribute.oid._name} ({attribute.oid.dotted_string}) is not allowed"
            )
        if attribute.oid in (NameOID.COMMON_NAME, NameOID.SERIAL_NUMBER):
            value = attribute.value if isinstance(attribute.value, str) else repr(attribute.value)
            if value != expected_serial:
                raise CsrError(
                    f"{label}: the subject names serial {value!r} in {attribute.oid._name}, "
                    f"expected {expected_serial!r}: refusing a request for another device"
                )
            named.append(value)
    if not named:
        raise CsrError(f"{label}: the subject names no serial (CN or serialNumber must be {expected_serial!r})")


def _check_csr_extensions(
    csr: x509.CertificateSigningRequest, expected_serial: str, hardware_type_oid: str, label: str
) -> None:
    try:
        for attribute in csr.attributes:
            if attribute.oid != _EXTENSION_REQUEST_OID:
                raise CsrError(
                    f"{label}: the request attribute {attribute.oid._name} ({attribute.oid.dotted_string}) "
                    "is not allowed"
                )
        extensions = list(csr.extensions)
    except (ValueError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType) as exc:
        raise CsrError(f"{label}: its requested extensions cannot be parsed ({exc})") from exc
    for extension in extensions:
        value = extension.value
        name = f"{extension.oid._name} ({extension.oid.dotted_string})"
        if isinstance(value, x509.BasicConstraints):
            if value.ca:
                raise CsrError(f"{label}: it asks for a CA certificate (basicConstraints CA:TRUE)")
        elif isinstance(value, x509.KeyUsage):
            if not _only_digital_signature(value):
                raise CsrError(f"{label}: it asks for key usages beyond digitalSignature")
        elif isinstance(value, x509.ExtendedKeyUsage):
            extra = [oid.dotted_string for oid in value if oid != ExtendedKeyUsageOID.CLIENT_AUTH]
            if extra:
                raise CsrError(f"{label}: it asks for extended key usages beyond clientAuth: {', '.join(extra)}")
        elif isinstance(value, x509.SubjectAlternativeName):
            _check_csr_san(value, expected_serial, hardware_type_oid, label)
        elif not isinstance(value, x509.SubjectKeyIdentifier):
            raise CsrError(f"{label}: the requested extension {name} is not allowed")


def _only_digital_signature(usage: x509.KeyUsage) -> bool:
    others = (
        usage.content_commitment,
        usage.key_encipherment,
        usage.data_encipherment,
        usage.key_agreement,
        usage.key_cert_sign,
        usage.crl_sign,
    )
    return not any(others)


def _check_csr_san(san: x509.SubjectAlternativeName, expected_serial: str, hardware_type_oid: str, label: str) -> None:
    for general_name in san:
        if not isinstance(general_name, x509.OtherName) or general_name.type_id.dotted_string != (
            HARDWARE_MODULE_NAME_OID
        ):
            raise CsrError(f"{label}: it asks for a subject alternative name other than hardwareModuleName")
        try:
            hw_type, raw_serial = _parse_hardware_module_name(general_name.value)
        except _der.DerError as exc:
            raise CsrError(f"{label}: its hardwareModuleName is malformed ({exc})") from exc
        if raw_serial != expected_serial.encode("ascii") or hw_type != hardware_type_oid:
            raise CsrError(
                f"{label}: its hardwareModuleName names serial {raw_serial!r} of type {hw_type}, "
                f"expected {expected_serial!r} of type {hardware_type_oid}: refusing a request for another device"
            )


def sign_csr(
    csr_pem: bytes,
    issuing: KeyHandle,
    issuing_cert: x509.Certificate,
    *,
    expected_serial: str,
    model: str,
    manufacturer: str,
    settings: DeviceCertificate,
    now: datetime,
    hardware_type_oid: str = DEFAULT_HARDWARE_TYPE_OID,
) -> x509.Certificate:
    """Flow (a): issue the device certificate for a PKCS#10 request made on the device.

    Checked in this order, each refusal a :class:`CsrError` naming the reason: size and PEM form;
    the request's signature under the key it carries (before anything else of it is used); the key
    type (P-256 or Ed25519, and the algorithm of ``settings``); the subject (only CN,
    serialNumber, O, OU; CN and serialNumber, at least one present, must be ``expected_serial``);
    the attributes (only extensionRequest) and requested extensions (basicConstraints CA:FALSE,
    keyUsage digitalSignature, extKeyUsage clientAuth, a hardwareModuleName of this serial and
    hwType, subjectKeyIdentifier; nothing else). The certificate's content comes from the
    arguments only, never from the request: the request contributes its public key.
    """
    validate_serial(expected_serial)
    label = f"CSR for '{expected_serial}'"
    csr = _load_csr(csr_pem, expected_serial)
    try:
        signature_ok = csr.is_signature_valid
        public = csr.public_key()
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:  # an unknown key or signature algorithm
        raise CsrError(f"{label}: its key or signature algorithm is not supported ({exc})") from exc
    if not signature_ok:
        raise CsrError(
            f"{label}: the signature does not verify: the request was altered or not made with the key it carries"
        )
    try:
        algorithm = device_key_algorithm(public)
    except PKIError as exc:
        raise CsrError(f"{label}: {exc.message}") from exc
    if algorithm != settings.algorithm:
        raise CsrError(
            f"{label}: the key is {algorithm} but the Security Context's device key algorithm is {settings.algorithm}"
        )
    _check_csr_subject(csr, expected_serial, label)
    _check_csr_extensions(csr, expected_serial, hardware_type_oid, label)
    return issue_device_certificate(
        issuing,
        issuing_cert,
        public,
        expected_serial,
        model=model,
        manufacturer=manufacturer,
        settings=settings,
        now=now,
        hardware_type_oid=hardware_type_oid,
    )
