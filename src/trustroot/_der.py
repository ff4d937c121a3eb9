"""A small, strict DER encoder and decoder for the few ASN.1 structures trustroot writes itself.

Used for PKCS#8 ``EncryptedPrivateKeyInfo`` with PBES2/scrypt (pyca/cryptography only writes
PBKDF2 there) and to assemble certificates and CRLs whose signature comes from a key that cannot
leave its token. The decoder accepts definite-length DER only, bounds every length by the input,
and raises :class:`DerError` for anything else; callers turn that into their own error type.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "BIT_STRING",
    "INTEGER",
    "NULL",
    "OBJECT_IDENTIFIER",
    "OCTET_STRING",
    "SEQUENCE",
    "DerError",
    "Tlv",
    "bit_string",
    "decode_integer",
    "decode_oid",
    "integer",
    "null",
    "octet_string",
    "oid",
    "parse_one",
    "parse_sequence",
    "sequence",
    "tlv",
]

INTEGER = 0x02
BIT_STRING = 0x03
OCTET_STRING = 0x04
NULL = 0x05
OBJECT_IDENTIFIER = 0x06
SEQUENCE = 0x30

_MAX_LENGTH_OCTETS = 4


class DerError(ValueError):
    """The bytes are not the DER structure expected."""


def _length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def tlv(tag: int, content: bytes) -> bytes:
    """One tag-length-value element."""
    return bytes([tag]) + _length(len(content)) + content


def sequence(*items: bytes) -> bytes:
    return tlv(SEQUENCE, b"".join(items))


def integer(value: int) -> bytes:
    if value < 0:
        raise DerError("negative INTEGER not supported")
    return tlv(INTEGER, value.to_bytes(value.bit_length() // 8 + 1, "big"))


def octet_string(value: bytes) -> bytes:
    return tlv(OCTET_STRING, value)


def bit_string(value: bytes) -> bytes:
    """A BIT STRING with no unused bits."""
    return tlv(BIT_STRING, b"\x00" + value)


def null() -> bytes:
    return tlv(NULL, b"")


def oid(dotted: str) -> bytes:
    parts = [int(x) for x in dotted.split(".")]
    if len(parts) < 2 or parts[0] > 2 or (parts[0] < 2 and parts[1] >= 40):
        raise DerError(f"invalid OID {dotted}")
    body = bytearray()
    for arc in [40 * parts[0] + parts[1], *parts[2:]]:
        chunk = [arc & 0x7F]
        rest = arc >> 7
        while rest:
            chunk.append(0x80 | (rest & 0x7F))
            rest >>= 7
        body.extend(reversed(chunk))
    return tlv(OBJECT_IDENTIFIER, bytes(body))


@dataclass(frozen=True)
class Tlv:
    """A decoded element: its tag, its content and the whole encoding."""

    tag: int
    content: bytes
    raw: bytes


def parse_one(data: bytes, offset: int = 0) -> tuple[Tlv, int]:
    """Decode the element at ``offset``; return it and the offset just past it."""
    if offset + 2 > len(data):
        raise DerError("truncated element header")
    tag = data[offset]
    if tag & 0x1F == 0x1F:
        raise DerError("multi-byte tags are not used here")
    first = data[offset + 1]
    pos = offset + 2
    if first < 0x80:
        length = first
    else:
        count = first & 0x7F
        if count == 0:
            raise DerError("indefinite length is not DER")
        if count > _MAX_LENGTH_OCTETS or pos + count > len(data):
            raise DerError("length field too long or truncated")
        length = int.from_bytes(data[pos : pos + count], "big")
        if length < 0x80 or data[pos] == 0:
            raise DerError("non-minimal length encoding")
        pos += count
    end = pos + length
    if end > len(data):
        raise DerError("element runs past the end of its container")
    return Tlv(tag, data[pos:end], data[offset:end]), end


def parse_sequence(data: bytes, *, tag: int = SEQUENCE) -> list[Tlv]:
    """Decode ``data`` as exactly one constructed element of ``tag`` and return its children."""
    outer, end = parse_one(data)
    if end != len(data):
        raise DerError("trailing bytes after the element")
    if outer.tag != tag:
        raise DerError(f"expected tag 0x{tag:02x}, found 0x{outer.tag:02x}")
    children: list[Tlv] = []
    pos = 0
    while pos < len(outer.content):
        child, pos = parse_one(outer.content, pos)
        children.append(child)
    return children


def decode_integer(element: Tlv) -> int:
    if element.tag != INTEGER or not element.content:
        raise DerError("expected INTEGER")
    if element.content[0] & 0x80:
        raise DerError("negative INTEGER not accepted")
    if len(element.content) > 1 and element.content[0] == 0 and not element.content[1] & 0x80:
        raise DerError("non-minimal INTEGER encoding")
    return int.from_bytes(element.content, "big")


def decode_oid(element: Tlv) -> str:
    if element.tag != OBJECT_IDENTIFIER or not element.content:
        raise DerError("expected OBJECT IDENTIFIER")
    arcs: list[int] = []
    value = 0
    for byte in element.content:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            arcs.append(value)
            value = 0
    if element.content[-1] & 0x80:
        raise DerError("truncated OBJECT IDENTIFIER")
    first = arcs[0]
    head = [0, first] if first < 40 else [1, first - 40] if first < 80 else [2, first - 80]
    return ".".join(str(a) for a in head + arcs[1:])
