"""One-time owner claim codes: printed on the device label, presented once to claim ownership.

A claim code is 19 random symbols of Crockford's base32 (95 bits) and one Luhn mod 32 check
symbol, printed in five groups of four::

    7KQ2-M9XD-4HTA-0ZRW-PB3J      alphabet 0123456789ABCDEFGHJKMNPQRSTVWXYZ (no I, L, O, U)
    └──── 19 random symbols ───┘└ check symbol (Luhn mod 32 over the 19 before it)

Typing is forgiving: case, spaces and hyphens are ignored, ``O`` reads as ``0`` and ``I``/``L`` as
``1``. The check symbol catches every single mistyped symbol and every swap of two neighbours
except ``0`` <-> ``Z``, so a typo is told apart from a wrong code before anything is looked up.

What is kept (the production record, the fleet service): :func:`claim_code_hash`, the lower-case
hex SHA-256 of ``"trustroot/claim/v1:"`` followed by the 20 normalised symbols (ASCII). A fast,
unsalted hash is enough here: the code carries 95 random bits, so searching the hash is
infeasible, and an unsalted hash lets the service find the device by the presented code.

Errors::

    UsageError
    └── ClaimCodeError     a malformed or mistyped code, or one that does not match its hash

``ClaimCodeError`` is defined here until it moves to :mod:`trustroot.errors`.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from typing import Final

from trustroot.errors import ClaimCodeError, UsageError

__all__ = [
    "CLAIM_ALPHABET",
    "CLAIM_CODE_BITS",
    "CLAIM_HASH_LABEL",
    "ClaimCodeError",
    "claim_code_hash",
    "format_claim_code",
    "generate_claim_code",
    "normalize_claim_code",
    "verify_claim_code",
]

#: Crockford's base32 symbols, value = index.
CLAIM_ALPHABET: Final = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
#: Random bits in a claim code (19 symbols of 5 bits).
CLAIM_CODE_BITS: Final = 95
#: Domain separation of :func:`claim_code_hash`.
CLAIM_HASH_LABEL: Final = b"trustroot/claim/v1:"

_DATA_SYMBOLS = 19
_SYMBOLS = _DATA_SYMBOLS + 1
_GROUP = 4
_N = len(CLAIM_ALPHABET)
_VALUE = {symbol: value for value, symbol in enumerate(CLAIM_ALPHABET)}
_DOUBLED = [2 * v // _N + 2 * v % _N for v in range(_N)]
_SHIFTS = [5 * i for i in reversed(range(_DATA_SYMBOLS))]
_READ_AS = str.maketrans({"O": "0", "I": "1", "L": "1"})
_IGNORED = re.compile(r"[\s-]+")
_MAX_INPUT_CHARS = 64
_HASH = re.compile(r"[0-9a-f]{64}", re.ASCII)


def _luhn_sum(values: list[int], *, double_rightmost: bool) -> int:
    """Luhn mod N: from the right, every other value is doubled (2v reduced to 2v // N + 2v mod N) and all summed."""
    doubled, plain = (values[-1::-2], values[-2::-2]) if double_rightmost else (values[-2::-2], values[-1::-2])
    return sum(_DOUBLED[v] for v in doubled) + sum(plain)


def _check_symbol(values: list[int]) -> int:
    """The check value of the data values: the one that makes the Luhn sum of data + check divisible by N."""
    return -_luhn_sum(values, double_rightmost=True) % _N


def format_claim_code(normalised: str) -> str:
    """Five groups of four symbols joined by ``-`` (the form printed on the label)."""
    return "-".join(normalised[i : i + _GROUP] for i in range(0, len(normalised), _GROUP))


def generate_claim_code() -> str:
    """A fresh claim code from the operating system's CSPRNG, formatted for the label."""
    number = secrets.randbits(CLAIM_CODE_BITS)
    values = [(number >> shift) & 0x1F for shift in _SHIFTS]
    values.append(_check_symbol(values))
    return format_claim_code("".join(CLAIM_ALPHABET[v] for v in values))


def normalize_claim_code(code: str) -> str:
    """The 20 canonical symbols of a code as typed; raise :class:`ClaimCodeError` if malformed or mistyped."""
    if len(code) > _MAX_INPUT_CHARS:
        raise ClaimCodeError("a claim code is 20 symbols, like 7KQ2-M9XD-4HTA-0ZRW-PB3J")
    text = _IGNORED.sub("", code).upper().translate(_READ_AS)
    if len(text) != _SYMBOLS:
        raise ClaimCodeError(f"a claim code has 20 symbols, this one has {len(text)}")
    bad = sorted({c for c in text if c not in _VALUE})
    if bad:
        raise ClaimCodeError(f"a claim code has no {', '.join(repr(c) for c in bad)} in it")
    if _luhn_sum([_VALUE[c] for c in text], double_rightmost=False) % _N:
        raise ClaimCodeError("the claim code is mistyped (its check symbol does not match): please check it")
    return text


def claim_code_hash(code: str) -> str:
    """Hex SHA-256 of ``"trustroot/claim/v1:" || normalised code``: what the records keep."""
    return hashlib.sha256(CLAIM_HASH_LABEL + normalize_claim_code(code).encode("ascii")).hexdigest()


def verify_claim_code(code: str, expected_hash: str) -> None:
    """Raise :class:`ClaimCodeError` unless ``code`` (as typed) is the code whose hash is ``expected_hash``."""
    if _HASH.fullmatch(expected_hash) is None:
        raise UsageError("a claim code hash is 64 lower-case hexadecimal digits")
    if not hmac.compare_digest(claim_code_hash(code), expected_hash):
        raise ClaimCodeError("the claim code does not match this device")
