"""Certificate recipes: the offline root CA, the issuing CA, end-entity certificates, chain validation.

The hierarchy trustroot builds (path lengths are the defaults)::

    root CA            self-signed, CA:TRUE pathlen:1, keyCertSign+cRLSign (critical), SKI, AKI=SKI
      └── issuing CA   CA:TRUE pathlen:0, keyCertSign+cRLSign (critical), AKI = root's SKI
            └── leaf   CA:FALSE, caller's key usage / EKU / SAN: device IDevID, TLS server, ...

Every signature is made through a :class:`~trustroot.keys._interface.KeyHandle` (the key may sit on
a PKCS#11 token), see :mod:`trustroot.pki._signing`. Serial numbers are uniform in 1..2^159-1.
Times are aware datetimes (``now`` is always injected); a leaf may carry the RFC 5280 §4.1.2.5
"no well-defined expiration" date 99991231235959Z (IEEE 802.1AR IDevIDs do).

Errors::

    PKIError                  issuance refused, unparsable or oversized certificate input
    └── ChainValidationError  validate_chain: "certificate '<CN>': <reason>"

:func:`validate_chain` checks, from the leaf up to the anchor: a signature by the issuer, the
validity period at ``now``, CA:TRUE and keyCertSign on each issuer, pathLenConstraint, no
unrecognised critical extension, the EKU for ``purpose``, and revocation in the given CRLs (a CRL
is used only when it verifies against the issuer and is current; a stale or forged CRL for the
issuer is refused rather than ignored). A trust anchor that issued a certificate of the path must
itself be a CA certificate valid at ``now``. A leaf that is itself a trust anchor is its own path.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final, Literal, TypeVar

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa, x448, x25519
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes, PublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID, NameOID

from trustroot._fsutil import read_bounded
from trustroot.errors import ChainValidationError, PKIError
from trustroot.keys._interface import KeyHandle
from trustroot.limits import DEFAULT_LIMITS, Limits
from trustroot.pki._signing import certificate_label, name_label, sign_certificate

__all__ = [
    "NO_WELL_DEFINED_EXPIRATION",
    "KeyUsageName",
    "NoExpiration",
    "Purpose",
    "certificate_fingerprint",
    "create_root_ca",
    "dump_pem_certificate",
    "dump_pem_certificates",
    "issue_intermediate_ca",
    "issue_leaf",
    "load_pem_certificate",
    "load_pem_certificates",
    "parse_pem_certificate",
    "parse_pem_certificates",
    "random_serial",
    "validate_chain",
]

Purpose = Literal["any", "client_auth", "server_auth", "code_signing"]
KeyUsageName = Literal[
    "digital_signature", "content_commitment", "key_encipherment", "data_encipherment", "key_agreement"
]
NoExpiration = Literal["no-well-defined-expiration"]

#: Pass as ``validity_days`` to :func:`issue_leaf` for notAfter = 99991231235959Z (RFC 5280 §4.1.2.5).
NO_WELL_DEFINED_EXPIRATION: Final[NoExpiration] = "no-well-defined-expiration"

_NO_EXPIRATION_DATE = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
_SERIAL_BITS = 159
_MAX_PATH_DEPTH = 8
_PURPOSE_OIDS: dict[str, x509.ObjectIdentifier] = {
    "client_auth": ExtendedKeyUsageOID.CLIENT_AUTH,
    "server_auth": ExtendedKeyUsageOID.SERVER_AUTH,
    "code_signing": ExtendedKeyUsageOID.CODE_SIGNING,
}
#: Critical extensions validate_chain understands; any other critical extension is refused.
_PROCESSED_CRITICAL: frozenset[x509.ObjectIdentifier] = frozenset(
    {
        ExtensionOID.BASIC_CONSTRAINTS,
        ExtensionOID.KEY_USAGE,
        ExtensionOID.EXTENDED_KEY_USAGE,
        ExtensionOID.SUBJECT_ALTERNATIVE_NAME,
    }
)

_E = TypeVar("_E", bound=x509.ExtensionType)


# --------------------------------------------------------------------------------------------- helpers


def random_serial() -> int:
    """A uniformly random serial number in 1..2^159-1 (fits the 20 octets RFC 5280 allows)."""
    return secrets.randbelow((1 << _SERIAL_BITS) - 1) + 1


def _utc(moment: datetime, what: str) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise PKIError(f"{what} must be a timezone-aware datetime, got a naive one")
    return moment.astimezone(UTC)


def _ca_name(common_name: str, organization: str) -> x509.Name:
    if not common_name:
        raise PKIError("a CA certificate needs a non-empty common name")
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(attributes)


def _extension(cert: x509.Certificate, kind: type[_E]) -> _E | None:
    try:
        return cert.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None
    except (ValueError, x509.DuplicateExtension) as exc:
        raise PKIError(f"certificate '{certificate_label(cert)}': its extensions cannot be parsed ({exc})") from exc


def _ca_key_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=False,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )


def _authority_key_id(issuer_cert: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    ski = _extension(issuer_cert, x509.SubjectKeyIdentifier)
    if ski is not None:
        return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)
    public = issuer_cert.public_key()
    if not isinstance(
        public, ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | ed448.Ed448PublicKey | rsa.RSAPublicKey
    ):  # pragma: no cover - _check_can_issue and the handle check ran first; this narrows the type
        raise PKIError(f"issuer '{certificate_label(issuer_cert)}' has a key type that cannot issue")
    return x509.AuthorityKeyIdentifier.from_issuer_public_key(public)


def _validity(now: datetime, validity_days: int | NoExpiration) -> tuple[datetime, datetime]:
    start = _utc(now, "now").replace(microsecond=0)
    if validity_days == NO_WELL_DEFINED_EXPIRATION:
        return start, _NO_EXPIRATION_DATE
    if validity_days < 1:
        raise PKIError(f"validity_days must be a positive number of days, got {validity_days!r}")
    try:
        return start, start + timedelta(days=validity_days)
    except OverflowError as exc:
        raise PKIError(f"validity_days {validity_days} runs past the year 9999") from exc


def _check_can_issue(issuer_cert: x509.Certificate, now: datetime, *, child_path_length: int | None) -> None:
    """Refuse issuance that validate_chain would later refuse (child_path_length None: a leaf)."""
    label = certificate_label(issuer_cert)
    constraints = _extension(issuer_cert, x509.BasicConstraints)
    if constraints is None or not constraints.ca:
        raise PKIError(f"'{label}' is not a CA certificate and cannot issue certificates")
    usage = _extension(issuer_cert, x509.KeyUsage)
    if usage is None or not usage.key_cert_sign:
        raise PKIError(f"'{label}' lacks the keyCertSign key usage and cannot issue certificates")
    moment = _utc(now, "now")
    if not issuer_cert.not_valid_before_utc <= moment <= issuer_cert.not_valid_after_utc:
        raise PKIError(
            f"'{label}' is not valid at {moment.isoformat()} (valid from "
            f"{issuer_cert.not_valid_before_utc.isoformat()} "
            f"to {issuer_cert.not_valid_after_utc.isoformat()})"
        )
    if child_path_length is not None and constraints.path_length is not None:
        if constraints.path_length == 0:
            raise PKIError(f"'{label}' has pathLenConstraint 0 and cannot issue CA certificates")
        if child_path_length > constraints.path_length - 1:
            raise PKIError(
                f"path_length {child_path_length} is too long under '{label}' "
                f"(pathLenConstraint {constraints.path_length}); at most {constraints.path_length - 1}"
            )


_CERTIFIABLE = (
    ec.EllipticCurvePublicKey,
    ed25519.Ed25519PublicKey,
    ed448.Ed448PublicKey,
    rsa.RSAPublicKey,
    x25519.X25519PublicKey,
    x448.X448PublicKey,
)


def _certifiable(public_key: PublicKeyTypes) -> CertificatePublicKeyTypes:
    if not isinstance(public_key, _CERTIFIABLE):
        raise PKIError(f"a {type(public_key).__name__} cannot be put in a certificate")
    return public_key


def _add(builder: x509.CertificateBuilder, value: x509.ExtensionType, *, critical: bool) -> x509.CertificateBuilder:
    try:
        return builder.add_extension(value, critical=critical)
    except ValueError as exc:
        raise PKIError(f"extension {value.oid.dotted_string} cannot be added: {exc}") from exc


# ---------------------------------------------------------------------------------------------- issue


def create_root_ca(
    handle: KeyHandle,
    subject_cn: str,
    organization: str,
    validity_days: int,
    *,
    now: datetime,
) -> x509.Certificate:
    """A self-signed root CA certificate for the key behind ``handle`` (pathlen 1: root > issuing > leaf)."""
    name = _ca_name(subject_cn, organization)
    not_before, not_after = _validity(now, validity_days)
    public = handle.public_key()
    if not isinstance(public, ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | rsa.RSAPublicKey):
        raise PKIError(f"key '{handle.info.name}' cannot be a CA key (type {type(public).__name__})")
    ski = x509.SubjectKeyIdentifier.from_public_key(public)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(random_serial())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
        .add_extension(_ca_key_usage(), critical=True)
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
    )
    return sign_certificate(builder, handle, None)


def issue_intermediate_ca(  # noqa: PLR0917 - the agreed positional recipe signature
    issuer_handle: KeyHandle,
    issuer_cert: x509.Certificate,
    subject_public_key: PublicKeyTypes,
    subject_cn: str,
    organization: str,
    validity_days: int,
    *,
    path_length: int = 0,
    now: datetime,
) -> x509.Certificate:
    """A CA certificate under ``issuer_cert`` (by default the issuing CA that signs device certificates)."""
    if path_length < 0:
        raise PKIError(f"path_length must be 0 or more, got {path_length}")
    _check_can_issue(issuer_cert, now, child_path_length=path_length)
    if not isinstance(subject_public_key, ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | rsa.RSAPublicKey):
        raise PKIError(f"a {type(subject_public_key).__name__} cannot be a CA key")
    not_before, not_after = _validity(now, validity_days)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_ca_name(subject_cn, organization))
        .issuer_name(issuer_cert.subject)
        .public_key(subject_public_key)
        .serial_number(random_serial())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(_ca_key_usage(), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(subject_public_key), critical=False)
        .add_extension(_authority_key_id(issuer_cert), critical=False)
    )
    return sign_certificate(builder, issuer_handle, issuer_cert)


def issue_leaf(
    issuer_handle: KeyHandle,
    issuer_cert: x509.Certificate,
    subject_public_key: PublicKeyTypes,
    subject: x509.Name,
    *,
    validity_days: int | NoExpiration,
    now: datetime,
    subject_alt_names: Sequence[x509.GeneralName] = (),
    key_usage: Iterable[KeyUsageName] = ("digital_signature",),
    extended_key_usage: Sequence[x509.ObjectIdentifier] = (),
    extra_extensions: Sequence[tuple[x509.ExtensionType, bool]] = (),
) -> x509.Certificate:
    """An end-entity certificate (CA:FALSE) under ``issuer_cert``.

    ``subject`` may be empty only when ``subject_alt_names`` is given (the SAN is then critical,
    RFC 5280 §4.2.1.6). ``key_usage`` names the keyUsage bits (critical); ``extended_key_usage``
    lists EKU OIDs (non-critical, omitted when empty); ``extra_extensions`` holds further
    ``(extension, critical)`` pairs, e.g. an IDevID's hardwareModuleName otherName lives in the SAN.
    ``validity_days`` is a number of days or :data:`NO_WELL_DEFINED_EXPIRATION`.
    """
    _check_can_issue(issuer_cert, now, child_path_length=None)
    subject_key = _certifiable(subject_public_key)
    usages = set(key_usage)
    if not usages:
        raise PKIError("key_usage must name at least one use")
    if not len(subject) and not subject_alt_names:
        raise PKIError("a certificate with an empty subject needs subject_alt_names")
    not_before, not_after = _validity(now, validity_days)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_cert.subject)
        .public_key(subject_key)
        .serial_number(random_serial())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature="digital_signature" in usages,
                content_commitment="content_commitment" in usages,
                key_encipherment="key_encipherment" in usages,
                data_encipherment="data_encipherment" in usages,
                key_agreement="key_agreement" in usages,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(subject_key), critical=False)
        .add_extension(_authority_key_id(issuer_cert), critical=False)
    )
    if subject_alt_names:
        builder = _add(builder, x509.SubjectAlternativeName(list(subject_alt_names)), critical=not len(subject))
    if extended_key_usage:
        builder = _add(builder, x509.ExtendedKeyUsage(list(extended_key_usage)), critical=False)
    for value, critical in extra_extensions:
        builder = _add(builder, value, critical=critical)
    return sign_certificate(builder, issuer_handle, issuer_cert)


# -------------------------------------------------------------------------------------------- validate


def _refuse(cert: x509.Certificate, reason: str) -> ChainValidationError:
    return ChainValidationError(f"certificate '{certificate_label(cert)}': {reason}")


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def _build_path(
    leaf: x509.Certificate, intermediates: list[x509.Certificate], anchors: list[x509.Certificate]
) -> list[x509.Certificate]:
    """Leaf first, a trust anchor last; each certificate verified as signed by the next."""
    anchor_ders = {_der(a) for a in anchors}
    pool: list[x509.Certificate] = []
    seen: set[bytes] = set()
    for cert in [*anchors, *intermediates]:  # anchors first: prefer the shortest trusted path
        der = _der(cert)
        if der not in seen:
            seen.add(der)
            pool.append(cert)
    path = [leaf]
    in_path = {_der(leaf)}
    current = leaf
    while _der(current) not in anchor_ders:
        if len(path) > _MAX_PATH_DEPTH:
            raise _refuse(leaf, f"unknown anchor: no trust anchor within {_MAX_PATH_DEPTH} certificates")
        candidates = [c for c in pool if c.subject == current.issuer and _der(c) not in in_path]
        if not candidates:
            if current.subject == current.issuer:
                raise _refuse(current, "unknown anchor: it is self-signed and not one of the trust anchors")
            raise _refuse(
                current,
                f"unknown anchor: its issuer '{name_label(current.issuer)}' is neither a trust anchor "
                "nor among the intermediates",
            )
        issuer: x509.Certificate | None = None
        for candidate in candidates:
            try:
                current.verify_directly_issued_by(candidate)
            except (InvalidSignature, ValueError, TypeError):
                continue
            issuer = candidate
            break
        if issuer is None:
            raise _refuse(
                current,
                f"signature not by the issuer: it does not verify against '{certificate_label(candidates[0])}'",
            )
        path.append(issuer)
        in_path.add(_der(issuer))
        current = issuer
    return path


def _check_extensions(cert: x509.Certificate) -> None:
    try:
        extensions = list(cert.extensions)
    except (ValueError, x509.DuplicateExtension) as exc:
        raise _refuse(cert, f"its extensions cannot be parsed ({exc})") from exc
    for ext in extensions:
        if ext.critical and ext.oid not in _PROCESSED_CRITICAL:
            raise _refuse(cert, f"unrecognised critical extension {ext.oid.dotted_string}")


def _check_validity(cert: x509.Certificate, now: datetime) -> None:
    if now < cert.not_valid_before_utc:
        raise _refuse(cert, f"not yet valid: valid from {cert.not_valid_before_utc.isoformat()}")
    if now > cert.not_valid_after_utc:
        raise _refuse(cert, f"expired on {cert.not_valid_after_utc.isoformat()}")


def _check_issuer(issuer: x509.Certificate, position: int, path: list[x509.Certificate]) -> None:
    """``issuer`` is path[position] (position >= 1) and issued path[position - 1]."""
    issued = certificate_label(path[position - 1])
    constraints = _extension(issuer, x509.BasicConstraints)
    if constraints is None or not constraints.ca:
        raise _refuse(issuer, f"not a CA (no BasicConstraints CA:TRUE) but it issued '{issued}'")
    usage = _extension(issuer, x509.KeyUsage)
    if usage is None or not usage.key_cert_sign:
        raise _refuse(issuer, f"missing keyCertSign key usage but it issued '{issued}'")
    if constraints.path_length is not None:
        below = sum(1 for c in path[1:position] if c.subject != c.issuer)
        if below > constraints.path_length:
            raise _refuse(
                issuer,
                f"path length exceeded: pathLenConstraint {constraints.path_length} allows "
                f"{constraints.path_length} intermediate CA(s) below it, the path has {below}",
            )


_EKU_LABELS: dict[x509.ObjectIdentifier, str] = {
    ExtendedKeyUsageOID.SERVER_AUTH: "serverAuth",
    ExtendedKeyUsageOID.CLIENT_AUTH: "clientAuth",
    ExtendedKeyUsageOID.CODE_SIGNING: "codeSigning",
    ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE: "anyExtendedKeyUsage",
}


def _eku_label(oid: x509.ObjectIdentifier) -> str:
    return _EKU_LABELS.get(oid, oid.dotted_string)


def _check_purpose(cert: x509.Certificate, purpose: Purpose, *, is_leaf: bool) -> None:
    if purpose == "any":
        return
    wanted = _PURPOSE_OIDS[purpose]
    eku = _extension(cert, x509.ExtendedKeyUsage)
    if is_leaf:
        if eku is None or wanted not in eku:
            have = ", ".join(_eku_label(o) for o in eku) if eku is not None else "none"
            raise _refuse(cert, f"wrong EKU for {purpose}: needs {_eku_label(wanted)}, has {have}")
    elif eku is not None and wanted not in eku and ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE not in eku:
        raise _refuse(cert, f"wrong EKU for {purpose}: this CA's EKU does not include {_eku_label(wanted)}")


def _crl_matches(crl: x509.CertificateRevocationList, issuer: x509.Certificate) -> bool:
    """Whether a CRL with the issuer's name is for the issuer's key (AKI vs SKI, when both are present)."""
    try:
        aki = crl.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    except x509.ExtensionNotFound:
        return True
    ski = _extension(issuer, x509.SubjectKeyIdentifier)
    return aki.key_identifier is None or ski is None or aki.key_identifier == ski.digest


def _check_crl(
    cert: x509.Certificate, crl: x509.CertificateRevocationList, issuer: x509.Certificate, now: datetime
) -> bool:
    """Whether ``crl`` is the issuer's; refuse it (for ``cert``) when it is but cannot be trusted."""
    issuer_label = certificate_label(issuer)
    try:
        matches = _crl_matches(crl, issuer)
        critical = [ext.oid.dotted_string for ext in crl.extensions if ext.critical]
    except (ValueError, x509.DuplicateExtension) as exc:
        raise _refuse(cert, f"a CRL naming '{issuer_label}' as issuer cannot be parsed ({exc})") from exc
    if not matches:
        return False
    public = issuer.public_key()
    if not isinstance(
        public, ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | ed448.Ed448PublicKey | rsa.RSAPublicKey
    ) or not crl.is_signature_valid(public):
        raise _refuse(cert, f"the CRL of '{issuer_label}' does not verify against its certificate")
    usage = _extension(issuer, x509.KeyUsage)
    if usage is None or not usage.crl_sign:
        raise _refuse(cert, f"the CRL of '{issuer_label}' is not usable: the issuer lacks cRLSign")
    if now < crl.last_update_utc:
        raise _refuse(
            cert,
            f"the CRL of '{issuer_label}' is not yet valid: thisUpdate {crl.last_update_utc.isoformat()}",
        )
    if crl.next_update_utc is None:
        raise _refuse(cert, f"the CRL of '{issuer_label}' has no nextUpdate, so its freshness is unknown")
    if now > crl.next_update_utc:
        raise _refuse(cert, f"the CRL of '{issuer_label}' expired on {crl.next_update_utc.isoformat()}")
    if critical:
        raise _refuse(cert, f"the CRL of '{issuer_label}' has an unsupported critical extension {', '.join(critical)}")
    return True


def _check_revocation(
    cert: x509.Certificate,
    issuer: x509.Certificate,
    crls: Sequence[x509.CertificateRevocationList],
    now: datetime,
) -> None:
    """Refuse ``cert`` if a trustworthy CRL of ``issuer`` lists its serial number."""
    for crl in crls:
        if crl.issuer != issuer.subject or not _check_crl(cert, crl, issuer, now):
            continue
        entry = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
        if entry is None:
            continue
        try:
            reason = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason.value
        except x509.ExtensionNotFound:
            reason = "unspecified"
        except (ValueError, x509.DuplicateExtension):
            reason = "unreadable"
        raise _refuse(
            cert,
            f"revoked by '{certificate_label(issuer)}' on {entry.revocation_date_utc.isoformat()} "
            f"(serial {cert.serial_number:#x}, reason {reason})",
        )


def validate_chain(
    leaf: x509.Certificate,
    intermediates: Iterable[x509.Certificate],
    trust_anchors: Iterable[x509.Certificate],
    *,
    now: datetime,
    purpose: Purpose = "any",
    crls: Iterable[x509.CertificateRevocationList] = (),
) -> list[x509.Certificate]:
    """Validate ``leaf`` up to one of ``trust_anchors`` at ``now``; return the path, leaf first.

    Raises :class:`ChainValidationError` naming the certificate (subject CN) and the reason.
    """
    moment = _utc(now, "now")
    if purpose not in ("any", *_PURPOSE_OIDS):
        raise PKIError(f"unknown purpose {purpose!r}")
    anchors = list(trust_anchors)
    if not anchors:
        raise _refuse(leaf, "unknown anchor: no trust anchors were given")
    crl_list = list(crls)
    path = _build_path(leaf, list(intermediates), anchors)
    for cert in path:
        _check_extensions(cert)
    for position, cert in enumerate(path):  # leaf first: the most specific refusal wins
        _check_validity(cert, moment)
        if position > 0:
            _check_issuer(cert, position, path)
        if position < len(path) - 1:
            _check_revocation(cert, path[position + 1], crl_list, moment)
        _check_purpose(cert, purpose, is_leaf=position == 0)
    return path


# ----------------------------------------------------------------------------------------- PEM and ids


def certificate_fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 (hex) of the certificate's DER encoding."""
    return hashlib.sha256(_der(cert)).hexdigest()


def _bounded(data: bytes | str, what: str, limits: Limits) -> bytes:
    raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    if len(raw) > limits.max_certificate_bytes:
        raise PKIError(f"{what}: larger than the limit of {limits.max_certificate_bytes} bytes")
    return raw


def parse_pem_certificates(
    data: bytes | str, *, what: str = "certificate bundle", limits: Limits = DEFAULT_LIMITS
) -> list[x509.Certificate]:
    """All certificates of a PEM bundle (at least one); the whole input is bounded by the limit."""
    raw = _bounded(data, what, limits)
    try:
        return x509.load_pem_x509_certificates(raw)
    except ValueError as exc:
        raise PKIError(f"{what}: not a PEM certificate ({exc})") from exc


def parse_pem_certificate(
    data: bytes | str, *, what: str = "certificate", limits: Limits = DEFAULT_LIMITS
) -> x509.Certificate:
    """Exactly one PEM certificate."""
    certs = parse_pem_certificates(data, what=what, limits=limits)
    if len(certs) != 1:
        raise PKIError(f"{what}: expected one certificate, found {len(certs)}")
    return certs[0]


def load_pem_certificate(path: Path, *, limits: Limits = DEFAULT_LIMITS) -> x509.Certificate:
    """Exactly one PEM certificate from a file (UnreadableInputError if missing or over the limit)."""
    data = read_bounded(path, limits.max_certificate_bytes, what="certificate")
    return parse_pem_certificate(data, what=f"certificate {path}", limits=limits)


def load_pem_certificates(path: Path, *, limits: Limits = DEFAULT_LIMITS) -> list[x509.Certificate]:
    """Every certificate of a PEM bundle file."""
    data = read_bounded(path, limits.max_certificate_bytes, what="certificate bundle")
    return parse_pem_certificates(data, what=f"certificate bundle {path}", limits=limits)


def dump_pem_certificate(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def dump_pem_certificates(certs: Iterable[x509.Certificate]) -> bytes:
    """A PEM bundle, in the order given (leaf first for a TLS chain)."""
    return b"".join(dump_pem_certificate(c) for c in certs)
