"""crypt(3) hashes for testing shipped password hashes against well-known defaults.

Python's ``crypt`` module is deprecated in 3.11 and gone in 3.13, so the schemes firmware uses
are computed here: MD5-crypt (``$1$``, Apache's ``$apr1$``), SHA-256-crypt (``$5$``) and SHA-512-crypt (``$6$``) in
pure Python, following the published algorithms (PHK's md5crypt, Drepper's SHA-crypt). When the
system's libcrypt (libxcrypt) can be loaded it is used instead, for speed and for the schemes
not written here (DES, bcrypt, yescrypt); :func:`pure_crypt` is the reference the tests compare.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import hashlib
import hmac
import threading
from collections.abc import Callable
from typing import Final

__all__ = ["MAX_ROUNDS", "check_password", "pure_crypt"]

_ITOA64: Final = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
#: Hashes asking for more SHA-crypt rounds than this are not tried (too costly to test).
MAX_ROUNDS: Final = 50_000
_SHA_DEFAULT_ROUNDS: Final = 5000

_SHA512_ORDER: Final = (
    (0, 21, 42), (22, 43, 1), (44, 2, 23), (3, 24, 45), (25, 46, 4), (47, 5, 26), (6, 27, 48),
    (28, 49, 7), (50, 8, 29), (9, 30, 51), (31, 52, 10), (53, 11, 32), (12, 33, 54), (34, 55, 13),
    (56, 14, 35), (15, 36, 57), (37, 58, 16), (59, 17, 38), (18, 39, 60), (40, 61, 19), (62, 20, 41),
)  # fmt: skip
_SHA256_ORDER: Final = (
    (0, 10, 20), (21, 1, 11), (12, 22, 2), (3, 13, 23), (24, 4, 14),
    (15, 25, 5), (6, 16, 26), (27, 7, 17), (18, 28, 8), (9, 19, 29),
)  # fmt: skip
_MD5_ORDER: Final = ((0, 6, 12), (1, 7, 13), (2, 8, 14), (3, 9, 15), (4, 10, 5))


def _to64(value: int, count: int) -> str:
    out = []
    for _ in range(count):
        out.append(_ITOA64[value & 0x3F])
        value >>= 6
    return "".join(out)


def _md5_crypt(password: bytes, salt: bytes, magic: bytes = b"$1$") -> str:
    salt = salt[:8]
    alt = hashlib.md5(password + salt + password, usedforsecurity=False).digest()
    ctx = password + magic + salt
    n = len(password)
    while n > 0:
        ctx += alt[: min(16, n)]
        n -= 16
    i = len(password)
    while i:
        ctx += b"\0" if i & 1 else password[:1]
        i >>= 1
    final = hashlib.md5(ctx, usedforsecurity=False).digest()
    for r in range(1000):
        c = password if r & 1 else final
        if r % 3:
            c += salt
        if r % 7:
            c += password
        c += final if r & 1 else password
        final = hashlib.md5(c, usedforsecurity=False).digest()
    out = "".join(_to64((final[a] << 16) | (final[b] << 8) | final[c], 4) for a, b, c in _MD5_ORDER)
    out += _to64(final[11], 2)
    return f"{magic.decode()}{salt.decode('latin-1')}${out}"


def _repeat(block: bytes, length: int) -> bytes:
    return block * (length // len(block)) + block[: length % len(block)]


def _sha_crypt(password: bytes, salt: bytes, rounds: int | None, big: bool) -> str:
    new: Callable[[bytes], hashlib._Hash] = hashlib.sha512 if big else hashlib.sha256
    salt = salt[:16]
    b = new(password + salt + password).digest()
    a = password + salt + _repeat(b, len(password))
    i = len(password)
    while i > 0:
        a += b if i & 1 else password
        i >>= 1
    digest_a = new(a).digest()
    p = _repeat(new(password * len(password)).digest(), len(password))
    s = _repeat(new(salt * (16 + digest_a[0])).digest(), len(salt))
    c = digest_a
    for r in range(rounds or _SHA_DEFAULT_ROUNDS):
        block = p if r & 1 else c
        if r % 3:
            block += s
        if r % 7:
            block += p
        block += c if r & 1 else p
        c = new(block).digest()
    if big:
        out = "".join(_to64((c[x] << 16) | (c[y] << 8) | c[z], 4) for x, y, z in _SHA512_ORDER)
        out += _to64(c[63], 2)
    else:
        out = "".join(_to64((c[x] << 16) | (c[y] << 8) | c[z], 4) for x, y, z in _SHA256_ORDER)
        out += _to64((c[31] << 8) | c[30], 3)
    prefix = "$6$" if big else "$5$"
    if rounds is not None:
        prefix += f"rounds={rounds}$"
    return f"{prefix}{salt.decode('latin-1')}${out}"


def pure_crypt(password: str, setting: str) -> str | None:
    """The crypt(3) hash of ``password`` under ``setting`` (a full hash or ``$id$salt``), or None.

    None means the scheme is not one this pure implementation knows, or asks for more than
    :data:`MAX_ROUNDS` rounds.
    """
    pw = password.encode("utf-8")
    parts = setting.split("$")
    if len(parts) < 3 or parts[0] != "":
        return None
    ident = parts[1]
    if ident in ("1", "apr1"):
        return _md5_crypt(pw, parts[2].encode("latin-1"), f"${ident}$".encode())
    if ident in ("5", "6"):
        rounds: int | None = None
        salt = parts[2]
        if salt.startswith("rounds=") and len(parts) >= 4:
            try:
                rounds = max(1000, min(999_999_999, int(salt.removeprefix("rounds="))))
            except ValueError:
                return None
            if rounds > MAX_ROUNDS:
                return None
            salt = parts[3]
        return _sha_crypt(pw, salt.encode("latin-1"), rounds, ident == "6")
    return None


_LOCK: Final = threading.Lock()


@functools.cache
def _libcrypt() -> Callable[[bytes, bytes], bytes | None] | None:
    name = ctypes.util.find_library("crypt")
    if name is None:
        return None
    try:
        lib = ctypes.CDLL(name)
    except OSError:
        return None
    func = lib.crypt
    func.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    func.restype = ctypes.c_char_p

    def call(password: bytes, setting: bytes) -> bytes | None:
        with _LOCK:  # crypt(3) returns a static buffer
            result: bytes | None = func(password, setting)
        return result

    return call


def check_password(password: str, hashed: str) -> bool:
    """Whether ``password`` hashes to ``hashed`` (constant-time comparison of the results)."""
    if "\0" in password:
        return False
    lib = _libcrypt()
    result: str | None
    if lib is not None and not _too_costly(hashed) and not hashed.startswith("$apr1$"):
        raw = lib(password.encode("utf-8"), hashed.encode("latin-1"))
        result = None if raw is None or raw.startswith(b"*") else raw.decode("latin-1")
    else:
        result = pure_crypt(password, hashed)
    return result is not None and hmac.compare_digest(result.encode("latin-1"), hashed.encode("latin-1"))


def _too_costly(hashed: str) -> bool:
    if hashed.startswith(("$5$rounds=", "$6$rounds=")):
        try:
            return int(hashed.split("$")[2].removeprefix("rounds=")) > MAX_ROUNDS
        except ValueError:
            return True
    return hashed.startswith(("$2", "$y$", "$gy$", "$7$"))  # bcrypt, yescrypt, scrypt: too slow to crack here
