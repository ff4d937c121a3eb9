"""Time-based one-time passwords (RFC 6238 over RFC 4226 HOTP): the console's second factor.

SHA-1, 6 digits, 30-second steps: what every authenticator app understands. A code is accepted
for the current step and one step either side (clock drift), and never twice: the caller keeps the
last accepted step and passes it back (:func:`verify`), so a code seen over a shoulder or replayed
from a log is refused.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import struct
from datetime import datetime
from typing import Final
from urllib.parse import quote

__all__ = ["DIGITS", "STEP_SECONDS", "hotp", "new_secret", "otpauth_uri", "step_of", "totp", "verify"]

DIGITS: Final = 6
STEP_SECONDS: Final = 30
#: Steps accepted either side of the current one.
DRIFT_STEPS: Final = 1
_SECRET_BYTES: Final = 20
_CODE = re.compile(r"^[0-9]{6}$")


def new_secret() -> str:
    """A fresh 160-bit secret in base32 without padding (as authenticator apps expect)."""
    return base64.b32encode(secrets.token_bytes(_SECRET_BYTES)).decode("ascii").rstrip("=")


def _key(secret_b32: str) -> bytes:
    padded = secret_b32.upper() + "=" * (-len(secret_b32) % 8)
    return base64.b32decode(padded)


def hotp(key: bytes, counter: int, digits: int = DIGITS) -> str:
    """RFC 4226 HOTP value of ``counter`` under ``key``."""
    mac = hmac.new(key, struct.pack(">Q", counter), hashlib.sha1).digest()
    offset = mac[-1] & 0x0F
    number = struct.unpack(">I", mac[offset : offset + 4])[0] & 0x7FFFFFFF
    return str(number % 10**digits).zfill(digits)


def step_of(moment: datetime) -> int:
    """The RFC 6238 time step of ``moment``."""
    return int(moment.timestamp()) // STEP_SECONDS


def totp(secret_b32: str, moment: datetime) -> str:
    """The code an authenticator shows at ``moment``."""
    return hotp(_key(secret_b32), step_of(moment))


def verify(secret_b32: str, code: str, moment: datetime, last_step: int | None) -> int | None:
    """The step ``code`` is valid for (to store as the new ``last_step``), or ``None`` if it is not.

    A step at or before ``last_step`` is never accepted (no replay).
    """
    if not _CODE.match(code):
        return None
    key = _key(secret_b32)
    now = step_of(moment)
    for step in range(now - DRIFT_STEPS, now + DRIFT_STEPS + 1):
        if last_step is not None and step <= last_step:
            continue
        if hmac.compare_digest(hotp(key, step), code):
            return step
    return None


def otpauth_uri(secret_b32: str, account: str, issuer: str) -> str:
    """The ``otpauth://`` URI an authenticator app scans (Key URI Format)."""
    label = quote(f"{issuer}:{account}", safe="")
    return (
        f"otpauth://totp/{label}?secret={secret_b32}&issuer={quote(issuer, safe='')}"
        f"&algorithm=SHA1&digits={DIGITS}&period={STEP_SECONDS}"
    )
