"""Unit tests of the evidence log: records, hashing, appending, checkpoints and every tamper kind."""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import os
import re
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from trustroot import evidence as ev
from trustroot.errors import EvidenceChainError, EvidenceError, KeyStateError
from trustroot.evidence import (
    CHECKPOINT_TYPE,
    EVIDENCE_TYPES,
    GENESIS_PREV,
    BrokenChainError,
    ChainFault,
    EvidenceLog,
    EvidenceRecord,
    Head,
    canonical_bytes,
    checkpoint_due,
    checkpoint_message,
    format_time,
    key_id_of,
    make_checkpoint,
    next_record,
    record_hash,
    verify_chain,
)
from trustroot.limits import DEFAULT_LIMITS, Limits

DOCS = Path(__file__).resolve().parents[2] / "docs" / "evidence.md"
T0 = datetime(2025, 1, 1, tzinfo=UTC)


class StepClock:
    """A clock that advances one second per reading."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


class Signer:
    """A CheckpointSigner over a private key object, by the trustroot signature conventions."""

    def __init__(self, private: Any, algorithm: str) -> None:
        self._private = private
        self.algorithm = algorithm
        self.key_id = key_id_of(private.public_key())
        self.calls = 0

    def sign(self, data: bytes) -> bytes:
        self.calls += 1
        if self.algorithm == "ed25519":
            return bytes(self._private.sign(data))
        if self.algorithm == "ecdsa-p256":
            return bytes(self._private.sign(data, ec.ECDSA(hashes.SHA256())))
        if self.algorithm == "ecdsa-p384":
            return bytes(self._private.sign(data, ec.ECDSA(hashes.SHA384())))
        pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
        return bytes(self._private.sign(data, pss, hashes.SHA256()))

    @property
    def keys(self) -> dict[str, Any]:
        return {self.key_id: self._private.public_key()}


@pytest.fixture(scope="module")
def signer() -> Signer:
    return Signer(ed25519.Ed25519PrivateKey.from_private_bytes(bytes(range(32))), "ed25519")


@pytest.fixture(scope="module")
def rsa_private() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=3072)


def small(n: int) -> Limits:
    return replace(DEFAULT_LIMITS, evidence_checkpoint_every=n)


def make_log(path: Path, signer: Signer | None = None, *, every: int = 1000) -> EvidenceLog:
    factory = (lambda: signer) if signer is not None else None
    return EvidenceLog(path, signer_factory=factory, clock=StepClock(), limits=small(every))


def fill(log: EvidenceLog, n: int, *, start: int = 0) -> None:
    for i in range(start, start + n):
        log.append("image.signed", f"app-{i}.bin", {"i": i, "sha256": f"{i:064x}"}, "cli:alice@host")


def lines_of(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def write_lines(path: Path, lines: list[bytes]) -> None:
    path.write_bytes(b"".join(lines))


def reencode(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def rechain(objs: list[dict[str, Any]], start: int = 0) -> list[bytes]:
    """What a forger with write access does: recompute prev and hash from ``start`` on."""
    for i in range(start, len(objs)):
        objs[i]["prev"] = objs[i - 1]["hash"] if i else GENESIS_PREV
        objs[i]["hash"] = record_hash(objs[i])
    return [reencode(o) for o in objs]


def broken(log: EvidenceLog, keys: dict[str, Any], **kwargs: Any) -> BrokenChainError:
    with pytest.raises(BrokenChainError) as info:
        log.verify(keys, **kwargs)
    return info.value


# --------------------------------------------------------------------------------------------
# Records and the hashing rule
# --------------------------------------------------------------------------------------------

KAT_BODY: dict[str, Any] = {
    "v": 1,
    "seq": 1,
    "time": "2025-01-01T00:00:00.000000Z",
    "actor": "cli:alice@factory",
    "type": "key.created",
    "subject": "firmware-signing-1",
    "data": {"algorithm": "ecdsa-p256", "fingerprint": "ab" * 32, "note": 'Grüße \u2028 "q"\n'},
    "prev": "0" * 64,
}
KAT_CANONICAL = (
    '{"actor":"cli:alice@factory","data":{"algorithm":"ecdsa-p256","fingerprint":"'
    + "ab" * 32
    + '","note":"Grüße \u2028 \\"q\\"\\n"},"prev":"'
    + "0" * 64
    + '","seq":1,"subject":"firmware-signing-1",'
    + '"time":"2025-01-01T00:00:00.000000Z","type":"key.created","v":1}'
).encode()
KAT_HASH = "cd7f7b6c59fcb1c363eb110000bcd79e5d3157d0cb7d547316848640d55b4402"


def test_canonical_bytes_known_answer() -> None:
    assert canonical_bytes(KAT_BODY) == KAT_CANONICAL
    assert record_hash(KAT_BODY) == KAT_HASH
    assert hashlib.sha256(KAT_CANONICAL).hexdigest() == KAT_HASH
    record = EvidenceRecord.from_dict({**KAT_BODY, "hash": KAT_HASH})
    assert canonical_bytes(record) == KAT_CANONICAL
    assert record_hash(record) == KAT_HASH
    assert record_hash({**KAT_BODY, "hash": "ignored"}) == KAT_HASH


def test_docs_show_the_known_answer() -> None:
    text = DOCS.read_text(encoding="utf-8")
    assert KAT_HASH in text


def test_next_record_is_pure_and_chains() -> None:
    first = next_record(Head(0, GENESIS_PREV), "key.created", "k", {"a": [1, None, True]}, "svc", time=T0)
    assert (first.seq, first.prev, first.v) == (1, GENESIS_PREV, 1)
    assert first.time == "2025-01-01T00:00:00.000000Z"
    assert first.hash == record_hash(first)
    second = next_record(first.head, "key.rotated", "k", {}, "svc", time=T0 + timedelta(microseconds=5))
    assert (second.seq, second.prev) == (2, first.hash)
    assert second.time == "2025-01-01T00:00:00.000005Z"
    assert EvidenceRecord.decode(second.encode()) == second
    assert hash(second) == hash(second.hash)
    assert len({first, second}) == 2


def test_record_data_is_a_private_copy() -> None:
    data: dict[str, Any] = {"list": [1, 2]}
    record = next_record(Head(0, GENESIS_PREV), "key.created", "k", data, "svc", time=T0)
    data["list"].append(3)
    assert record.data == {"list": [1, 2]}
    copy = record.as_dict()
    assert isinstance(copy["data"], dict)
    copy["data"]["list"] = []
    assert record.data == {"list": [1, 2]}
    tupled = next_record(Head(0, GENESIS_PREV), "key.created", "k", {"t": (1, "x")}, "svc", time=T0)
    assert tupled.data == {"t": [1, "x"]}


def test_next_record_refuses_checkpoint_type() -> None:
    with pytest.raises(EvidenceError, match="make_checkpoint"):
        next_record(Head(0, GENESIS_PREV), CHECKPOINT_TYPE, "k", {}, "svc", time=T0)


def test_default_clock_is_utc_now(tmp_path: Path) -> None:
    before = datetime.now(UTC)
    record = EvidenceLog(tmp_path / "e.jsonl").append("key.created", "k", {}, "svc")
    written = datetime.strptime(record.time, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    assert before <= written <= datetime.now(UTC)


def test_format_time_converts_to_utc_and_refuses_naive() -> None:
    cet = timezone(timedelta(hours=1))
    assert format_time(datetime(2025, 6, 1, 13, 0, 0, 42, tzinfo=cet)) == "2025-06-01T12:00:00.000042Z"
    with pytest.raises(EvidenceError, match="naive"):
        format_time(datetime(2025, 6, 1))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"v": "1"}, "v must be an integer"),
        ({"v": True}, "v must be an integer"),
        ({"seq": 0}, "seq"),
        ({"seq": True}, "seq"),
        ({"time": "2025-01-01T00:00:00Z"}, "time"),
        ({"time": "2025-02-30T00:00:00.000000Z"}, "valid date"),
        ({"actor": ""}, "actor is empty"),
        ({"actor": "a\x1bb"}, "control"),
        ({"actor": 5}, "actor must be a string"),
        ({"subject": "x" * (ev.MAX_SUBJECT_CHARS + 1)}, "subject is longer"),
        ({"type": "Key.Created"}, "type"),
        ({"type": 3}, "type"),
        ({"data": []}, "data must be a JSON object"),
        ({"data": {"f": 1.5}}, "floating-point"),
        ({"data": {"n": 2**53}}, "outside"),
        ({"data": {"b": b"x"}}, "bytes is not a JSON value"),
        ({"data": {1: "x"}}, "not a string"),
        ({"prev": "A" * 64}, "prev"),
        ({"hash": "short"}, "hash"),
    ],
)
def test_invalid_record_cannot_be_constructed(change: dict[Any, Any], message: str) -> None:
    fields = {**KAT_BODY, "hash": KAT_HASH, **change}
    with pytest.raises(EvidenceError, match=message):
        EvidenceRecord(**fields)


def test_record_with_wrong_hash_cannot_be_constructed() -> None:
    with pytest.raises(EvidenceError, match="does not match its hash"):
        EvidenceRecord(**{**KAT_BODY, "hash": "1" * 64})


def test_unknown_version_and_missing_fields_refused() -> None:
    with pytest.raises(EvidenceError, match="unknown evidence record version v=2"):
        EvidenceRecord.from_dict({**KAT_BODY, "v": 2, "hash": KAT_HASH})
    with pytest.raises(EvidenceError, match="unknown evidence record version v=3"):
        EvidenceRecord(**{**KAT_BODY, "v": 3, "hash": KAT_HASH})
    with pytest.raises(EvidenceError, match="must be a JSON object"):
        EvidenceRecord.from_dict([1, 2])  # type: ignore[arg-type]
    with pytest.raises(EvidenceError, match=r"record: missing hash$"):
        EvidenceRecord.from_dict(KAT_BODY)
    with pytest.raises(EvidenceError, match="record: unexpected extra"):
        EvidenceRecord.from_dict({**KAT_BODY, "hash": KAT_HASH, "extra": 1})
    with pytest.raises(EvidenceError, match="missing hash; unexpected extra"):
        EvidenceRecord.from_dict({**KAT_BODY, "extra": 1})


def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("record_type", "subject", "data", "actor", "message"),
    [
        ("key.made", "k", {}, "svc", "unregistered evidence type 'key.made'"),
        (CHECKPOINT_TYPE, "k", {}, "svc", "checkpoint"),
        ("key.created", "k", {"x": "y" * (DEFAULT_LIMITS.max_evidence_data_bytes)}, "svc", "over the limit"),
        ("key.created", "k", {"x": 0.5}, "svc", "floating-point"),
        ("key.created", "k", ["not", "a", "mapping"], "svc", "must be a JSON object"),
        ("key.created", "k", {"deep": _nested(ev.MAX_DATA_DEPTH)}, "svc", "nested"),
        ("key.created", "", {}, "svc", "subject is empty"),
        ("key.created", "k", {}, "x" * (ev.MAX_ACTOR_CHARS + 1), "actor is longer"),
        ("key.created", "k\n", {}, "svc", "control"),
        ("key.created", "k", {"s": "\ud800"}, "svc", "surrogate"),
    ],
)
def test_append_refuses_bad_input_and_writes_nothing(  # noqa: PLR0917 - parametrized
    tmp_path: Path, record_type: str, subject: str, data: Any, actor: str, message: str
) -> None:
    log = make_log(tmp_path / "evidence.jsonl")
    fill(log, 1)
    before = log.path.read_bytes()
    with pytest.raises(EvidenceError, match=message):
        log.append(record_type, subject, data, actor)
    assert log.path.read_bytes() == before


def test_record_size_limit(tmp_path: Path) -> None:
    limits = replace(DEFAULT_LIMITS, max_evidence_record_bytes=600)
    log = EvidenceLog(tmp_path / "e.jsonl", clock=StepClock(), limits=limits)
    with pytest.raises(EvidenceError, match="max_evidence_record_bytes"):
        log.append("key.created", "k", {"x": "y" * 400}, "svc")
    log.append("key.created", "k", {"x": "y" * 100}, "svc")
    tight = EvidenceLog(log.path, limits=replace(DEFAULT_LIMITS, max_evidence_record_bytes=100))
    error = broken(tight, {})
    assert (error.reason, error.line) == (ChainFault.RECORD_TOO_LARGE, 1)


# --------------------------------------------------------------------------------------------
# Appending, reading, verifying
# --------------------------------------------------------------------------------------------


def test_append_read_verify(tmp_path: Path) -> None:
    log = make_log(tmp_path / "state" / "evidence.jsonl")
    assert log.head() == Head(0, GENESIS_PREV)
    appended = [log.append("key.created", f"key-{i}", {"n": i, "name": "Schlüssel"}, "cli:bob@host") for i in range(5)]
    assert [r.seq for r in appended] == [1, 2, 3, 4, 5]
    assert appended[0].prev == GENESIS_PREV
    assert all(b.prev == a.hash for a, b in itertools.pairwise(appended))
    assert [r.time for r in appended] == [f"2025-01-01T00:00:0{i}.000000Z" for i in range(1, 6)]
    assert list(log.iter_records()) == appended
    assert lines_of(log.path) == [r.encode() + b"\n" for r in appended]
    assert "Schlüssel".encode() in log.path.read_bytes()  # UTF-8, not \u escapes
    assert log.head() == appended[-1].head
    report = log.verify({})
    assert report == ev.VerifyReport(
        records=5,
        last_seq=5,
        head_hash=appended[-1].hash,
        last_signed_seq=None,
        last_signed_hash=None,
        checkpoints=0,
        unsigned_tail=5,
    )
    assert report.head == appended[-1].head
    assert (tmp_path / "state" / "evidence.jsonl.lock").exists()


def test_absent_log_is_empty(tmp_path: Path) -> None:
    log = EvidenceLog(tmp_path / "missing" / "evidence.jsonl")
    assert log.verify({}).records == 0
    assert list(log.iter_records()) == []
    assert log.head() == Head(0, GENESIS_PREV)
    assert not (tmp_path / "missing").exists()
    error = broken(log, {}, known_head=Head(3, "a" * 64))
    assert error.reason is ChainFault.HEAD_MISMATCH


def test_verify_against_known_head(tmp_path: Path) -> None:
    log = make_log(tmp_path / "e.jsonl")
    fill(log, 4)
    head = log.head()
    assert log.verify({}, known_head=head).last_seq == 4
    fill(log, 2, start=4)
    assert log.verify({}, known_head=head).last_seq == 6
    write_lines(log.path, lines_of(log.path)[:3])
    error = broken(log, {}, known_head=head)
    assert (error.reason, error.line) == (ChainFault.HEAD_MISMATCH, 4)
    assert "records were removed from its end" in str(error)
    # a forger rewrites the whole log consistently: the known head still finds it
    objs = [json.loads(line) for line in lines_of(log.path)]
    objs[0]["subject"] = "forged"
    write_lines(log.path, rechain(objs))
    fill(make_log(log.path), 2)
    error = broken(log, {}, known_head=head)
    assert (error.reason, error.line) == (ChainFault.HEAD_MISMATCH, 4)


def test_verify_chain_over_rows(tmp_path: Path, signer: Signer) -> None:
    """The fleet's audit table hands the same records over as mappings."""
    log = make_log(tmp_path / "e.jsonl", signer, every=3)
    fill(log, 7)
    rows = [r.as_dict() for r in log.iter_records()]
    assert verify_chain(rows, signer.keys) == log.verify(signer.keys)
    assert verify_chain(log.iter_records(), signer.keys).checkpoints == 2
    rows[4]["data"] = {"i": 99}
    with pytest.raises(BrokenChainError) as info:
        verify_chain(rows, signer.keys)
    assert (info.value.line, info.value.reason) == (5, ChainFault.HASH_MISMATCH)
    assert str(info.value).startswith("evidence chain: line 5: record edited")


def test_key_map_must_use_fingerprints(signer: Signer) -> None:
    other = ed25519.Ed25519PrivateKey.generate().public_key()
    with pytest.raises(EvidenceError, match="is not the key id"):
        verify_chain([], {signer.key_id: other})


# --------------------------------------------------------------------------------------------
# Tampering: every kind is found, at the right line, with the right reason
# --------------------------------------------------------------------------------------------


def _edit_data(objs: list[dict[str, Any]]) -> list[bytes]:
    objs[2]["data"]["i"] = 1000
    return [reencode(o) for o in objs]


def _edit_hash(objs: list[dict[str, Any]]) -> list[bytes]:
    objs[2]["hash"] = "f" * 64
    return [reencode(o) for o in objs]


def _replace_rehashed(objs: list[dict[str, Any]]) -> list[bytes]:
    objs[2]["subject"] = "evil.bin"
    objs[2]["hash"] = record_hash(objs[2])
    return [reencode(o) for o in objs]


def _remove(index: int) -> Callable[[list[dict[str, Any]]], list[bytes]]:
    def tamper(objs: list[dict[str, Any]]) -> list[bytes]:
        del objs[index]
        return [reencode(o) for o in objs]

    return tamper


def _swap(i: int, j: int) -> Callable[[list[dict[str, Any]]], list[bytes]]:
    def tamper(objs: list[dict[str, Any]]) -> list[bytes]:
        objs[i], objs[j] = objs[j], objs[i]
        return [reencode(o) for o in objs]

    return tamper


def _duplicate(objs: list[dict[str, Any]]) -> list[bytes]:
    lines = [reencode(o) for o in objs]
    return [*lines[:3], lines[2], *lines[3:]]


def _whitespace(objs: list[dict[str, Any]]) -> list[bytes]:
    lines = [reencode(o) for o in objs]
    lines[1] = lines[1].replace(b'"seq":', b'"seq": ')
    return lines


def _ascii_escape(objs: list[dict[str, Any]]) -> list[bytes]:
    objs[1]["subject"] = "Grüße"
    objs[1]["hash"] = record_hash(objs[1])
    lines = rechain(objs)
    lines[1] = json.dumps(objs[1], sort_keys=True, separators=(",", ":")).encode() + b"\n"
    return lines


def _malformed(objs: list[dict[str, Any]]) -> list[bytes]:
    lines = [reencode(o) for o in objs]
    lines[3] = lines[3][:20] + b"\n"
    return lines


def _empty_line(objs: list[dict[str, Any]]) -> list[bytes]:
    lines = [reencode(o) for o in objs]
    return [*lines[:3], b"\n", *lines[3:]]


def _not_utf8(objs: list[dict[str, Any]]) -> list[bytes]:
    lines = [reencode(o) for o in objs]
    lines[3] = lines[3].replace(b"app-3", b"app-\xff")
    return lines


def _float_seq(objs: list[dict[str, Any]]) -> list[bytes]:
    lines = [reencode(o) for o in objs]
    lines[3] = lines[3].replace(b'"seq":4', b'"seq":4.0')
    return lines


def _not_object(objs: list[dict[str, Any]]) -> list[bytes]:
    lines = [reencode(o) for o in objs]
    lines[3] = b"[1,2]\n"
    return lines


def _version_2(objs: list[dict[str, Any]]) -> list[bytes]:
    objs[3]["v"] = 2
    objs[3]["hash"] = record_hash(objs[3])
    return rechain(objs, 4)


def _extra_field(objs: list[dict[str, Any]]) -> list[bytes]:
    objs[3]["note"] = "added"
    objs[3]["hash"] = record_hash(objs[3])
    return rechain(objs, 4)


def _forge_after_checkpoint(objs: list[dict[str, Any]]) -> list[bytes]:
    objs[1]["subject"] = "forged"
    return rechain(objs, 1)


def _forge_checkpoint_head(objs: list[dict[str, Any]]) -> list[bytes]:
    objs[1]["subject"] = "forged"
    rechain(objs, 1)
    objs[4]["data"]["head_hash"] = objs[3]["hash"]
    return rechain(objs, 4)


def _corrupt_signature(objs: list[dict[str, Any]]) -> list[bytes]:
    signature = bytearray(base64.b64decode(objs[4]["data"]["signature"]))
    signature[0] ^= 1
    objs[4]["data"]["signature"] = base64.b64encode(bytes(signature)).decode()
    return rechain(objs, 4)


def _checkpoint_data(**change: Any) -> Callable[[list[dict[str, Any]]], list[bytes]]:
    def tamper(objs: list[dict[str, Any]]) -> list[bytes]:
        objs[4]["data"].update(change)
        objs[4]["data"] = {k: v for k, v in objs[4]["data"].items() if v is not None}
        return rechain(objs, 4)

    return tamper


def _unknown_key(objs: list[dict[str, Any]]) -> list[bytes]:
    other = ed25519.Ed25519PrivateKey.generate()
    data = objs[4]["data"]
    data["key_id"] = key_id_of(other.public_key())
    data["signature"] = base64.b64encode(other.sign(checkpoint_message(4, objs[3]["hash"]))).decode()
    return rechain(objs, 4)


def _torn(objs: list[dict[str, Any]]) -> list[bytes]:
    lines = [reencode(o) for o in objs]
    return [*lines, lines[0][:30]]


BAD_SIG = ChainFault.BAD_CHECKPOINT_SIGNATURE
TAMPERS: list[tuple[str, Callable[[list[dict[str, Any]]], list[bytes]], int, ChainFault]] = [
    ("edited data", _edit_data, 3, ChainFault.HASH_MISMATCH),
    ("edited hash", _edit_hash, 3, ChainFault.HASH_MISMATCH),
    ("replaced record, rehashed", _replace_rehashed, 4, ChainFault.PREV_MISMATCH),
    ("removed first", _remove(0), 1, ChainFault.SEQ_GAP),
    ("removed middle", _remove(2), 3, ChainFault.SEQ_GAP),
    ("removed checkpoint", _remove(4), 5, ChainFault.SEQ_GAP),
    ("swapped adjacent", _swap(2, 3), 3, ChainFault.OUT_OF_ORDER),
    ("swapped apart", _swap(1, 6), 2, ChainFault.OUT_OF_ORDER),
    ("swapped last two", _swap(6, 7), 7, ChainFault.OUT_OF_ORDER),
    ("duplicated", _duplicate, 4, ChainFault.OUT_OF_ORDER),
    ("whitespace", _whitespace, 2, ChainFault.NON_CANONICAL),
    ("ascii escapes", _ascii_escape, 2, ChainFault.NON_CANONICAL),
    ("malformed json", _malformed, 4, ChainFault.MALFORMED),
    ("empty line", _empty_line, 4, ChainFault.MALFORMED),
    ("invalid utf-8", _not_utf8, 4, ChainFault.MALFORMED),
    ("float", _float_seq, 4, ChainFault.MALFORMED),
    ("not an object", _not_object, 4, ChainFault.MALFORMED),
    ("unknown version", _version_2, 4, ChainFault.UNKNOWN_VERSION),
    ("extra field", _extra_field, 4, ChainFault.MALFORMED),
    ("rewritten under a checkpoint", _forge_after_checkpoint, 5, ChainFault.BAD_CHECKPOINT),
    ("checkpoint head re-pointed", _forge_checkpoint_head, 5, ChainFault.BAD_CHECKPOINT_SIGNATURE),
    ("bad signature", _corrupt_signature, 5, ChainFault.BAD_CHECKPOINT_SIGNATURE),
    ("unknown checkpoint key", _unknown_key, 5, ChainFault.UNKNOWN_CHECKPOINT_KEY),
    ("checkpoint field missing", _checkpoint_data(key_id=None), 5, ChainFault.BAD_CHECKPOINT),
    ("checkpoint field type", _checkpoint_data(head_seq="4"), 5, ChainFault.BAD_CHECKPOINT),
    ("checkpoint head seq", _checkpoint_data(head_seq=3), 5, ChainFault.BAD_CHECKPOINT),
    ("checkpoint algorithm", _checkpoint_data(algorithm="dsa"), 5, ChainFault.BAD_CHECKPOINT),
    ("checkpoint base64", _checkpoint_data(signature="!!"), 5, ChainFault.BAD_CHECKPOINT),
    ("checkpoint wrong alg", _checkpoint_data(algorithm="ecdsa-p256"), 5, BAD_SIG),
    ("torn last line", _torn, 9, ChainFault.TORN_LINE),
]


@pytest.mark.parametrize(("tamper", "line", "reason"), [t[1:] for t in TAMPERS], ids=[t[0] for t in TAMPERS])
def test_tampering_is_found(
    tmp_path: Path,
    signer: Signer,
    tamper: Callable[[list[dict[str, Any]]], list[bytes]],
    line: int,
    reason: ChainFault,
) -> None:
    log = make_log(tmp_path / "e.jsonl", signer, every=4)
    fill(log, 7)  # 4 records, checkpoint (seq 5), 3 records
    assert log.verify(signer.keys).last_signed_seq == 4
    write_lines(log.path, tamper([json.loads(raw) for raw in lines_of(log.path)]))
    error = broken(log, signer.keys)
    assert (error.line, error.reason) == (line, reason), str(error)
    assert isinstance(error, EvidenceChainError)
    assert f"line {line}:" in str(error)
    assert str(log.path) in str(error)


def test_iter_records_stops_at_a_bad_line(tmp_path: Path) -> None:
    log = make_log(tmp_path / "e.jsonl")
    fill(log, 4)
    write_lines(log.path, _malformed([json.loads(raw) for raw in lines_of(log.path)]))
    seen: list[EvidenceRecord] = []
    with pytest.raises(BrokenChainError) as info:
        seen.extend(log.iter_records())
    assert [r.seq for r in seen] == [1, 2, 3]
    assert (info.value.line, info.value.reason) == (4, ChainFault.MALFORMED)


# --------------------------------------------------------------------------------------------
# Torn lines and failed writes
# --------------------------------------------------------------------------------------------


def test_torn_last_line_refuses_append_and_fails_verify(tmp_path: Path) -> None:
    log = make_log(tmp_path / "e.jsonl")
    fill(log, 3)
    with log.path.open("ab") as handle:
        handle.write(b'{"actor":"cli:alice@host","da')
    with pytest.raises(EvidenceError, match="last line is incomplete") as info:
        fill(log, 1)
    assert info.value.hint is not None
    with pytest.raises(EvidenceError, match="last line is incomplete"):
        fill(make_log(log.path), 1)  # a fresh process, too
    error = broken(log, {})
    assert (error.line, error.reason) == (4, ChainFault.TORN_LINE)
    assert "the 3 lines before it are complete" in str(error)


def test_append_refuses_when_last_record_is_invalid(tmp_path: Path) -> None:
    log = make_log(tmp_path / "e.jsonl")
    fill(log, 3)
    write_lines(log.path, _edit_data([json.loads(raw) for raw in lines_of(log.path)]))
    with pytest.raises(EvidenceError, match="last record is invalid"):
        fill(make_log(log.path), 1)


def test_failed_write_leaves_no_torn_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = make_log(tmp_path / "e.jsonl")
    fill(log, 2)
    before = log.path.read_bytes()
    real_write = os.write

    def half_then_full(fd: int, data: Any) -> int:
        real_write(fd, bytes(data[:10]))
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", half_then_full)
    with pytest.raises(EvidenceError, match="No space left"):
        fill(log, 1)
    monkeypatch.undo()
    assert log.path.read_bytes() == before
    fill(log, 1)
    assert log.verify({}).records == 3


def test_short_writes_are_completed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = make_log(tmp_path / "e.jsonl")
    real_write = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: real_write(fd, bytes(data[:7])))
    fill(log, 2)
    monkeypatch.undo()
    assert log.verify({}).records == 2


def test_unusable_paths(tmp_path: Path) -> None:
    directory = tmp_path / "a-directory"
    directory.mkdir()
    log = EvidenceLog(directory)
    with pytest.raises(EvidenceError, match="cannot open"):
        log.append("key.created", "k", {}, "svc")
    with pytest.raises(EvidenceError, match="cannot be read"):
        log.verify({})


def test_verify_without_a_lock_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A read-only copy of a log (no lock file can be made) still verifies."""
    log = make_log(tmp_path / "e.jsonl")
    fill(log, 2)

    def read_only(path: Path) -> Any:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(ev, "exclusive_lock", read_only)
    assert log.verify({}).records == 2


def test_huge_last_line_is_refused_on_append(tmp_path: Path) -> None:
    log = make_log(tmp_path / "e.jsonl")
    log.append("scan.completed", "big", {"blob": "x" * (70 << 10)}, "svc")
    tight = EvidenceLog(log.path, limits=replace(DEFAULT_LIMITS, max_evidence_record_bytes=1000))
    with pytest.raises(EvidenceError, match="longer than 1000 bytes"):
        tight.append("key.created", "k", {}, "svc")


# --------------------------------------------------------------------------------------------
# Several writers, one chain (in-process: two objects on one file)
# --------------------------------------------------------------------------------------------


def test_two_writers_keep_one_chain(tmp_path: Path, signer: Signer) -> None:
    path = tmp_path / "e.jsonl"
    a, b = make_log(path, signer, every=5), make_log(path, signer, every=5)
    for i in range(12):
        (a if i % 3 else b).append("scan.completed", f"s{i}", {"i": i}, "svc")
    report = a.verify(signer.keys)
    assert report.records == 14
    assert report.checkpoints == 2
    types = [r.type for r in a.iter_records()]
    assert [i + 1 for i, t in enumerate(types) if t == CHECKPOINT_TYPE] == [6, 12]


def test_writer_survives_file_replaced_behind_its_back(tmp_path: Path) -> None:
    path = tmp_path / "e.jsonl"
    log = make_log(path)
    fill(log, 3)
    kept = path.read_bytes()
    fill(log, 2)
    path.unlink()
    path.write_bytes(kept)  # new inode, fewer records (an operator restored a copy)
    record = log.append("key.created", "k", {}, "svc")
    assert record.seq == 4
    assert log.verify({}).records == 4
    # same size and inode, different content: the cached head is not trusted blindly
    other = make_log(path)
    fill(other, 1)
    objs = [json.loads(raw) for raw in lines_of(path)]
    objs[-1]["subject"] = "app-X.bin"
    write_lines(path, rechain(objs, len(objs) - 1))
    assert other.append("key.created", "k", {}, "svc").prev == objs[-1]["hash"]
    assert other.verify({}).records == 6


def test_writer_notices_a_log_rewritten_in_place(tmp_path: Path) -> None:
    path = tmp_path / "e.jsonl"
    writer = make_log(path)
    fill(writer, 2)
    for shift in (0, 1):  # lines of other lengths; then of the same lengths, so line ends line up
        other = make_log(tmp_path / f"other{shift}.jsonl")
        assert isinstance(other._clock, StepClock)
        other._clock.now += timedelta(days=1 + shift)
        fill(other, 4 + shift, start=shift * 10)
        with path.open("r+b") as handle:  # same inode, longer, a different chain
            handle.write(other.path.read_bytes())
        record = writer.append("key.created", "k", {}, "svc")
        assert (record.seq, record.prev) == (5 + shift, other.head().hash)
        assert writer.verify({}).records == 5 + shift


def test_writer_reads_the_tail_afresh_after_a_gap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "e.jsonl"
    a, b = make_log(path), make_log(path)
    fill(a, 1)
    fill(b, 3)
    monkeypatch.setattr(ev, "_MAX_CATCH_UP", 10)
    assert a.append("key.created", "k", {}, "svc").seq == 5


# --------------------------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------------------------


def test_checkpoint_every_1000_records(tmp_path: Path, signer: Signer) -> None:
    calls = []

    def factory() -> Signer:
        calls.append(1)
        return signer

    log = EvidenceLog(tmp_path / "e.jsonl", signer_factory=factory, clock=StepClock())
    assert DEFAULT_LIMITS.evidence_checkpoint_every == 1000
    fill(log, 999)
    assert calls == []  # the key is not needed while no checkpoint is due
    fill(log, 1, start=999)
    assert len(calls) == 1
    fill(log, 1000, start=1000)
    assert len(calls) == 2
    records = list(log.iter_records())
    checkpoints = [r for r in records if r.type == CHECKPOINT_TYPE]
    assert [c.seq for c in checkpoints] == [1001, 2002]
    first = checkpoints[0]
    assert first.data["head_seq"] == 1000
    assert first.data["head_hash"] == records[999].hash == first.prev
    assert first.data["key_id"] == signer.key_id
    assert first.data["algorithm"] == "ed25519"
    assert first.subject == records[999].hash
    assert first.actor == "cli:alice@host"
    signature = base64.b64decode(str(first.data["signature"]))
    ed25519.Ed25519PublicKey.from_public_bytes(signer.keys[signer.key_id].public_bytes_raw()).verify(
        signature, b"trustroot-evidence-checkpoint-v1:1000:" + records[999].hash.encode()
    )
    report = log.verify(signer.keys)
    assert (report.records, report.checkpoints, report.last_signed_seq) == (2002, 2, 2001)
    assert report.last_signed_hash == records[2000].hash
    assert report.unsigned_tail == 1


def test_checkpoint_on_demand(tmp_path: Path, signer: Signer) -> None:
    log = make_log(tmp_path / "e.jsonl", signer)
    with pytest.raises(EvidenceError, match="nothing to checkpoint"):
        log.checkpoint()
    fill(log, 3)
    record = log.checkpoint(actor="cli:carol@host")
    assert (record.seq, record.type, record.actor) == (4, CHECKPOINT_TYPE, "cli:carol@host")
    assert record.data["head_seq"] == 3
    fill(log, 2, start=3)
    report = log.verify(signer.keys)
    assert (report.last_signed_seq, report.checkpoints, report.unsigned_tail) == (3, 1, 3)
    with pytest.raises(BrokenChainError) as info:
        log.verify({})
    assert (info.value.line, info.value.reason) == (4, ChainFault.UNKNOWN_CHECKPOINT_KEY)


def test_on_demand_checkpoint_needs_a_signer(tmp_path: Path) -> None:
    log = make_log(tmp_path / "e.jsonl")
    fill(log, 1)
    with pytest.raises(EvidenceError, match="no signer"):
        log.checkpoint()
    absent = EvidenceLog(log.path, signer_factory=lambda: None)
    with pytest.raises(EvidenceError, match="not available"):
        absent.checkpoint()


def test_on_demand_checkpoint_resets_the_count(tmp_path: Path, signer: Signer) -> None:
    log = make_log(tmp_path / "e.jsonl", signer, every=4)
    fill(log, 2)
    log.checkpoint()
    fill(log, 4, start=2)
    types = [r.type for r in log.iter_records()]
    assert [i + 1 for i, t in enumerate(types) if t == CHECKPOINT_TYPE] == [3, 8]


def test_checkpoint_deferred_until_a_signer_is_available(
    tmp_path: Path, signer: Signer, caplog: pytest.LogCaptureFixture
) -> None:
    available: list[Signer | None] = [None]
    log = EvidenceLog(tmp_path / "e.jsonl", signer_factory=lambda: available[0], clock=StepClock(), limits=small(3))
    fill(log, 5)  # due after record 3, but the key is locked
    assert "checkpoint due but deferred" in caplog.text
    assert all(r.type != CHECKPOINT_TYPE for r in log.iter_records())
    assert log.verify(signer.keys).unsigned_tail == 5
    available[0] = signer
    fill(log, 1, start=5)
    records = list(log.iter_records())
    assert records[-1].type == CHECKPOINT_TYPE
    assert records[-1].data["head_seq"] == 6
    assert log.verify(signer.keys).last_signed_seq == 6


def test_checkpoint_deferred_when_factory_or_signer_fails(tmp_path: Path, signer: Signer) -> None:
    def locked() -> Signer:
        raise KeyStateError("the evidence key is locked")

    log = EvidenceLog(tmp_path / "e.jsonl", signer_factory=locked, clock=StepClock(), limits=small(2))
    fill(log, 3)
    bad = Signer(ed25519.Ed25519PrivateKey.generate(), "ed25519")
    bad.algorithm = "dsa-1024"
    log2 = EvidenceLog(log.path, signer_factory=lambda: bad, clock=StepClock(), limits=small(2))
    fill(log2, 1, start=3)
    nothing = EvidenceLog(log.path, clock=StepClock(), limits=small(2))
    fill(nothing, 1, start=4)
    assert log.verify({}).records == 5  # no checkpoint written by any of them
    fill(make_log(log.path, signer, every=2), 1, start=5)
    assert log.verify(signer.keys).last_signed_seq == 6


def test_failed_checkpoint_write_does_not_fail_the_append(
    tmp_path: Path, signer: Signer, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = make_log(tmp_path / "e.jsonl", signer, every=2)
    real_write = os.write

    def no_room_for_checkpoints(fd: int, data: Any) -> int:
        if b'"type":"evidence.checkpoint"' in bytes(data):
            raise OSError(28, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", no_room_for_checkpoints)
    fill(log, 3)
    monkeypatch.undo()
    assert log.verify(signer.keys).checkpoints == 0
    fill(log, 1, start=3)
    assert log.verify(signer.keys).last_signed_seq == 4


def test_a_fresh_writer_finds_the_last_checkpoint(tmp_path: Path, signer: Signer) -> None:
    log = make_log(tmp_path / "e.jsonl", signer, every=5)
    fill(log, 7)  # checkpoint at 6
    counting = Signer(ed25519.Ed25519PrivateKey.from_private_bytes(bytes(range(32))), "ed25519")
    fresh = make_log(log.path, counting, every=5)
    fill(fresh, 2, start=7)  # seq 8, 9: not due yet
    assert counting.calls == 0
    fill(fresh, 2, start=9)  # seq 10, 11: due at 11
    assert counting.calls == 1
    assert log.verify(signer.keys).checkpoints == 2
    # and one that looks back through records mentioning the checkpoint type in their data
    noisy = make_log(log.path, None, every=5)
    noisy.append("scan.completed", "x", {"type": "evidence.checkpoint"}, "svc")
    noisy.append("scan.completed", "y", {}, "svc")
    fresh2 = make_log(log.path, counting, every=5)
    fill(fresh2, 1, start=11)  # seq 16: 16 - 12 < 5
    assert counting.calls == 1


def test_checkpoint_is_not_duplicated_when_another_writer_made_it(tmp_path: Path, signer: Signer) -> None:
    path = tmp_path / "e.jsonl"
    late = make_log(path, signer, every=3)
    fill(late, 2)

    class Racing(Signer):
        def __init__(self) -> None:
            super().__init__(ed25519.Ed25519PrivateKey.from_private_bytes(bytes(range(32))), "ed25519")

    def factory_that_races() -> Signer:
        make_log(path, signer, every=3).checkpoint()  # someone else signs first
        return Racing()

    racer = EvidenceLog(path, signer_factory=factory_that_races, clock=StepClock(), limits=small(3))
    fill(racer, 1, start=2)
    types = [r.type for r in racer.iter_records()]
    assert types.count(CHECKPOINT_TYPE) == 1


@pytest.mark.parametrize("algorithm", ["ecdsa-p256", "ecdsa-p384", "rsa-3072"])
def test_checkpoint_algorithms(tmp_path: Path, algorithm: str, rsa_private: rsa.RSAPrivateKey) -> None:
    private: Any
    if algorithm == "ecdsa-p256":
        private = ec.generate_private_key(ec.SECP256R1())
    elif algorithm == "ecdsa-p384":
        private = ec.generate_private_key(ec.SECP384R1())
    else:
        private = rsa_private
    signer = Signer(private, algorithm)
    log = make_log(tmp_path / "e.jsonl", signer)
    fill(log, 2)
    log.checkpoint()
    assert log.verify(signer.keys).last_signed_seq == 2
    # the same signature under a key of another kind is refused
    objs = [json.loads(raw) for raw in lines_of(log.path)]
    objs[2]["data"]["algorithm"] = "ecdsa-p384" if algorithm == "ecdsa-p256" else "ecdsa-p256"
    write_lines(log.path, rechain(objs, 2))
    error = broken(log, signer.keys)
    assert error.reason is ChainFault.BAD_CHECKPOINT_SIGNATURE
    assert "is not a" in str(error)


def test_make_checkpoint_refuses_bad_signers(signer: Signer) -> None:
    head = Head(3, "a" * 64)
    weird = Signer(ed25519.Ed25519PrivateKey.generate(), "ed25519")
    weird.key_id = "not-a-fingerprint"
    with pytest.raises(EvidenceError, match="key_id"):
        make_checkpoint(head, weird, time=T0, actor="svc")
    silent = Signer(ed25519.Ed25519PrivateKey.generate(), "ed25519")
    silent.sign = lambda data: b""  # type: ignore[method-assign]
    with pytest.raises(EvidenceError, match="no signature"):
        make_checkpoint(head, silent, time=T0, actor="svc")
    with pytest.raises(EvidenceError, match="empty"):
        make_checkpoint(Head(0, GENESIS_PREV), signer, time=T0, actor="svc")
    record = make_checkpoint(head, signer, time=T0, actor="svc")
    assert (record.seq, record.prev, record.type) == (4, "a" * 64, CHECKPOINT_TYPE)


def test_checkpoint_due_rule() -> None:
    assert not checkpoint_due(999, 0, 1000)
    assert checkpoint_due(1000, 0, 1000)
    assert not checkpoint_due(2000, 1001, 1000)
    assert checkpoint_due(2001, 1001, 1000)


def test_checkpoint_message_format() -> None:
    assert checkpoint_message(7, "ab" * 32) == b"trustroot-evidence-checkpoint-v1:7:" + b"ab" * 32


# --------------------------------------------------------------------------------------------
# The registry and its documentation
# --------------------------------------------------------------------------------------------


def _documented_types() -> dict[str, str]:
    text = DOCS.read_text(encoding="utf-8")
    section = text.split("## Record types", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\|\s*`([a-z0-9_.]+)`\s*\|\s*(.+?)\s*\|\s*$", section, flags=re.MULTILINE)
    return dict(rows)


def test_registry_and_docs_agree() -> None:
    documented = _documented_types()
    assert set(documented) == set(EVIDENCE_TYPES), (
        f"only in code: {sorted(set(EVIDENCE_TYPES) - set(documented))}; "
        f"only in docs: {sorted(set(documented) - set(EVIDENCE_TYPES))}"
    )
    assert documented == dict(EVIDENCE_TYPES)


def test_registry_holds_the_required_types() -> None:
    required = {
        "key.created", "key.imported", "key.rotated", "key.revoked", "key.exported", "key.backup.created",
        "key.restored", "rootoftrust.created", "context.checked", "evidence.checkpoint", "image.signed",
        "bootloader.secret.exported", "device.provisioned", "batch.authorized", "batch.opened",
        "batch.closed", "device.revoked", "release.published", "rollout.changed", "disclosure.received",
        "disclosure.changed", "ownership.changed", "data.deleted", "scan.completed", "declaration.signed",
        "assessment.completed",
    }  # fmt: skip
    assert required <= set(EVIDENCE_TYPES)
    with pytest.raises(TypeError):
        EVIDENCE_TYPES["x.y"] = "no run-time registration"  # type: ignore[index]


def test_append_many_writes_one_chain_under_one_lock(tmp_path: Path) -> None:
    from trustroot.evidence import EvidenceLog

    log = EvidenceLog(tmp_path / "evidence.jsonl")
    log.append("key.created", "k", {"n": 0}, "test")
    records = log.append_many([("device.provisioned", f"S{i}", {"i": i}) for i in range(5)], "test")
    assert [r.seq for r in records] == [2, 3, 4, 5, 6]
    report = log.verify({})
    assert report.records == 6 and report.head_hash == records[-1].hash
    with pytest.raises(EvidenceError, match=r"appended by EvidenceLog\.checkpoint"):
        log.append_many([("evidence.checkpoint", "x", {})], "test")
    assert log.append_many([], "test") == []
