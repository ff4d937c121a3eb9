"""PKCS#8 ``EncryptedPrivateKeyInfo`` with PBES2 = scrypt + AES-256-CBC: the key file format.

pyca/cryptography writes encrypted PKCS#8 with PBKDF2 only, so trustroot writes the scrypt form
itself (RFC 8018 sec. 6.2 PBES2, RFC 7914 sec. 7 scrypt parameters)::

    EncryptedPrivateKeyInfo ::= SEQUENCE {
        encryptionAlgorithm  SEQUENCE { id-PBES2 1.2.840.113549.1.5.13, PBES2-params },
        encryptedData        OCTET STRING }
    PBES2-params ::= SEQUENCE {
        keyDerivationFunc    SEQUENCE { id-scrypt 1.3.6.1.4.1.11591.4.11, scrypt-params },
        encryptionScheme     SEQUENCE { aes256-CBC 2.16.840.1.101.3.4.1.42, iv OCTET STRING (16) } }
    scrypt-params ::= SEQUENCE {
        salt OCTET STRING, costParameter INTEGER, blockSize INTEGER,
        parallelizationParameter INTEGER, keyLength INTEGER OPTIONAL (always 32 here) }

The plaintext is a PKCS#8 ``PrivateKeyInfo`` with PKCS#7 padding. The files load with
``cryptography``'s ``load_pem_private_key`` and with ``openssl pkcs8`` (within OpenSSL's own
scrypt memory cap of 32 MiB: ``N`` up to 2^14 at ``r=8``; see the interop tests).

Reading is strict and in two steps, so that a damaged file is reported before anyone is asked for
a passphrase:

1. :func:`parse_envelope` checks the outer structure: DER, the three OIDs, a salt of at least
   :data:`MIN_SALT_BYTES`, ``N`` a power of two, scrypt memory within
   ``Limits.max_scrypt_memory_bytes`` (a file cannot make us allocate gigabytes), a key length of
   32. Any fault is :class:`~trustroot.errors.KeyFileCorruptError`.
2. :func:`decrypt` derives the key and decrypts. A wrong passphrase, bad padding and a plaintext
   that is not a ``PrivateKeyInfo`` are indistinguishable on purpose (no padding oracle): all are
   the one :func:`unlock_failure` error, a :class:`~trustroot.errors.WrongSecretError`.

An HMAC secret is stored as a ``PrivateKeyInfo`` whose algorithm is hmacWithSHA256
(1.2.840.113549.2.9, parameters NULL) and whose ``privateKey`` is the 32-byte secret.
"""

from __future__ import annotations

import binascii
import secrets
from dataclasses import dataclass

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from trustroot import _der
from trustroot.errors import KeyFileCorruptError, UsageError, WrongSecretError
from trustroot.limits import DEFAULT_LIMITS, Limits, ScryptCost, scrypt_cost

__all__ = [
    "AES256_CBC_OID",
    "HMAC_SHA256_OID",
    "MAX_SCRYPT_P",
    "MIN_SALT_BYTES",
    "OPENSSL_MIN_SALT_BYTES",
    "PBES2_OID",
    "PEM_LABEL",
    "SCRYPT_OID",
    "ScryptEnvelope",
    "check_private_key_info",
    "decode_hmac_private_key_info",
    "decrypt",
    "decrypt_pem",
    "encode_hmac_private_key_info",
    "encrypt",
    "encrypt_pem",
    "parse_envelope",
    "pbes2_kdf_oid",
    "pem_decode",
    "pem_encode",
    "unlock_failure",
]

PBES2_OID = "1.2.840.113549.1.5.13"
SCRYPT_OID = "1.3.6.1.4.1.11591.4.11"
AES256_CBC_OID = "2.16.840.1.101.3.4.1.42"
HMAC_SHA256_OID = "1.2.840.113549.2.9"

PEM_LABEL = "ENCRYPTED PRIVATE KEY"
_PEM_BEGIN = f"-----BEGIN {PEM_LABEL}-----"
_PEM_END = f"-----END {PEM_LABEL}-----"
_PEM_LINE = 64

#: Salt length written, and the minimum accepted for trustroot's own key files (NIST SP 800-132).
MIN_SALT_BYTES = 16
#: OpenSSL 3.0 writes 8-byte scrypt salts (``PKCS5_SALT_LEN``); accepted only for foreign files.
OPENSSL_MIN_SALT_BYTES = 8
#: Highest scrypt parallelisation accepted on reading; the work grows linearly with it.
MAX_SCRYPT_P = 16

_KEY_BYTES = 32
_BLOCK_BYTES = 16
_SECRET_BYTES = 32


@dataclass(frozen=True)
class ScryptEnvelope:
    """The checked outer structure of an encrypted key file, before any key derivation."""

    salt: bytes
    cost: ScryptCost
    iv: bytes
    ciphertext: bytes


def unlock_failure(source: str) -> WrongSecretError:
    """The one error for every way an unlock can fail once decryption has started."""
    return WrongSecretError(f"the passphrase does not unlock key file {source}")


def _check_cost(cost: ScryptCost) -> None:
    if cost.n < 2 or cost.n & (cost.n - 1):
        raise ValueError(f"scrypt N={cost.n} is not a power of two above 1")
    if cost.r < 1 or not 1 <= cost.p <= MAX_SCRYPT_P:
        raise ValueError(f"scrypt r={cost.r}, p={cost.p} out of range")


def _kdf(passphrase: bytes, salt: bytes, cost: ScryptCost) -> bytes:
    return Scrypt(salt=salt, length=_KEY_BYTES, n=cost.n, r=cost.r, p=cost.p).derive(passphrase)


# --- writing ---------------------------------------------------------------------------------------


def encrypt(private_key_info: bytes, passphrase: bytes, *, cost: ScryptCost | None = None) -> bytes:
    """Encrypt a DER ``PrivateKeyInfo`` under ``passphrase``; return ``EncryptedPrivateKeyInfo`` DER.

    ``cost`` defaults to :func:`trustroot.limits.scrypt_cost` (production unless the test-only
    variable is set).
    """
    if not passphrase:
        raise WrongSecretError("refusing to encrypt a key file under an empty passphrase", provision="5.4-1")
    cost = cost if cost is not None else scrypt_cost()
    try:
        _check_cost(cost)
    except ValueError as exc:
        raise UsageError(f"cannot encrypt a key file: {exc}") from exc
    salt = secrets.token_bytes(MIN_SALT_BYTES)
    iv = secrets.token_bytes(_BLOCK_BYTES)
    key = _kdf(passphrase, salt, cost)
    padder = padding.PKCS7(_BLOCK_BYTES * 8).padder()
    padded = padder.update(private_key_info) + padder.finalize()
    encryptor = Cipher(algorithms.AES256(key), modes.CBC(iv)).encryptor()
    ciphertext = encryptor.update(padded) + encryptor.finalize()
    scrypt_params = _der.sequence(
        _der.octet_string(salt),
        _der.integer(cost.n),
        _der.integer(cost.r),
        _der.integer(cost.p),
        _der.integer(_KEY_BYTES),
    )
    pbes2_params = _der.sequence(
        _der.sequence(_der.oid(SCRYPT_OID), scrypt_params),
        _der.sequence(_der.oid(AES256_CBC_OID), _der.octet_string(iv)),
    )
    return _der.sequence(_der.sequence(_der.oid(PBES2_OID), pbes2_params), _der.octet_string(ciphertext))


def pem_encode(der: bytes) -> bytes:
    """Wrap ``EncryptedPrivateKeyInfo`` DER as ``-----BEGIN ENCRYPTED PRIVATE KEY-----`` PEM."""
    body = binascii.b2a_base64(der, newline=False).decode("ascii")
    lines = [body[i : i + _PEM_LINE] for i in range(0, len(body), _PEM_LINE)]
    return ("\n".join([_PEM_BEGIN, *lines, _PEM_END]) + "\n").encode("ascii")


def encrypt_pem(private_key_info: bytes, passphrase: bytes, *, cost: ScryptCost | None = None) -> bytes:
    """:func:`encrypt`, then :func:`pem_encode`: the bytes of a key file."""
    return pem_encode(encrypt(private_key_info, passphrase, cost=cost))


# --- reading ---------------------------------------------------------------------------------------


def pem_decode(data: bytes, *, source: str) -> bytes:
    """The DER inside a key file holding exactly one ``ENCRYPTED PRIVATE KEY`` PEM block."""
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError as exc:
        raise KeyFileCorruptError(f"key file {source} is not PEM text") from exc
    lines = text.replace("\r\n", "\n").strip("\n").split("\n")
    if len(lines) < 3 or lines[0] != _PEM_BEGIN or lines[-1] != _PEM_END:
        raise KeyFileCorruptError(f"key file {source} is not one '{PEM_LABEL}' PEM block")
    try:
        der = binascii.a2b_base64("".join(lines[1:-1]), strict_mode=True)
    except binascii.Error as exc:
        raise KeyFileCorruptError(f"key file {source} has damaged base64 in its PEM block") from exc
    return der


def _expect(element: _der.Tlv, tag: int, what: str) -> bytes:
    if element.tag != tag:
        raise _der.DerError(f"{what}: unexpected tag 0x{element.tag:02x}")
    return element.content


def _algorithm(element: _der.Tlv, what: str) -> tuple[str, list[_der.Tlv]]:
    """An AlgorithmIdentifier: its OID and the elements after it."""
    _expect(element, _der.SEQUENCE, what)
    children = _der.parse_sequence(element.raw)
    if not children:
        raise _der.DerError(f"{what}: empty AlgorithmIdentifier")
    return _der.decode_oid(children[0]), children[1:]


def pbes2_kdf_oid(der: bytes) -> str | None:
    """The key-derivation OID of a PBES2 ``EncryptedPrivateKeyInfo``, or None if not that form."""
    try:
        outer = _der.parse_sequence(der)
        oid, params = _algorithm(outer[0], "encryptionAlgorithm")
        if oid != PBES2_OID or len(params) != 1:
            return None
        kdf = _der.parse_sequence(params[0].raw)
        return _algorithm(kdf[0], "keyDerivationFunc")[0]
    except (_der.DerError, IndexError):
        return None


def _one_parameter(element: _der.Tlv, oid: str, what: str) -> _der.Tlv:
    """The single parameters element of an AlgorithmIdentifier that must have ``oid``."""
    found, params = _algorithm(element, what)
    if found != oid:
        raise ValueError(f"{what} {found} is not the expected {oid}")
    if len(params) != 1:
        raise _der.DerError(f"{what} {oid} needs exactly one parameters element")
    return params[0]


def _parse_envelope(der: bytes, limits: Limits, min_salt_bytes: int) -> ScryptEnvelope:
    outer = _der.parse_sequence(der)
    if len(outer) != 2:
        raise _der.DerError("EncryptedPrivateKeyInfo must have two elements")
    pbes2 = _der.parse_sequence(_one_parameter(outer[0], PBES2_OID, "encryption algorithm (PBES2)").raw)
    if len(pbes2) != 2:
        raise _der.DerError("PBES2-params must have two elements")
    scrypt = _der.parse_sequence(_one_parameter(pbes2[0], SCRYPT_OID, "key derivation (scrypt)").raw)
    if len(scrypt) not in (4, 5):
        raise _der.DerError("scrypt-params must have four or five elements")
    salt = _expect(scrypt[0], _der.OCTET_STRING, "scrypt salt")
    n, r, p = (_der.decode_integer(element) for element in scrypt[1:4])
    if len(scrypt) == 5 and _der.decode_integer(scrypt[4]) != _KEY_BYTES:
        raise ValueError(f"scrypt key length is not {_KEY_BYTES} (AES-256)")
    iv = _expect(_one_parameter(pbes2[1], AES256_CBC_OID, "cipher (AES-256-CBC)"), _der.OCTET_STRING, "IV")
    ciphertext = _expect(outer[1], _der.OCTET_STRING, "encryptedData")
    if len(salt) < min_salt_bytes:
        raise ValueError(f"scrypt salt of {len(salt)} bytes is shorter than {min_salt_bytes}")
    cost = ScryptCost(n=n, r=r, p=p)
    _check_cost(cost)
    if cost.memory_bytes > limits.max_scrypt_memory_bytes:
        raise ValueError(
            f"scrypt parameters need {cost.memory_bytes} bytes of memory, above the limit of "
            f"{limits.max_scrypt_memory_bytes}"
        )
    if len(iv) != _BLOCK_BYTES:
        raise ValueError(f"AES-CBC IV of {len(iv)} bytes, expected {_BLOCK_BYTES}")
    if not ciphertext or len(ciphertext) % _BLOCK_BYTES:
        raise ValueError(f"encrypted data of {len(ciphertext)} bytes is not a whole number of AES blocks")
    return ScryptEnvelope(salt=salt, cost=cost, iv=iv, ciphertext=ciphertext)


def parse_envelope(
    der: bytes, *, source: str, limits: Limits = DEFAULT_LIMITS, min_salt_bytes: int = MIN_SALT_BYTES
) -> ScryptEnvelope:
    """Check the outer structure of an ``EncryptedPrivateKeyInfo`` (no key derivation yet).

    Raises :class:`~trustroot.errors.KeyFileCorruptError` naming ``source`` and the fault.
    ``min_salt_bytes`` may be lowered to :data:`OPENSSL_MIN_SALT_BYTES` for a team's own files
    written by OpenSSL, never for the store's key files.
    """
    try:
        return _parse_envelope(der, limits, min_salt_bytes)
    except _der.DerError as exc:
        raise KeyFileCorruptError(f"key file {source} is not an encrypted PKCS#8 key: {exc}") from exc
    except ValueError as exc:
        raise KeyFileCorruptError(f"key file {source} is refused: {exc}") from exc


def check_private_key_info(der: bytes) -> str:
    """Check the outline of a DER ``PrivateKeyInfo`` (RFC 5208 / 5958); return its algorithm OID.

    Raises :class:`trustroot._der.DerError` when ``der`` is not one.
    """
    children = _der.parse_sequence(der)
    if len(children) < 3 or _der.decode_integer(children[0]) not in (0, 1):
        raise _der.DerError("not a PrivateKeyInfo")
    algorithm, _ = _algorithm(children[1], "privateKeyAlgorithm")
    _expect(children[2], _der.OCTET_STRING, "privateKey")
    return algorithm


def decrypt(envelope: ScryptEnvelope, passphrase: bytes, *, source: str) -> bytes:
    """Derive the key, decrypt and unpad; return the clear DER ``PrivateKeyInfo``.

    Every failure (wrong passphrase, bad padding, a plaintext that is not a ``PrivateKeyInfo``)
    is the same :func:`unlock_failure` error.
    """
    try:
        key = _kdf(passphrase, envelope.salt, envelope.cost)
    except (ValueError, MemoryError) as exc:  # parameters were checked; this is the library's own limit
        raise KeyFileCorruptError(f"key file {source}: scrypt refused its parameters ({exc})") from exc
    decryptor = Cipher(algorithms.AES256(key), modes.CBC(envelope.iv)).decryptor()
    padded = decryptor.update(envelope.ciphertext) + decryptor.finalize()
    try:
        unpadder = padding.PKCS7(_BLOCK_BYTES * 8).unpadder()
        plain = unpadder.update(padded) + unpadder.finalize()
        check_private_key_info(plain)
    except (ValueError, IndexError):  # bad padding, or DerError (a ValueError): one answer for all
        raise unlock_failure(source) from None
    return plain


def decrypt_pem(
    data: bytes,
    passphrase: bytes,
    *,
    source: str,
    limits: Limits = DEFAULT_LIMITS,
    min_salt_bytes: int = MIN_SALT_BYTES,
) -> bytes:
    """:func:`pem_decode`, :func:`parse_envelope`, then :func:`decrypt`: a key file to clear PKCS#8 DER."""
    envelope = parse_envelope(
        pem_decode(data, source=source), source=source, limits=limits, min_salt_bytes=min_salt_bytes
    )
    return decrypt(envelope, passphrase, source=source)


# --- HMAC secrets as PrivateKeyInfo ----------------------------------------------------------------


def encode_hmac_private_key_info(secret: bytes) -> bytes:
    """A ``PrivateKeyInfo`` carrying a 32-byte HMAC-SHA256 secret."""
    if len(secret) != _SECRET_BYTES:
        raise ValueError(f"an HMAC-SHA256 secret is {_SECRET_BYTES} bytes, not {len(secret)}")
    return _der.sequence(
        _der.integer(0),
        _der.sequence(_der.oid(HMAC_SHA256_OID), _der.null()),
        _der.octet_string(secret),
    )


def decode_hmac_private_key_info(der: bytes) -> bytes:
    """The 32-byte secret of an hmacWithSHA256 ``PrivateKeyInfo``; :class:`_der.DerError` otherwise."""
    children = _der.parse_sequence(der)
    if len(children) != 3 or _der.decode_integer(children[0]) != 0:
        raise _der.DerError("not a version 0 PrivateKeyInfo with three elements")
    algorithm, params = _algorithm(children[1], "privateKeyAlgorithm")
    if algorithm != HMAC_SHA256_OID:
        raise _der.DerError(f"algorithm {algorithm} is not hmacWithSHA256")
    if len(params) != 1 or params[0].tag != _der.NULL or params[0].content:
        raise _der.DerError("hmacWithSHA256 parameters must be NULL")
    secret = _expect(children[2], _der.OCTET_STRING, "privateKey")
    if len(secret) != _SECRET_BYTES:
        raise _der.DerError(f"HMAC secret of {len(secret)} bytes, expected {_SECRET_BYTES}")
    return secret
