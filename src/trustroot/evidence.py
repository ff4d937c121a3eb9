"""Evidence records, the hash-chained evidence log and its signed checkpoints.

Every security-relevant action of a product leaves one *evidence record*; the EN 303 645
assessment later decides its verdicts from these records alone. The same record format is kept
in two stores: the product's ``evidence.jsonl`` file (:class:`EvidenceLog`, here) and the fleet
service's audit table. The trust logic is therefore a set of pure functions over records; the
file is only one storage of them::

    pure core (no I/O, usable by any store)            storage (this module: a JSONL file)
    ───────────────────────────────────────            ───────────────────────────────────
    canonical_bytes(record) ─► record_hash(record)     EvidenceLog(path, signer_factory, clock, limits)
    next_record(head, type, subject, data, actor)        .append()      flock · read tail · write · fsync
    make_checkpoint(head, signer, time, actor)           .checkpoint()  sign the head on demand
    checkpoint_due(head_seq, last_checkpoint_seq, n)     .verify()      stream lines ─► verify_chain core
    verify_chain(records, public_keys) ─► VerifyReport   .iter_records()

One record (``v`` = 1), one line of the file, in canonical JSON (sorted keys, no whitespace)::

    {"actor":…,"data":{…},"hash":H(n),"prev":H(n-1),"seq":n,"subject":…,"time":…,"type":…,"v":1}
                                 │         ▲
                                 └─────────┘  hash = SHA-256 of the canonical JSON of the record
                                              without "hash"; the genesis record (seq 1) has
                                              prev = 64 zeros

Every ``Limits.evidence_checkpoint_every`` records, and on demand, the log appends an
``evidence.checkpoint`` record whose data holds a signature by the evidence key over the head
(seq and hash of the record just before it). Records after the last valid checkpoint form the
*unsigned tail*: whoever can write the file could rewrite that tail consistently, so
:class:`VerifyReport` says how long it is. Truncation of the tail is found only against a head
known from elsewhere (``known_head``).

Errors (from :mod:`trustroot.errors`)::

    EvidenceError                 refused append (unregistered type, oversized data, torn last line, I/O)
    └── EvidenceChainError
        └── BrokenChainError      verification failed: .line (1-based) and .reason (ChainFault)

The format, the hashing rule and the type registry are documented for re-implementers in
``docs/evidence.md``; keep :data:`EVIDENCE_TYPES` and that file in sync (a unit test checks it).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import enum
import hashlib
import json
import logging
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, NamedTuple, Protocol, TypeAlias

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from trustroot._fsutil import exclusive_lock, fsync_dir
from trustroot.errors import EvidenceChainError, EvidenceError, TrustrootError
from trustroot.limits import DEFAULT_LIMITS, Limits

__all__ = [
    "CHECKPOINT_ALGORITHMS",
    "CHECKPOINT_TYPE",
    "EVIDENCE_TYPES",
    "FORMAT_VERSION",
    "GENESIS_PREV",
    "MAX_ACTOR_CHARS",
    "MAX_DATA_DEPTH",
    "MAX_SUBJECT_CHARS",
    "BrokenChainError",
    "ChainFault",
    "CheckpointSigner",
    "EvidenceLog",
    "EvidenceRecord",
    "Head",
    "JSONValue",
    "VerifyReport",
    "canonical_bytes",
    "checkpoint_due",
    "checkpoint_message",
    "format_time",
    "key_id_of",
    "make_checkpoint",
    "next_record",
    "record_hash",
    "verify_chain",
]

_log = logging.getLogger(__name__)

#: The record format version this module writes and the only one it reads.
FORMAT_VERSION: Final = 1
#: ``prev`` of the first record (seq 1).
GENESIS_PREV: Final = "0" * 64
#: The record type of a signed checkpoint; appended by the log itself, never by callers.
CHECKPOINT_TYPE: Final = "evidence.checkpoint"
#: Upper bounds on the ``actor`` and ``subject`` strings, in characters.
MAX_ACTOR_CHARS: Final = 256
MAX_SUBJECT_CHARS: Final = 1024
#: Deepest nesting of objects and arrays accepted in ``data``.
MAX_DATA_DEPTH: Final = 32
#: Checkpoint signature algorithms (the names and conventions of ``trustroot.keys``).
CHECKPOINT_ALGORITHMS: Final = frozenset({"ecdsa-p256", "ecdsa-p384", "ed25519", "rsa-3072"})

#: Every record type, with a one-line description. Later capabilities add their types HERE and in
#: the table of ``docs/evidence.md`` (a unit test keeps both equal); there is no run-time registration.
EVIDENCE_TYPES: Final[Mapping[str, str]] = MappingProxyType(
    {
        "key.created": "a key was generated in the key store",
        "key.imported": "an existing key was imported into the key store",
        "key.rotated": "a role's active key was replaced by a new generation",
        "key.revoked": "a key was revoked and no longer signs or anchors trust",
        "key.exported": "key material or a public key left the key store",
        "key.backup.created": "an encrypted key backup (or custodian shares) was made",
        "key.restored": "a key was restored from a backup",
        "rootoftrust.created": "the product's root of trust was set up (key ceremony)",
        "context.checked": "the Security Context was checked against EN 303 645",
        "evidence.checkpoint": "a signature by the evidence key over the head of the log",
        "image.signed": "a firmware image was signed",
        "bootloader.secret.exported": "a key or secret was exported for building the boot loader",
        "device.provisioned": "a device received its identity and credentials",
        "batch.authorized": "a production batch was authorized",
        "batch.opened": "a production batch was opened at a station",
        "batch.closed": "a production batch was closed",
        "batch.imported": "a closed batch's signed manifest was imported into the fleet and its devices registered",
        "device.revoked": "a device identity was revoked",
        "tls.server_certificate.issued": "the fleet service's TLS server certificate was issued or renewed",
        "release.published": "a signed release was published for the fleet",
        "rollout.changed": "a staged rollout was started, advanced, paused or stopped",
        "disclosure.received": "a vulnerability report was received",
        "disclosure.changed": "a vulnerability report changed state (triage, fix, advisory)",
        "operator.added": "an operator of the fleet service was given an API token with scopes",
        "operator.revoked": "an operator's API token was revoked",
        "operator.console_enrolled": "an operator was given a console login (password and TOTP)",
        "ownership.changed": "a device changed owner",
        "data.deleted": "personal data was deleted, with a receipt",
        "device.reset": "a device reported that it wiped its personal data (factory reset or ownership change)",
        "alert.raised": "telemetry monitoring raised an alert on a device, with the evidence behind it",
        "scan.completed": "a security scan of source, binary or service finished",
        "declaration.signed": "a conformance declaration or statement was signed",
        "assessment.completed": "an EN 303 645 assessment was produced",
    }
)

JSONValue: TypeAlias = "bool | int | str | list[JSONValue] | dict[str, JSONValue] | None"

_FIELDS: Final = frozenset({"v", "seq", "time", "actor", "type", "subject", "data", "prev", "hash"})
_CHECKPOINT_FIELDS: Final = frozenset({"head_seq", "head_hash", "key_id", "algorithm", "signature"})
_HEX64 = re.compile(r"[0-9a-f]{64}")
_TYPE_NAME = re.compile(r"[a-z][a-z0-9_]*(?:\.[a-z][a-z0-9_]*)+")
_MAX_TYPE_CHARS = 64
_TIME = re.compile(r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})\.(\d{6})Z", re.ASCII)
#: Unicode categories Cc (C0, DEL, C1 controls) and Cs (surrogates): refused in actor and subject.
_CONTROL_OR_SURROGATE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_MAX_SAFE_INT = 2**53 - 1
_CHECKPOINT_MARKER = b'"type":"evidence.checkpoint"'
_BLOCK = 64 << 10
#: Read at most this much that other writers appended; beyond it, read the tail afresh.
_MAX_CATCH_UP = 8 << 20


# ---------------------------------------------------------------------------------------------
# Errors and small value types
# ---------------------------------------------------------------------------------------------


class ChainFault(enum.StrEnum):
    """Why a log or a chain of records does not verify."""

    #: Not a UTF-8 JSON object with exactly the record fields of the right types.
    MALFORMED = "malformed"
    #: ``v`` is not a version this code reads.
    UNKNOWN_VERSION = "unknown-version"
    #: The record's content does not match its ``hash``: the record was edited.
    HASH_MISMATCH = "hash-mismatch"
    #: The line is not the canonical encoding of its record (whitespace, key order, escapes).
    NON_CANONICAL = "non-canonical"
    #: ``seq`` jumps forward: records were removed.
    SEQ_GAP = "seq-gap"
    #: ``seq`` goes backward or repeats: records were reordered or duplicated.
    OUT_OF_ORDER = "out-of-order"
    #: ``prev`` is not the hash of the record before: a record was replaced or the chain forked.
    PREV_MISMATCH = "prev-mismatch"
    #: A checkpoint's data is malformed or does not name the record just before it.
    BAD_CHECKPOINT = "bad-checkpoint"
    #: A checkpoint's signature does not verify under its key.
    BAD_CHECKPOINT_SIGNATURE = "bad-checkpoint-signature"
    #: A checkpoint names a key id not among the trusted public keys.
    UNKNOWN_CHECKPOINT_KEY = "unknown-checkpoint-key"
    #: The last line has no final newline: a write was interrupted (crash mid-append).
    TORN_LINE = "torn-line"
    #: A line is longer than ``Limits.max_evidence_record_bytes``.
    RECORD_TOO_LARGE = "record-too-large"
    #: The log ends before, or differs at, the head the caller knew (truncated or rewritten).
    HEAD_MISMATCH = "head-mismatch"


class BrokenChainError(EvidenceChainError):
    """Verification failed at one record.

    ``line`` is the 1-based line of the file (for :func:`verify_chain`, the 1-based position of
    the record in the sequence; the same number for a log read from a file); ``reason`` says what
    was found.
    """

    def __init__(self, message: str, *, line: int, reason: ChainFault, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.line = line
        self.reason = reason


class _InvalidRecordError(EvidenceError):
    """A record that cannot be constructed; carries the fault for the verifier."""

    def __init__(self, message: str, reason: ChainFault) -> None:
        super().__init__(message)
        self.reason = reason


class Head(NamedTuple):
    """The last record of a log: its ``seq`` (0 for an empty log) and ``hash``."""

    seq: int
    hash: str


_EMPTY_HEAD: Final = Head(0, GENESIS_PREV)


class CheckpointSigner(Protocol):
    """What the log needs to sign a checkpoint (the key store's handles are adapted to it).

    ``key_id`` is the SHA-256 (hex) of the DER SubjectPublicKeyInfo of the public key;
    ``algorithm`` one of :data:`CHECKPOINT_ALGORITHMS`; ``sign`` follows that algorithm's
    convention (ECDSA over SHA-256/384 with DER signatures, pure Ed25519, RSA-PSS SHA-256 MGF1
    salt 32).
    """

    @property
    def key_id(self) -> str: ...

    @property
    def algorithm(self) -> str: ...

    def sign(self, data: bytes) -> bytes: ...


@dataclass(frozen=True)
class VerifyReport:
    """What a successful verification established.

    ``last_signed_seq`` / ``last_signed_hash`` are the head covered by the last valid checkpoint
    (``None`` without one); ``unsigned_tail`` counts the records after it.
    """

    records: int
    last_seq: int
    head_hash: str
    last_signed_seq: int | None
    last_signed_hash: str | None
    checkpoints: int
    unsigned_tail: int

    @property
    def head(self) -> Head:
        return Head(self.last_seq, self.head_hash)


# ---------------------------------------------------------------------------------------------
# Canonical JSON and validation
# ---------------------------------------------------------------------------------------------


def _clean_json(value: object, depth: int, where: str) -> JSONValue:
    """A fresh copy of ``value`` if it is in the JSON subset of the format, else raise."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        if not -_MAX_SAFE_INT <= value <= _MAX_SAFE_INT:
            raise EvidenceError(f"{where}: integer {value} outside ±(2^53-1)")
        return value
    if isinstance(value, float):
        raise EvidenceError(f"{where}: floating-point numbers are not allowed (use an integer or a string)")
    if depth >= MAX_DATA_DEPTH:
        raise EvidenceError(f"{where}: nested deeper than {MAX_DATA_DEPTH} levels")
    if isinstance(value, Mapping):
        out: dict[str, JSONValue] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise EvidenceError(f"{where}: object key {key!r} is not a string")
            out[key] = _clean_json(item, depth + 1, f"{where}.{key}")
        return out
    if isinstance(value, list | tuple):
        return [_clean_json(item, depth + 1, f"{where}[{i}]") for i, item in enumerate(value)]
    raise EvidenceError(f"{where}: {type(value).__name__} is not a JSON value")


def _dumps(obj: object) -> bytes:
    """The canonical JSON encoding (see ``docs/evidence.md``): the one serialiser of the format."""
    try:
        text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise EvidenceError("a string holds a lone surrogate and is not valid Unicode") from exc


def _check_text(value: object, name: str, limit: int) -> str:
    if not isinstance(value, str):
        raise EvidenceError(f"{name} must be a string, not {type(value).__name__}")
    if not value:
        raise EvidenceError(f"{name} is empty")
    if len(value) > limit:
        raise EvidenceError(f"{name} is longer than {limit} characters")
    bad = _CONTROL_OR_SURROGATE.search(value)
    if bad is not None:
        raise EvidenceError(f"{name} holds the control or surrogate character U+{ord(bad.group()):04X}")
    return value


def _check_hex(value: object, name: str) -> str:
    if not isinstance(value, str) or _HEX64.fullmatch(value) is None:
        raise EvidenceError(f"{name} is not 64 lowercase hex digits")
    return value


def format_time(moment: datetime) -> str:
    """``moment`` as the record's RFC 3339 UTC form ``YYYY-MM-DDTHH:MM:SS.ffffffZ``.

    A naive datetime is refused: the clock must say which time zone it means.
    """
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise EvidenceError("the evidence clock returned a naive datetime; it must be timezone-aware")
    utc = moment.astimezone(UTC)
    return (
        f"{utc.year:04d}-{utc.month:02d}-{utc.day:02d}T"
        f"{utc.hour:02d}:{utc.minute:02d}:{utc.second:02d}.{utc.microsecond:06d}Z"
    )


def _utc_now() -> datetime:
    return datetime.now(UTC)


# ---------------------------------------------------------------------------------------------
# The record
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EvidenceRecord:
    """One evidence record. It cannot be constructed invalid: the fields are checked and ``hash``
    must be the hash of the rest (build new records with :func:`next_record`).

    ``data`` is a private copy; treat it as read-only. The record ``type`` only has to be well
    formed here; whether it is registered is checked when appending, so logs written by a newer
    trustroot with more types still read and verify.
    """

    v: int
    seq: int
    time: str
    actor: str
    type: str
    subject: str
    data: dict[str, JSONValue]
    prev: str
    hash: str

    def __post_init__(self) -> None:
        try:
            self._check()
        except _InvalidRecordError:
            raise
        except EvidenceError as exc:
            raise _InvalidRecordError(f"invalid evidence record: {exc.message}", ChainFault.MALFORMED) from exc

    def _check(self) -> None:
        # The annotations are what a valid record has; from_dict passes whatever a line held.
        version: object = self.v
        seq: object = self.seq
        time: object = self.time
        record_type: object = self.type
        if isinstance(version, bool) or not isinstance(version, int):
            raise EvidenceError("v must be an integer")
        if version != FORMAT_VERSION:
            raise _InvalidRecordError(
                f"unknown evidence record version v={version} (this trustroot reads v={FORMAT_VERSION})",
                ChainFault.UNKNOWN_VERSION,
            )
        if isinstance(seq, bool) or not isinstance(seq, int) or not 1 <= seq <= _MAX_SAFE_INT:
            raise EvidenceError("seq must be an integer from 1")
        moment = _TIME.fullmatch(time) if isinstance(time, str) else None
        if moment is None:
            raise EvidenceError("time is not of the form YYYY-MM-DDTHH:MM:SS.ffffffZ")
        try:
            year, month, day, hour, minute, second, micro = (int(part) for part in moment.groups())
            datetime(year, month, day, hour, minute, second, micro, tzinfo=UTC)
        except ValueError as exc:
            raise EvidenceError(f"time {time} is not a valid date and time") from exc
        _check_text(self.actor, "actor", MAX_ACTOR_CHARS)
        if (
            not isinstance(record_type, str)
            or len(record_type) > _MAX_TYPE_CHARS
            or _TYPE_NAME.fullmatch(record_type) is None
        ):
            raise EvidenceError("type is not a dotted lowercase name such as 'key.created'")
        _check_text(self.subject, "subject", MAX_SUBJECT_CHARS)
        if not isinstance(self.data, Mapping):
            raise EvidenceError("data must be a JSON object")
        object.__setattr__(self, "data", _clean_json(self.data, 0, "data"))
        _check_hex(self.prev, "prev")
        _check_hex(self.hash, "hash")
        expected = hashlib.sha256(_dumps(self._unhashed())).hexdigest()
        if expected != self.hash:
            raise _InvalidRecordError("record edited: its content does not match its hash", ChainFault.HASH_MISMATCH)

    def __hash__(self) -> int:
        return hash(self.hash)

    def _unhashed(self) -> dict[str, JSONValue]:
        return {
            "v": self.v,
            "seq": self.seq,
            "time": self.time,
            "actor": self.actor,
            "type": self.type,
            "subject": self.subject,
            "data": self.data,
            "prev": self.prev,
        }

    @property
    def head(self) -> Head:
        """This record as the head of a log."""
        return Head(self.seq, self.hash)

    def as_dict(self) -> dict[str, JSONValue]:
        """All nine fields as a JSON object (a fresh copy)."""
        out = self._unhashed()
        out["data"] = _clean_json(self.data, 0, "data")
        out["hash"] = self.hash
        return out

    def encode(self) -> bytes:
        """The canonical JSON of the whole record (with ``hash``): one line of the log, without newline."""
        whole = self._unhashed()
        whole["hash"] = self.hash
        return _dumps(whole)

    @classmethod
    def from_dict(cls, obj: Mapping[str, object]) -> EvidenceRecord:
        """Build a record from a JSON object (a parsed line, or a row of the fleet's audit table)."""
        if not isinstance(obj, Mapping):
            raise _InvalidRecordError("an evidence record must be a JSON object", ChainFault.MALFORMED)
        version = obj.get("v")
        if isinstance(version, int) and not isinstance(version, bool) and version != FORMAT_VERSION:
            raise _InvalidRecordError(
                f"unknown evidence record version v={version} (this trustroot reads v={FORMAT_VERSION})",
                ChainFault.UNKNOWN_VERSION,
            )
        keys = set(obj)
        if keys != _FIELDS:
            parts = []
            if missing := sorted(_FIELDS - keys):
                parts.append("missing " + ", ".join(missing))
            if extra := sorted(str(k) for k in keys - _FIELDS):
                parts.append("unexpected " + ", ".join(extra))
            raise _InvalidRecordError(f"invalid evidence record: {'; '.join(parts)}", ChainFault.MALFORMED)
        fields: Any = obj  # each field's type and form is checked in __post_init__
        return cls(
            v=fields["v"],
            seq=fields["seq"],
            time=fields["time"],
            actor=fields["actor"],
            type=fields["type"],
            subject=fields["subject"],
            data=fields["data"],
            prev=fields["prev"],
            hash=fields["hash"],
        )

    @classmethod
    def decode(cls, line: bytes) -> EvidenceRecord:
        """Parse one line of a log (without its newline); it must be the record's canonical encoding."""
        try:
            obj = json.loads(line.decode("utf-8"), parse_float=_no_float, parse_constant=_no_float)
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise _InvalidRecordError(f"not a UTF-8 JSON line ({exc})", ChainFault.MALFORMED) from exc
        record = cls.from_dict(obj)
        if record.encode() != line:
            raise _InvalidRecordError(
                "the line is not the canonical JSON encoding of its record", ChainFault.NON_CANONICAL
            )
        return record


def _no_float(text: str) -> object:
    raise ValueError(f"number {text} is not an integer")


def canonical_bytes(record: EvidenceRecord | Mapping[str, object]) -> bytes:
    """The bytes that are hashed: canonical JSON of the record without ``hash``.

    Canonical JSON: keys sorted by code point, no whitespace, UTF-8, non-ASCII characters as
    themselves, no floats (see ``docs/evidence.md`` for the full rule).
    """
    if isinstance(record, EvidenceRecord):
        return _dumps(record._unhashed())
    body = {key: value for key, value in record.items() if key != "hash"}
    return _dumps(_clean_json(body, -1, "record"))


def record_hash(record: EvidenceRecord | Mapping[str, object]) -> str:
    """SHA-256 (lowercase hex) of :func:`canonical_bytes` of ``record``."""
    return hashlib.sha256(canonical_bytes(record)).hexdigest()


def _build(
    head: Head,
    record_type: str,
    subject: str,
    data: Mapping[str, object],
    *,
    actor: str,
    time: str,
    limits: Limits,
) -> EvidenceRecord:
    _check_text(actor, "actor", MAX_ACTOR_CHARS)
    _check_text(subject, "subject", MAX_SUBJECT_CHARS)
    if not isinstance(data, Mapping):
        raise EvidenceError(f"evidence data must be a JSON object (a mapping), not {type(data).__name__}")
    clean = _clean_json(data, 0, "data")
    size = len(_dumps(clean))
    if size > limits.max_evidence_data_bytes:
        raise EvidenceError(
            f"evidence data of {record_type} is {size} bytes, over the limit of "
            f"{limits.max_evidence_data_bytes} bytes (Limits.max_evidence_data_bytes)",
            hint="record a digest or a reference to the artefact instead of its content",
        )
    body: dict[str, JSONValue] = {
        "v": FORMAT_VERSION,
        "seq": head.seq + 1,
        "time": time,
        "actor": actor,
        "type": record_type,
        "subject": subject,
        "data": clean,
        "prev": head.hash,
    }
    body["hash"] = hashlib.sha256(_dumps(body)).hexdigest()
    record = EvidenceRecord.from_dict(body)
    if len(record.encode()) + 1 > limits.max_evidence_record_bytes:
        raise EvidenceError(
            f"evidence record of {record_type} is over the limit of {limits.max_evidence_record_bytes} "
            "bytes (Limits.max_evidence_record_bytes)"
        )
    return record


def next_record(
    head: Head,
    type: str,
    subject: str,
    data: Mapping[str, object],
    actor: str,
    *,
    time: datetime,
    limits: Limits = DEFAULT_LIMITS,
) -> EvidenceRecord:
    """The record that follows ``head`` (``Head(0, GENESIS_PREV)`` for an empty log).

    Pure: any store appends it after checking, under its own lock or transaction, that ``head`` is
    still its last record. Refuses an unregistered type, ``evidence.checkpoint`` (use
    :func:`make_checkpoint`) and data that is not a bounded JSON object.
    """
    if type == CHECKPOINT_TYPE:
        raise EvidenceError("evidence.checkpoint records are made by make_checkpoint / EvidenceLog.checkpoint")
    if type not in EVIDENCE_TYPES:
        raise EvidenceError(
            f"unregistered evidence type {type!r}",
            hint="record types are listed in trustroot.evidence.EVIDENCE_TYPES and docs/evidence.md",
        )
    return _build(head, type, subject, data, actor=actor, time=format_time(time), limits=limits)


# ---------------------------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------------------------


def checkpoint_message(head_seq: int, head_hash: str) -> bytes:
    """The bytes a checkpoint signs: ``trustroot-evidence-checkpoint-v1:<head_seq>:<head_hash>`` (ASCII)."""
    return f"trustroot-evidence-checkpoint-v1:{head_seq}:{head_hash}".encode("ascii")


def checkpoint_due(head_seq: int, last_checkpoint_seq: int, every: int) -> bool:
    """Whether a checkpoint is due: ``every`` or more records follow the last checkpoint record.

    ``last_checkpoint_seq`` is the seq of the last ``evidence.checkpoint`` record (0 if none).
    """
    return head_seq - last_checkpoint_seq >= every


def key_id_of(public_key: PublicKeyTypes) -> str:
    """SHA-256 (hex) of the DER SubjectPublicKeyInfo: the key id checkpoints name."""
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


def make_checkpoint(
    head: Head,
    signer: CheckpointSigner,
    *,
    time: datetime,
    actor: str,
    limits: Limits = DEFAULT_LIMITS,
) -> EvidenceRecord:
    """The ``evidence.checkpoint`` record that follows ``head`` and signs it with ``signer``."""
    if head.seq < 1:
        raise EvidenceError("nothing to checkpoint: the evidence log is empty")
    key_id: object = signer.key_id
    algorithm: object = signer.algorithm
    if not isinstance(key_id, str) or _HEX64.fullmatch(key_id) is None:
        raise EvidenceError("checkpoint signer: key_id is not a SHA-256 fingerprint (64 lowercase hex digits)")
    if algorithm not in CHECKPOINT_ALGORITHMS:
        raise EvidenceError(
            f"checkpoint signer: unsupported algorithm {algorithm!r} "
            f"(one of {', '.join(sorted(CHECKPOINT_ALGORITHMS))})"
        )
    signature: object = signer.sign(checkpoint_message(head.seq, head.hash))
    if not isinstance(signature, bytes) or not signature:
        raise EvidenceError("checkpoint signer returned no signature")
    data: dict[str, object] = {
        "head_seq": head.seq,
        "head_hash": head.hash,
        "key_id": key_id,
        "algorithm": algorithm,
        "signature": base64.b64encode(signature).decode("ascii"),
    }
    return _build(head, CHECKPOINT_TYPE, head.hash, data, actor=actor, time=format_time(time), limits=limits)


def _verify_signature(algorithm: str, key: PublicKeyTypes, signature: bytes, message: bytes) -> str | None:
    """None if ``signature`` verifies, else why not."""
    try:
        if algorithm == "ed25519" and isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, message)
        elif (
            algorithm == "ecdsa-p256"
            and isinstance(key, ec.EllipticCurvePublicKey)
            and isinstance(key.curve, ec.SECP256R1)
        ):
            key.verify(signature, message, ec.ECDSA(hashes.SHA256()))
        elif (
            algorithm == "ecdsa-p384"
            and isinstance(key, ec.EllipticCurvePublicKey)
            and isinstance(key.curve, ec.SECP384R1)
        ):
            key.verify(signature, message, ec.ECDSA(hashes.SHA384()))
        elif algorithm == "rsa-3072" and isinstance(key, rsa.RSAPublicKey) and key.key_size == 3072:
            key.verify(
                signature,
                message,
                padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32),
                hashes.SHA256(),
            )
        else:
            return f"the key is not a {algorithm} key"
    except InvalidSignature:
        return "the signature does not verify"
    return None


# ---------------------------------------------------------------------------------------------
# Verification (pure)
# ---------------------------------------------------------------------------------------------


class _ChainVerifier:
    """Checks records one at a time, in order; knows nothing of where they come from."""

    def __init__(self, public_keys: Mapping[str, PublicKeyTypes], known_head: Head | None, label: str) -> None:
        for kid, key in public_keys.items():
            if key_id_of(key) != kid:
                raise EvidenceError(
                    f"trusted evidence keys: {kid!r} is not the key id (SHA-256 of the SubjectPublicKeyInfo) "
                    "of the key it maps to"
                )
        self._keys = dict(public_keys)
        self._known = known_head
        self._label = label
        self._head = _EMPTY_HEAD
        self._count = 0
        self._signed: Head | None = None
        self._checkpoints = 0

    def fail(self, line: int, reason: ChainFault, message: str, hint: str | None = None) -> BrokenChainError:
        return BrokenChainError(f"{self._label}: line {line}: {message}", line=line, reason=reason, hint=hint)

    def feed(self, line: int, record: EvidenceRecord, next_seq: int | None) -> None:
        expected = self._head.seq + 1
        if record.seq > expected:
            if next_seq is not None and next_seq < record.seq:
                raise self.fail(
                    line,
                    ChainFault.OUT_OF_ORDER,
                    f"records reordered: expected seq {expected}, found {record.seq}",
                )
            missing = record.seq - expected
            raise self.fail(
                line,
                ChainFault.SEQ_GAP,
                f"record removed: expected seq {expected}, found {record.seq} ({missing} missing)",
            )
        if record.seq < expected:
            raise self.fail(
                line,
                ChainFault.OUT_OF_ORDER,
                f"records reordered or duplicated: seq {record.seq} after seq {self._head.seq}",
            )
        if record.prev != self._head.hash:
            raise self.fail(
                line,
                ChainFault.PREV_MISMATCH,
                "prev is not the hash of the record before: a record was replaced or the chain forked",
            )
        if record.type == CHECKPOINT_TYPE:
            self._checkpoint(line, record)
        if self._known is not None and record.seq == self._known.seq and record.hash != self._known.hash:
            raise self.fail(
                line,
                ChainFault.HEAD_MISMATCH,
                f"record {record.seq} is not the known head {self._known.hash[:12]}…: the log was rewritten",
            )
        self._head = record.head
        self._count += 1

    def _checkpoint(self, line: int, record: EvidenceRecord) -> None:
        data = record.data
        if set(data) != _CHECKPOINT_FIELDS:
            raise self.fail(line, ChainFault.BAD_CHECKPOINT, "checkpoint data does not have the checkpoint fields")
        head_seq, head_hash = data["head_seq"], data["head_hash"]
        key_id, algorithm, signature_b64 = data["key_id"], data["algorithm"], data["signature"]
        if not (
            isinstance(head_seq, int)
            and isinstance(head_hash, str)
            and isinstance(key_id, str)
            and isinstance(algorithm, str)
            and isinstance(signature_b64, str)
        ):
            raise self.fail(line, ChainFault.BAD_CHECKPOINT, "checkpoint data has fields of the wrong type")
        if head_seq != record.seq - 1 or head_hash != record.prev or head_seq < 1:
            raise self.fail(line, ChainFault.BAD_CHECKPOINT, "checkpoint does not sign the record just before it")
        if algorithm not in CHECKPOINT_ALGORITHMS:
            raise self.fail(line, ChainFault.BAD_CHECKPOINT, f"checkpoint algorithm {algorithm!r} is not supported")
        try:
            signature = base64.b64decode(signature_b64, validate=True)
        except binascii.Error:
            signature = b""
        if not signature or base64.b64encode(signature).decode("ascii") != signature_b64:
            raise self.fail(line, ChainFault.BAD_CHECKPOINT, "checkpoint signature is not canonical base64")
        key = self._keys.get(key_id)
        if key is None:
            raise self.fail(
                line,
                ChainFault.UNKNOWN_CHECKPOINT_KEY,
                f"checkpoint signed by unknown key {key_id[:16]}…",
                hint="pass the evidence key's public key (and those of retired evidence keys) to verify",
            )
        problem = _verify_signature(algorithm, key, signature, checkpoint_message(head_seq, head_hash))
        if problem is not None:
            raise self.fail(line, ChainFault.BAD_CHECKPOINT_SIGNATURE, f"checkpoint of seq {head_seq}: {problem}")
        self._signed = Head(head_seq, head_hash)
        self._checkpoints += 1

    def finish(self, line: int) -> VerifyReport:
        if self._known is not None and self._head.seq < self._known.seq:
            raise self.fail(
                line,
                ChainFault.HEAD_MISMATCH,
                f"the log ends at seq {self._head.seq}, before the known head seq {self._known.seq}: "
                "records were removed from its end",
            )
        signed_seq = self._signed.seq if self._signed is not None else None
        return VerifyReport(
            records=self._count,
            last_seq=self._head.seq,
            head_hash=self._head.hash,
            last_signed_seq=signed_seq,
            last_signed_hash=self._signed.hash if self._signed is not None else None,
            checkpoints=self._checkpoints,
            unsigned_tail=self._head.seq - (signed_seq or 0),
        )


_Item: TypeAlias = "tuple[int, EvidenceRecord | BrokenChainError]"


def _run_verifier(items: Iterator[_Item], verifier: _ChainVerifier) -> VerifyReport:
    current = next(items, None)
    last_line = 1
    while current is not None:
        following = next(items, None)
        line, item = current
        last_line = line + 1
        if isinstance(item, BrokenChainError):
            raise item
        next_seq = None
        if following is not None and isinstance(following[1], EvidenceRecord):
            next_seq = following[1].seq
        verifier.feed(line, item, next_seq)
        current = following
    return verifier.finish(last_line)


def verify_chain(
    records: Iterable[EvidenceRecord | Mapping[str, object]],
    public_keys: Mapping[str, PublicKeyTypes],
    *,
    known_head: Head | None = None,
) -> VerifyReport:
    """Verify a sequence of records (in seq order) from any store: the hash chain and every checkpoint.

    ``public_keys`` maps key id (:func:`key_id_of`) to a trusted evidence public key. With
    ``known_head`` the chain must also contain that record unchanged (found: truncation, rewrite).
    Raises :class:`BrokenChainError` naming the 1-based position and the :class:`ChainFault`.
    """
    verifier = _ChainVerifier(public_keys, known_head, "evidence chain")

    def items() -> Iterator[_Item]:
        for position, record in enumerate(records, start=1):
            if isinstance(record, EvidenceRecord):
                yield position, record
                continue
            try:
                yield position, EvidenceRecord.from_dict(record)
            except _InvalidRecordError as exc:
                yield position, verifier.fail(position, exc.reason, exc.message)

    return _run_verifier(items(), verifier)


# ---------------------------------------------------------------------------------------------
# The JSONL file
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Tail:
    """What an append needs to know about the end of the file, valid for (dev, ino, size)."""

    dev: int
    ino: int
    size: int
    head: Head
    last_checkpoint_seq: int


class _StaleTailError(Exception):
    """The cached tail no longer describes the file; read it afresh."""


def _pread_exact(fd: int, size: int, offset: int) -> bytes:
    chunks = []
    while size > 0:
        chunk = os.pread(fd, size, offset)
        if not chunk:
            raise _StaleTailError
        chunks.append(chunk)
        size -= len(chunk)
        offset += len(chunk)
    return b"".join(chunks)


def _reverse_lines(fd: int, end: int, max_line: int) -> Iterator[bytes]:
    """The lines of ``fd[0:end]`` (``end`` just past a newline) from the last, without newlines."""
    pos = end - 1  # skip the final newline
    pending = b""
    block = 4096  # most calls want only the last line: start small, then read in larger blocks
    while pos > 0:
        size = min(block, pos)
        block = min(block * 4, _BLOCK)
        pos -= size
        parts = (_pread_exact(fd, size, pos) + pending).split(b"\n")
        pending = parts[0]
        yield from reversed(parts[1:])
        if len(pending) > max_line:
            raise EvidenceError(f"a line of the evidence log is longer than {max_line} bytes")
    yield pending


class EvidenceLog:
    """The product's evidence log: one canonical-JSON record per line, append-only, hash-chained.

    ``append`` holds an exclusive ``flock`` on the sibling ``<name>.lock`` while it reads the last
    record (from the end of the file, never the whole file), writes and fsyncs, so any number of
    processes can append without forking the chain. ``signer_factory`` is called only when a
    checkpoint is due, outside the lock; if it is ``None``, returns ``None`` or raises a trustroot
    error, the checkpoint is deferred to the next append whose factory gives a signer.
    """

    def __init__(
        self,
        path: Path | str,
        *,
        signer_factory: Callable[[], CheckpointSigner | None] | None = None,
        clock: Callable[[], datetime] = _utc_now,
        limits: Limits = DEFAULT_LIMITS,
    ) -> None:
        self._path = Path(path)
        self._lock_path = self._path.with_name(self._path.name + ".lock")
        self._signer_factory = signer_factory
        self._clock = clock
        self._limits = limits
        self._tail: _Tail | None = None
        self._warned_deferred = False

    @property
    def path(self) -> Path:
        return self._path

    # -- writing ----------------------------------------------------------------------------

    def append(
        self,
        type: str,
        subject: str,
        data: Mapping[str, object],
        actor: str,
    ) -> EvidenceRecord:
        """Append one record and return it; then append a checkpoint if one is due and a signer is at hand."""
        if type == CHECKPOINT_TYPE:
            raise EvidenceError("evidence.checkpoint records are appended by EvidenceLog.checkpoint()")
        with self._locked() as fd:
            tail = self._read_tail(fd)
            record = next_record(tail.head, type, subject, data, actor, time=self._clock(), limits=self._limits)
            tail = self._write(fd, tail, record)
            due = checkpoint_due(tail.head.seq, tail.last_checkpoint_seq, self._limits.evidence_checkpoint_every)
        if due:
            try:
                self._auto_checkpoint(actor)
            except TrustrootError as exc:  # the record is written; the checkpoint waits for the next append
                self._defer(f"the checkpoint failed ({exc})")
        return record

    def append_many(
        self,
        items: Sequence[tuple[str, str, Mapping[str, object]]],
        actor: str,
    ) -> list[EvidenceRecord]:
        """Append several records under one lock with one write and one fsync; then a checkpoint if due."""
        if any(type_ == CHECKPOINT_TYPE for type_, _, _ in items):
            raise EvidenceError("evidence.checkpoint records are appended by EvidenceLog.checkpoint()")
        if not items:
            return []
        with self._locked() as fd:
            tail = self._read_tail(fd)
            head, now, records = tail.head, self._clock(), []
            for type_, subject, data in items:
                record = next_record(head, type_, subject, data, actor, time=now, limits=self._limits)
                records.append(record)
                head = record.head
            tail = self._write_all(fd, tail, records)
            due = checkpoint_due(tail.head.seq, tail.last_checkpoint_seq, self._limits.evidence_checkpoint_every)
        if due:
            try:
                self._auto_checkpoint(actor)
            except TrustrootError as exc:
                self._defer(f"the checkpoint failed ({exc})")
        return records

    def _write_all(self, fd: int, tail: _Tail, records: list[EvidenceRecord]) -> _Tail:
        data = b"".join(r.encode() + b"\n" for r in records)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
            if tail.size == 0:
                fsync_dir(self._path.parent)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, tail.size)
            self._tail = None
            raise EvidenceError(f"evidence log {self._path}: cannot append ({exc.strerror})") from exc
        last_cp = tail.last_checkpoint_seq
        self._tail = _Tail(tail.dev, tail.ino, tail.size + len(data), records[-1].head, last_cp)
        return self._tail

    def checkpoint(self, *, actor: str = "trustroot") -> EvidenceRecord:
        """Sign the current head now and append the ``evidence.checkpoint`` record; return it."""
        if self._signer_factory is None:
            raise EvidenceError(f"evidence log {self._path}: no signer to make a checkpoint with")
        signer = self._signer_factory()
        if signer is None:
            raise EvidenceError(f"evidence log {self._path}: the evidence key is not available to sign")
        with self._locked() as fd:
            tail = self._read_tail(fd)
            if tail.head.seq == 0:
                raise EvidenceError(f"evidence log {self._path}: nothing to checkpoint, the log is empty")
            record = make_checkpoint(tail.head, signer, time=self._clock(), actor=actor, limits=self._limits)
            self._write(fd, tail, record)
        return record

    def _auto_checkpoint(self, actor: str) -> None:
        signer = self._obtain_signer()
        if signer is None:
            return
        with self._locked() as fd:
            tail = self._read_tail(fd)
            if not checkpoint_due(tail.head.seq, tail.last_checkpoint_seq, self._limits.evidence_checkpoint_every):
                return  # another writer made it meanwhile
            record = make_checkpoint(tail.head, signer, time=self._clock(), actor=actor, limits=self._limits)
            self._write(fd, tail, record)
        _log.info("evidence checkpoint at seq %d signs head seq %d", record.seq, record.seq - 1)

    def _obtain_signer(self) -> CheckpointSigner | None:
        if self._signer_factory is None:  # a writer without the key, on purpose: not worth a warning
            _log.debug("evidence log %s: checkpoint due, deferred to a writer with a signer", self._path)
            return None
        try:
            signer = self._signer_factory()
        except TrustrootError as exc:
            self._defer(f"the evidence key is not available ({exc})")
            return None
        if signer is None:
            self._defer("the evidence key is not available")
        return signer

    def _defer(self, why: str) -> None:
        level = logging.DEBUG if self._warned_deferred else logging.WARNING
        self._warned_deferred = True
        _log.log(level, "evidence log %s: checkpoint due but deferred: %s", self._path, why)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[int]:
        with exclusive_lock(self._lock_path):
            try:
                fd = os.open(self._path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except OSError as exc:
                raise EvidenceError(f"evidence log {self._path}: cannot open ({exc.strerror})") from exc
            try:
                yield fd
            finally:
                os.close(fd)

    def _write(self, fd: int, tail: _Tail, record: EvidenceRecord) -> _Tail:
        line = record.encode() + b"\n"
        try:
            view = memoryview(line)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
            if tail.size == 0:
                fsync_dir(self._path.parent)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, tail.size)  # leave no torn line behind
            self._tail = None
            raise EvidenceError(f"evidence log {self._path}: cannot append ({exc.strerror})") from exc
        last_cp = record.seq if record.type == CHECKPOINT_TYPE else tail.last_checkpoint_seq
        self._tail = _Tail(tail.dev, tail.ino, tail.size + len(line), record.head, last_cp)
        return self._tail

    # -- the end of the file ------------------------------------------------------------------

    def _read_tail(self, fd: int) -> _Tail:
        st = os.fstat(fd)
        if st.st_size == 0:
            return _Tail(st.st_dev, st.st_ino, 0, _EMPTY_HEAD, 0)
        if os.pread(fd, 1, st.st_size - 1) != b"\n":
            raise EvidenceError(
                f"evidence log {self._path}: the last line is incomplete (a write was interrupted); "
                "refusing to extend a broken chain",
                hint=f"keep a copy, then cut the file back to its last complete line and run "
                f"'trustroot evidence verify' ({self._path})",
            )
        cached = self._tail
        if cached is not None and (cached.dev, cached.ino) == (st.st_dev, st.st_ino) and cached.size <= st.st_size:
            try:
                return self._advance(fd, cached, st.st_size)
            except (_StaleTailError, EvidenceError):
                pass
        return self._cold_tail(fd, st)

    def _decode_for_append(self, line: bytes) -> EvidenceRecord:
        try:
            return EvidenceRecord.decode(line)
        except EvidenceError as exc:
            raise EvidenceError(
                f"evidence log {self._path}: the last record is invalid ({exc.message}); "
                "refusing to extend a broken chain",
                hint="run 'trustroot evidence verify' to find the damage",
            ) from exc

    def _advance(self, fd: int, cached: _Tail, size: int) -> _Tail:
        """Bring a cached tail up to date by reading only what others appended since."""
        max_line = self._limits.max_evidence_record_bytes
        if cached.size == size:
            last = next(_reverse_lines(fd, size, max_line))
            if EvidenceRecord.decode(last).head != cached.head:
                raise _StaleTailError
            return cached
        if size - cached.size > _MAX_CATCH_UP or (cached.size > 0 and os.pread(fd, 1, cached.size - 1) != b"\n"):
            raise _StaleTailError
        head, last_cp = cached.head, cached.last_checkpoint_seq
        lines = _pread_exact(fd, size - cached.size, cached.size).split(b"\n")[:-1]
        for raw in lines:
            record = EvidenceRecord.decode(raw)
            if record.seq != head.seq + 1 or record.prev != head.hash:
                raise _StaleTailError
            head = record.head
            if record.type == CHECKPOINT_TYPE:
                last_cp = record.seq
        return _Tail(cached.dev, cached.ino, size, head, last_cp)

    def _cold_tail(self, fd: int, st: os.stat_result) -> _Tail:
        """Read the last record, and look back at most ``every`` records for the last checkpoint."""
        every = self._limits.evidence_checkpoint_every
        lines = _reverse_lines(fd, st.st_size, self._limits.max_evidence_record_bytes)
        last = self._decode_for_append(next(lines))
        last_cp = last.seq if last.type == CHECKPOINT_TYPE else 0
        seen = 1
        while last_cp == 0 and seen < every:
            raw = next(lines, None)
            if raw is None:
                break
            seen += 1
            if _CHECKPOINT_MARKER in raw:
                with contextlib.suppress(EvidenceError):
                    earlier = EvidenceRecord.decode(raw)
                    if earlier.type == CHECKPOINT_TYPE:
                        last_cp = earlier.seq
        # No checkpoint among the last `every` records: 0 makes one due, which is right.
        tail = _Tail(st.st_dev, st.st_ino, st.st_size, last.head, last_cp)
        self._tail = tail
        return tail

    def head(self) -> Head:
        """The seq and hash of the last record (``Head(0, GENESIS_PREV)`` for an empty or absent log)."""
        if not self._path.exists():
            return _EMPTY_HEAD
        with self._locked() as fd:
            return self._read_tail(fd).head

    # -- reading ------------------------------------------------------------------------------

    def _snapshot_size(self) -> int | None:
        """The size of the file at a record boundary (taken under the lock when possible)."""
        if not self._path.exists():
            return None
        try:
            with exclusive_lock(self._lock_path):
                return self._path.stat().st_size
        except FileNotFoundError:
            return None
        except OSError:  # e.g. a read-only copy of the log: no lock file can be made
            try:
                return self._path.stat().st_size
            except FileNotFoundError:
                return None

    def _lines(self) -> Iterator[tuple[int, bytes | BrokenChainError]]:
        """Each line (without newline) up to the snapshot size, or the fault that ends the file."""
        size = self._snapshot_size()
        if size is None:
            return
        limit = self._limits.max_evidence_record_bytes
        label = f"evidence log {self._path}"
        try:
            handle = self._path.open("rb")
        except OSError as exc:
            raise EvidenceError(f"{label}: cannot be read ({exc.strerror})") from exc
        with handle:
            position = 0
            number = 0
            while position < size:
                number += 1
                raw = handle.readline(min(limit, size - position) + 1)
                position += len(raw)
                if not raw.endswith(b"\n"):
                    break
                yield number, raw[:-1]
            else:
                return
        if len(raw) > limit:
            yield (
                number,
                BrokenChainError(
                    f"{label}: line {number}: longer than the limit of {limit} bytes",
                    line=number,
                    reason=ChainFault.RECORD_TOO_LARGE,
                ),
            )
        else:
            yield (
                number,
                BrokenChainError(
                    f"{label}: line {number}: the last line is incomplete (a write was interrupted); "
                    f"the {number - 1} lines before it are complete",
                    line=number,
                    reason=ChainFault.TORN_LINE,
                    hint="keep a copy, then cut the file back to its last complete line",
                ),
            )

    def _items(self, verifier_label: str) -> Iterator[_Item]:
        for number, raw in self._lines():
            if isinstance(raw, BrokenChainError):
                yield number, raw
                return
            try:
                yield number, EvidenceRecord.decode(raw)
            except _InvalidRecordError as exc:
                yield (
                    number,
                    BrokenChainError(f"{verifier_label}: line {number}: {exc.message}", line=number, reason=exc.reason),
                )

    def iter_records(self) -> Iterator[EvidenceRecord]:
        """Stream the records, each parsed and self-consistent, but the chain NOT verified: call
        :meth:`verify` before trusting them. Raises :class:`BrokenChainError` at a bad line."""
        for _, item in self._items(f"evidence log {self._path}"):
            if isinstance(item, BrokenChainError):
                raise item
            yield item

    def verify(self, public_keys: Mapping[str, PublicKeyTypes], *, known_head: Head | None = None) -> VerifyReport:
        """Verify the whole log, streaming: every line, the hash chain and every checkpoint signature.

        An absent file verifies as an empty log (0 records); pass ``known_head`` to find deletion
        or truncation. Raises :class:`BrokenChainError` naming the line and the :class:`ChainFault`.
        """
        label = f"evidence log {self._path}"
        verifier = _ChainVerifier(public_keys, known_head, label)
        return _run_verifier(self._items(label), verifier)
