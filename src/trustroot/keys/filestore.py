"""The encrypted-file key backend: one scrypt-encrypted PKCS#8 file per key.

Each key is ``<directory>/<name>.key.pem``, an ``ENCRYPTED PRIVATE KEY`` PEM (PBES2 = scrypt +
AES-256-CBC, :mod:`trustroot.keys._pkcs8`), mode 0600, written atomically and never over an
existing file. Private key material is never written in clear (EN 303 645 provision 5.4-1).

Passphrases come from the injected :data:`~trustroot.keys.passphrase.SecretSource`: domain
``"store"`` for ordinary keys, ``"root"`` for the offline root's own. A new key file asks with
``confirm=True`` (a typo then would lose the key for good), an unlock with ``confirm=False``.

Unlocking reads and checks the file's outer structure first (so a damaged file is reported as
:class:`~trustroot.errors.KeyFileCorruptError` before anyone is asked for a passphrase), then
asks, derives and decrypts; every failure from there on is the one
:class:`~trustroot.errors.WrongSecretError` "the passphrase does not unlock key file X". A file
that unlocks but holds another key than the index records (another algorithm or fingerprint) is
:class:`~trustroot.errors.KeyFileCorruptError`.

:func:`load_pem_private_key_file` turns a PEM private key a team already has (an imgtool key,
encrypted under its own password or not) into PKCS#8 DER for :meth:`FileBackend.import_key`.
"""

from __future__ import annotations

import hmac
import secrets as _secrets
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa, utils, x25519
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from trustroot._fsutil import atomic_write
from trustroot.errors import (
    KeyExistsError,
    KeyFileCorruptError,
    KeyNotExtractableError,
    KeyStateError,
    KeyStoreError,
    UnreadableInputError,
    UsageError,
    WrongSecretError,
)
from trustroot.keys import _pkcs8
from trustroot.keys._interface import (
    Algorithm,
    BackendName,
    KeyInfo,
    KeyRole,
    KeyStatus,
    public_key_fingerprint,
)
from trustroot.keys.passphrase import SecretSource
from trustroot.keys.store import secret_fingerprint, validate_key_name
from trustroot.limits import DEFAULT_LIMITS, Limits, ScryptCost

__all__ = [
    "KEY_FILE_SUFFIX",
    "FileBackend",
    "FileKeyHandle",
    "PrivateKey",
    "load_pem_private_key_file",
]

#: Every key file is ``<name>`` + this suffix.
KEY_FILE_SUFFIX = ".key.pem"
_KEY_FILE_MODE = 0o600
_DIRECTORY_MODE = 0o700
_SECRET_BYTES = 32
_RSA_BITS = 3072
_RSA_EXPONENT = 65537
_PSS_SALT_BYTES = 32

#: The private key objects this backend holds (an HMAC secret is plain ``bytes``).
PrivateKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey | x25519.X25519PrivateKey
_Material = PrivateKey | bytes

_CURVES: dict[Algorithm, type[ec.EllipticCurve]] = {
    Algorithm.ECDSA_P256: ec.SECP256R1,
    Algorithm.ECIES_P256: ec.SECP256R1,
    Algorithm.ECDSA_P384: ec.SECP384R1,
}
_ECDSA_HASH: dict[Algorithm, type[hashes.SHA256 | hashes.SHA384]] = {
    Algorithm.ECDSA_P256: hashes.SHA256,
    Algorithm.ECDSA_P384: hashes.SHA384,
}


def _generate(algorithm: Algorithm) -> _Material:
    if algorithm in _CURVES:
        return ec.generate_private_key(_CURVES[algorithm]())
    if algorithm is Algorithm.ED25519:
        return ed25519.Ed25519PrivateKey.generate()
    if algorithm is Algorithm.RSA_3072:
        return rsa.generate_private_key(public_exponent=_RSA_EXPONENT, key_size=_RSA_BITS)
    if algorithm is Algorithm.ECIES_X25519:
        return x25519.X25519PrivateKey.generate()
    if algorithm is Algorithm.HMAC_SHA256:
        return _secrets.token_bytes(_SECRET_BYTES)
    raise UsageError(f"the file backend cannot make {algorithm!r} keys")  # pragma: no cover - every Algorithm


def _describe(material: object) -> str:
    """What a key object is, in the words of an error message."""
    if isinstance(material, bytes):
        return f"a {len(material)}-byte secret"
    if isinstance(material, ec.EllipticCurvePrivateKey):
        return f"an EC key on {material.curve.name}"
    if isinstance(material, rsa.RSAPrivateKey):
        return f"an RSA-{material.key_size} key"
    if isinstance(material, ed25519.Ed25519PrivateKey):
        return "an Ed25519 key"
    if isinstance(material, x25519.X25519PrivateKey):
        return "an X25519 key"
    return f"a key of type {type(material).__name__.removeprefix('_')}"


def _checked(material: object, algorithm: Algorithm) -> _Material | None:
    """``material`` if it is a key of ``algorithm``, else None."""
    if algorithm in _CURVES:
        if isinstance(material, ec.EllipticCurvePrivateKey) and isinstance(material.curve, _CURVES[algorithm]):
            return material
    elif algorithm is Algorithm.ED25519:
        if isinstance(material, ed25519.Ed25519PrivateKey):
            return material
    elif algorithm is Algorithm.RSA_3072:
        if isinstance(material, rsa.RSAPrivateKey) and material.key_size == _RSA_BITS:
            return material
    elif algorithm is Algorithm.ECIES_X25519:
        if isinstance(material, x25519.X25519PrivateKey):
            return material
    elif algorithm is Algorithm.HMAC_SHA256 and isinstance(material, bytes) and len(material) == _SECRET_BYTES:
        return material
    return None


def _to_pkcs8(material: _Material) -> bytes:
    if isinstance(material, bytes):
        return _pkcs8.encode_hmac_private_key_info(material)
    return material.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _from_pkcs8(der: bytes) -> object:
    """The key object of a DER ``PrivateKeyInfo`` (an HMAC secret as bytes).

    Raises ``ValueError`` (incl. ``DerError``), ``TypeError`` or ``UnsupportedAlgorithm``.
    """
    if _pkcs8.check_private_key_info(der) == _pkcs8.HMAC_SHA256_OID:
        return _pkcs8.decode_hmac_private_key_info(der)
    return serialization.load_der_private_key(der, password=None)


def _public_parts(material: _Material) -> tuple[str, str]:
    """(fingerprint, public PEM) of a key; for a secret, its key id and no PEM."""
    if isinstance(material, bytes):
        return secret_fingerprint(material), ""
    public = material.public_key()
    pem = public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return public_key_fingerprint(public), pem.decode("ascii")


class FileKeyHandle:
    """An unlocked file key: it can be used, never read (the :class:`KeyHandle` protocol).

    Type rules: only signing algorithms sign, only ``hmac-sha256`` MACs, only the ``ecies-*``
    keys exchange. State rules (from ``info`` at unlock time): a RETIRED key no longer signs, a
    REVOKED key does nothing with its private part. Both raise
    :class:`~trustroot.errors.KeyStateError` naming the key and the operation.
    """

    def __init__(self, info: KeyInfo, material: _Material) -> None:
        self._info = info
        self._material = material

    def __repr__(self) -> str:
        return f"FileKeyHandle({self._info.name!r}, {self._info.algorithm.value})"

    @property
    def info(self) -> KeyInfo:
        return self._info

    def _refuse(self, operation: str, why: str) -> KeyStateError:
        return KeyStateError(f"key '{self._info.name}' ({self._info.algorithm.value}) cannot {operation}: {why}")

    def _check_state(self, operation: str, *, signing: bool) -> None:
        status = self._info.status
        if status is KeyStatus.REVOKED or (signing and status is KeyStatus.RETIRED):
            raise self._refuse(operation, f"it is {status.value}")

    def public_key(self) -> PublicKeyTypes:
        if isinstance(self._material, bytes):
            raise self._refuse("give a public key", "it is a secret key")
        return self._material.public_key()

    def sign(self, data: bytes) -> bytes:
        material = self._material
        if not self._info.algorithm.is_signing:
            raise self._refuse("sign", "it is not a signing key")
        self._check_state("sign", signing=True)
        if isinstance(material, ec.EllipticCurvePrivateKey):
            return material.sign(data, ec.ECDSA(_ECDSA_HASH[self._info.algorithm]()))
        if isinstance(material, rsa.RSAPrivateKey):
            return material.sign(data, _pss(), hashes.SHA256())
        if isinstance(material, ed25519.Ed25519PrivateKey):
            return material.sign(data)
        raise self._refuse("sign", "it is not a signing key")  # pragma: no cover - guarded above

    def sign_digest(self, digest: bytes) -> bytes:
        material = self._material
        if not self._info.algorithm.is_signing:
            raise self._refuse("sign a digest", "it is not a signing key")
        if self._info.algorithm is Algorithm.ED25519:
            raise self._refuse("sign a digest", "Ed25519 has no prehashed form here; use sign()")
        self._check_state("sign a digest", signing=True)
        hash_type = _ECDSA_HASH.get(self._info.algorithm, hashes.SHA256)
        if len(digest) != hash_type.digest_size:
            raise UsageError(
                f"key '{self._info.name}' signs {hash_type.name} digests of {hash_type.digest_size} bytes, "
                f"not {len(digest)} bytes"
            )
        prehashed = utils.Prehashed(hash_type())
        if isinstance(material, ec.EllipticCurvePrivateKey):
            return material.sign(digest, ec.ECDSA(prehashed))
        if isinstance(material, rsa.RSAPrivateKey):
            return material.sign(digest, _pss(), prehashed)
        raise self._refuse("sign a digest", "it is not a signing key")  # pragma: no cover - guarded above

    def mac(self, data: bytes) -> bytes:
        if not isinstance(self._material, bytes):
            raise self._refuse("compute a MAC", "it is not an hmac-sha256 secret")
        self._check_state("compute a MAC", signing=False)
        return hmac.digest(self._material, data, "sha256")

    def exchange(self, peer_public: PublicKeyTypes) -> bytes:
        material = self._material
        if not self._info.algorithm.is_agreement:
            raise self._refuse("do a key exchange", "it is not an ecies-p256 or ecies-x25519 key")
        self._check_state("do a key exchange", signing=False)
        if isinstance(material, x25519.X25519PrivateKey):
            if not isinstance(peer_public, x25519.X25519PublicKey):
                raise UsageError(f"key '{self._info.name}' (ecies-x25519) needs an X25519 peer public key")
            try:
                return material.exchange(peer_public)
            except ValueError as exc:  # an all-zero result: a small-order peer point
                raise UsageError(f"the X25519 peer public key for key '{self._info.name}' is invalid") from exc
        if isinstance(material, ec.EllipticCurvePrivateKey):
            if not isinstance(peer_public, ec.EllipticCurvePublicKey) or not isinstance(
                peer_public.curve, ec.SECP256R1
            ):
                raise UsageError(f"key '{self._info.name}' (ecies-p256) needs a P-256 peer public key")
            return material.exchange(ec.ECDH(), peer_public)
        raise self._refuse("do a key exchange", "it is not an agreement key")  # pragma: no cover


def _pss() -> padding.PSS:
    return padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=_PSS_SALT_BYTES)


def _now() -> datetime:
    return datetime.now(UTC)


class FileBackend:
    """Keys as scrypt-encrypted PKCS#8 files in ``directory`` (the :class:`KeyBackend` protocol).

    ``cost`` overrides the scrypt cost of new files (default :func:`trustroot.limits.scrypt_cost`);
    ``limits`` bounds what is accepted on reading; ``clock`` gives creation times (UTC).
    """

    name: BackendName = "file"

    def __init__(
        self,
        directory: Path,
        secrets: SecretSource,
        *,
        cost: ScryptCost | None = None,
        limits: Limits = DEFAULT_LIMITS,
        clock: Callable[[], datetime] = _now,
    ) -> None:
        self.directory = Path(directory)
        self._secrets = secrets
        self._cost = cost
        self._limits = limits
        self._clock = clock

    def __repr__(self) -> str:
        return f"FileBackend({str(self.directory)!r})"

    def key_path(self, name: str) -> Path:
        """Where key ``name`` lives (the name is checked, so the path stays inside the directory)."""
        return self.directory / f"{validate_key_name(name)}{KEY_FILE_SUFFIX}"

    # --- the KeyBackend protocol -----------------------------------------------------------------

    def generate(self, name: str, role: KeyRole, algorithm: Algorithm, *, domain: Literal["store", "root"]) -> KeyInfo:
        path = self._free_path(name)
        return self._store(
            path,
            name=name,
            role=role,
            algorithm=Algorithm(algorithm),
            material=_generate(algorithm),
            domain=domain,
        )

    def import_key(
        self,
        name: str,
        role: KeyRole,
        algorithm: Algorithm,
        material: bytes,
        *,
        domain: Literal["store", "root"],
    ) -> KeyInfo:
        algorithm = Algorithm(algorithm)
        path = self._free_path(name)
        key: object
        if algorithm is Algorithm.HMAC_SHA256 and len(material) == _SECRET_BYTES:
            key = bytes(material)
        else:
            try:
                key = _from_pkcs8(bytes(material))
            except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
                raise KeyStoreError(
                    f"the key material offered for key '{name}' is not PKCS#8 DER of a private key"
                    + (" (or 32 raw bytes of a secret)" if algorithm is Algorithm.HMAC_SHA256 else "")
                ) from exc
        checked = _checked(key, algorithm)
        if checked is None:
            raise KeyStoreError(
                f"the key material offered for key '{name}' as {algorithm.value} is {_describe(key)}",
                hint=f"import a key of algorithm {algorithm.value}, or choose the algorithm that matches it",
            )
        return self._store(path, name=name, role=role, algorithm=algorithm, material=checked, domain=domain)

    def unlock(self, info: KeyInfo) -> FileKeyHandle:
        return FileKeyHandle(info, self._open(info))

    def export_private_der(self, info: KeyInfo) -> bytes:
        if not info.extractable:
            raise KeyNotExtractableError(f"key '{info.name}' is marked non-extractable; its export is refused")
        return _to_pkcs8(self._open(info))

    def destroy(self, info: KeyInfo) -> None:
        path = self.key_path(info.name)
        try:
            path.unlink()
        except FileNotFoundError:
            return

    # --- inside ----------------------------------------------------------------------------------

    def _free_path(self, name: str) -> Path:
        path = self.key_path(name)
        if path.exists():
            raise KeyExistsError(f"key file {path} exists already; keys are never replaced")
        return path

    def _passphrase(self, domain: Literal["store", "root"], *, confirm: bool) -> bytes:
        if domain not in ("store", "root"):
            raise UsageError(f"unknown passphrase domain {domain!r}: use 'store' or 'root'")
        return self._secrets(domain, confirm).encode("utf-8")

    def _store(
        self,
        path: Path,
        *,
        name: str,
        role: KeyRole,
        algorithm: Algorithm,
        material: _Material,
        domain: Literal["store", "root"],
    ) -> KeyInfo:
        passphrase = self._passphrase(domain, confirm=True)
        data = _pkcs8.encrypt_pem(_to_pkcs8(material), passphrase, cost=self._cost)
        fingerprint, public_pem = _public_parts(material)
        self.directory.mkdir(mode=_DIRECTORY_MODE, parents=True, exist_ok=True)
        try:
            atomic_write(path, data, mode=_KEY_FILE_MODE, exclusive=True)
        except FileExistsError as exc:
            raise KeyExistsError(f"key file {path} exists already; keys are never replaced") from exc
        return KeyInfo(
            name=name,
            role=KeyRole(role),
            algorithm=algorithm,
            backend=self.name,
            created=self._clock(),
            fingerprint=fingerprint,
            public_pem=public_pem,
            passphrase_domain=domain,
            extractable=True,
        )

    def _read(self, path: Path) -> bytes:
        limit = self._limits.max_key_file_bytes
        try:
            with path.open("rb") as handle:
                data = handle.read(limit + 1)
        except FileNotFoundError as exc:
            raise KeyFileCorruptError(f"key file {path} is missing") from exc
        except OSError as exc:
            raise UnreadableInputError(f"key file {path}: cannot be read ({exc.strerror})") from exc
        if len(data) > limit:
            raise KeyFileCorruptError(f"key file {path} is larger than the limit of {limit} bytes")
        return data

    def _open(self, info: KeyInfo) -> _Material:
        if info.backend != self.name:
            raise UsageError(f"key '{info.name}' lives in the {info.backend} backend, not in key files")
        path = self.key_path(info.name)
        source = str(path)
        envelope = _pkcs8.parse_envelope(
            _pkcs8.pem_decode(self._read(path), source=source), source=source, limits=self._limits
        )
        plain = _pkcs8.decrypt(envelope, self._passphrase(info.passphrase_domain, confirm=False), source=source)
        try:
            material = _from_pkcs8(plain)
        except (ValueError, TypeError, UnsupportedAlgorithm):
            raise _pkcs8.unlock_failure(source) from None
        checked = _checked(material, info.algorithm)
        if checked is None:
            raise KeyFileCorruptError(
                f"key file {path} holds {_describe(material)}, but the index records {info.algorithm.value}"
            )
        if info.fingerprint and not hmac.compare_digest(_public_parts(checked)[0], info.fingerprint):
            raise KeyFileCorruptError(
                f"key file {path} holds another key than the index records for '{info.name}' (the fingerprint differs)"
            )
        return checked


# --- a team's existing keys ------------------------------------------------------------------------


def load_pem_private_key_file(
    path: Path, password: str | bytes | None = None, *, limits: Limits = DEFAULT_LIMITS
) -> bytes:
    """Read a PEM private key a team already has and return it as clear PKCS#8 DER for import.

    Accepts PKCS#8 (clear, or encrypted with PBES2 scrypt or PBKDF2) and the traditional
    ``EC``/``RSA PRIVATE KEY`` forms, encrypted under their own ``password`` or not (imgtool and
    OpenSSL keys). scrypt-encrypted files go through trustroot's own decoder, so their cost is
    bounded by ``limits``; OpenSSL's 8-byte scrypt salts are accepted for such foreign files.
    A wrong or missing password is :class:`~trustroot.errors.WrongSecretError`, anything that is
    not a private key of an algorithm trustroot uses is :class:`~trustroot.errors.KeyFileCorruptError`.
    """
    source = str(path)
    data = _read_foreign(Path(path), limits)
    secret = password.encode("utf-8") if isinstance(password, str) else password
    block = _pem_block(data, _pkcs8.PEM_LABEL)
    if block is not None:
        if secret is None:
            raise WrongSecretError(f"key file {path} is encrypted: its password is needed")
        der = _pkcs8.pem_decode(block, source=source)
        if _pkcs8.pbes2_kdf_oid(der) == _pkcs8.SCRYPT_OID:
            envelope = _pkcs8.parse_envelope(
                der, source=source, limits=limits, min_salt_bytes=_pkcs8.OPENSSL_MIN_SALT_BYTES
            )
            plain = _pkcs8.decrypt(envelope, secret, source=source)
            try:
                key = _from_pkcs8(plain)
            except (ValueError, TypeError, UnsupportedAlgorithm):
                raise _pkcs8.unlock_failure(source) from None
            return _foreign_to_pkcs8(key, path)
    return _foreign_to_pkcs8(_load_pem(data, secret, path), path)


def _read_foreign(path: Path, limits: Limits) -> bytes:
    try:
        with path.open("rb") as handle:
            data = handle.read(limits.max_key_file_bytes + 1)
    except OSError as exc:
        raise UnreadableInputError(f"key file {path}: cannot be read ({exc.strerror})") from exc
    if len(data) > limits.max_key_file_bytes:
        raise UnreadableInputError(f"key file {path}: larger than the limit of {limits.max_key_file_bytes} bytes")
    return data


def _pem_block(data: bytes, label: str) -> bytes | None:
    """The first PEM block of ``label`` in ``data`` (BEGIN to END line), or None."""
    begin, end = f"-----BEGIN {label}-----".encode(), f"-----END {label}-----".encode()
    start = data.find(begin)
    stop = data.find(end, start + len(begin)) if start >= 0 else -1
    if start < 0 or stop < 0:
        return None
    return data[start : stop + len(end)]


def _load_pem(data: bytes, secret: bytes | None, path: Path) -> object:
    encrypted = b"ENCRYPTED" in data
    try:
        return serialization.load_pem_private_key(data, password=secret if encrypted else None)
    except TypeError as exc:  # encrypted and no password
        raise WrongSecretError(f"key file {path} is encrypted: its password is needed") from exc
    except (ValueError, UnsupportedAlgorithm) as exc:
        if encrypted:
            raise WrongSecretError(f"the password does not unlock key file {path}") from exc
        raise KeyFileCorruptError(f"{path} is not a PEM private key this toolkit can use") from exc


def _foreign_to_pkcs8(key: object, path: Path) -> bytes:
    for algorithm in (
        Algorithm.ECDSA_P256,
        Algorithm.ECDSA_P384,
        Algorithm.ED25519,
        Algorithm.RSA_3072,
        Algorithm.ECIES_X25519,
    ):
        checked = _checked(key, algorithm)
        if checked is not None:
            return _to_pkcs8(checked)
    raise KeyFileCorruptError(f"{path} holds {_describe(key)}, which trustroot does not use")
