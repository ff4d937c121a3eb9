"""Password databases in firmware: /etc/shadow, /etc/passwd, htpasswd files and their backups.

Finds accounts without a password, weak hash schemes (DES crypt, MD5-crypt, unsalted SHA-1),
hashes readable by everyone in ``passwd``, plaintext htpasswd entries, accounts other than root
with uid 0, and hashes of well-known default passwords, cracked against the IoT defaults of the
Mirai family, the account's own name, and the head of the shipped common-password list.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import re
from importlib import resources
from pathlib import PurePosixPath
from typing import Final

from trustroot.scan.checks._common import make, mask
from trustroot.scan.checks._crypt import check_password
from trustroot.scan.findings import Finding

__all__ = [
    "MAX_CRACK_CANDIDATES",
    "MAX_CRACK_CANDIDATES_COSTLY",
    "candidates",
    "check_password_file",
    "is_password_file",
]

#: How many entries of the common-password list (most common first) are tried per hash of a
#: cheap scheme (DES, MD5-crypt, apr1, SHA-1), and of a costly one (SHA-crypt and anything else).
MAX_CRACK_CANDIDATES: Final = 256
MAX_CRACK_CANDIDATES_COSTLY: Final = 32

#: Default credentials of IoT devices (the Mirai botnet's list and vendor defaults).
IOT_DEFAULTS: Final = (
    "admin", "root", "password", "1234", "12345", "123456", "default", "guest", "user", "support",
    "ubnt", "toor", "pass", "changeme", "service", "system", "vizxv", "xc3511", "888888", "54321",
    "666666", "xmhdipc", "juantech", "anko", "realtek", "7ujMko0admin", "7ujMko0vizxv", "zlxx.", "Zte521",
    "hi3518", "klv123", "jvbzd", "admin1234", "1111", "smcadmin", "4321", "meinsm", "tech",
    "supervisor", "iot", "raspberry", "openwrt", "alpine", "dreambox", "vagrant", "ubuntu", "pi",
    "admin123", "1234567", "12345678", "123456789", "qwerty", "letmein", "",
)  # fmt: skip

_NAMES: Final = re.compile(
    r"(?:^|/)(?:shadow|passwd|master\.passwd|gshadow)(?:-|\.bak|\.old|\.orig|\.save|~)?$|(?:^|/)\.?htpasswd[^/]*$"
)
_SHADOW_LINE: Final = re.compile(r"^([A-Za-z0-9_][A-Za-z0-9_.@-]*\$?):([^:\n]*):")
_DES: Final = re.compile(r"^[./0-9A-Za-z]{13}$")


@functools.cache
def _common_ordered() -> tuple[str, ...]:
    """The shipped common-password list in its order (most common first), up to the bound."""
    text = resources.files("trustroot").joinpath("data", "common-passwords.txt").read_text(encoding="utf-8")
    _, _, body = text.partition("\n\n")
    out: list[str] = []
    for line in body.splitlines():
        if line.strip():
            out.append(line.strip())
        if len(out) >= MAX_CRACK_CANDIDATES:
            break
    return tuple(out)


def candidates(user: str, *, costly: bool = False) -> tuple[str, ...]:
    """Passwords tried against one account's hash, in order, without repeats."""
    seen: dict[str, None] = {}
    common = _common_ordered()[:MAX_CRACK_CANDIDATES_COSTLY] if costly else _common_ordered()
    for c in (user, *IOT_DEFAULTS, *common):
        seen.setdefault(c, None)
    return tuple(seen)


def is_password_file(rel: str) -> bool:
    """Whether the file at ``rel`` (relative path) is a password database, by its name."""
    return bool(_NAMES.search(rel))


@functools.lru_cache(maxsize=1024)
def _crack(user: str, hashed: str) -> str | None:
    if hashed.startswith("{SHA}"):
        want = hashed[5:].encode()
        for c in candidates(user):
            got = base64.b64encode(hashlib.sha1(c.encode(), usedforsecurity=False).digest())
            if hmac.compare_digest(got, want):
                return c
        return None
    for c in candidates(user, costly=not _scheme(hashed)):
        if check_password(c, hashed):
            return c
    return None


def _scheme(hashed: str) -> str:
    if hashed.startswith("$1$"):
        return "MD5-crypt"
    if hashed.startswith("$apr1$"):
        return "Apache MD5 (apr1)"
    if hashed.startswith("{SHA}"):
        return "unsalted SHA-1"
    if _DES.match(hashed):
        return "DES crypt"
    return ""


def _is_hash(field: str) -> bool:
    return bool(field.startswith(("$", "{SHA}")) or _DES.match(field))


def check_password_file(rel: str, data: bytes) -> list[Finding]:
    """Findings over one password database (shadow, passwd or htpasswd format)."""
    name = PurePosixPath(rel).name
    kind = "htpasswd" if "htpasswd" in name else ("passwd" if "passwd" in name else "shadow")
    text = data.decode("utf-8", errors="replace")
    found: list[Finding] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        m = _SHADOW_LINE.match(line)
        if m is None:
            if kind == "htpasswd" and ":" in line and not line.startswith("#"):
                user, _, secret = line.partition(":")
                m2 = re.match(r"^[A-Za-z0-9_.@-]+$", user)
                if m2 and secret:
                    found.extend(_check_entry(rel, lineno, line, user, secret, kind, []))
            continue
        user, secret = m.group(1), m.group(2)
        fields = line.split(":")
        found.extend(_check_entry(rel, lineno, line, user, secret, kind, fields))
    return found


_NOT_SECRET: Final = frozenset({"", "x", "*", "!", "!!", "*LK*", "NP"})


def _masked_line(line: str, user: str, secret: str) -> str:
    """The entry with its password field (the second) masked; the rest as it is."""
    if secret in _NOT_SECRET:
        return line
    rest = line[len(user) + 1 + len(secret) :]
    return f"{user}:{mask(secret)}{rest}"


def _check_entry(  # noqa: PLR0917
    rel: str, lineno: int, line: str, user: str, secret: str, kind: str, fields: list[str]
) -> list[Finding]:
    found: list[Finding] = []
    snippet = _masked_line(line, user, secret)[:160]
    if kind == "passwd" and len(fields) >= 4 and fields[2] == "0" and user not in ("root", "toor"):
        found.append(
            make("passwd.extra-uid0", rel, line=lineno, snippet=snippet, message=f"account '{user}' has uid 0")
        )
    shell = fields[6] if len(fields) >= 7 else ""
    no_login = shell.endswith(("/false", "/nologin", "/sync", "/shutdown", "/halt"))
    if secret in ("x", "*", "!", "!!", "*LK*", "NP") or secret.startswith(("!", "*")):
        return found
    if secret == "":
        if kind == "htpasswd" or (kind == "passwd" and no_login):
            return found
        found.append(
            make(
                "passwd.empty-password", rel, line=lineno, snippet=snippet, message=f"account '{user}' has no password"
            )
        )
        return found
    if kind == "htpasswd" and not _is_hash(secret):
        found.append(
            make("passwd.plaintext", rel, line=lineno, snippet=snippet, message=f"password of '{user}' stored in clear")
        )
        return found
    if kind == "passwd":
        found.append(
            make(
                "passwd.hash-in-passwd",
                rel,
                line=lineno,
                snippet=snippet,
                message=f"password hash of '{user}' is in the world-readable passwd file",
            )
        )
    scheme = _scheme(secret)
    if scheme:
        found.append(
            make(
                "passwd.weak-hash",
                rel,
                line=lineno,
                snippet=snippet,
                message=f"password of '{user}' hashed with {scheme}",
            )
        )
    cracked = _crack(user, secret)
    if cracked is not None:
        found.append(
            make(
                "passwd.default-password",
                rel,
                line=lineno,
                snippet=snippet,
                message=f"password of '{user}' is a well-known default (not shown)",
            )
        )
    return found
