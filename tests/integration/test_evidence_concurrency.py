"""Several writer processes append to one evidence log at once: one unbroken chain comes out."""

from __future__ import annotations

import itertools
import multiprocessing
from collections import defaultdict
from dataclasses import replace
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ed25519

from trustroot.evidence import CHECKPOINT_TYPE, EvidenceLog, key_id_of
from trustroot.limits import DEFAULT_LIMITS

WRITERS = 8
PER_WRITER = 200
EVERY = 100
SEED = bytes(range(7, 39))


class _Signer:
    algorithm = "ed25519"

    def __init__(self, seed: bytes) -> None:
        self._private = ed25519.Ed25519PrivateKey.from_private_bytes(seed)
        self.key_id = key_id_of(self._private.public_key())

    def sign(self, data: bytes) -> bytes:
        return self._private.sign(data)


def _writer(path: str, writer: int, count: int, seed: bytes, start: Any) -> None:
    """Runs in a child process: wait for the others, then append ``count`` records."""
    log = EvidenceLog(
        path,
        signer_factory=lambda: _Signer(seed),
        limits=replace(DEFAULT_LIMITS, evidence_checkpoint_every=EVERY),
    )
    start.wait()
    for i in range(count):
        log.append("device.provisioned", f"writer-{writer}", {"writer": writer, "i": i}, f"station:{writer}")


def test_concurrent_writer_processes_keep_one_chain(tmp_path: Path) -> None:
    path = tmp_path / "evidence.jsonl"
    context = multiprocessing.get_context("forkserver")
    start = context.Barrier(WRITERS)
    processes = [context.Process(target=_writer, args=(str(path), w, PER_WRITER, SEED, start)) for w in range(WRITERS)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
    assert [p.exitcode for p in processes] == [0] * WRITERS

    signer = _Signer(SEED)
    log = EvidenceLog(path)
    report = log.verify({signer.key_id: signer._private.public_key()})
    records = list(log.iter_records())
    checkpoints = [r for r in records if r.type == CHECKPOINT_TYPE]
    assert report.records == len(records) == WRITERS * PER_WRITER + len(checkpoints)
    assert [r.seq for r in records] == list(range(1, len(records) + 1))
    assert report.checkpoints == len(checkpoints) >= 1
    # each writer's records are all there, in the order it wrote them, and interleaved with the others
    seen: dict[int, list[int]] = defaultdict(list)
    for record in records:
        if record.type != CHECKPOINT_TYPE:
            writer, i = record.data["writer"], record.data["i"]
            assert isinstance(writer, int)
            assert isinstance(i, int)
            seen[writer].append(i)
    assert seen == {w: list(range(PER_WRITER)) for w in range(WRITERS)}
    writers_in_order = [r.data.get("writer") for r in records if r.type != CHECKPOINT_TYPE]
    switches = sum(1 for a, b in itertools.pairwise(writers_in_order) if a != b)
    assert switches > WRITERS  # they really ran at the same time
    # no checkpoint came late by more than the records a few racing writers add meanwhile
    previous = 0
    for checkpoint in checkpoints:
        assert checkpoint.seq - previous <= EVERY + WRITERS + 1
        previous = checkpoint.seq
    assert report.unsigned_tail < EVERY + WRITERS
