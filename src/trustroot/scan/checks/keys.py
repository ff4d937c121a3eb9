"""Private keys shipped in trees, inside binaries, and carved from raw blobs (PEM, DER, OpenSSH, PKCS#12).

A candidate is a finding only when ``cryptography`` parses it as a private key: a PEM block with
a private-key label, a DER ``SEQUENCE`` shaped like PKCS#1, SEC1 or PKCS#8, or a PKCS#12 bundle
(opened without a password or with a well-known one). Encrypted keys are reported at low severity
(they can be cracked offline, but are not usable as they are). Offsets are exact, so a blob finding
names the bytes of the key.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa, x448, x25519
from cryptography.hazmat.primitives.serialization import (
    load_der_private_key,
    load_pem_private_key,
    load_ssh_private_key,
    pkcs12,
)

__all__ = ["MAX_DER_CANDIDATES", "KeyHit", "find_keys"]

#: At most this many DER candidates are parsed per file or blob window (bounds the work on noise).
MAX_DER_CANDIDATES: Final = 20_000
#: A PEM block longer than this is not a key.
MAX_PEM_BYTES: Final = 64 * 1024
#: Passwords tried on a PKCS#12 bundle.
P12_PASSWORDS: Final = (None, b"", b"password", b"1234", b"123456", b"changeit", b"admin", b"secret", b"pass")

_PEM: Final = re.compile(
    rb"-----BEGIN ((?:RSA |EC |DSA |OPENSSH |ENCRYPTED |ANY )?PRIVATE KEY)-----[\s\S]{16,65536}?-----END \1-----"
)
_DER: Final = re.compile(
    rb"\x30(?:\x82[\x01-\x2f][\x00-\xff]|\x81[\x40-\xff]|[\x2e-\x7f])\x02\x01(?:\x00(?=[\x02\x30])|\x01(?=\x04))"
    rb"|\x30\x82[\x01-\x3f][\x00-\xff]\x02\x01\x03\x30",
    re.DOTALL,
)


@dataclass(frozen=True, slots=True)
class KeyHit:
    """One private key: where it is, what it is, whether it is encrypted."""

    offset: int
    length: int
    kind: str
    encrypted: bool
    container: str


def _describe(key: object) -> str:  # noqa: PLR0911 - one return per key type
    if isinstance(key, rsa.RSAPrivateKey):
        return f"RSA {key.key_size}-bit"
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return f"EC {key.curve.name}"
    if isinstance(key, dsa.DSAPrivateKey):
        return f"DSA {key.key_size}-bit"
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "Ed25519"
    if isinstance(key, ed448.Ed448PrivateKey):
        return "Ed448"
    if isinstance(key, x25519.X25519PrivateKey | x448.X448PrivateKey):
        return "X25519/X448"
    return type(key).__name__


def _pem(block: bytes, label: bytes) -> tuple[str, bool] | None:
    try:
        if label == b"OPENSSH PRIVATE KEY":
            return _describe(load_ssh_private_key(block, password=None)), False
        return _describe(load_pem_private_key(block, password=None)), False
    except TypeError:
        return "encrypted", True  # password required: a real, encrypted key
    except (ValueError, IndexError, OverflowError) as exc:
        text = str(exc).lower()
        if "encrypted" in text or "password" in text or "bcrypt" in text:
            return "encrypted", True
        return None
    except Exception:  # noqa: BLE001 - unsupported algorithms raise library-specific errors
        return None


def _der_length(data: bytes, at: int) -> int | None:
    b = data[at + 1]
    if b < 0x80:
        return 2 + b
    if b == 0x81:
        return 3 + data[at + 2]
    if b == 0x82:
        return 4 + (data[at + 2] << 8 | data[at + 3])
    return None


def _der(data: bytes, at: int) -> tuple[int, str, bool] | None:  # noqa: PLR0911
    total = _der_length(data, at)
    if total is None or at + total > len(data):
        return None
    blob = data[at : at + total]
    if blob[4:7] == b"\x02\x01\x03" or blob[3:6] == b"\x02\x01\x03":
        for password in P12_PASSWORDS:
            try:
                key, _cert, _extra = pkcs12.load_key_and_certificates(blob, password)
            except (ValueError, TypeError):
                continue
            except Exception:  # noqa: BLE001
                return None
            if key is None:
                return None
            how = "no password" if not password else "a well-known password"
            return total, f"PKCS#12 with {how}: {_describe(key)}", False
        return None
    try:
        key = load_der_private_key(blob, password=None)
    except (ValueError, TypeError, IndexError, OverflowError):
        return None
    except Exception:  # noqa: BLE001
        return None
    return total, f"DER {_describe(key)}", False


def find_keys(data: bytes, base: int = 0) -> list[KeyHit]:
    """Every private key in ``data`` (offsets are ``base`` + the offset in ``data``)."""
    hits: list[KeyHit] = []
    covered: list[tuple[int, int]] = []
    for m in _PEM.finditer(data):
        got = _pem(m.group(0), m.group(1))
        if got is None:
            continue
        kind, encrypted = got
        hits.append(KeyHit(base + m.start(), m.end() - m.start(), kind, encrypted, "PEM " + m.group(1).decode()))
        covered.append((m.start(), m.end()))
    tried = 0
    pos = 0
    while tried < MAX_DER_CANDIDATES:
        der = _DER.search(data, pos)
        if der is None:
            break
        tried += 1
        at = der.start()
        got_der = None if any(s <= at < e for s, e in covered) else _der(data, at)
        if got_der is None:
            pos = at + 1
            continue
        length, kind, encrypted = got_der
        hits.append(KeyHit(base + at, length, kind, encrypted, "DER"))
        covered.append((at, at + length))
        pos = at + length
    return hits
