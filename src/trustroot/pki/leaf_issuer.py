"""Issue many end-entity certificates under one issuer, checking the issuer once (factory batches).

:func:`~trustroot.pki.certificates.issue_leaf` checks everything for every certificate: that the
issuer may issue at ``now``, that the handle's algorithm and public key are the issuer's, and after
signing that the certificate verifies against the issuer (a signature verification, the costliest
step of a device certificate). A factory issues thousands of certificates per second under one
issuing CA, so :class:`LeafIssuer` does the per-issuer work once:

- when made: the handle's algorithm and key type (``issuer_algorithm``), the handle's public key
  equals the issuer certificate's (``check_handle_matches``), the authority key identifier;
- for each new ``now`` (a chunk's clock): the issuer is a CA with keyCertSign, valid at ``now``;
- self-check: the first certificate it signs, then every :data:`SELF_CHECK_INTERVAL`-th one, is
  parsed and verified against the issuer exactly as ``sign_certificate`` does. A handle that does
  not sign for the issuer's key fails on the first certificate, so no batch can yield certificates
  that only look issued; a transient signing fault between two samples would give a device a
  certificate that the service refuses (chain validation), never one that it accepts.

The certificate profile is the same as ``issue_leaf``'s (CA:FALSE critical, keyUsage critical,
SKI, AKI, SAN, EKU), built with the same builder. An ECDSA or Ed25519 issuer signs in one step: the
builder is handed a :class:`_HandleSigner`, a private-key object whose only working method is
``sign``, which passes the TBS bytes to the handle (so the key may still sit on a token), and the
builder writes the certificate with the real signature. That saves the throwaway signature, the
reassembly and the re-parse of :mod:`trustroot.pki._signing`, which an RSA issuer still uses.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes, PublicKeyTypes
from cryptography.utils import Buffer

from trustroot.errors import PKIError
from trustroot.keys._interface import Algorithm, KeyHandle
from trustroot.pki._signing import (
    certificate_label,
    check_handle_matches,
    hash_for,
    issuer_algorithm,
    pss_padding,
    reassemble,
    throwaway_key,
)
from trustroot.pki.certificates import (
    NoExpiration,
    _authority_key_id,
    _certifiable,
    _check_can_issue,
    _validity,
    random_serial,
)

__all__ = ["SELF_CHECK_INTERVAL", "LeafIssuer"]

#: Verify the first certificate a LeafIssuer signs and then one in this many.
SELF_CHECK_INTERVAL: Final = 32

_DIGITAL_SIGNATURE_ONLY: Final = x509.KeyUsage(
    digital_signature=True,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=False,
    crl_sign=False,
    encipher_only=False,
    decipher_only=False,
)
_NOT_CA: Final = x509.BasicConstraints(ca=False, path_length=None)


class _HandleSigner(ec.EllipticCurvePrivateKey):
    """An EC private key for the certificate builder: ``sign`` goes to the handle; nothing else works."""

    def __init__(self, handle: KeyHandle, public: ec.EllipticCurvePublicKey, hash_name: str) -> None:
        self._handle = handle
        self._public = public
        self._hash_name = hash_name

    def sign(self, data: Buffer, signature_algorithm: ec.EllipticCurveSignatureAlgorithm) -> bytes:
        algorithm = getattr(signature_algorithm, "algorithm", None)
        if not isinstance(signature_algorithm, ec.ECDSA) or getattr(algorithm, "name", None) != self._hash_name:
            raise PKIError(f"key '{self._handle.info.name}' signs ECDSA with {self._hash_name} only")
        return self._handle.sign(bytes(data))

    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self._public

    @property
    def curve(self) -> ec.EllipticCurve:
        return self._public.curve

    @property
    def key_size(self) -> int:
        return self._public.key_size

    def exchange(self, algorithm: ec.ECDH, peer_public_key: ec.EllipticCurvePublicKey) -> bytes:
        raise PKIError("a certificate signer does not do key agreement")

    def private_numbers(self) -> ec.EllipticCurvePrivateNumbers:
        raise PKIError("a certificate signer holds no private key")

    def private_bytes(
        self,
        encoding: serialization.Encoding,
        format: serialization.PrivateFormat,
        encryption_algorithm: serialization.KeySerializationEncryption,
    ) -> bytes:
        raise PKIError("a certificate signer holds no private key")

    def __copy__(self) -> _HandleSigner:
        return self

    def __deepcopy__(self, memo: dict[int, object]) -> _HandleSigner:
        return self


class _HandleEd25519Signer(ed25519.Ed25519PrivateKey):
    """An Ed25519 private key for the certificate builder: ``sign`` goes to the handle."""

    def __init__(self, handle: KeyHandle, public: ed25519.Ed25519PublicKey) -> None:
        self._handle = handle
        self._public = public

    def sign(self, data: Buffer) -> bytes:
        return self._handle.sign(bytes(data))

    def public_key(self) -> ed25519.Ed25519PublicKey:
        return self._public

    def private_bytes(
        self,
        encoding: serialization.Encoding,
        format: serialization.PrivateFormat,
        encryption_algorithm: serialization.KeySerializationEncryption,
    ) -> bytes:
        raise PKIError("a certificate signer holds no private key")

    def private_bytes_raw(self) -> bytes:
        raise PKIError("a certificate signer holds no private key")

    def __copy__(self) -> _HandleEd25519Signer:
        return self

    def __deepcopy__(self, memo: dict[int, object]) -> _HandleEd25519Signer:
        return self


def _direct_signer(handle: KeyHandle, algorithm: Algorithm) -> CertificateIssuerPrivateKeyTypes | None:
    public = handle.public_key()
    if algorithm in (Algorithm.ECDSA_P256, Algorithm.ECDSA_P384) and isinstance(public, ec.EllipticCurvePublicKey):
        return _HandleSigner(handle, public, "sha384" if algorithm is Algorithm.ECDSA_P384 else "sha256")
    if algorithm is Algorithm.ED25519 and isinstance(public, ed25519.Ed25519PublicKey):
        return _HandleEd25519Signer(handle, public)
    return None


class LeafIssuer:
    """Signs digitalSignature-only end-entity certificates under ``issuer_cert`` with ``handle``."""

    def __init__(self, handle: KeyHandle, issuer_cert: x509.Certificate) -> None:
        self._algorithm = issuer_algorithm(handle)
        check_handle_matches(handle, issuer_cert)
        self._handle = handle
        self._issuer = issuer_cert
        self._issuer_name = issuer_cert.subject
        self._aki = _authority_key_id(issuer_cert)
        self._hash = hash_for(self._algorithm)
        self._padding = pss_padding() if self._algorithm is Algorithm.RSA_3072 else None
        self._direct = _direct_signer(handle, self._algorithm)
        self._throwaway = throwaway_key(self._algorithm) if self._direct is None else None
        self._checked_at: datetime | None = None
        self._signed = 0

    def issue(
        self,
        subject_public_key: PublicKeyTypes,
        subject: x509.Name,
        *,
        validity_days: int | NoExpiration,
        now: datetime,
        subject_alt_names: Sequence[x509.GeneralName] = (),
        extended_key_usage: Sequence[x509.ObjectIdentifier] = (),
    ) -> x509.Certificate:
        """A certificate as ``issue_leaf(..., key_usage=("digital_signature",))`` makes it."""
        if now != self._checked_at:
            _check_can_issue(self._issuer, now, child_path_length=None)
            self._checked_at = now
        subject_key = _certifiable(subject_public_key)
        if not len(subject) and not subject_alt_names:
            raise PKIError("a certificate with an empty subject needs subject_alt_names")
        not_before, not_after = _validity(now, validity_days)
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self._issuer_name)
            .public_key(subject_key)
            .serial_number(random_serial())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(_NOT_CA, critical=True)
            .add_extension(_DIGITAL_SIGNATURE_ONLY, critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(subject_key), critical=False)
            .add_extension(self._aki, critical=False)
        )
        try:
            if subject_alt_names:
                builder = builder.add_extension(
                    x509.SubjectAlternativeName(list(subject_alt_names)), critical=not len(subject)
                )
            if extended_key_usage:
                builder = builder.add_extension(x509.ExtendedKeyUsage(list(extended_key_usage)), critical=False)
            if self._direct is not None:
                cert = builder.sign(self._direct, self._hash)
            else:
                cert = self._sign_with_throwaway(builder)
        except (ValueError, TypeError) as exc:
            raise PKIError(f"the certificate cannot be built: {exc}") from exc
        if self._signed % SELF_CHECK_INTERVAL == 0:
            self._self_check(cert)
        self._signed += 1
        return cert

    def _sign_with_throwaway(self, builder: x509.CertificateBuilder) -> x509.Certificate:
        if self._throwaway is None:  # pragma: no cover - set whenever there is no direct signer
            raise PKIError("internal error: no signer")
        throwaway = builder.sign(self._throwaway, self._hash, rsa_padding=self._padding)
        tbs = throwaway.tbs_certificate_bytes
        der = reassemble(throwaway.public_bytes(serialization.Encoding.DER), tbs, self._handle.sign(tbs))
        return x509.load_der_x509_certificate(der)

    def _self_check(self, cert: x509.Certificate) -> None:
        try:
            cert.verify_directly_issued_by(self._issuer)
        except (InvalidSignature, ValueError, TypeError) as exc:
            raise PKIError(
                f"self-check failed: the certificate signed with key '{self._handle.info.name}' does not verify "
                f"against '{certificate_label(self._issuer)}'"
            ) from exc
