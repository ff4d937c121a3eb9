"""The key store: one front object over the key backends, with the key index.

:class:`KeyStore` keeps ``<directory>/index.json`` (format ``trustroot.keyindex/1``): one
:class:`~trustroot.keys._interface.KeyInfo` record per key ever made, never the key material.
Every change re-reads the index under an exclusive lock (``<directory>/.lock``) and writes it
atomically, so concurrent processes cannot lose each other's updates and a crash leaves the old
or the new index, never half of one.

Rules kept here, not in the backends:

- a role other than ``other`` and ``declarer`` (one key per person) has at most one ACTIVE key; a
  new generation comes only from :meth:`KeyStore.rotate` (the old key becomes RETIRED: it still
  verifies, it never signs);
- ``ecies-x25519`` keys always live in the file backend (SoftHSM2 has no X25519);
- a key is unlocked at most once per process: handles are cached by (directory, name), so a
  passphrase or PIN is asked once; a key revoked or retired in this process stops signing at once
  through every handle already given out (a change made by another process takes effect here at
  the next :meth:`KeyStore.unlock` of that key). A REVOKED key is never unlocked.

Errors (all :class:`~trustroot.errors.KeyStoreError`)::

    KeyStoreError             itself: key material that is not of the algorithm named, or a
    │                         backend that is not configured
    ├── KeyNotFoundError      no key of that name, or no active key for the role
    ├── KeyExistsError        the name is taken, or the role already has an active key
    ├── KeyFileCorruptError   the index (or a key file) is damaged
    ├── KeyStateError         the key's state or type forbids the operation
    └── InvalidSignature      (errors.py) :func:`verify_signature` refused a signature
"""

from __future__ import annotations

import builtins
import contextlib
import dataclasses
import hashlib
import hmac
import json
import re
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, cast

from cryptography.exceptions import InvalidSignature as _CryptoInvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from trustroot._fsutil import atomic_write, exclusive_lock
from trustroot.errors import (
    InvalidSignature,
    KeyExistsError,
    KeyFileCorruptError,
    KeyNotFoundError,
    KeyStateError,
    KeyStoreError,
    TrustrootError,
    UnreadableInputError,
    UsageError,
)
from trustroot.keys._interface import (
    Algorithm,
    BackendName,
    KeyBackend,
    KeyHandle,
    KeyInfo,
    KeyRole,
    KeyStatus,
)

__all__ = [
    "INDEX_FORMAT",
    "KEY_ID_LABEL",
    "KEY_NAME_PATTERN",
    "InvalidSignature",
    "KeyStore",
    "forget_unlocked_keys",
    "key_info_from_json",
    "key_info_to_json",
    "secret_fingerprint",
    "validate_key_name",
    "verify_signature",
]

#: The ``format`` of ``index.json`` this code reads and writes; any other is refused.
INDEX_FORMAT = "trustroot.keyindex/1"
#: The label whose HMAC-SHA256 under a secret, hashed with SHA-256, is the secret's fingerprint.
KEY_ID_LABEL = b"trustroot/key-id/v1"
#: Every key name: lower-case letters, digits, ``.``, ``_``, ``-``; at most 64 characters.
KEY_NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")

_INDEX_FILE = "index.json"
_LOCK_FILE = ".lock"
_INDEX_MODE = 0o600
_DIRECTORY_MODE = 0o700
#: Upper bound on ``index.json`` (public keys only: thousands of keys fit in far less).
_MAX_INDEX_BYTES = 16 << 20
_PSS_SALT_BYTES = 32

_LABEL_REPLACES = "replaces"
_LABEL_REPLACED_BY = "replaced_by"
_LABEL_REVOCATION_REASON = "revocation_reason"
_LABEL_REVOKED_AT = "revoked_at"


def validate_key_name(name: str) -> str:
    """Return ``name`` if it is a valid key name (:data:`KEY_NAME_PATTERN`), else raise ``UsageError``."""
    if KEY_NAME_PATTERN.fullmatch(name) is None:
        raise UsageError(
            f"key name {name!r} is not allowed: use 1 to 64 of a-z, 0-9, '.', '_', '-', starting with a letter or digit"
        )
    return name


def secret_fingerprint(secret: bytes) -> str:
    """The fingerprint (key id) of an HMAC secret: SHA-256 hex of HMAC-SHA256(secret, KEY_ID_LABEL)."""
    return hashlib.sha256(hmac.digest(secret, KEY_ID_LABEL, "sha256")).hexdigest()


# --- signatures ------------------------------------------------------------------------------------


def verify_signature(public_key: PublicKeyTypes, algorithm: Algorithm, data: bytes, signature: bytes) -> None:
    """Verify ``signature`` over ``data`` by the convention of ``algorithm``; raise :class:`InvalidSignature`.

    The conventions are those of ``KeyHandle.sign`` (ECDSA DER over SHA-256/384, pure Ed25519,
    RSA-PSS SHA-256 salt 32). A public key that does not fit ``algorithm`` is refused the same way.
    """
    algorithm = Algorithm(algorithm)
    try:
        if algorithm in (Algorithm.ECDSA_P256, Algorithm.ECDSA_P384):
            curve, digest = (
                (ec.SECP256R1, hashes.SHA256())
                if algorithm is Algorithm.ECDSA_P256
                else (ec.SECP384R1, hashes.SHA384())
            )
            if isinstance(public_key, ec.EllipticCurvePublicKey) and isinstance(public_key.curve, curve):
                public_key.verify(signature, data, ec.ECDSA(digest))
                return
        elif algorithm is Algorithm.ED25519:
            if isinstance(public_key, ed25519.Ed25519PublicKey):
                public_key.verify(signature, data)
                return
        elif algorithm is Algorithm.RSA_3072:
            if isinstance(public_key, rsa.RSAPublicKey) and public_key.key_size == 3072:
                pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=_PSS_SALT_BYTES)
                public_key.verify(signature, data, pss, hashes.SHA256())
                return
        else:
            raise InvalidSignature(f"{algorithm.value} is not a signature algorithm")
    except _CryptoInvalidSignature as exc:
        raise InvalidSignature(f"the {algorithm.value} signature does not verify") from exc
    raise InvalidSignature(f"the public key is not an {algorithm.value} key")


# --- the index -------------------------------------------------------------------------------------

_FIELDS = (
    "name",
    "role",
    "algorithm",
    "backend",
    "created",
    "status",
    "generation",
    "passphrase_domain",
    "extractable",
    "fingerprint",
    "public_pem",
    "labels",
)


def key_info_to_json(info: KeyInfo) -> dict[str, Any]:
    """A JSON-ready record of ``info`` (enums as their values, ``created`` as ISO 8601 UTC)."""
    if info.created.tzinfo is None:
        raise UsageError(f"key '{info.name}': creation time must be timezone-aware")
    return {
        "name": info.name,
        "role": info.role.value,
        "algorithm": info.algorithm.value,
        "backend": info.backend,
        "created": info.created.astimezone(UTC).isoformat(),
        "status": info.status.value,
        "generation": info.generation,
        "passphrase_domain": info.passphrase_domain,
        "extractable": info.extractable,
        "fingerprint": info.fingerprint,
        "public_pem": info.public_pem,
        "labels": dict(sorted(info.labels.items())),
    }


def _field(record: Mapping[str, Any], key: str, kind: type[Any]) -> Any:
    value = record[key]
    if type(value) is not kind:  # exact: a bool is not an int here, an int is not a str
        raise ValueError(f"field {key!r} must be a {kind.__name__}")
    return value


def key_info_from_json(record: object) -> KeyInfo:
    """The :class:`KeyInfo` of a record written by :func:`key_info_to_json`; ``ValueError`` if malformed."""
    if not isinstance(record, dict):
        raise ValueError("a key record must be an object")  # noqa: TRY004 - one error type for the caller
    if set(record) != set(_FIELDS):
        missing, extra = set(_FIELDS) - set(record), set(record) - set(_FIELDS)
        raise ValueError(f"key record fields differ (missing {sorted(missing)}, unknown {sorted(extra)})")
    name = _field(record, "name", str)
    if KEY_NAME_PATTERN.fullmatch(name) is None:
        raise ValueError(f"invalid key name {name!r}")
    backend = _field(record, "backend", str)
    if backend not in ("file", "pkcs11"):
        raise ValueError(f"unknown backend {backend!r}")
    domain = _field(record, "passphrase_domain", str)
    if domain not in ("store", "root"):
        raise ValueError(f"unknown passphrase domain {domain!r}")
    created = datetime.fromisoformat(_field(record, "created", str))
    if created.tzinfo is None:
        raise ValueError("creation time without a time zone")
    generation = _field(record, "generation", int)
    if generation < 1:
        raise ValueError("generation must be 1 or more")
    labels = _field(record, "labels", dict)
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in labels.items()):
        raise ValueError("labels must map strings to strings")
    return KeyInfo(
        name=name,
        role=KeyRole(_field(record, "role", str)),
        algorithm=Algorithm(_field(record, "algorithm", str)),
        backend=cast(BackendName, backend),
        created=created,
        status=KeyStatus(_field(record, "status", str)),
        fingerprint=_field(record, "fingerprint", str),
        public_pem=_field(record, "public_pem", str),
        passphrase_domain=cast(Literal["store", "root"], domain),
        extractable=_field(record, "extractable", bool),
        generation=generation,
        labels=dict(labels),
    )


# --- the process-wide handle cache ---------------------------------------------------------------


@dataclass
class _Unlocked:
    """One unlocked key of this process: the backend's handle and the key's latest metadata."""

    handle: KeyHandle
    info: KeyInfo


_UNLOCKED: dict[tuple[Path, str], _Unlocked] = {}
_UNLOCK_LOCK = threading.RLock()


def forget_unlocked_keys() -> None:
    """Drop every key handle this process holds (the next use asks for its secret again)."""
    with _UNLOCK_LOCK:
        _UNLOCKED.clear()


class _StoreHandle:
    """The handle :meth:`KeyStore.unlock` gives out: the backend's, with the store's state rules.

    It reads the key's status from the process-wide cache at every use, so a key revoked or
    retired in this process stops signing through every handle already given out.
    """

    def __init__(self, entry: _Unlocked) -> None:
        self._entry = entry

    def __repr__(self) -> str:
        return f"<key handle {self._entry.info.name!r} ({self._entry.info.algorithm.value})>"

    @property
    def info(self) -> KeyInfo:
        return self._entry.info

    def _check(self, operation: str, *, signing: bool) -> KeyHandle:
        info = self._entry.info
        if info.status is KeyStatus.REVOKED or (signing and info.status is not KeyStatus.ACTIVE):
            raise KeyStateError(
                f"key '{info.name}' ({info.algorithm.value}) cannot {operation}: it is {info.status.value}",
                hint="use the active key of the role" if info.status is KeyStatus.RETIRED else None,
            )
        return self._entry.handle

    def public_key(self) -> PublicKeyTypes:
        return self._entry.handle.public_key()

    def sign(self, data: bytes) -> bytes:
        return self._check("sign", signing=True).sign(data)

    def sign_digest(self, digest: bytes) -> bytes:
        return self._check("sign a digest", signing=True).sign_digest(digest)

    def mac(self, data: bytes) -> bytes:
        return self._check("compute a MAC", signing=False).mac(data)

    def exchange(self, peer_public: PublicKeyTypes) -> bytes:
        return self._check("do a key exchange", signing=False).exchange(peer_public)


def _check_domain(domain: str) -> None:
    if domain not in ("store", "root"):
        raise UsageError(f"unknown passphrase domain {domain!r}: use 'store' or 'root'")


def _utcnow() -> datetime:
    return datetime.now(UTC)


# --- the store -------------------------------------------------------------------------------------


class KeyStore:
    """The key store of one product: the index in ``directory`` and the backends that hold keys.

    ``backends`` maps each backend name to its backend; new keys go to ``default_backend`` unless
    a call names another (and ``ecies-x25519`` keys always go to ``"file"``).
    """

    def __init__(
        self,
        directory: Path,
        backends: Mapping[BackendName, KeyBackend],
        default_backend: BackendName,
        *,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        if default_backend not in backends:
            raise UsageError(f"default key backend {default_backend!r} is not among the backends given")
        for name, backend in backends.items():
            if backend.name != name:
                raise UsageError(f"backend registered as {name!r} calls itself {backend.name!r}")
        self.directory = Path(directory)
        self._backends = dict(backends)
        self._default = default_backend
        self._clock = clock

    def __repr__(self) -> str:
        return f"KeyStore({str(self.directory)!r}, default={self._default!r})"

    @property
    def index_path(self) -> Path:
        return self.directory / _INDEX_FILE

    # --- reading ---------------------------------------------------------------------------------

    def list(self) -> builtins.list[KeyInfo]:
        """Every key in the store, in the order they were made (no key is unlocked)."""
        return self._load()

    def get(self, name: str) -> KeyInfo:
        """The metadata of key ``name``; :class:`KeyNotFoundError` if there is none."""
        for info in self._load():
            if info.name == name:
                return info
        raise KeyNotFoundError(f"no key named '{name}' in the key store {self.directory}")

    def active(self, role: KeyRole) -> KeyInfo:
        """The active key of ``role`` (for ``other``, the newest active one)."""
        role = KeyRole(role)
        found = [info for info in self._load() if info.role is role and info.status is KeyStatus.ACTIVE]
        if not found:
            raise KeyNotFoundError(
                f"no active key for role '{role.value}' in the key store {self.directory}",
                hint=f"create one with: trustroot keys create {role.value}",
            )
        return max(found, key=lambda info: info.generation)

    def export_public_pem(self, name: str) -> bytes:
        """The PEM SubjectPublicKeyInfo of key ``name`` (:class:`KeyStateError` for a secret)."""
        info = self.get(name)
        if not info.public_pem:
            raise KeyStateError(f"key '{name}' ({info.algorithm.value}) is a secret: it has no public key")
        return info.public_pem.encode("ascii")

    def public_key(self, name: str) -> PublicKeyTypes:
        """The public key of key ``name``."""
        return serialization.load_pem_public_key(self.export_public_pem(name))

    def verify(self, name: str, data: bytes, signature: bytes) -> None:
        """Verify a signature made by key ``name`` (active or retired); raise :class:`InvalidSignature`.

        A REVOKED key verifies nothing: :class:`KeyStateError`.
        """
        info = self.get(name)
        if info.status is KeyStatus.REVOKED:
            raise KeyStateError(f"key '{name}' is revoked: signatures by it are no longer accepted")
        if not info.algorithm.is_signing:
            raise KeyStateError(f"key '{name}' ({info.algorithm.value}) is not a signing key")
        verify_signature(self.public_key(name), info.algorithm, data, signature)

    # --- using -----------------------------------------------------------------------------------

    def unlock(self, name_or_info: str | KeyInfo) -> KeyHandle:
        """A handle on the key, unlocked at most once per process (the secret is asked once).

        A REVOKED key is refused (:class:`KeyStateError`); a RETIRED key's handle exchanges and
        MACs (to open old material) but never signs.
        """
        name = name_or_info if isinstance(name_or_info, str) else name_or_info.name
        info = self.get(name)
        if info.status is KeyStatus.REVOKED:
            self._refresh(info)  # revoked by another process: handles given out here stop too
            reason = info.labels.get(_LABEL_REVOCATION_REASON, "no reason recorded")
            raise KeyStateError(f"key '{name}' is revoked ({reason}): it is never unlocked again")
        cache_key = (self.directory.resolve(), name)
        with _UNLOCK_LOCK:
            entry = _UNLOCKED.get(cache_key)
            if entry is not None and entry.info.fingerprint == info.fingerprint:
                entry.info = info
            else:
                handle = self._backend(info.backend).unlock(info)
                entry = _UNLOCKED[cache_key] = _Unlocked(handle=handle, info=info)
        return _StoreHandle(entry)

    def export_private_der(self, name: str) -> bytes:
        """Clear PKCS#8 DER of key ``name``, for the encrypted backup only.

        The backend decides (a token refuses with :class:`~trustroot.errors.KeyNotExtractableError`).
        """
        info = self.get(name)
        return self._backend(info.backend).export_private_der(info)

    # --- changing --------------------------------------------------------------------------------

    def create(
        self,
        role: KeyRole,
        algorithm: Algorithm,
        *,
        name: str | None = None,
        domain: Literal["store", "root"] = "store",
        backend: BackendName | None = None,
    ) -> KeyInfo:
        """Make a new ACTIVE key of ``role`` (named ``<role>-<generation>`` unless ``name`` is given).

        Refuses a second active key for any role but ``other`` (:class:`KeyExistsError`): use
        :meth:`rotate`.
        """
        role, algorithm = KeyRole(role), Algorithm(algorithm)
        _check_domain(domain)
        chosen = self._route(algorithm, backend)
        with self._locked() as keys:
            self._refuse_second_active(keys, role)
            generation = self._next_generation(keys, role)
            key_name = self._free_name(keys, name, role, generation)
            made = self._backend(chosen).generate(key_name, role, algorithm, domain=domain)
            return self._add(
                keys,
                made,
                expected=(key_name, role, algorithm),
                generation=generation,
                status=KeyStatus.ACTIVE,
                labels={},
            )

    def import_key(
        self,
        role: KeyRole,
        algorithm: Algorithm,
        material: bytes,
        *,
        name: str | None = None,
        domain: Literal["store", "root"] = "store",
        backend: BackendName | None = None,
        status: KeyStatus = KeyStatus.ACTIVE,
        generation: int | None = None,
    ) -> KeyInfo:
        """Take an existing key: PKCS#8 DER of a private key, or 32 raw bytes (or PKCS#8) of a secret.

        The backend checks that ``material`` is a key of ``algorithm`` (an RSA-2048 key offered as
        ``rsa-3072`` is refused). ``status`` and ``generation`` let a restore put back retired keys
        as they were; an ACTIVE import follows the one-active-key rule of :meth:`create`.
        """
        role, algorithm, status = KeyRole(role), Algorithm(algorithm), KeyStatus(status)
        if generation is not None and generation < 1:
            raise UsageError(f"generation {generation} is not allowed: generations start at 1")
        _check_domain(domain)
        chosen = self._route(algorithm, backend)
        with self._locked() as keys:
            if status is KeyStatus.ACTIVE:
                self._refuse_second_active(keys, role)
            gen = generation if generation is not None else self._next_generation(keys, role)
            key_name = self._free_name(keys, name, role, gen)
            made = self._backend(chosen).import_key(key_name, role, algorithm, material, domain=domain)
            return self._add(keys, made, expected=(key_name, role, algorithm), generation=gen, status=status, labels={})

    def rotate(self, role: KeyRole, *, algorithm: Algorithm | None = None) -> KeyInfo:
        """Make the next generation of ``role`` active and retire the current one; return the new key.

        The new key has the old one's algorithm (unless ``algorithm`` is given), backend and
        passphrase domain; the old key gets ``labels["replaced_by"]``, the new ``labels["replaces"]``.
        """
        role = KeyRole(role)
        with self._locked() as keys:
            actives = [info for info in keys if info.role is role and info.status is KeyStatus.ACTIVE]
            if not actives:
                raise KeyNotFoundError(f"no active key for role '{role.value}' to rotate in {self.directory}")
            if len(actives) > 1:
                raise UsageError(f"role '{role.value}' has {len(actives)} active keys; rotate needs exactly one")
            old = actives[0]
            new_algorithm = Algorithm(algorithm) if algorithm is not None else old.algorithm
            chosen = self._route(new_algorithm, "file" if new_algorithm is Algorithm.ECIES_X25519 else old.backend)
            generation = self._next_generation(keys, role)
            key_name = self._free_name(keys, None, role, generation)
            made = self._backend(chosen).generate(key_name, role, new_algorithm, domain=old.passphrase_domain)
            retired = dataclasses.replace(
                old, status=KeyStatus.RETIRED, labels={**old.labels, _LABEL_REPLACED_BY: key_name}
            )
            return self._add(
                keys,
                made,
                expected=(key_name, role, new_algorithm),
                generation=generation,
                status=KeyStatus.ACTIVE,
                labels={_LABEL_REPLACES: old.name},
                changed=(retired,),
            )

    def revoke(self, name: str, reason: str) -> KeyInfo:
        """Mark key ``name`` REVOKED with ``reason`` (kept in its labels); it never signs again."""
        if not reason.strip():
            raise UsageError(f"revoking key '{name}' needs a reason")
        with self._locked() as keys:
            info = self._find(keys, name)
            if info.status is KeyStatus.REVOKED:
                raise KeyStateError(f"key '{name}' is revoked already")
            revoked = dataclasses.replace(
                info,
                status=KeyStatus.REVOKED,
                labels={
                    **info.labels,
                    _LABEL_REVOCATION_REASON: reason.strip(),
                    _LABEL_REVOKED_AT: self._clock().astimezone(UTC).isoformat(),
                },
            )
            self._write(self._replaced(keys, revoked))
            self._refresh(revoked)
        return revoked

    def destroy(self, name: str) -> None:
        """Delete key ``name`` and its index record: only to roll back a ceremony that failed."""
        with self._locked() as keys:
            info = self._find(keys, name)
            self._backend(info.backend).destroy(info)
            self._write([k for k in keys if k.name != name])
        with _UNLOCK_LOCK:
            _UNLOCKED.pop((self.directory.resolve(), name), None)

    # --- inside ----------------------------------------------------------------------------------

    def _backend(self, name: BackendName) -> KeyBackend:
        try:
            return self._backends[name]
        except KeyError:
            raise KeyStoreError(
                f"the {name} key backend is not configured for the key store {self.directory}"
            ) from None

    def _route(self, algorithm: Algorithm, backend: BackendName | None) -> BackendName:
        if algorithm is Algorithm.ECIES_X25519:
            if backend not in (None, "file"):
                raise UsageError(
                    "ecies-x25519 keys live in the file backend only (SoftHSM2 has no X25519)",
                    hint="leave the backend unset, or use ecies-p256 on the token",
                )
            return "file"
        chosen = backend if backend is not None else self._default
        self._backend(chosen)
        return chosen

    @contextlib.contextmanager
    def _locked(self) -> Iterator[builtins.list[KeyInfo]]:
        """Hold the index lock; yield the records as read under it."""
        self.directory.mkdir(mode=_DIRECTORY_MODE, parents=True, exist_ok=True)
        with exclusive_lock(self.directory / _LOCK_FILE):
            yield self._load()

    def _load(self) -> builtins.list[KeyInfo]:
        path = self.index_path
        try:
            with path.open("rb") as handle:
                data = handle.read(_MAX_INDEX_BYTES + 1)
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise UnreadableInputError(f"key index {path}: cannot be read ({exc.strerror})") from exc
        if len(data) > _MAX_INDEX_BYTES:
            raise KeyFileCorruptError(f"key index {path} is larger than the limit of {_MAX_INDEX_BYTES} bytes")
        try:
            document = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
            raise KeyFileCorruptError(f"key index {path} is damaged: not JSON ({exc})") from exc
        if not isinstance(document, dict) or "format" not in document:
            raise KeyFileCorruptError(f"key index {path} is damaged: no 'format' field")
        if document["format"] != INDEX_FORMAT:
            raise KeyStoreError(
                f"key index {path} has format {document['format']!r}; this trustroot reads {INDEX_FORMAT} only",
                hint="use the trustroot version that wrote this key store",
            )
        if set(document) != {"format", "keys"} or not isinstance(document["keys"], builtins.list):
            raise KeyFileCorruptError(f"key index {path} is damaged: expected the fields 'format' and 'keys'")
        keys: builtins.list[KeyInfo] = []
        for position, record in enumerate(document["keys"]):
            try:
                keys.append(key_info_from_json(record))
            except (ValueError, KeyError, TypeError) as exc:
                raise KeyFileCorruptError(f"key index {path} is damaged: key record {position}: {exc}") from exc
        names = [info.name for info in keys]
        if len(set(names)) != len(names):
            raise KeyFileCorruptError(f"key index {path} is damaged: a key name appears twice")
        return keys

    def _write(self, keys: builtins.list[KeyInfo]) -> None:
        document = {"format": INDEX_FORMAT, "keys": [key_info_to_json(info) for info in keys]}
        data = (json.dumps(document, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
        atomic_write(self.index_path, data, mode=_INDEX_MODE)

    def _add(
        self,
        keys: builtins.list[KeyInfo],
        made: KeyInfo,
        *,
        expected: tuple[str, KeyRole, Algorithm],
        generation: int,
        status: KeyStatus,
        labels: dict[str, str],
        changed: tuple[KeyInfo, ...] = (),
    ) -> KeyInfo:
        """Record the key a backend just ``made`` (and ``changed`` records); destroy it if that fails."""
        if (made.name, made.role, made.algorithm) != expected:
            self._discard(made)
            raise KeyStoreError(f"the {made.backend} backend returned another key than '{expected[0]}'")
        try:
            info = dataclasses.replace(made, generation=generation, status=status, labels={**made.labels, **labels})
            updated = keys
            for record in changed:
                updated = self._replaced(updated, record)
            self._write([*updated, info])
        except BaseException:
            self._discard(made)
            raise
        for record in changed:
            self._refresh(record)
        return info

    def _discard(self, made: KeyInfo) -> None:
        with contextlib.suppress(TrustrootError, OSError):
            self._backend(made.backend).destroy(made)

    @staticmethod
    def _replaced(keys: builtins.list[KeyInfo], record: KeyInfo) -> builtins.list[KeyInfo]:
        return [record if info.name == record.name else info for info in keys]

    def _refresh(self, info: KeyInfo) -> None:
        """Let the handles of this process see the new state of ``info`` at once."""
        with _UNLOCK_LOCK:
            entry = _UNLOCKED.get((self.directory.resolve(), info.name))
            if entry is not None:
                entry.info = info

    @staticmethod
    def _find(keys: builtins.list[KeyInfo], name: str) -> KeyInfo:
        for info in keys:
            if info.name == name:
                return info
        raise KeyNotFoundError(f"no key named '{name}' in the key store")

    def _refuse_second_active(self, keys: builtins.list[KeyInfo], role: KeyRole) -> None:
        if role in (KeyRole.OTHER, KeyRole.DECLARER):
            return
        for info in keys:
            if info.role is role and info.status is KeyStatus.ACTIVE:
                raise KeyExistsError(
                    f"role '{role.value}' already has an active key '{info.name}'",
                    hint=f"rotate it with: trustroot keys rotate {role.value}",
                )

    @staticmethod
    def _next_generation(keys: builtins.list[KeyInfo], role: KeyRole) -> int:
        return max((info.generation for info in keys if info.role is role), default=0) + 1

    def _free_name(self, keys: builtins.list[KeyInfo], name: str | None, role: KeyRole, generation: int) -> str:
        key_name = validate_key_name(name if name is not None else f"{role.value}-{generation}")
        if any(info.name == key_name for info in keys):
            raise KeyExistsError(f"a key named '{key_name}' exists already in the key store {self.directory}")
        return key_name
