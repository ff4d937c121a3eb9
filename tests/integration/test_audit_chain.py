"""The fleet's audit chain on SQLite and on a real PostgreSQL: appends, checkpoints, tampering, export,
and several writer processes appending at once without forking the chain."""

from __future__ import annotations

import itertools
import json
import logging
import multiprocessing
from collections import defaultdict
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fleet_audit_writer import Ed25519Signer, append_records
from sqlalchemy import delete, select, update

from trustroot.errors import EvidenceError, WrongSecretError
from trustroot.evidence import (
    CHECKPOINT_TYPE,
    GENESIS_PREV,
    BrokenChainError,
    ChainFault,
    EvidenceLog,
    Head,
)
from trustroot.fleet.store.audit import AuditLog
from trustroot.fleet.store.db import Store
from trustroot.fleet.store.models import AuditRecord
from trustroot.limits import DEFAULT_LIMITS

WRITERS = 2
PER_WRITER = 60


def _clock() -> Any:
    ticks = itertools.count()
    start = datetime(2026, 1, 1, tzinfo=UTC)
    return lambda: start + timedelta(seconds=next(ticks))


def _log(store: Store, *, every: int = 1000, signer: Ed25519Signer | None = None) -> AuditLog:
    return AuditLog(
        store,
        clock=_clock(),
        signer_factory=(lambda: signer) if signer is not None else None,
        limits=replace(DEFAULT_LIMITS, evidence_checkpoint_every=every),
    )


def test_appended_records_form_a_chain_that_verifies(store: Store) -> None:
    log = _log(store)
    assert log.head() == Head(0, GENESIS_PREV)
    first = log.append("device.provisioned", "SN-1", {"batch": "B1", "n": 1}, "service")
    second = log.append("device.revoked", "SN-1", {"reason": "stolen", "note": "Grüße \u2028"}, "operator:alice")
    assert (first.seq, second.seq, second.prev) == (1, 2, first.hash)
    report = log.verify({})
    assert (report.records, report.head, report.unsigned_tail) == (2, second.head, 2)
    assert log.head() == second.head
    assert list(log.iter_records()) == [first, second]


def test_unregistered_and_checkpoint_types_are_refused_and_nothing_is_written(store: Store) -> None:
    log = _log(store)
    with pytest.raises(EvidenceError, match=r"unregistered evidence type 'device\.teleported'"):
        log.append("device.teleported", "SN-1", {}, "service")
    with pytest.raises(EvidenceError, match=r"appended by AuditLog\.checkpoint"):
        log.append(CHECKPOINT_TYPE, "SN-1", {}, "service")
    with pytest.raises(EvidenceError, match="floating-point"):
        log.append("device.provisioned", "SN-1", {"temperature": 21.5}, "service")
    assert log.head().seq == 0


def test_an_append_joins_the_callers_transaction(store: Store) -> None:
    log = _log(store)
    with pytest.raises(RuntimeError, match="caller failed"), store.transaction() as session:
        log.append("device.provisioned", "SN-1", {}, "service", session=session)
        raise RuntimeError("caller failed")
    assert log.head().seq == 0  # rolled back with the caller's work

    with store.transaction() as session:
        record = log.append("device.provisioned", "SN-2", {}, "service", session=session)
        assert session.execute(select(AuditRecord.subject)).scalars().all() == ["SN-2"]
    assert log.head() == record.head


def test_checkpoints_are_signed_when_due_and_deferred_without_a_key(store: Store) -> None:
    signer = Ed25519Signer()
    no_key = _log(store, every=3)
    for i in range(4):
        no_key.append("device.provisioned", f"SN-{i}", {}, "service")
    assert no_key.verify({}).checkpoints == 0  # due at 3, deferred: no signer

    with_key = _log(store, every=3, signer=signer)
    appended = with_key.append("device.provisioned", "SN-4", {}, "service")
    records = list(with_key.iter_records())
    assert [r.type for r in records[-2:]] == ["device.provisioned", CHECKPOINT_TYPE]
    assert records[-1].data["head_seq"] == appended.seq == 5
    report = with_key.verify(signer.public_keys())
    assert (report.checkpoints, report.last_signed_seq, report.unsigned_tail) == (1, 5, 1)

    on_demand = with_key.checkpoint(actor="operator:alice")
    assert on_demand.seq == 7
    report = with_key.verify(signer.public_keys())
    assert (report.checkpoints, report.last_signed_seq, report.unsigned_tail) == (2, 6, 1)  # only the checkpoint
    with pytest.raises(BrokenChainError) as caught:
        with_key.verify({})
    assert caught.value.reason is ChainFault.UNKNOWN_CHECKPOINT_KEY


def test_a_checkpoint_due_in_a_callers_transaction_follows_its_commit(store: Store) -> None:
    signer = Ed25519Signer()
    log = _log(store, every=2, signer=signer)
    log.append("device.provisioned", "SN-1", {}, "service")
    with pytest.raises(RuntimeError, match="caller failed"), store.transaction() as session:
        log.append("device.provisioned", "SN-2", {}, "service", session=session)
        raise RuntimeError("caller failed")
    assert [r.seq for r in log.iter_records()] == [1]  # rolled back: no record, no checkpoint

    with store.transaction() as session:
        log.append("device.provisioned", "SN-2", {}, "service", session=session)
        log.append("device.provisioned", "SN-3", {}, "service", session=session)
        assert session.execute(select(AuditRecord.type).where(AuditRecord.type == CHECKPOINT_TYPE)).first() is None
    records = list(log.iter_records())
    assert [r.type for r in records] == ["device.provisioned"] * 3 + [CHECKPOINT_TYPE]  # one, after the commit
    assert records[-1].data["head_seq"] == 3
    assert log.verify(signer.public_keys()).last_signed_seq == 3


def test_a_failing_signer_defers_the_checkpoint_with_one_warning(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    def locked_key() -> Ed25519Signer:
        raise WrongSecretError("no passphrase: set TRUSTROOT_PASSPHRASE")

    log = AuditLog(store, signer_factory=locked_key, limits=replace(DEFAULT_LIMITS, evidence_checkpoint_every=2))
    with caplog.at_level(logging.DEBUG, logger="trustroot.fleet.store.audit"):
        for i in range(4):
            log.append("device.provisioned", f"SN-{i}", {}, "service")
    assert [r.type for r in log.iter_records()] == ["device.provisioned"] * 4
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "checkpoint due but deferred" in warnings[0].getMessage()
    assert "TRUSTROOT_PASSPHRASE" in warnings[0].getMessage()


def test_checkpoint_needs_a_signer_and_records(store: Store) -> None:
    with pytest.raises(EvidenceError, match="no signer"):
        _log(store).checkpoint()
    with pytest.raises(EvidenceError, match="chain is empty"):
        _log(store, signer=Ed25519Signer()).checkpoint()


def _three(store: Store) -> AuditLog:
    log = _log(store)
    for i in range(3):
        log.append("device.provisioned", f"SN-{i}", {"i": i}, "service")
    return log


@pytest.mark.parametrize(
    ("tamper", "line", "reason"),
    [
        (update(AuditRecord).where(AuditRecord.seq == 2).values(data='{"i":20}'), 2, ChainFault.HASH_MISMATCH),
        (update(AuditRecord).where(AuditRecord.seq == 2).values(actor="intruder"), 2, ChainFault.HASH_MISMATCH),
        (update(AuditRecord).where(AuditRecord.seq == 2).values(data="not json"), 2, ChainFault.MALFORMED),
        (delete(AuditRecord).where(AuditRecord.seq == 2), 2, ChainFault.SEQ_GAP),
        (delete(AuditRecord).where(AuditRecord.seq == 1), 1, ChainFault.SEQ_GAP),
    ],
    ids=["edited-data", "edited-actor", "garbled-data", "removed", "removed-first"],
)
def test_tampered_rows_fail_verification_at_the_record(
    store: Store, tamper: Any, line: int, reason: ChainFault
) -> None:
    log = _three(store)
    with store.transaction() as session:
        session.execute(tamper)
    with pytest.raises(BrokenChainError) as caught:
        log.verify({})
    assert (caught.value.line, caught.value.reason) == (line, reason)


def test_a_replaced_record_breaks_the_link_to_the_next(store: Store) -> None:
    log = _three(store)
    original = list(log.iter_records())
    other = _log(store)  # an attacker re-computes record 2 with other content but a valid hash
    with store.transaction() as session:
        session.execute(delete(AuditRecord).where(AuditRecord.seq >= 2))
    forged = other.append("device.provisioned", "SN-forged", {}, "intruder")
    with store.transaction() as session:
        session.add(
            AuditRecord(
                seq=3,
                v=1,
                time=original[2].time,
                actor=original[2].actor,
                type=original[2].type,
                subject=original[2].subject,
                data=json.dumps(original[2].data, separators=(",", ":")),
                prev=original[2].prev,
                hash=original[2].hash,
            )
        )
    assert forged.hash != original[1].hash
    with pytest.raises(BrokenChainError) as caught:
        log.verify({})
    assert (caught.value.line, caught.value.reason) == (3, ChainFault.PREV_MISMATCH)


def test_a_damaged_head_is_never_extended(store: Store) -> None:
    log = _three(store)
    with store.transaction() as session:
        session.execute(update(AuditRecord).where(AuditRecord.seq == 3).values(subject="SN-edited"))
    with pytest.raises(EvidenceError, match=r"last record \(seq 3\) is invalid.*refusing to extend a broken chain"):
        log.append("device.provisioned", "SN-9", {}, "service")
    with store.transaction() as session:
        assert session.execute(select(AuditRecord.seq).order_by(AuditRecord.seq)).scalars().all() == [1, 2, 3]


def test_a_known_head_finds_truncation(store: Store) -> None:
    log = _three(store)
    known = log.head()
    with store.transaction() as session:
        session.execute(delete(AuditRecord).where(AuditRecord.seq == 3))
    assert log.verify({}).records == 2  # a consistent shorter chain...
    with pytest.raises(BrokenChainError) as caught:
        log.verify({}, known_head=known)  # ...is caught against the head known from before
    assert caught.value.reason is ChainFault.HEAD_MISMATCH


def test_export_writes_an_evidence_log_the_product_verifier_reads(store: Store, tmp_path: Path) -> None:
    signer = Ed25519Signer()
    log = _log(store, every=4, signer=signer)
    for i in range(9):
        log.append("device.provisioned", f"SN-{i}", {"i": i, "name": "Gerät"}, "service")
    out = tmp_path / "exports" / "fleet-audit.jsonl"
    assert log.export_jsonl(out) == 11  # 9 records and 2 checkpoints
    exported = EvidenceLog(out)
    report = exported.verify(signer.public_keys())
    assert report == log.verify(signer.public_keys())
    assert (report.records, report.checkpoints) == (11, 2)
    assert list(exported.iter_records()) == list(log.iter_records())
    assert out.read_bytes() == b"".join(r.encode() + b"\n" for r in log.iter_records())
    assert not [p.name for p in out.parent.iterdir() if p.name.endswith(".tmp")]  # no temp file left


def test_export_of_an_unparsable_chain_writes_nothing(store: Store, tmp_path: Path) -> None:
    log = _three(store)
    with store.transaction() as session:
        session.execute(update(AuditRecord).where(AuditRecord.seq == 2).values(time="yesterday"))
    out = tmp_path / "exports" / "audit.jsonl"
    with pytest.raises(EvidenceError, match="time is not of the form"):
        log.export_jsonl(out)
    assert list(out.parent.iterdir()) == []


def test_concurrent_writer_processes_keep_one_chain(store: Store) -> None:
    url = store.engine.url.render_as_string(hide_password=False)
    store.dispose()
    every = 25
    context = multiprocessing.get_context("forkserver")
    # Children fork from a server that imported these already (Python 3.11's forkserver does not use the
    # tests' sys.path for preloading, so the heavy installed modules are named, not fleet_audit_writer).
    context.set_forkserver_preload(["trustroot.fleet.store.audit", "psycopg"])
    start = context.Barrier(WRITERS)
    processes = [
        context.Process(target=append_records, args=(url, w, PER_WRITER, every, start)) for w in range(WRITERS)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=60)
    assert [p.exitcode for p in processes] == [0] * WRITERS

    signer = Ed25519Signer()
    log = AuditLog(store)
    report = log.verify(signer.public_keys())
    records = list(log.iter_records())
    ordinary = [r for r in records if r.type != CHECKPOINT_TYPE]
    assert len(ordinary) == WRITERS * PER_WRITER
    assert [r.seq for r in records] == list(range(1, len(records) + 1))
    per_writer: dict[Any, list[Any]] = defaultdict(list)
    for r in ordinary:
        per_writer[r.data["writer"]].append(r.data["i"])
    assert per_writer == {w: list(range(PER_WRITER)) for w in range(WRITERS)}  # each writer's order kept
    assert report.checkpoints == len(records) // (every + 1)
