#!/usr/bin/env python3
"""Build ``tests/vectors/passwords.json``: known answers for derived device passwords.

This is an independent implementation of the derivation in docs/provisioning.md ("Passwords"),
written from the document with the standard library only (it does not import trustroot), so the
vectors check trustroot's implementation rather than repeat it. The only shared input is the
common-password list, read from ``src/trustroot/data/common-passwords.txt``.

The output depends on nothing but this script and that list, so a re-run gives the same bytes;
``--check`` says whether the file in the tree is what this script makes (for CI).

Usage: scripts/make_password_vectors.py [--check] [--output PATH]
"""

from __future__ import annotations

import argparse
import hmac
import json
import re
import sys
import unicodedata
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT = REPO / "tests" / "vectors" / "passwords.json"
COMMON_LIST = REPO / "src" / "trustroot" / "data" / "common-passwords.txt"

#: The factory secret of every vector: the 32 bytes 0x00, 0x01, ..., 0x1f.
SECRET = bytes(range(32))
LABEL = b"trustroot/pw/v1"
ALPHABETS = {
    "base32": "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567",
    "base58": "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz",
    "alnum": "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
    "digits": "0123456789",
}

CASES = [
    # (product, serial, alphabet, length)
    ("Acme Plug", "ACMEPL-00000001", "base32", 16),
    ("Acme Plug", "ACMEPL-00000002", "base32", 16),
    ("Acme Plug", "ACMEPL-00000001", "base32", 17),
    ("Acme Plug", "ACMEPL-00000001", "base32", 64),
    ("Acme Plug", "ACMEPL-00000001", "base58", 12),
    ("Acme Plug", "ACMEPL-00000001", "base58", 64),
    ("Acme Plug", "ACMEPL-00000001", "alnum", 20),
    ("Acme Plug", "ACMEPL-00000001", "digits", 20),
    ("Acme Plug", "ACMEPL-99999999", "alnum", 8),
    ("acme plug", "ACMEPL-00000001", "base32", 16),
    ("Thermostat \u00e9l\u00e9gant \u2603", "TH0000000000000042", "base32", 16),
    ("T", "A0000", "digits", 6),
    ("Gateway", "GW-EU-1234567890123456", "base58", 24),
]

_MAC_SEPARATED = re.compile(r"[0-9A-Fa-f]{2}([:-])(?:[0-9A-Fa-f]{2}\1){4}[0-9A-Fa-f]{2}", re.ASCII)
_MAC_DOTTED = re.compile(r"[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4}", re.ASCII)


def load_common() -> frozenset[str]:
    lines = COMMON_LIST.read_text(encoding="utf-8").splitlines()
    body = lines[lines.index("") + 1 :]
    return frozenset(unicodedata.normalize("NFC", line.strip()).casefold() for line in body if line.strip())


COMMON = load_common()


def message(product: str, serial: str, alphabet: str, length: int, *, attempt: int, block: int) -> bytes:
    def field(data: bytes) -> bytes:
        return len(data).to_bytes(2, "big") + data

    return (
        LABEL
        + field(product.encode("utf-8"))
        + field(serial.encode("utf-8"))
        + field(alphabet.encode("ascii"))
        + length.to_bytes(2, "big")
        + attempt.to_bytes(4, "big")
        + block.to_bytes(4, "big")
    )


def candidate(product: str, serial: str, alphabet: str, length: int, attempt: int) -> tuple[str, int]:
    """The password of one attempt and how many HMAC blocks it used."""
    chars = ALPHABETS[alphabet]
    n = len(chars)
    out = ""
    block = 0
    while True:
        for byte in hmac.new(
            SECRET, message(product, serial, alphabet, length, attempt=attempt, block=block), "sha256"
        ).digest():
            if byte < 256 - 256 % n:
                out += chars[byte % n]
                if len(out) == length:
                    return out, block + 1
        block += 1


def refused(password: str, serial: str) -> bool:
    """The content checks: common list, serial, trailing sequence number, MAC shape."""
    if unicodedata.normalize("NFC", password.strip()).casefold() in COMMON:
        return True
    if serial.casefold() in password.casefold():
        return True
    digits = re.search(r"[0-9]+\Z", serial, re.ASCII)
    if digits and len(digits.group()) >= 4 and digits.group() in password:
        return True
    if _MAC_SEPARATED.search(password) or _MAC_DOTTED.search(password):
        return True
    return bool(re.fullmatch(r"[0-9A-Fa-f]{12}", password, re.ASCII) and re.search(r"[A-Fa-f]", password))


def vector(product: str, serial: str, alphabet: str, length: int) -> dict[str, object]:
    attempt = 0
    while True:
        password, blocks = candidate(product, serial, alphabet, length, attempt)
        if not refused(password, serial):
            break
        attempt += 1
    return {
        "product": product,
        "serial": serial,
        "alphabet": alphabet,
        "length": length,
        "password": password,
        "attempt": attempt,
        "blocks": blocks,
        "first_message_hex": message(product, serial, alphabet, length, attempt=0, block=0).hex(),
    }


def rederived_case(product: str, serial_format: str, length: int) -> tuple[str, str, str, int]:
    """The first serial of ``serial_format`` whose attempt 0 is refused: exercises the re-derivation counter."""
    for seq in range(1_000_000):
        serial = serial_format.format(seq)
        if refused(candidate(product, serial, "digits", length, 0)[0], serial):
            return (product, serial, "digits", length)
    raise SystemExit("no re-derivation case found")


#: A common 6-digit password at attempt 0, and a 16-digit one holding the serial's sequence number.
REDERIVED = [("Digits", "DIG-{:06d}", 6), ("Counter", "CNT-{:04d}", 16)]


def build() -> bytes:
    vectors = [vector(*case) for case in [*CASES, *(rederived_case(*r) for r in REDERIVED)]]
    document = {
        "description": "Known answers for trustroot derived device passwords (docs/provisioning.md, Passwords). "
        "Every vector uses min_entropy_bits = 0; 'attempt' is the re-derivation counter that gave the "
        "password, 'blocks' the HMAC blocks it read, 'first_message_hex' M(attempt 0, block 0).",
        "generator": "scripts/make_password_vectors.py",
        "secret_hex": SECRET.hex(),
        "vectors": vectors,
    }
    return (json.dumps(document, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with the file instead of writing it")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)
    data = build()
    if args.check:
        current = args.output.read_bytes() if args.output.exists() else b""
        if current != data:
            print(f"{args.output} is out of date: run scripts/make_password_vectors.py", file=sys.stderr)
            return 1
        print(f"{args.output} is up to date")
        return 0
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_bytes(data)
    print(f"wrote {len(json.loads(data)['vectors'])} vectors to {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
