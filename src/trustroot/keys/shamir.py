"""Shamir secret sharing over GF(2^8), and the custodian's one-line share format.

A secret of ``L`` bytes is split byte-wise: for every byte ``s`` a random polynomial
``f(x) = s + a1·x + … + a(t-1)·x^(t-1)`` over GF(2^8) (the AES field, reduction polynomial
x^8 + x^4 + x^3 + x + 1 = 0x11b) is drawn with coefficients from :mod:`secrets`, and share ``i``
(``i`` = 1..n) holds ``f(i)`` for every byte. Any ``t`` shares give the secret back by Lagrange
interpolation at 0; fewer than ``t`` reveal nothing about it. Shares carry no integrity of their
own: the backup that uses them (:mod:`trustroot.keys.backup`) authenticates the combined key with
AES-GCM, and the text form below carries a checksum against typos.

Arithmetic on secret bytes never indexes a table: the ``L`` bytes of a share are packed into one
Python integer and multiplied by public factors (x-coordinates and Lagrange weights, whose own
arithmetic uses log/antilog tables) with shifts, masks and XORs on all bytes at once (bit-sliced
``xtime``), so the only data-dependent branches and table look-ups are on public values. (Python
gives no constant-time guarantee; this avoids the obvious cache-timing pattern of table-driven
GF(2^8) code. Splitting and combining happen on the offline ceremony machine.)

Share text, one line (a share file may add blank lines and ``#`` comment lines around it)::

    trustroot-share-v1:<backup_id>:<index>-of-<count>:<threshold>:<value>:<checksum>

    backup_id   32 lower-case hex digits (16 random bytes), the same in every share of a split
    index       1..count, decimal        count       threshold..255, decimal
    threshold   2..count, decimal        value       RFC 4648 base32 of f(index), upper case, no padding
    checksum    first 8 hex digits of SHA-256 over the ASCII text before the last ':' (checked first,
                so a mistyped share is refused with the name of its source and the share it claims to be)

Hex and base32 are case-insensitive on input; the checksum is over the canonical (output) case.

Errors: every refusal is a :class:`~trustroot.errors.BackupError`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field

from trustroot.errors import BackupError
from trustroot.limits import DEFAULT_LIMITS, Limits

__all__ = [
    "MAX_SECRET_BYTES",
    "MAX_SHARES",
    "MIN_THRESHOLD",
    "SHARE_PREFIX",
    "Share",
    "combine",
    "parse_share",
    "split",
]

#: The format tag that starts every share line.
SHARE_PREFIX = "trustroot-share-v1"

MIN_THRESHOLD = 2
MAX_SHARES = 255
#: Largest secret split here (a backup key is 32 bytes); keeps a share line far under the file limit.
MAX_SECRET_BYTES = 4096
_CHECKSUM_HEX = 8

_ID_RE = re.compile(r"[0-9a-f]{32}")
_INDEX_RE = re.compile(r"([1-9][0-9]{0,2})-of-([1-9][0-9]{0,2})")
_NUMBER_RE = re.compile(r"[1-9][0-9]{0,2}")
_BASE32_RE = re.compile(r"[A-Z2-7]+")


# ------------------------------------------------------------------------------------ GF(2^8) arithmetic


def _make_tables() -> tuple[list[int], list[int]]:
    """Antilog and log tables of GF(2^8) for the generator 3 (used on public values only)."""
    exp = [0] * 510
    log = [0] * 256
    value = 1
    for power in range(255):
        exp[power] = exp[power + 255] = value
        log[value] = power
        value ^= (value << 1) ^ (0x11B if value & 0x80 else 0)  # value * 3
    return exp, log


_EXP, _LOG = _make_tables()


def _weight(at: int, index: int, others: list[int]) -> int:
    """Lagrange weight of the point at ``index`` for evaluation at ``at`` (all public values).

    Product over the other x-coordinates ``x`` of ``(at - x) / (index - x)``; minus is XOR here.
    """
    log_sum = 0
    for other in others:
        numerator = at ^ other
        if numerator == 0:
            return 0
        log_sum += _LOG[numerator] - _LOG[index ^ other]
    return _EXP[log_sum % 255]


class _Lanes:
    """``length`` field elements packed into one integer, one byte each (bit-sliced arithmetic)."""

    def __init__(self, length: int) -> None:
        self.length = length
        self._low7 = int.from_bytes(b"\x7f" * length, "big")
        self._ones = int.from_bytes(b"\x01" * length, "big")

    def pack(self, data: bytes) -> int:
        return int.from_bytes(data, "big")

    def unpack(self, lanes: int) -> bytes:
        return lanes.to_bytes(self.length, "big")

    def xtime(self, lanes: int) -> int:
        """Every byte times x: shift left, reduce the bytes whose top bit fell out by 0x1b."""
        return ((lanes & self._low7) << 1) ^ (((lanes >> 7) & self._ones) * 0x1B)

    def scale(self, lanes: int, factor: int) -> int:
        """Every byte times the public element ``factor`` (branches only on ``factor``)."""
        result = 0
        for bit in range(8):
            if factor >> bit & 1:
                result ^= lanes
            lanes = self.xtime(lanes)
        return result


# -------------------------------------------------------------------------------------------- shares


@dataclass(frozen=True)
class Share:
    """One custodian's share of a split. ``value`` is secret and kept out of ``repr``."""

    backup_id: str
    index: int
    threshold: int
    count: int
    value: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if not _ID_RE.fullmatch(self.backup_id):
            raise BackupError("a share's backup id must be 32 lower-case hex digits")
        if not MIN_THRESHOLD <= self.threshold <= self.count <= MAX_SHARES:
            raise BackupError(
                f"a share needs {MIN_THRESHOLD} <= threshold <= count <= {MAX_SHARES}, "
                f"got threshold {self.threshold} and count {self.count}"
            )
        if not 1 <= self.index <= self.count:
            raise BackupError(f"share index {self.index} is outside 1..{self.count}")
        if not 0 < len(self.value) <= MAX_SECRET_BYTES:
            raise BackupError(f"a share value must be 1 to {MAX_SECRET_BYTES} bytes")

    @property
    def label(self) -> str:
        """How the share is named in messages: ``share 2-of-5 of backup 1a2b3c4d``."""
        return f"share {self.index}-of-{self.count} of backup {self.backup_id[:8]}"

    def to_text(self) -> str:
        """The one-line custodian form (module docstring)."""
        value = base64.b32encode(self.value).decode("ascii").rstrip("=")
        body = f"{SHARE_PREFIX}:{self.backup_id}:{self.index}-of-{self.count}:{self.threshold}:{value}"
        return f"{body}:{_checksum(body)}"


def _checksum(body: str) -> str:
    return hashlib.sha256(body.encode("ascii")).hexdigest()[:_CHECKSUM_HEX]


def split(secret: bytes, threshold: int, shares: int) -> list[Share]:
    """Split ``secret`` into ``shares`` shares, any ``threshold`` of which recover it."""
    if not MIN_THRESHOLD <= threshold <= shares <= MAX_SHARES:
        raise BackupError(
            f"a split needs {MIN_THRESHOLD} <= threshold <= shares <= {MAX_SHARES}, "
            f"got threshold {threshold} of {shares} shares"
        )
    if not 0 < len(secret) <= MAX_SECRET_BYTES:
        raise BackupError(f"the secret to split must be 1 to {MAX_SECRET_BYTES} bytes, got {len(secret)}")
    lanes = _Lanes(len(secret))
    # coefficients[0] is the secret, the others uniformly random (zero included: perfect secrecy)
    coefficients = [lanes.pack(secret)] + [lanes.pack(secrets.token_bytes(len(secret))) for _ in range(threshold - 1)]
    backup_id = secrets.token_hex(16)
    result: list[Share] = []
    for x in range(1, shares + 1):
        accumulator = coefficients[-1]
        for coefficient in reversed(coefficients[:-1]):  # Horner's rule
            accumulator = lanes.scale(accumulator, x) ^ coefficient
        result.append(Share(backup_id, x, threshold, shares, lanes.unpack(accumulator)))
    return result


def _interpolate(points: list[Share], at: int, lanes: _Lanes) -> int:
    """The split polynomial, through ``points``, evaluated at the public ``at``."""
    indices = [share.index for share in points]
    total = 0
    for share in points:
        others = [x for x in indices if x != share.index]
        total ^= lanes.scale(lanes.pack(share.value), _weight(at, share.index, others))
    return total


def combine(shares: Iterable[Share]) -> bytes:
    """The secret from at least ``threshold`` shares of one split.

    Refuses no shares, shares of different splits (backup id, threshold, count or length), a share
    given twice, and fewer than ``threshold``. Shares beyond the threshold must agree with the
    others (a damaged one is detected, though not which).
    """
    given = list(shares)
    if not given:
        raise BackupError("no shares given")
    first = given[0]
    for share in given[1:]:
        if share.backup_id != first.backup_id:
            raise BackupError(f"{share.label} and {first.label} belong to different backups")
        if (share.threshold, share.count, len(share.value)) != (
            first.threshold,
            first.count,
            len(first.value),
        ):
            raise BackupError(f"{share.label} does not match {first.label}: they come from different splits")
    seen: set[int] = set()
    for share in given:
        if share.index in seen:
            raise BackupError(f"{share.label} is given more than once")
        seen.add(share.index)
    if len(given) < first.threshold:
        raise BackupError(
            f"backup {first.backup_id[:8]} needs {first.threshold} of its {first.count} shares, only {len(given)} given"
        )
    lanes = _Lanes(len(first.value))
    basis = given[: first.threshold]
    for extra in given[first.threshold :]:
        expected = lanes.unpack(_interpolate(basis, extra.index, lanes))
        if not hmac.compare_digest(expected, extra.value):
            raise BackupError(
                f"the shares of backup {first.backup_id[:8]} do not agree: at least one is damaged "
                "(try another set of threshold shares)"
            )
    return lanes.unpack(_interpolate(basis, 0, lanes))


# ------------------------------------------------------------------------------------------ share text


def _share_line(text: str | bytes, source: str, limits: Limits) -> str:
    raw = text.encode("utf-8") if isinstance(text, str) else bytes(text)
    if len(raw) > limits.max_share_file_bytes:
        raise BackupError(f"{source}: larger than the limit of {limits.max_share_file_bytes} bytes")
    try:
        decoded = raw.decode("ascii")
    except UnicodeDecodeError as exc:
        raise BackupError(f"{source}: not a trustroot share (non-ASCII text)") from exc
    lines = [line.strip() for line in decoded.splitlines()]
    lines = [line for line in lines if line and not line.startswith("#")]
    if len(lines) != 1:
        raise BackupError(f"{source}: expected one share line, found {len(lines)}")
    return lines[0]


def parse_share(text: str | bytes, *, source: str = "share", limits: Limits = DEFAULT_LIMITS) -> Share:
    """Parse one share (a line, or a share file with comments); ``source`` names it in errors."""
    fields = _share_line(text, source, limits).split(":")
    if fields[0] != SHARE_PREFIX:
        if fields[0].startswith("trustroot-share-v"):
            raise BackupError(f"{source}: unsupported share format {fields[0]!r}, expected {SHARE_PREFIX}")
        raise BackupError(f"{source}: not a trustroot share")
    if len(fields) != 6:
        raise BackupError(f"{source}: a share line has 6 ':'-separated fields, found {len(fields)}")
    _, backup_id, position, threshold_text, value_text, checksum = fields
    backup_id = backup_id.lower()
    value_text = value_text.upper()
    body = f"{SHARE_PREFIX}:{backup_id}:{position}:{threshold_text}:{value_text}"
    if not hmac.compare_digest(_checksum(body).encode("ascii"), checksum.lower().encode("ascii", "replace")):
        raise BackupError(
            f"{source}: checksum mismatch, the share was mistyped or damaged "
            f"(it claims to be share {position} of backup {backup_id[:8]})"
        )
    index_match = _INDEX_RE.fullmatch(position)
    if not _ID_RE.fullmatch(backup_id):
        raise BackupError(f"{source}: the backup id must be 32 hex digits")
    if index_match is None or not _NUMBER_RE.fullmatch(threshold_text):
        raise BackupError(f"{source}: malformed index, count or threshold ({position}, {threshold_text})")
    if not _BASE32_RE.fullmatch(value_text):
        raise BackupError(f"{source}: the share value is not base32")
    try:
        value = base64.b32decode(value_text + "=" * (-len(value_text) % 8))
    except (binascii.Error, ValueError) as exc:
        raise BackupError(f"{source}: the share value is not valid base32") from exc
    if base64.b32encode(value).decode("ascii").rstrip("=") != value_text:
        raise BackupError(f"{source}: the share value is not canonical base32")
    try:
        return Share(backup_id, int(index_match[1]), int(threshold_text), int(index_match[2]), value)
    except BackupError as exc:
        raise BackupError(f"{source}: {exc.message}") from exc
