"""Property tests of the evidence log: no single-byte edit, line deletion or line swap goes unnoticed,
and any valid data survives the canonical encoding unchanged."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trustroot.errors import EvidenceChainError
from trustroot.evidence import (
    GENESIS_PREV,
    ChainFault,
    EvidenceLog,
    EvidenceRecord,
    Head,
    canonical_bytes,
    key_id_of,
    next_record,
    verify_chain,
)
from trustroot.limits import DEFAULT_LIMITS

_PRIVATE = ed25519.Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))
KEYS = {key_id_of(_PRIVATE.public_key()): _PRIVATE.public_key()}


class _Signer:
    algorithm = "ed25519"
    key_id = key_id_of(_PRIVATE.public_key())

    def sign(self, data: bytes) -> bytes:
        return _PRIVATE.sign(data)


def _build_log(directory: Path) -> bytes:
    moments = iter(datetime(2025, 3, 1, tzinfo=UTC) + timedelta(seconds=i) for i in range(100))
    log = EvidenceLog(
        directory / "valid.jsonl",
        signer_factory=_Signer,
        clock=lambda: next(moments),
        limits=replace(DEFAULT_LIMITS, evidence_checkpoint_every=4),
    )
    for i in range(10):
        log.append("device.provisioned", f"SN-{i:04d}", {"i": i, "name": "Gerät ✓", "ok": i % 2 == 0}, "station:1")
    log.checkpoint()
    return log.path.read_bytes()


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as name:
        yield Path(name)


@pytest.fixture(scope="module")
def valid(workdir: Path) -> bytes:
    return _build_log(workdir)


def _verify_bytes(workdir: Path, content: bytes, **kwargs: Any) -> None:
    path = workdir / "tampered.jsonl"
    path.write_bytes(content)
    EvidenceLog(path).verify(KEYS, **kwargs)


def test_the_fixture_log_is_valid(workdir: Path, valid: bytes) -> None:
    path = workdir / "check.jsonl"
    path.write_bytes(valid)
    report = EvidenceLog(path).verify(KEYS)
    assert (report.records, report.checkpoints, report.unsigned_tail) == (13, 3, 1)


SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@SETTINGS
@given(position=st.integers(min_value=0), replacement=st.integers(min_value=0, max_value=255))
def test_any_single_byte_edit_is_detected(workdir: Path, valid: bytes, position: int, replacement: int) -> None:
    position %= len(valid)
    if valid[position] == replacement:
        replacement ^= 0x01
    tampered = bytearray(valid)
    tampered[position] = replacement
    with pytest.raises(EvidenceChainError):
        _verify_bytes(workdir, bytes(tampered))


@SETTINGS
@given(index=st.integers(min_value=0))
def test_any_line_deletion_is_detected(workdir: Path, valid: bytes, index: int) -> None:
    lines = valid.splitlines(keepends=True)
    index %= len(lines)
    kept = lines[:index] + lines[index + 1 :]
    last = EvidenceRecord.decode(lines[-1].rstrip(b"\n"))
    # removing the last line leaves a valid shorter log: only a known head finds it
    with pytest.raises(EvidenceChainError) as info:
        _verify_bytes(workdir, b"".join(kept), known_head=last.head)
    if index < len(lines) - 1:
        assert info.value.reason is ChainFault.SEQ_GAP  # type: ignore[attr-defined]
        with pytest.raises(EvidenceChainError):
            _verify_bytes(workdir, b"".join(kept))
    else:
        assert info.value.reason is ChainFault.HEAD_MISMATCH  # type: ignore[attr-defined]


@SETTINGS
@given(data=st.data())
def test_any_line_swap_is_detected(workdir: Path, valid: bytes, data: st.DataObject) -> None:
    lines = valid.splitlines(keepends=True)
    i = data.draw(st.integers(min_value=0, max_value=len(lines) - 2))
    j = data.draw(st.integers(min_value=i + 1, max_value=len(lines) - 1))
    lines[i], lines[j] = lines[j], lines[i]
    with pytest.raises(EvidenceChainError) as info:
        _verify_bytes(workdir, b"".join(lines))
    assert info.value.reason is ChainFault.OUT_OF_ORDER  # type: ignore[attr-defined]
    assert info.value.line == i + 1  # type: ignore[attr-defined]


_json_scalars = (
    st.none() | st.booleans() | st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1) | st.text(max_size=20)
)
_json = st.recursive(
    _json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=10,
)
_text = st.text(
    st.characters(blacklist_categories=("Cc", "Cs")),
    min_size=1,
    max_size=30,
)


@settings(max_examples=100, deadline=None)
@given(
    payloads=st.lists(st.dictionaries(st.text(max_size=10), _json, max_size=4), min_size=1, max_size=3),
    who=_text,
)
def test_valid_data_round_trips_and_verifies(payloads: list[dict[str, Any]], who: str) -> None:
    head = Head(0, GENESIS_PREV)
    moment = datetime(2025, 3, 1, tzinfo=UTC)
    records = []
    for payload in payloads:
        record = next_record(head, "scan.completed", who, payload, who, time=moment)
        assert record.data == payload
        line = record.encode()
        assert b"\n" not in line
        decoded = EvidenceRecord.decode(line)
        assert decoded == record
        assert canonical_bytes(record.as_dict()) == canonical_bytes(record)
        records.append(decoded)
        head = record.head
    report = verify_chain([r.as_dict() for r in records], {})
    assert report.records == len(payloads)
