"""The PKCS#11 key backend: keys made on (or put onto) a token, sensitive and non-extractable.

Every private key and secret this backend holds is a token object (``CKA_TOKEN``) with
``CKA_SENSITIVE=True``, ``CKA_EXTRACTABLE=False`` and ``CKA_PRIVATE=True``; its ``CKA_LABEL`` is
the key name and its ``CKA_ID`` is :func:`key_id_for` of the name. A public object with the same
label and id sits beside each private key, so the public key is read without touching the
private one. Nothing here ever asks a token for private key material, and
:meth:`Pkcs11Backend.export_private_der` always refuses.

How each algorithm is made and used on the token (the bytes produced follow ``keys._interface``):

=============  =====================================  ===========================================
algorithm      generation                             use
=============  =====================================  ===========================================
ecdsa-p256     CKM_EC_KEY_PAIR_GEN, prime256v1        SHA-256 in Python, CKM_ECDSA, r||s -> DER
ecdsa-p384     CKM_EC_KEY_PAIR_GEN, secp384r1         SHA-384 in Python, CKM_ECDSA, r||s -> DER
ed25519        CKM_EC_EDWARDS_KEY_PAIR_GEN, Ed25519   CKM_EDDSA (pure Ed25519)
rsa-3072       CKM_RSA_PKCS_KEY_PAIR_GEN, e=65537     SHA-256 in Python, CKM_RSA_PKCS_PSS
                                                      (SHA-256, MGF1-SHA-256, salt 32)
ecies-p256     CKM_EC_KEY_PAIR_GEN, derive only       CKM_ECDH1_DERIVE (null KDF) into a session
                                                      secret that is read once and destroyed
hmac-sha256    CKM_GENERIC_SECRET_KEY_GEN, 32 bytes   CKM_SHA256_HMAC
ecies-x25519   refused: SoftHSM2 has no X25519        (file backend only)
=============  =====================================  ===========================================

Sessions and login. A backend opens one read/write session lazily, on first use, and closes it in
:meth:`Pkcs11Backend.close` (or at the end of a ``with`` block). PKCS#11 keeps the login state per
process and token, not per session, so this module logs in once per token through a process-wide,
reference-counted login session, and checks the PIN of every further backend on that token
against the PIN that opened it. The PIN comes from the injected
:data:`~trustroot.keys.passphrase.SecretSource` (``TRUSTROOT_PKCS11_PIN`` or a prompt).

Handles follow the same rules as the file backend's: only signing keys sign, only
``hmac-sha256`` MACs, only ``ecies-p256`` exchanges; a RETIRED key no longer signs and a REVOKED
key does nothing with its private part (:class:`~trustroot.errors.KeyStateError`).

Every ``pkcs11`` exception is turned into a :class:`~trustroot.errors.TrustrootError` here: a
wrong PIN into :class:`~trustroot.errors.WrongSecretError`, anything else about the module or
token into :class:`~trustroot.errors.TokenError`.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Self

import pkcs11
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa, utils
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes
from pkcs11 import exceptions as p11x
from pkcs11.constants import Attribute, MechanismFlag, ObjectClass, TokenFlag
from pkcs11.mechanisms import KDF, MGF, KeyType, Mechanism
from pkcs11.types import DeriveMixin, Object, Session, SignMixin, Token

from trustroot import _der
from trustroot.errors import (
    KeyExistsError,
    KeyNotExtractableError,
    KeyNotFoundError,
    KeyStateError,
    KeyStoreError,
    TokenError,
    UsageError,
    WrongSecretError,
)
from trustroot.keys import _pkcs8
from trustroot.keys._interface import (
    Algorithm,
    BackendName,
    KeyHandle,
    KeyInfo,
    KeyRole,
    KeyStatus,
    public_key_fingerprint,
)
from trustroot.keys._softhsm import SETUP_SCRIPT
from trustroot.keys.passphrase import SecretSource
from trustroot.keys.store import KEY_ID_LABEL, validate_key_name

if TYPE_CHECKING:
    from pkcs11._pkcs11 import lib as Pkcs11Library  # noqa: N812 - the class is named "lib"

__all__ = ["TOKEN_LABEL_KEY", "Pkcs11Backend", "key_id_for"]

_log = logging.getLogger(__name__)

#: Key of ``KeyInfo.labels`` that names the token a key lives on.
TOKEN_LABEL_KEY = "pkcs11-token"  # noqa: S105 - a dictionary key, not a password

_KEY_ID_CONTEXT = b"trustroot pkcs11 key id v1\x00"
_KEY_ID_BYTES = 16

_OID_P256 = "1.2.840.10045.3.1.7"
_OID_P384 = "1.3.132.0.34"
_OID_ED25519 = "1.3.101.112"
_PRINTABLE_STRING = 0x13
#: PKCS#11 3.0 names the Edwards curve by OID or by PrintableString; SoftHSM2 answers the latter.
_ED25519_CURVE_NAMES = (_der.oid(_OID_ED25519), _der.tlv(_PRINTABLE_STRING, b"edwards25519"))

_PSS_SALT_BYTES = 32
_HMAC_KEY_BYTES = 32
_RSA_BITS = 3072

_WRONG_PIN_ERRORS: tuple[type[p11x.PKCS11Error], ...] = (p11x.PinIncorrect, p11x.PinInvalid, p11x.PinLenRange)


def key_id_for(name: str) -> bytes:
    """The ``CKA_ID`` of key ``name``: 16 bytes of SHA-256 over a fixed context and the name."""
    return hashlib.sha256(_KEY_ID_CONTEXT + name.encode("utf-8")).digest()[:_KEY_ID_BYTES]


def _secret_fingerprint(tag: bytes) -> str:
    """A secret's fingerprint from its HMAC over ``KEY_ID_LABEL`` (as ``keys.store.secret_fingerprint``)."""
    return hashlib.sha256(tag).hexdigest()


_Usage = Literal["sign", "derive", "mac"]


@dataclass(frozen=True)
class _Spec:
    """How one algorithm is made and used on a token."""

    algorithm: Algorithm
    key_type: KeyType
    generate: Mechanism
    use: Mechanism
    usage: _Usage
    ec_params: bytes = b""
    curve: ec.EllipticCurve | None = None
    #: Bytes of one coordinate (EC) or of the public key (Ed25519); 0 otherwise.
    size: int = 0
    #: ``hashlib`` name of the prehash of ECDSA and RSA-PSS; empty for pure schemes.
    prehash: str = ""

    @property
    def digest_size(self) -> int:
        return hashlib.new(self.prehash).digest_size if self.prehash else 0

    @property
    def key_class(self) -> ObjectClass:
        return ObjectClass.SECRET_KEY if self.usage == "mac" else ObjectClass.PRIVATE_KEY


_SPECS: dict[Algorithm, _Spec] = {
    Algorithm.ECDSA_P256: _Spec(
        Algorithm.ECDSA_P256,
        KeyType.EC,
        Mechanism.EC_KEY_PAIR_GEN,
        Mechanism.ECDSA,
        "sign",
        ec_params=_der.oid(_OID_P256),
        curve=ec.SECP256R1(),
        size=32,
        prehash="sha256",
    ),
    Algorithm.ECDSA_P384: _Spec(
        Algorithm.ECDSA_P384,
        KeyType.EC,
        Mechanism.EC_KEY_PAIR_GEN,
        Mechanism.ECDSA,
        "sign",
        ec_params=_der.oid(_OID_P384),
        curve=ec.SECP384R1(),
        size=48,
        prehash="sha384",
    ),
    Algorithm.ED25519: _Spec(
        Algorithm.ED25519,
        KeyType.EC_EDWARDS,
        Mechanism.EC_EDWARDS_KEY_PAIR_GEN,
        Mechanism.EDDSA,
        "sign",
        ec_params=_der.oid(_OID_ED25519),
        size=32,
    ),
    Algorithm.RSA_3072: _Spec(
        Algorithm.RSA_3072,
        KeyType.RSA,
        Mechanism.RSA_PKCS_KEY_PAIR_GEN,
        Mechanism.RSA_PKCS_PSS,
        "sign",
        prehash="sha256",
    ),
    Algorithm.ECIES_P256: _Spec(
        Algorithm.ECIES_P256,
        KeyType.EC,
        Mechanism.EC_KEY_PAIR_GEN,
        Mechanism.ECDH1_DERIVE,
        "derive",
        ec_params=_der.oid(_OID_P256),
        curve=ec.SECP256R1(),
        size=32,
    ),
    Algorithm.HMAC_SHA256: _Spec(
        Algorithm.HMAC_SHA256,
        KeyType.GENERIC_SECRET,
        Mechanism.GENERIC_SECRET_KEY_GEN,
        Mechanism.SHA256_HMAC,
        "mac",
    ),
}


def _spec_for(algorithm: Algorithm) -> _Spec:
    algorithm = Algorithm(algorithm)
    if algorithm is Algorithm.ECIES_X25519:
        raise KeyStoreError(
            "X25519 keys are file-backend only (SoftHSM2 has no X25519)",
            hint="keep ecies-x25519 keys in the encrypted file backend, or use ecies-p256 on the token",
        )
    return _SPECS[algorithm]


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# --- process-wide login state (PKCS#11 logs in per process and token, not per session) ----------


@dataclass
class _Login:
    session: Session
    pin_digest: bytes
    users: int = 0


_LOGINS: dict[tuple[str, bytes], _Login] = {}
_LOGINS_LOCK = threading.Lock()
_PIN_SALT = os.urandom(16)


def _pin_digest(pin: str) -> bytes:
    return hashlib.sha256(_PIN_SALT + pin.encode("utf-8")).digest()


def _module_in_use(module: str) -> bool:
    return any(key[0] == module for key in _LOGINS)


def _close_quietly(session: Session) -> None:
    try:
        session.close()
    except p11x.PKCS11Error:
        _log.warning("closing a PKCS#11 session failed", exc_info=True)


# --- helpers over token objects -----------------------------------------------------------------


def _attr_bytes(obj: Object, attribute: Attribute) -> bytes:
    value = obj[attribute]
    if not isinstance(value, bytes):
        raise TokenError(f"the token returned {attribute.name} as {type(value).__name__}, not bytes")
    return value


def _raw_point(value: bytes, raw_length: int) -> bytes:
    """``CKA_EC_POINT`` as a raw point: a DER OCTET STRING by the standard, raw from some tokens."""
    if len(value) == raw_length:
        return value
    try:
        element, end = _der.parse_one(value)
    except _der.DerError as exc:
        raise TokenError(f"the token returned a malformed EC point ({exc})") from exc
    if end != len(value) or element.tag != _der.OCTET_STRING or len(element.content) != raw_length:
        raise TokenError("the token returned an EC point of the wrong form or length")
    return element.content


def _ecdsa_der(raw: bytes, size: int) -> bytes:
    """A PKCS#11 ECDSA signature ``r || s`` as DER ``Ecdsa-Sig-Value``."""
    if len(raw) != 2 * size:
        raise TokenError(f"the token returned an ECDSA signature of {len(raw)} bytes, not {2 * size}")
    return utils.encode_dss_signature(int.from_bytes(raw[:size], "big"), int.from_bytes(raw[size:], "big"))


def _private_template(spec: _Spec) -> dict[Attribute, Any]:
    """A private key or secret: token object, private, sensitive, non-extractable, one use only."""
    return {
        Attribute.TOKEN: True,
        Attribute.PRIVATE: True,
        Attribute.SENSITIVE: True,
        Attribute.EXTRACTABLE: False,
        Attribute.SIGN: spec.usage in ("sign", "mac"),
        Attribute.DERIVE: spec.usage == "derive",
        Attribute.DECRYPT: False,
        Attribute.UNWRAP: False,
    }


def _public_template(spec: _Spec) -> dict[Attribute, Any]:
    template: dict[Attribute, Any] = {
        Attribute.TOKEN: True,
        Attribute.PRIVATE: False,
        Attribute.VERIFY: spec.usage == "sign",
        Attribute.ENCRYPT: False,
        Attribute.WRAP: False,
    }
    if spec.ec_params:
        template[Attribute.EC_PARAMS] = spec.ec_params
    return template


def _capabilities(spec: _Spec) -> MechanismFlag:
    if spec.usage == "derive":
        return MechanismFlag.DERIVE
    if spec.usage == "mac":
        return MechanismFlag.SIGN
    return MechanismFlag.SIGN | MechanismFlag.VERIFY


def _big(value: int) -> bytes:
    return value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big")


def _asymmetric_attributes(
    name: str, spec: _Spec, key: PrivateKeyTypes
) -> tuple[dict[Attribute, Any], dict[Attribute, Any]] | None:
    """The private and public object templates for ``key``; None when it is not a ``spec`` key."""
    private: dict[Attribute, Any] = {**_private_template(spec), Attribute.CLASS: ObjectClass.PRIVATE_KEY}
    public: dict[Attribute, Any] = {**_public_template(spec), Attribute.CLASS: ObjectClass.PUBLIC_KEY}
    for template in (private, public):
        template.update({Attribute.KEY_TYPE: spec.key_type, Attribute.LABEL: name, Attribute.ID: key_id_for(name)})
    if spec.key_type == KeyType.EC and isinstance(key, ec.EllipticCurvePrivateKey):
        if spec.curve is None or key.curve.name != spec.curve.name:
            return None
        point = key.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
        private[Attribute.EC_PARAMS] = spec.ec_params
        private[Attribute.VALUE] = key.private_numbers().private_value.to_bytes(spec.size, "big")
        public[Attribute.EC_POINT] = _der.octet_string(point)
    elif spec.key_type == KeyType.EC_EDWARDS and isinstance(key, ed25519.Ed25519PrivateKey):
        raw_public = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        private[Attribute.EC_PARAMS] = spec.ec_params
        private[Attribute.VALUE] = key.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
        )
        public[Attribute.EC_POINT] = _der.octet_string(raw_public)
    elif spec.key_type == KeyType.RSA and isinstance(key, rsa.RSAPrivateKey):
        if key.key_size != _RSA_BITS:
            return None
        numbers = key.private_numbers()
        modulus, exponent = _big(numbers.public_numbers.n), _big(numbers.public_numbers.e)
        private.update(
            {
                Attribute.MODULUS: modulus,
                Attribute.PUBLIC_EXPONENT: exponent,
                Attribute.PRIVATE_EXPONENT: _big(numbers.d),
                Attribute.PRIME_1: _big(numbers.p),
                Attribute.PRIME_2: _big(numbers.q),
                Attribute.EXPONENT_1: _big(numbers.dmp1),
                Attribute.EXPONENT_2: _big(numbers.dmq1),
                Attribute.COEFFICIENT: _big(numbers.iqmp),
            }
        )
        public.update({Attribute.MODULUS: modulus, Attribute.PUBLIC_EXPONENT: exponent})
    else:
        return None
    return private, public


def _key_description(key: PrivateKeyTypes) -> str:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return f"an EC key on {key.curve.name}"
    if isinstance(key, rsa.RSAPrivateKey):
        return f"an RSA-{key.key_size} key"
    return f"a {type(key).__name__.removeprefix('_')}"


# ------------------------------------------------------------------------------------------------


class Pkcs11Backend:
    """Keys on a PKCS#11 token (SoftHSM2 in tests, any HSM in production): the "pkcs11" backend.

    ``module_path`` is the token's PKCS#11 module (a ``.so``), ``token_label`` the token's label
    and ``secrets`` the source of the user PIN; ``clock`` dates new keys. Nothing touches the
    module before the first operation. Use it as a context manager or call :meth:`close`; a closed
    backend opens a new session if it is used again.
    """

    name: BackendName = "pkcs11"

    def __init__(
        self,
        module_path: str,
        token_label: str,
        secrets: SecretSource,
        *,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.module_path = module_path
        self.token_label = token_label
        self._secrets = secrets
        self._clock: Callable[[], datetime] = clock or (lambda: datetime.now(UTC))
        self._lock = threading.RLock()
        self._session: Session | None = None
        self._login_key: tuple[str, bytes] | None = None
        self._mechanisms: frozenset[int] = frozenset()

    def __repr__(self) -> str:
        return f"Pkcs11Backend(module_path={self.module_path!r}, token_label={self.token_label!r})"

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def is_open(self) -> bool:
        """Whether this backend holds an open session."""
        return self._session is not None

    def open(self) -> None:
        """Open the session now: load the module, find the token and log in (a health check).

        Raises ``TokenError`` (module, token) or ``WrongSecretError`` (PIN); every other method
        opens the session itself when first needed.
        """
        with self._lock:
            self._open()

    # --- session management -----------------------------------------------------------------------

    def _load_module(self) -> tuple[str, Pkcs11Library]:
        path = Path(self.module_path)
        if not path.is_file():
            raise TokenError(
                f"PKCS#11 module {self.module_path} does not exist; run {SETUP_SCRIPT} to install "
                "SoftHSM2, or give the path of your HSM vendor's PKCS#11 module",
                hint=f"run {SETUP_SCRIPT}",
            )
        resolved = str(path.resolve())
        try:
            return resolved, pkcs11.lib(resolved)
        except p11x.PKCS11Error as exc:
            raise TokenError(f"cannot load PKCS#11 module {self.module_path}: {_describe(exc)}") from exc

    def _find_token(self, module: str, library: Pkcs11Library) -> Token:
        def initialised() -> list[Token]:
            return [t for t in library.get_tokens() if t.flags & TokenFlag.TOKEN_INITIALIZED]

        try:
            tokens = initialised()
            if not any(t.label == self.token_label for t in tokens) and not _module_in_use(module):
                # SoftHSM2 reads its token directory only when initialised: look once more, afresh.
                library.reinitialize()
                tokens = initialised()
        except p11x.PKCS11Error as exc:
            raise TokenError(f"cannot list the tokens of PKCS#11 module {self.module_path}: {_describe(exc)}") from exc
        matches = [t for t in tokens if t.label == self.token_label]
        if not matches:
            present = ", ".join(sorted(repr(t.label) for t in tokens)) or "none"
            raise TokenError(
                f"no PKCS#11 token labelled '{self.token_label}' in module {self.module_path}; "
                f"tokens present: {present}",
                hint="initialise the token first (softhsm2-util --init-token) or correct the label",
            )
        if len(matches) > 1:
            raise TokenError(
                f"{len(matches)} PKCS#11 tokens are labelled '{self.token_label}' in module "
                f"{self.module_path}; the label must name one token"
            )
        return matches[0]

    def _open(self) -> Session:
        """The backend's session, opened (and the token logged in) on first use."""
        if self._session is not None:
            return self._session
        module, library = self._load_module()
        token = self._find_token(module, library)
        try:
            key = (module, bytes(token.serial))
            mechanisms = frozenset(int(m) for m in token.slot.get_mechanisms())
        except p11x.PKCS11Error as exc:
            raise TokenError(f"cannot query PKCS#11 token '{self.token_label}': {_describe(exc)}") from exc
        pin = self._secrets("pin", False)
        with _LOGINS_LOCK:
            login = _LOGINS.get(key)
            if login is None:
                login = _Login(self._log_in(token, pin), _pin_digest(pin))
                _LOGINS[key] = login
            elif not hmac.compare_digest(login.pin_digest, _pin_digest(pin)):
                raise WrongSecretError(f"the PIN does not open PKCS#11 token '{self.token_label}'")
            try:
                session = token.open(rw=True)
            except p11x.PKCS11Error as exc:
                if login.users == 0:
                    del _LOGINS[key]
                    _close_quietly(login.session)
                raise TokenError(
                    f"cannot open a session on PKCS#11 token '{self.token_label}': {_describe(exc)}"
                ) from exc
            login.users += 1
        self._session = session
        self._login_key = key
        self._mechanisms = mechanisms
        return session

    def _log_in(self, token: Token, pin: str) -> Session:
        try:
            return token.open(rw=True, user_pin=pin)
        except _WRONG_PIN_ERRORS as exc:
            raise WrongSecretError(f"the PIN does not open PKCS#11 token '{self.token_label}'") from exc
        except p11x.PinLocked as exc:
            raise TokenError(
                f"the user PIN of PKCS#11 token '{self.token_label}' is locked",
                hint="the token's security officer must reset it",
            ) from exc
        except p11x.UserAlreadyLoggedIn as exc:
            raise TokenError(
                f"PKCS#11 token '{self.token_label}' was logged in by other code in this process; "
                "trustroot must own the login"
            ) from exc
        except p11x.PKCS11Error as exc:
            raise TokenError(f"cannot log in to PKCS#11 token '{self.token_label}': {_describe(exc)}") from exc

    def close(self) -> None:
        """Close this backend's session; the last backend on a token also logs out of it."""
        with self._lock:
            session, key = self._session, self._login_key
            self._session = None
            self._login_key = None
            if session is None or key is None:
                return
            _close_quietly(session)
            with _LOGINS_LOCK:
                login = _LOGINS.get(key)
                if login is not None:
                    login.users -= 1
                    if login.users <= 0:
                        del _LOGINS[key]
                        _close_quietly(login.session)

    @contextmanager
    def _token(self, action: str) -> Iterator[Session]:
        """Hold the backend's lock and session; turn every ``pkcs11`` error into ``TokenError``."""
        with self._lock:
            session = self._open()
            try:
                yield session
            except p11x.PKCS11Error as exc:
                raise TokenError(f"PKCS#11 token '{self.token_label}': {action} failed ({_describe(exc)})") from exc

    def _require_mechanisms(self, spec: _Spec, *mechanisms: Mechanism) -> None:
        missing = [f"CKM_{m.name}" for m in mechanisms if int(m) not in self._mechanisms]
        if missing:
            raise TokenError(
                f"PKCS#11 token '{self.token_label}' does not offer {', '.join(missing)}, "
                f"which {spec.algorithm.value} keys need"
            )

    # --- object lookup ----------------------------------------------------------------------------

    @staticmethod
    def _objects(session: Session, name: str, object_class: ObjectClass | None = None) -> list[Object]:
        template: dict[Attribute, Any] = {Attribute.LABEL: name, Attribute.ID: key_id_for(name)}
        if object_class is not None:
            template[Attribute.CLASS] = object_class
        return list(session.get_objects(template))

    def _one(self, session: Session, name: str, object_class: ObjectClass) -> Object:
        found = self._objects(session, name, object_class)
        if not found:
            raise KeyNotFoundError(f"key '{name}' is not on PKCS#11 token '{self.token_label}'")
        if len(found) > 1:
            raise TokenError(
                f"PKCS#11 token '{self.token_label}' holds {len(found)} {object_class.name} objects for key '{name}'"
            )
        return found[0]

    def _refuse_existing(self, session: Session, name: str) -> None:
        validate_key_name(name)
        # Each search runs to its end (a search left open blocks the session's next operation).
        taken = list(session.get_objects({Attribute.LABEL: name})) or list(
            session.get_objects({Attribute.ID: key_id_for(name)})
        )
        if taken:
            raise KeyExistsError(f"key '{name}' exists on PKCS#11 token '{self.token_label}' already")

    def _key_object(self, session: Session, name: str, spec: _Spec) -> Object:
        """The private key (or secret) ``name``, checked to be of ``spec`` and non-extractable."""
        obj = self._one(session, name, spec.key_class)
        if obj[Attribute.KEY_TYPE] != spec.key_type:
            raise KeyStateError(
                f"key '{name}' on PKCS#11 token '{self.token_label}' is not a {spec.algorithm.value} key"
            )
        if not obj[Attribute.SENSITIVE] or obj[Attribute.EXTRACTABLE]:
            raise KeyStateError(
                f"key '{name}' on PKCS#11 token '{self.token_label}' is extractable or not sensitive; "
                "trustroot uses only sensitive, non-extractable token keys",
                provision="5.4-1",
            )
        return obj

    def _public_key(self, session: Session, name: str, spec: _Spec) -> PublicKeyTypes:
        obj = self._one(session, name, ObjectClass.PUBLIC_KEY)
        wrong = KeyStateError(
            f"the public key of '{name}' on PKCS#11 token '{self.token_label}' is not {spec.algorithm.value}"
        )
        try:
            if spec.key_type == KeyType.RSA:
                n = int.from_bytes(_attr_bytes(obj, Attribute.MODULUS), "big")
                e = int.from_bytes(_attr_bytes(obj, Attribute.PUBLIC_EXPONENT), "big")
                rsa_public = rsa.RSAPublicNumbers(e, n).public_key()
                if rsa_public.key_size != _RSA_BITS:
                    raise wrong
                return rsa_public
            if spec.key_type == KeyType.EC_EDWARDS:
                if obj[Attribute.EC_PARAMS] not in _ED25519_CURVE_NAMES:
                    raise wrong
                raw = _raw_point(_attr_bytes(obj, Attribute.EC_POINT), spec.size)
                return ed25519.Ed25519PublicKey.from_public_bytes(raw)
            if spec.curve is None or obj[Attribute.EC_PARAMS] != spec.ec_params:
                raise wrong
            raw = _raw_point(_attr_bytes(obj, Attribute.EC_POINT), 1 + 2 * spec.size)
            return ec.EllipticCurvePublicKey.from_encoded_point(spec.curve, raw)
        except ValueError as exc:
            raise TokenError(
                f"the public key of '{name}' on PKCS#11 token '{self.token_label}' is malformed ({exc})"
            ) from exc

    # --- the KeyBackend protocol ------------------------------------------------------------------

    def generate(self, name: str, role: KeyRole, algorithm: Algorithm, *, domain: Literal["store", "root"]) -> KeyInfo:
        """Generate key ``name`` on the token; ``KeyExistsError`` if its label or id is taken."""
        spec = _spec_for(algorithm)
        with self._token(f"generating {spec.algorithm.value} key '{name}'") as session:
            self._refuse_existing(session, name)
            self._require_mechanisms(spec, spec.generate, spec.use)
            if spec.usage == "mac":
                session.generate_key(
                    KeyType.GENERIC_SECRET,
                    8 * _HMAC_KEY_BYTES,
                    id=key_id_for(name),
                    label=name,
                    store=True,
                    capabilities=_capabilities(spec),
                    mechanism=spec.generate,
                    template=_private_template(spec),
                )
            else:
                session.generate_keypair(
                    spec.key_type,
                    _RSA_BITS if spec.key_type == KeyType.RSA else None,
                    id=key_id_for(name),
                    label=name,
                    store=True,
                    capabilities=_capabilities(spec),
                    mechanism=spec.generate,
                    public_template=_public_template(spec),
                    private_template=_private_template(spec),
                )
            info = self._describe_new_key(session, name, role, spec, domain)
        _log.info("generated %s key '%s' on PKCS#11 token '%s'", spec.algorithm.value, name, self.token_label)
        return info

    def import_key(
        self,
        name: str,
        role: KeyRole,
        algorithm: Algorithm,
        material: bytes,
        *,
        domain: Literal["store", "root"],
    ) -> KeyInfo:
        """Put an existing key onto the token as a sensitive, non-extractable object.

        ``material`` is unencrypted PKCS#8 DER: an EC P-256/P-384, RSA-3072 or Ed25519 private key,
        or (``hmac-sha256``) an hmacWithSHA256 ``PrivateKeyInfo`` or the 32 raw bytes of the secret.
        """
        spec = _spec_for(algorithm)
        private_attrs, public_attrs = self._import_templates(name, spec, bytes(material))
        with self._token(f"importing {spec.algorithm.value} key '{name}'") as session:
            self._refuse_existing(session, name)
            self._require_mechanisms(spec, spec.use)
            private = session.create_object(private_attrs)
            if public_attrs is not None:
                try:
                    session.create_object(public_attrs)
                except BaseException:
                    private.destroy()
                    raise
            info = self._describe_new_key(session, name, role, spec, domain)
        _log.info("imported %s key '%s' onto PKCS#11 token '%s'", spec.algorithm.value, name, self.token_label)
        return info

    def _import_templates(
        self, name: str, spec: _Spec, material: bytes
    ) -> tuple[dict[Attribute, Any], dict[Attribute, Any] | None]:
        if spec.usage == "mac":
            secret = material
            if len(material) != _HMAC_KEY_BYTES:
                try:
                    secret = _pkcs8.decode_hmac_private_key_info(material)
                except ValueError as exc:
                    raise UsageError(
                        f"the key material offered for key '{name}' is neither an hmacWithSHA256 PKCS#8 "
                        f"key nor {_HMAC_KEY_BYTES} raw bytes"
                    ) from exc
            return {
                **_private_template(spec),
                Attribute.CLASS: ObjectClass.SECRET_KEY,
                Attribute.KEY_TYPE: KeyType.GENERIC_SECRET,
                Attribute.LABEL: name,
                Attribute.ID: key_id_for(name),
                Attribute.VALUE: secret,
            }, None
        try:
            key = serialization.load_der_private_key(material, password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            raise UsageError(
                f"the key material offered for key '{name}' is not unencrypted PKCS#8 DER of a private key"
            ) from exc
        templates = _asymmetric_attributes(name, spec, key)
        if templates is None:
            raise UsageError(
                f"the key material offered for key '{name}' as {spec.algorithm.value} is {_key_description(key)}",
                hint=f"import a key of algorithm {spec.algorithm.value}, or choose the algorithm that matches it",
            )
        return templates

    def _describe_new_key(
        self, session: Session, name: str, role: KeyRole, spec: _Spec, domain: Literal["store", "root"]
    ) -> KeyInfo:
        """Read the new key back and describe it; destroy it again if that fails."""
        try:
            self._key_object(session, name, spec)
            if spec.usage == "mac":
                fingerprint = _secret_fingerprint(self._mac(session, name, spec, KEY_ID_LABEL))
                pem = ""
            else:
                public = self._public_key(session, name, spec)
                fingerprint = public_key_fingerprint(public)
                pem = public.public_bytes(
                    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
                ).decode("ascii")
        except BaseException:
            for obj in self._objects(session, name):
                obj.destroy()
            raise
        return KeyInfo(
            name=name,
            role=role,
            algorithm=spec.algorithm,
            backend=self.name,
            created=self._clock(),
            fingerprint=fingerprint,
            public_pem=pem,
            passphrase_domain=domain,
            extractable=False,
            labels={TOKEN_LABEL_KEY: self.token_label},
        )

    def unlock(self, info: KeyInfo) -> KeyHandle:
        """A handle on the token key of ``info``, once it is checked to be the key the store recorded."""
        if info.backend != self.name:
            raise KeyStateError(f"key '{info.name}' belongs to the {info.backend} backend, not to pkcs11")
        spec = _spec_for(info.algorithm)
        public: PublicKeyTypes | None = None
        with self._token(f"opening key '{info.name}'") as session:
            self._key_object(session, info.name, spec)
            if spec.usage == "mac":
                fingerprint = _secret_fingerprint(self._mac(session, info.name, spec, KEY_ID_LABEL))
            else:
                public = self._public_key(session, info.name, spec)
                fingerprint = public_key_fingerprint(public)
        if info.fingerprint and not hmac.compare_digest(fingerprint, info.fingerprint):
            raise TokenError(
                f"key '{info.name}' on PKCS#11 token '{self.token_label}' is not the key the store recorded "
                "(fingerprint differs)"
            )
        return _TokenKeyHandle(self, info, spec, public)

    def export_private_der(self, info: KeyInfo) -> bytes:
        """Always refused: keys on a token are sensitive and non-extractable."""
        raise KeyNotExtractableError(
            f"key '{info.name}' lives on PKCS#11 token '{self.token_label}' "
            "as sensitive and non-extractable; export refused",
            hint="rotate to a new key instead, or use the HSM's own backup (key wrapping) procedure",
        )

    def destroy(self, info: KeyInfo) -> None:
        """Delete every object (private, public or secret) of key ``info`` from the token."""
        with self._token(f"destroying key '{info.name}'") as session:
            objects = self._objects(session, info.name)
            if not objects:
                raise KeyNotFoundError(f"key '{info.name}' is not on PKCS#11 token '{self.token_label}'")
            for obj in objects:
                obj.destroy()
        _log.info("destroyed key '%s' on PKCS#11 token '%s'", info.name, self.token_label)

    # --- operations behind the handles -----------------------------------------------------------

    def _mac(self, session: Session, name: str, spec: _Spec, data: bytes) -> bytes:
        obj = self._key_object(session, name, spec)
        if not isinstance(obj, SignMixin):
            raise KeyStateError(f"key '{name}' on PKCS#11 token '{self.token_label}' has no sign usage")
        return bytes(obj.sign(data, mechanism=Mechanism.SHA256_HMAC))

    def _mac_with(self, name: str, spec: _Spec, data: bytes) -> bytes:
        """HMAC-SHA256 of ``data`` under secret ``name``."""
        with self._token(f"computing an HMAC with key '{name}'") as session:
            return self._mac(session, name, spec, data)

    def _sign_with(self, name: str, spec: _Spec, payload: bytes) -> bytes:
        """Sign ``payload`` (a digest, or the message for Ed25519) with key ``name``."""
        with self._token(f"signing with key '{name}'") as session:
            obj = self._key_object(session, name, spec)
            if not isinstance(obj, SignMixin):
                raise KeyStateError(f"key '{name}' on PKCS#11 token '{self.token_label}' has no sign usage")
            if spec.key_type == KeyType.RSA:
                pss = (Mechanism.SHA256, MGF.SHA256, _PSS_SALT_BYTES)
                return bytes(obj.sign(payload, mechanism=Mechanism.RSA_PKCS_PSS, mechanism_param=pss))
            raw = bytes(obj.sign(payload, mechanism=spec.use))
        return _ecdsa_der(raw, spec.size) if spec.key_type == KeyType.EC else raw

    def _exchange_with(self, name: str, spec: _Spec, peer_point: bytes) -> bytes:
        """ECDH of key ``name`` with an uncompressed peer point."""
        with self._token(f"ECDH with key '{name}'") as session:
            obj = self._key_object(session, name, spec)
            if not isinstance(obj, DeriveMixin):
                raise KeyStateError(f"key '{name}' on PKCS#11 token '{self.token_label}' has no derive usage")
            shared = obj.derive_key(
                KeyType.GENERIC_SECRET,
                8 * spec.size,
                store=False,
                capabilities=MechanismFlag(0),
                mechanism=Mechanism.ECDH1_DERIVE,
                mechanism_param=(KDF.NULL, None, peer_point),
                # A session object, extractable only so that the shared secret can be read once.
                template={
                    Attribute.TOKEN: False,
                    Attribute.PRIVATE: True,
                    Attribute.SENSITIVE: False,
                    Attribute.EXTRACTABLE: True,
                },
            )
            try:
                return _attr_bytes(shared, Attribute.VALUE)
            finally:
                shared.destroy()


class _TokenKeyHandle:
    """A :class:`KeyHandle` on a token key: every private operation runs on the token."""

    def __init__(self, backend: Pkcs11Backend, info: KeyInfo, spec: _Spec, public: PublicKeyTypes | None) -> None:
        self._backend = backend
        self._info = info
        self._spec = spec
        self._public = public

    def __repr__(self) -> str:
        info = self._info
        return f"Pkcs11KeyHandle({info.name!r}, {info.algorithm.value}, token={self._backend.token_label!r})"

    @property
    def info(self) -> KeyInfo:
        return self._info

    def _refuse(self, operation: str, why: str) -> KeyStateError:
        return KeyStateError(f"key '{self._info.name}' ({self._info.algorithm.value}) cannot {operation}: {why}")

    def _check(self, operation: str, usage: _Usage, why: str) -> None:
        if self._spec.usage != usage:
            raise self._refuse(operation, why)
        status = self._info.status
        if status is KeyStatus.REVOKED or (usage == "sign" and status is KeyStatus.RETIRED):
            raise self._refuse(operation, f"it is {status.value}")

    def public_key(self) -> PublicKeyTypes:
        if self._public is None:
            raise self._refuse("give a public key", "it is a secret key")
        return self._public

    def sign(self, data: bytes) -> bytes:
        self._check("sign", "sign", "it is not a signing key")
        spec = self._spec
        payload = hashlib.new(spec.prehash, data).digest() if spec.prehash else bytes(data)
        return self._backend._sign_with(self._info.name, spec, payload)

    def sign_digest(self, digest: bytes) -> bytes:
        self._check("sign a digest", "sign", "it is not a signing key")
        spec = self._spec
        if not spec.prehash:
            raise self._refuse("sign a digest", "Ed25519 has no prehashed form here; use sign()")
        if len(digest) != spec.digest_size:
            raise UsageError(
                f"key '{self._info.name}' signs {spec.prehash} digests of {spec.digest_size} bytes, "
                f"not {len(digest)} bytes"
            )
        return self._backend._sign_with(self._info.name, spec, bytes(digest))

    def mac(self, data: bytes) -> bytes:
        self._check("compute a MAC", "mac", "it is not an hmac-sha256 secret")
        return self._backend._mac_with(self._info.name, self._spec, bytes(data))

    def exchange(self, peer_public: PublicKeyTypes) -> bytes:
        self._check("do a key exchange", "derive", "it is not an ecies-p256 key")
        curve = self._spec.curve
        if (
            curve is None
            or not isinstance(peer_public, ec.EllipticCurvePublicKey)
            or peer_public.curve.name != curve.name
        ):
            raise UsageError(f"key '{self._info.name}' (ecies-p256) needs a P-256 peer public key")
        point = peer_public.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
        return self._backend._exchange_with(self._info.name, self._spec, point)
