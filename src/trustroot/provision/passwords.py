"""Unique per-device passwords (EN 303 645 guideline 1, provisions 5.1-1 and 5.1-2).

A *derived* password is a function of the product's factory secret (an ``hmac-sha256`` key in the
key store: a file or a PKCS#11 token), the product, the serial and the password settings, so the
factory can re-make it but nobody without the secret can predict it::

    M(attempt, block) = "trustroot/pw/v1"                       15 ASCII bytes
                        || u16(len P) || P                       P = UTF-8 of the product name
                        || u16(len S) || S                       S = UTF-8 (ASCII) of the serial
                        || u16(len A) || A                       A = ASCII alphabet name, e.g. "base32"
                        || u16(length)                           characters wanted
                        || u32(attempt) || u32(block)            big-endian counters, both from 0
    stream(attempt)   = HMAC-SHA256(K, M(attempt, 0)) || HMAC-SHA256(K, M(attempt, 1)) || ...
    encode            : for each byte b of the stream, in order: if b < 256 - (256 mod n), emit
                        alphabet[b mod n], else skip it (rejection sampling: exactly uniform);
                        stop at ``length`` characters
    password          = encode(stream(attempt)) for the first attempt = 0, 1, ... whose result
                        passes the content checks (common list, serial, counter, MAC shape)

``docs/provisioning.md`` states the same precisely enough to re-implement it; the known-answer
vectors in ``tests/vectors/passwords.json`` come from an independent implementation
(``scripts/make_password_vectors.py``). The file backend computes the HMAC in Python, the PKCS#11
backend with ``C_Sign(CKM_SHA256_HMAC)`` on the token: the passwords are the same.

A *random* password (context mode ``random``) uses the same encoder over ``os.urandom``.

The production record keeps :func:`password_verifier` (scrypt, per-device salt), never the password.

Errors::

    PolicyRefusal            check_password_policy; settings below min_entropy_bits (5.1-1 / 5.1-2)
    UsageError               unknown alphabet, length out of range, a factory key that is not an
    │                        hmac-sha256 secret, a malformed MAC or verifier
    └── SerialError          (identity.py) a malformed serial
    KeyStateError            the factory key is revoked (from the key handle)
    PasswordMismatchError    verify_password: the password is not the one of the verifier

``PasswordMismatchError`` is defined here until it moves to :mod:`trustroot.errors`.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import math
import os
import re
import secrets
from collections.abc import Callable, Iterator, Mapping
from types import MappingProxyType
from typing import Final

from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from trustroot.context.common_passwords import is_common_password
from trustroot.errors import PasswordMismatchError, PolicyRefusal, UsageError
from trustroot.keys._interface import Algorithm, KeyHandle
from trustroot.limits import INSECURE_TEST_KDF_ENV
from trustroot.provision.identity import validate_serial

__all__ = [
    "ALPHABETS",
    "DEFAULT_MIN_ENTROPY_BITS",
    "MAX_DERIVATION_ATTEMPTS",
    "MAX_PASSWORD_LENGTH",
    "MIN_PASSWORD_LENGTH",
    "PASSWORD_LABEL",
    "VERIFIER_COST",
    "PasswordMismatchError",
    "check_password_policy",
    "derive_device_password",
    "password_entropy_bits",
    "password_verifier",
    "random_device_password",
    "verify_password",
]

#: The characters of each alphabet the Security Context names ([identity.password].alphabet).
ALPHABETS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "base32": "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567",  # RFC 4648
        "base58": "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz",  # Bitcoin's
        "alnum": "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
        "digits": "0123456789",
    }
)
#: Domain-separation label at the start of every derivation message.
PASSWORD_LABEL: Final = b"trustroot/pw/v1"
#: Password lengths accepted (the schema's bounds).
MIN_PASSWORD_LENGTH: Final = 6
MAX_PASSWORD_LENGTH: Final = 64
#: The entropy floor unless the caller passes the context's ``min_entropy_bits``.
DEFAULT_MIN_ENTROPY_BITS: Final = 60
#: Re-derivations tried before giving up (only pathological settings ever need more than one).
MAX_DERIVATION_ATTEMPTS: Final = 1000
#: HMAC blocks per attempt; 64 blocks = 2048 bytes, far beyond the ~80 bytes 64 characters need.
_MAX_BLOCKS = 64
_MAX_PRODUCT_CHARS = 200
#: scrypt cost of :func:`password_verifier`: N = 2^14, r = 8, p = 1 (16 MiB, tens of milliseconds).
VERIFIER_COST: Final = (14, 8, 1)
_TEST_VERIFIER_COST: Final = (10, 8, 1)
_VERIFIER_SALT_BYTES = 16
_VERIFIER_HASH_BYTES = 32
_VERIFIER_MAX_MEMORY = 256 << 20
_VERIFIER = re.compile(
    r"\$scrypt\$ln=([0-9]{1,2}),r=([0-9]{1,2}),p=([0-9]{1,2})\$([A-Za-z0-9+/]{22})\$([A-Za-z0-9+/]{43})", re.ASCII
)
_MAC_SEPARATED = re.compile(r"[0-9A-Fa-f]{2}([:-])(?:[0-9A-Fa-f]{2}\1){4}[0-9A-Fa-f]{2}", re.ASCII)
_MAC_DOTTED = re.compile(r"[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4}", re.ASCII)
_MAC_BARE = re.compile(r"[0-9A-Fa-f]{12}", re.ASCII)
_MAC_SEPARATORS = re.compile(r"[:.\- ]")
_TRAILING_DIGITS = re.compile(r"[0-9]+\Z", re.ASCII)
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


# ------------------------------------------------------------------------------------------ settings


def _alphabet(name: str) -> str:
    try:
        return ALPHABETS[name]
    except (KeyError, TypeError):
        raise UsageError(f"password alphabet {name!r} is unknown: use one of {', '.join(ALPHABETS)}") from None


def _check_length(length: int) -> None:
    if type(length) is not int or not MIN_PASSWORD_LENGTH <= length <= MAX_PASSWORD_LENGTH:
        raise UsageError(
            f"password length {length!r} is not allowed: {MIN_PASSWORD_LENGTH} to {MAX_PASSWORD_LENGTH} characters"
        )


def password_entropy_bits(alphabet: str, length: int) -> float:
    """Entropy of a generated password in bits: ``length * log2(len(alphabet))`` (base32, 16 chars: 80 bits).

    The content checks remove a vanishing share of the outcomes (for the defaults, well under
    2^-60 of them), which changes this figure by less than 10^-15 bits.
    """
    chars = _alphabet(alphabet)
    _check_length(length)
    return length * math.log2(len(chars))


def _check_settings(alphabet: str, length: int, min_entropy_bits: int, serial: str) -> str:
    chars = _alphabet(alphabet)
    bits = password_entropy_bits(alphabet, length)
    if bits < min_entropy_bits:
        raise PolicyRefusal(
            f"device {serial}: {length} {alphabet} characters give {bits:.1f} bits of entropy, "
            f"below min_entropy_bits = {min_entropy_bits}",
            provision="5.1-2",
            hint="lengthen the password or choose a larger alphabet in [identity.password]",
        )
    return chars


# ------------------------------------------------------------------------------------------- encoder


def _encode(blocks: Iterator[bytes], chars: str, length: int) -> str | None:
    """Rejection-sample ``length`` characters of ``chars`` from a byte stream; None if it runs dry."""
    n = len(chars)
    limit = 256 - 256 % n
    out: list[str] = []
    for block in blocks:
        for byte in block:
            if byte < limit:
                out.append(chars[byte % n])
                if len(out) == length:
                    return "".join(out)
    return None


def _field(value: bytes) -> bytes:
    return len(value).to_bytes(2, "big") + value


def _message_prefix(product: str, serial: str, alphabet: str, length: int) -> bytes:
    """M(attempt, block) without its two counters (module docstring)."""
    return (
        PASSWORD_LABEL
        + _field(product.encode("utf-8"))
        + _field(serial.encode("utf-8"))
        + _field(alphabet.encode("ascii"))
        + length.to_bytes(2, "big")
    )


# ------------------------------------------------------------------------------------ content checks


def _normalised_mac(mac: str) -> str:
    digits = _MAC_SEPARATORS.sub("", mac).casefold()
    if re.fullmatch(r"[0-9a-f]{12}", digits, re.ASCII) is None:
        raise UsageError(f"MAC address {mac!r} is not 12 hexadecimal digits (with ':', '-' or '.' separators)")
    return digits


def _content_problem(password: str, serial: str, mac: str | None) -> tuple[str, str] | None:
    """The first content check ``password`` fails, as (provision, reason); None if it passes them all."""
    if is_common_password(password):
        return "5.1-1", "it is on the common-password list (a well-known default password)"
    folded = password.casefold()
    if serial.casefold() in folded:
        return "5.1-2", "it contains the device serial"
    counter = _TRAILING_DIGITS.search(serial)
    if counter is not None and len(counter.group()) >= 4 and counter.group() in password:
        return "5.1-2", "it contains the serial's sequence number (an incremental counter)"
    if (
        _MAC_SEPARATED.search(password)
        or _MAC_DOTTED.search(password)
        or (_MAC_BARE.fullmatch(password) and re.search(r"[A-Fa-f]", password))
    ):
        return "5.1-2", "it has the shape of a MAC address"
    if mac is not None and _normalised_mac(mac) in _MAC_SEPARATORS.sub("", folded):
        return "5.1-2", "it contains the device's MAC address"
    return None


def _estimated_entropy_bits(password: str) -> float:
    """An optimistic estimate for a password of unknown origin: length x log2(size of the character classes used)."""
    pool = 0
    if any(c.isascii() and c.isdigit() for c in password):
        pool += 10
    if any("a" <= c <= "z" for c in password):
        pool += 26
    if any("A" <= c <= "Z" for c in password):
        pool += 26
    if any(c.isascii() and not c.isalnum() for c in password):
        pool += 33
    if any(not c.isascii() for c in password):
        pool += 100
    return len(password) * math.log2(pool) if pool else 0.0


def check_password_policy(
    password: str,
    serial: str,
    *,
    mac: str | None = None,
    min_entropy_bits: int = DEFAULT_MIN_ENTROPY_BITS,
    alphabet: str | None = None,
) -> None:
    """Refuse a device password that would break provision 5.1-1 or 5.1-2; return None if it passes.

    Refused, with :class:`~trustroot.errors.PolicyRefusal` naming the provision (never the password):
    an empty password or one with control characters; one on the shipped common-password list
    (5.1-1); one that contains the serial, the serial's trailing sequence number (4+ digits), a
    MAC address (``aa:bb:..``, ``aa-bb-..``, ``aabb.ccdd.eeff``, or exactly 12 hex digits with a
    letter), or the device's own ``mac`` (5.1-2); and one below ``min_entropy_bits``: for a
    generated password (``alphabet`` given) its exact entropy, otherwise an optimistic estimate
    from the character classes it uses (5.1-2).
    """
    validate_serial(serial)
    if not password:
        raise PolicyRefusal(f"device {serial}: the password is empty", provision="5.1-1")
    if _CONTROL.search(password):
        raise PolicyRefusal(f"device {serial}: the password contains control characters", provision="5.1-2")
    problem = _content_problem(password, serial, mac)
    if problem is not None:
        provision, reason = problem
        raise PolicyRefusal(f"device {serial}: the password is refused: {reason}", provision=provision)
    if alphabet is not None:
        chars = _alphabet(alphabet)
        if not set(password) <= set(chars):
            raise UsageError(f"device {serial}: the password has characters outside the {alphabet} alphabet")
        bits = len(password) * math.log2(len(chars))
    else:
        bits = _estimated_entropy_bits(password)
    if bits < min_entropy_bits:
        raise PolicyRefusal(
            f"device {serial}: the password has about {bits:.0f} bits of entropy, below the minimum of "
            f"{min_entropy_bits} bits",
            provision="5.1-2",
        )


# ---------------------------------------------------------------------------------------- generation


def _check_product(product: str) -> None:
    if not product or len(product) > _MAX_PRODUCT_CHARS or _CONTROL.search(product):
        raise UsageError(f"product {product!r} must be 1 to {_MAX_PRODUCT_CHARS} printable characters")


def _first_acceptable(make: Callable[[int], str | None], serial: str, mac: str | None, what: str) -> str:
    for attempt in range(MAX_DERIVATION_ATTEMPTS):
        candidate = make(attempt)
        if candidate is None:  # pragma: no cover - needs 2048 bytes with fewer than 64 accepted
            continue
        if _content_problem(candidate, serial, mac) is None:
            return candidate
    raise PolicyRefusal(
        f"device {serial}: no acceptable {what} password in {MAX_DERIVATION_ATTEMPTS} attempts",
        provision="5.1-2",
        hint="lengthen the password or choose a larger alphabet in [identity.password]",
    )


def derive_device_password(
    factory: KeyHandle,
    product: str,
    serial: str,
    *,
    alphabet: str,
    length: int,
    min_entropy_bits: int = DEFAULT_MIN_ENTROPY_BITS,
) -> str:
    """The derived password of device ``serial`` (module docstring; docs/provisioning.md#passwords).

    ``factory`` is the product's factory secret (``hmac-sha256``, file or PKCS#11 backend);
    ``product`` is the product name as the Security Context's ``[product].name`` gives it at
    provisioning time (keep it in the production record: a later check re-derives with it).
    Settings below ``min_entropy_bits`` are refused (pass the context's value).
    """
    if factory.info.algorithm is not Algorithm.HMAC_SHA256:
        raise UsageError(
            f"key '{factory.info.name}' is a {factory.info.algorithm} key; passwords derive from an hmac-sha256 secret"
        )
    _check_product(product)
    validate_serial(serial)
    _check_length(length)
    chars = _check_settings(alphabet, length, min_entropy_bits, serial)
    prefix = _message_prefix(product, serial, alphabet, length)

    def attempt_password(attempt: int) -> str | None:
        head = prefix + attempt.to_bytes(4, "big")
        blocks = (factory.mac(head + block.to_bytes(4, "big")) for block in range(_MAX_BLOCKS))
        return _encode(blocks, chars, length)

    return _first_acceptable(attempt_password, serial, None, "derived")


def random_device_password(
    serial: str,
    *,
    alphabet: str,
    length: int,
    min_entropy_bits: int = DEFAULT_MIN_ENTROPY_BITS,
    mac: str | None = None,
) -> str:
    """A password drawn from the operating system's CSPRNG (context mode ``random``), passing the same checks."""
    validate_serial(serial)
    _check_length(length)
    chars = _check_settings(alphabet, length, min_entropy_bits, serial)
    if mac is not None:
        _normalised_mac(mac)

    def draw(_attempt: int) -> str | None:
        return _encode((secrets.token_bytes(32) for _ in range(_MAX_BLOCKS)), chars, length)

    return _first_acceptable(draw, serial, mac, "random")


# ------------------------------------------------------------------------------------------ verifier


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def _verifier_cost() -> tuple[int, int, int]:
    return _TEST_VERIFIER_COST if os.environ.get(INSECURE_TEST_KDF_ENV) == "1" else VERIFIER_COST


def _scrypt(password: str, salt: bytes, log_n: int, r: int, p: int) -> bytes:
    kdf = Scrypt(salt=salt, length=_VERIFIER_HASH_BYTES, n=1 << log_n, r=r, p=p)
    return kdf.derive(password.encode("utf-8"))


def password_verifier(password: str) -> str:
    """What the production record keeps instead of the password: ``$scrypt$ln=14,r=8,p=1$<salt>$<hash>``.

    scrypt (RFC 7914) of the password's UTF-8 bytes with a 16-byte random salt, 32 bytes out; salt
    and hash in standard base64 without padding (the PHC string format). The cost (N=2^14, r=8,
    p=1) is modest because a generated password carries 60+ bits of entropy; the salt makes every
    record its own brute-force problem. Check a password later with :func:`verify_password`.
    """
    if not password:
        raise UsageError("a verifier needs a non-empty password")
    log_n, r, p = _verifier_cost()
    salt = os.urandom(_VERIFIER_SALT_BYTES)
    digest = _scrypt(password, salt, log_n, r, p)
    return f"$scrypt$ln={log_n},r={r},p={p}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, verifier: str) -> None:
    """Raise :class:`PasswordMismatchError` unless ``password`` is the one ``verifier`` was made from.

    A malformed verifier, or one whose cost exceeds 256 MiB, raises :class:`UsageError`.
    """
    match = _VERIFIER.fullmatch(verifier)
    if match is None:
        raise UsageError("not a trustroot password verifier ($scrypt$ln=..,r=..,p=..$salt$hash)")
    log_n, r, p = (int(match.group(i)) for i in (1, 2, 3))
    if not (1 <= log_n <= 20 and 1 <= r <= 32 and 1 <= p <= 16) or 128 * r * (1 << log_n) > _VERIFIER_MAX_MEMORY:
        raise UsageError(f"password verifier cost ln={log_n}, r={r}, p={p} is out of the accepted range")
    try:
        salt, expected = _unb64(match.group(4)), _unb64(match.group(5))
    except (binascii.Error, ValueError) as exc:  # pragma: no cover - the pattern admits only valid base64
        raise UsageError("the password verifier's salt or hash is not base64") from exc
    if not password:
        raise PasswordMismatchError("the password does not match the device's verifier")
    if not hmac.compare_digest(_scrypt(password, salt, log_n, r, p), expected):
        raise PasswordMismatchError("the password does not match the device's verifier")
