"""Sign certificates and CRLs with a key that cannot leave its backend (file store or PKCS#11 token).

pyca/cryptography's builders want a private key object, which a token never hands out. So the
builder signs with a *throwaway* key of the issuer's algorithm: that fixes the ``signature``
AlgorithmIdentifier inside the TBS (and its parameters, e.g. RSASSA-PSS with SHA-256, MGF1-SHA-256,
salt 32). The throwaway signature is then dropped, the TBS is signed with the real
:class:`~trustroot.keys._interface.KeyHandle`, and the outer structure is put back together::

    Certificate / CertificateList ::= SEQUENCE {
        tbsCertificate / tbsCertList   -- bytes exactly as the builder produced them
        signatureAlgorithm             -- copied from the throwaway object's DER (equals the TBS's)
        signatureValue  BIT STRING     -- KeyHandle.sign(tbs), no unused bits
    }

The result is parsed again and its signature verified against the real issuer before it is
returned, so a handle that does not belong to the issuer can never yield an object that looks
issued. The throwaway keys never sign anything that is kept; they are cached per process because
an RSA-3072 key is slow to make.
"""

from __future__ import annotations

import functools

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes, PublicKeyTypes

from trustroot import _der
from trustroot.errors import PKIError
from trustroot.keys._interface import Algorithm, KeyHandle

__all__ = [
    "certificate_label",
    "check_handle_matches",
    "hash_for",
    "issuer_algorithm",
    "name_label",
    "pss_padding",
    "reassemble",
    "sign_certificate",
    "sign_crl",
    "spki_der",
    "throwaway_key",
]

_RSA_BITS = 3072


def name_label(name: x509.Name) -> str:
    """How a name is shown in messages: its CN, else the whole RFC 4514 string."""
    names = name.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    if names:
        value = names[0].value
        return value if isinstance(value, str) else value.decode("utf-8", "replace")
    return name.rfc4514_string() or "(empty name)"


def certificate_label(cert: x509.Certificate) -> str:
    """How a certificate is named in messages: its subject CN, else the whole subject."""
    return name_label(cert.subject)


def spki_der(public_key: PublicKeyTypes) -> bytes:
    """The DER SubjectPublicKeyInfo of a public key (for exact key comparison)."""
    return public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def issuer_algorithm(handle: KeyHandle) -> Algorithm:
    """The handle's algorithm, refused unless it is a signing algorithm whose key type matches."""
    algorithm = handle.info.algorithm
    if not algorithm.is_signing:
        raise PKIError(f"key '{handle.info.name}' is a {algorithm} key and cannot sign certificates")
    public = handle.public_key()
    expected: bool
    if algorithm is Algorithm.ECDSA_P256:
        expected = isinstance(public, ec.EllipticCurvePublicKey) and isinstance(public.curve, ec.SECP256R1)
    elif algorithm is Algorithm.ECDSA_P384:
        expected = isinstance(public, ec.EllipticCurvePublicKey) and isinstance(public.curve, ec.SECP384R1)
    elif algorithm is Algorithm.ED25519:
        expected = isinstance(public, ed25519.Ed25519PublicKey)
    else:
        expected = isinstance(public, rsa.RSAPublicKey)
    if not expected:
        raise PKIError(f"key '{handle.info.name}' claims algorithm {algorithm} but its public key is of another type")
    return algorithm


def check_handle_matches(handle: KeyHandle, issuer_cert: x509.Certificate) -> None:
    """Refuse a handle whose public key is not the one in ``issuer_cert``."""
    if spki_der(handle.public_key()) != spki_der(issuer_cert.public_key()):
        raise PKIError(
            f"key '{handle.info.name}' does not belong to issuer certificate "
            f"'{certificate_label(issuer_cert)}' (the public keys differ)"
        )


@functools.cache
def _throwaway_key(algorithm: Algorithm) -> CertificateIssuerPrivateKeyTypes:
    if algorithm is Algorithm.ECDSA_P256:
        return ec.generate_private_key(ec.SECP256R1())
    if algorithm is Algorithm.ECDSA_P384:
        return ec.generate_private_key(ec.SECP384R1())
    if algorithm is Algorithm.ED25519:
        return ed25519.Ed25519PrivateKey.generate()
    return rsa.generate_private_key(public_exponent=65537, key_size=_RSA_BITS)


def _hash_for(algorithm: Algorithm) -> hashes.SHA256 | hashes.SHA384 | None:
    if algorithm is Algorithm.ED25519:
        return None
    if algorithm is Algorithm.ECDSA_P384:
        return hashes.SHA384()
    return hashes.SHA256()


def _pss() -> padding.PSS:
    return padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)


def _reassemble(throwaway_der: bytes, tbs: bytes, signature: bytes) -> bytes:
    """Replace the signature of a DER certificate or CRL, keeping its TBS and algorithm."""
    try:
        children = _der.parse_sequence(throwaway_der)
    except _der.DerError as exc:  # pragma: no cover - cryptography always writes DER
        raise PKIError(f"internal error: unexpected DER from the certificate builder ({exc})") from exc
    if len(children) != 3 or children[0].raw != tbs:  # pragma: no cover - same reason
        raise PKIError("internal error: the builder's output does not have the expected shape")
    return _der.sequence(tbs, children[1].raw, _der.bit_string(signature))


#: For batch issuers (:mod:`trustroot.pki.leaf_issuer`) that sign many certificates the same way.
throwaway_key = _throwaway_key
hash_for = _hash_for
pss_padding = _pss
reassemble = _reassemble


def sign_certificate(
    builder: x509.CertificateBuilder,
    handle: KeyHandle,
    issuer_cert: x509.Certificate | None,
) -> x509.Certificate:
    """Sign ``builder`` with ``handle``; ``issuer_cert`` None means self-signed.

    Raises :class:`PKIError` when the handle does not match the issuer or the result does not
    verify. ``KeyStateError`` from the handle (a revoked key) passes through.
    """
    algorithm = issuer_algorithm(handle)
    if issuer_cert is not None:
        check_handle_matches(handle, issuer_cert)
    rsa_padding = _pss() if algorithm is Algorithm.RSA_3072 else None
    try:
        throwaway = builder.sign(_throwaway_key(algorithm), _hash_for(algorithm), rsa_padding=rsa_padding)
    except (ValueError, TypeError) as exc:
        raise PKIError(f"the certificate cannot be built: {exc}") from exc
    tbs = throwaway.tbs_certificate_bytes
    der = _reassemble(throwaway.public_bytes(serialization.Encoding.DER), tbs, handle.sign(tbs))
    cert = x509.load_der_x509_certificate(der)
    issuer = cert if issuer_cert is None else issuer_cert
    try:
        cert.verify_directly_issued_by(issuer)
    except (InvalidSignature, ValueError, TypeError) as exc:
        raise PKIError(
            f"self-check failed: the certificate signed with key '{handle.info.name}' does not verify "
            f"against '{certificate_label(issuer)}'"
        ) from exc
    return cert


def sign_crl(
    builder: x509.CertificateRevocationListBuilder,
    handle: KeyHandle,
    issuer_cert: x509.Certificate,
) -> x509.CertificateRevocationList:
    """Sign a CRL ``builder`` with ``handle`` (the key of ``issuer_cert``), verified before return."""
    algorithm = issuer_algorithm(handle)
    check_handle_matches(handle, issuer_cert)
    rsa_padding = _pss() if algorithm is Algorithm.RSA_3072 else None
    try:
        throwaway = builder.sign(_throwaway_key(algorithm), _hash_for(algorithm), rsa_padding=rsa_padding)
    except (ValueError, TypeError) as exc:
        raise PKIError(f"the CRL cannot be built: {exc}") from exc
    tbs = throwaway.tbs_certlist_bytes
    der = _reassemble(throwaway.public_bytes(serialization.Encoding.DER), tbs, handle.sign(tbs))
    crl = x509.load_der_x509_crl(der)
    public = issuer_cert.public_key()
    if not isinstance(
        public, ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | rsa.RSAPublicKey
    ) or not crl.is_signature_valid(public):
        raise PKIError(
            f"self-check failed: the CRL signed with key '{handle.info.name}' does not verify "
            f"against '{certificate_label(issuer_cert)}'"
        )
    return crl
