"""The agent's telemetry queue: bounded, on disk, and never losing a record it has accepted.

Files (in the agent's state directory)::

    telemetry.queue   append-only frames, one per record:
                      4 bytes length n (big-endian) || 4 bytes CRC-32 of the payload || n bytes payload
                      (the payload is the point's JSON, its "seq" included)
    telemetry.head    {"format": "trustroot.agent-queue/1", "consumed_through": seq,
                       "delivered": count, "dropped": count}   (written atomically)

:meth:`TelemetryQueue.append` returns only after the frame is written and fsync'd: from then on the
record is *queued* and survives a kill or power cut. A frame cut short by a crash during its own
append (never acknowledged to the caller) is cut off at the next open. Records are consumed in
order, oldest first, by delivery (:meth:`ack` after the service answered 202) or by the drop
policy, and ``consumed_through`` records how far; a record is delivered at least once (a kill
between the service's answer and :meth:`ack` sends it again; the service drops it by ``seq``).

**Drop policy when full** (:attr:`QueueLimits.max_records` pending records): the *oldest* pending
record is dropped to make room, and counted in ``dropped`` (reported in the agent's status and
telemetry): the newest data is the most useful for detection, and the count says exactly what
was lost. Nothing is ever dropped silently.

The file is compacted (rewritten atomically with only the pending records) once the consumed
prefix is larger than :attr:`QueueLimits.compact_bytes`.
"""

from __future__ import annotations

import contextlib
import json
import os
import struct
import zlib
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from trustroot._fsutil import atomic_write, fsync_dir, read_bounded
from trustroot.errors import AgentStateError, UsageError

__all__ = ["HEAD_FILE", "QUEUE_FILE", "QueueLimits", "QueueStats", "TelemetryQueue"]

QUEUE_FILE: Final = "telemetry.queue"
HEAD_FILE: Final = "telemetry.head"
_HEAD_FORMAT: Final = "trustroot.agent-queue/1"
_FRAME = struct.Struct(">II")
_MAX_RECORD_BYTES: Final = 64 << 10


@dataclass(frozen=True)
class QueueLimits:
    """Bounds of the queue."""

    #: Pending records kept at most; beyond, the oldest is dropped and counted.
    max_records: int = 10_000
    #: Rewrite the file once this many bytes of it are consumed records.
    compact_bytes: int = 1 << 20
    #: fsync every append (turn off only for throw-away simulations; the default is durable).
    durable: bool = True

    def __post_init__(self) -> None:
        if not 1 <= self.max_records <= 10_000_000 or self.compact_bytes < 1:
            raise UsageError("queue limits: max_records must be 1..10,000,000 and compact_bytes positive")


@dataclass(frozen=True)
class QueueStats:
    """Counts for the status file and the report."""

    pending: int
    delivered: int
    dropped: int
    next_seq: int


class TelemetryQueue:
    """A bounded FIFO of telemetry records on disk (module docstring). Not thread-safe: one owner."""

    def __init__(self, directory: Path, limits: QueueLimits | None = None) -> None:
        self.limits = limits or QueueLimits()
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._path = self.directory / QUEUE_FILE
        self._head_path = self.directory / HEAD_FILE
        self._consumed, self._delivered, self._dropped = self._read_head()
        self._pending: deque[tuple[int, bytes]] = deque()
        self._dead_bytes = 0
        self._last_seq = self._consumed
        self._load()
        self._fd = os.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    # -- opening ------------------------------------------------------------------------------------

    def _read_head(self) -> tuple[int, int, int]:
        if not self._head_path.exists():
            return 0, 0, 0
        raw = read_bounded(self._head_path, 4096, what="telemetry queue head")
        try:
            head = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise AgentStateError(f"{self._head_path} is not JSON ({exc})") from exc
        values = [head.get(k) if isinstance(head, dict) else None for k in ("consumed_through", "delivered", "dropped")]
        if (
            not isinstance(head, dict)
            or head.get("format") != _HEAD_FORMAT
            or any(type(v) is not int or v < 0 for v in values)
        ):
            raise AgentStateError(f"{self._head_path}: not a {_HEAD_FORMAT} head file")
        return values[0], values[1], values[2]  # type: ignore[return-value]

    def _load(self) -> None:
        if not self._path.exists():
            return
        data = self._path.read_bytes()
        offset = 0
        while offset + _FRAME.size <= len(data):
            length, crc = _FRAME.unpack_from(data, offset)
            end = offset + _FRAME.size + length
            if length > _MAX_RECORD_BYTES or end > len(data):
                break
            payload = data[offset + _FRAME.size : end]
            if zlib.crc32(payload) != crc:
                break
            seq = self._seq_of(payload)
            if seq is None:
                break
            if seq > self._consumed:
                self._pending.append((seq, payload))
            else:
                self._dead_bytes += end - offset
            self._last_seq = max(self._last_seq, seq)
            offset = end
        if offset < len(data):  # a frame torn by a crash during its append: it was never queued
            with self._path.open("r+b") as handle:
                handle.truncate(offset)
                handle.flush()
                os.fsync(handle.fileno())

    @staticmethod
    def _seq_of(payload: bytes) -> int | None:
        try:
            seq = json.loads(payload).get("seq")
        except (UnicodeDecodeError, json.JSONDecodeError, AttributeError):
            return None
        return seq if type(seq) is int and seq >= 0 else None

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._fd)

    # -- the queue ----------------------------------------------------------------------------------

    @property
    def next_seq(self) -> int:
        """The ``seq`` the next appended record gets."""
        return self._last_seq + 1

    def stats(self) -> QueueStats:
        return QueueStats(
            pending=len(self._pending), delivered=self._delivered, dropped=self._dropped, next_seq=self.next_seq
        )

    def append(self, record: dict[str, Any]) -> int:
        """Queue ``record`` (its ``seq`` is set here) durably; return the seq. Drops the oldest if full."""
        seq = self.next_seq
        payload = json.dumps({**record, "seq": seq}, separators=(",", ":"), sort_keys=True).encode("utf-8")
        if len(payload) > _MAX_RECORD_BYTES:
            raise UsageError(f"telemetry record of {len(payload)} bytes is over the limit of {_MAX_RECORD_BYTES}")
        if len(self._pending) >= self.limits.max_records:
            dropped_seq, _ = self._pending[0]
            self._consume(dropped_seq, delivered=0, dropped=1)
        frame = _FRAME.pack(len(payload), zlib.crc32(payload)) + payload
        written = os.write(self._fd, frame)
        if written != len(frame):  # pragma: no cover - a full disk
            raise AgentStateError(f"{self._path}: short write ({written} of {len(frame)} bytes)")
        if self.limits.durable:
            os.fsync(self._fd)
        self._last_seq = seq
        self._pending.append((seq, payload))
        return seq

    def peek(self, limit: int) -> list[dict[str, Any]]:
        """Up to ``limit`` of the oldest pending records, oldest first."""
        out: list[dict[str, Any]] = []
        for _seq, payload in self._pending:
            if len(out) >= limit:
                break
            out.append(json.loads(payload))
        return out

    def ack(self, through_seq: int) -> int:
        """The service accepted every record up to ``through_seq``: consume them; return how many."""
        count = sum(1 for seq, _ in self._pending if seq <= through_seq)
        if count:
            self._consume(through_seq, delivered=count, dropped=0)
        return count

    def _consume(self, through_seq: int, *, delivered: int, dropped: int) -> None:
        consumed = self._consumed
        gone_bytes = 0
        while self._pending and self._pending[0][0] <= through_seq:
            _seq, payload = self._pending.popleft()
            gone_bytes += _FRAME.size + len(payload)
        self._consumed = max(consumed, through_seq)
        self._delivered += delivered
        self._dropped += dropped
        self._dead_bytes += gone_bytes
        self._write_head()
        if self._dead_bytes > self.limits.compact_bytes:
            self._compact()

    def _write_head(self) -> None:
        head = {
            "format": _HEAD_FORMAT,
            "consumed_through": self._consumed,
            "delivered": self._delivered,
            "dropped": self._dropped,
        }
        atomic_write(self._head_path, json.dumps(head, sort_keys=True).encode(), mode=0o600)

    def _compact(self) -> None:
        """Rewrite the file with only the pending records (atomic: a crash leaves the old or the new file)."""
        body = b"".join(_FRAME.pack(len(p), zlib.crc32(p)) + p for _s, p in self._pending)
        os.close(self._fd)
        atomic_write(self._path, body, mode=0o600)
        fsync_dir(self.directory)
        self._fd = os.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._dead_bytes = 0
