"""The agent's persistent state on disk: the telemetry queue, the A/B slots, the state file."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from trustroot.agent.core import wipe_personal_data
from trustroot.agent.queue import HEAD_FILE, QUEUE_FILE, QueueLimits, TelemetryQueue
from trustroot.agent.slots import BOOT_FILE, Slots
from trustroot.agent.state import AgentState
from trustroot.errors import AgentStateError, UsageError


def _point(n: int) -> dict[str, object]:
    return {"n": n, "firmware_version": "1.0.0"}


# --- queue -----------------------------------------------------------------------------------------


def test_queued_records_survive_a_reopen_in_order(tmp_path: Path) -> None:
    queue = TelemetryQueue(tmp_path)
    seqs = [queue.append(_point(i)) for i in range(5)]
    assert seqs == [1, 2, 3, 4, 5]
    queue.close()
    again = TelemetryQueue(tmp_path)
    assert [r["n"] for r in again.peek(10)] == [0, 1, 2, 3, 4]
    assert again.next_seq == 6


def test_acknowledged_records_are_consumed_and_seq_keeps_rising(tmp_path: Path) -> None:
    queue = TelemetryQueue(tmp_path)
    for i in range(6):
        queue.append(_point(i))
    assert queue.ack(4) == 4
    queue.close()
    again = TelemetryQueue(tmp_path)
    assert [r["seq"] for r in again.peek(10)] == [5, 6]
    assert again.stats().delivered == 4
    again.ack(6)
    again.close()
    empty = TelemetryQueue(tmp_path)
    assert empty.peek(10) == [] and empty.append(_point(9)) == 7  # never reuses a seq


def test_when_full_the_oldest_is_dropped_and_counted(tmp_path: Path) -> None:
    queue = TelemetryQueue(tmp_path, QueueLimits(max_records=3))
    for i in range(5):
        queue.append(_point(i))
    stats = queue.stats()
    assert (stats.pending, stats.dropped, stats.delivered) == (3, 2, 0)
    assert [r["n"] for r in queue.peek(10)] == [2, 3, 4]  # drop oldest: the newest are kept
    queue.close()
    assert TelemetryQueue(tmp_path).stats().dropped == 2


@pytest.mark.parametrize("cut", [1, 4, 7, 9, 20])
def test_a_frame_torn_by_a_crash_is_cut_off_and_the_rest_is_kept(tmp_path: Path, cut: int) -> None:
    queue = TelemetryQueue(tmp_path)
    for i in range(3):
        queue.append(_point(i))
    queue.close()
    path = tmp_path / QUEUE_FILE
    whole = path.read_bytes()
    with path.open("ab") as handle:  # the fourth append was cut short by a power cut
        handle.write(b'\x00\x00\x00\x30\x12\x34\x56\x78{"n": 3, "seq": 4, "more"...'[:cut])
    again = TelemetryQueue(tmp_path)
    assert [r["n"] for r in again.peek(10)] == [0, 1, 2]
    assert path.read_bytes() == whole
    assert again.append(_point(3)) == 4


def test_a_flipped_byte_ends_the_readable_part_there(tmp_path: Path) -> None:
    queue = TelemetryQueue(tmp_path)
    for i in range(3):
        queue.append(_point(i))
    queue.close()
    path = tmp_path / QUEUE_FILE
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF  # the last record's payload: its CRC no longer matches
    path.write_bytes(bytes(data))
    assert [r["n"] for r in TelemetryQueue(tmp_path).peek(10)] == [0, 1]


def test_compaction_keeps_exactly_the_pending_records(tmp_path: Path) -> None:
    queue = TelemetryQueue(tmp_path, QueueLimits(compact_bytes=200))
    for i in range(20):
        queue.append(_point(i))
    size = (tmp_path / QUEUE_FILE).stat().st_size
    queue.ack(15)
    assert (tmp_path / QUEUE_FILE).stat().st_size < size / 3
    queue.append(_point(20))
    queue.close()
    assert [r["n"] for r in TelemetryQueue(tmp_path).peek(50)] == [15, 16, 17, 18, 19, 20]


def test_a_damaged_head_file_is_refused_not_guessed(tmp_path: Path) -> None:
    TelemetryQueue(tmp_path).close()
    (tmp_path / HEAD_FILE).write_text('{"format": "other"}')
    with pytest.raises(AgentStateError, match="head"):
        TelemetryQueue(tmp_path)


def test_an_oversized_record_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="over the limit"):
        TelemetryQueue(tmp_path).append({"blob": "x" * (70 << 10)})


# --- slots -----------------------------------------------------------------------------------------


def test_a_confirmed_update_becomes_active_and_raises_the_floor(tmp_path: Path) -> None:
    slots = Slots(tmp_path / "slots")
    slots.initialise(b"factory", "1.0.0+0", 1)
    slots.stage(b"new image", "1.1.0+0", 2)
    trial = slots.begin_trial()
    assert trial.slot == "b" and slots.boot().trial == "b"
    assert slots.confirm().version == "1.1.0+0"
    state = slots.boot()
    assert (state.active, state.trial, state.counter_floor) == ("b", None, 2)


def test_a_failed_test_boot_reverts_to_the_last_known_good(tmp_path: Path) -> None:
    slots = Slots(tmp_path / "slots")
    slots.initialise(b"factory", "1.0.0+0", 1)
    slots.stage(b"bad image", "1.1.0+0", 2)
    slots.begin_trial()
    assert slots.revert().version == "1.0.0+0"
    assert slots.boot().counter_floor == 1


def test_a_restart_during_the_trial_reverts_like_mcuboot(tmp_path: Path) -> None:
    slots = Slots(tmp_path / "slots")
    slots.initialise(b"factory", "1.0.0+0", 1)
    slots.stage(b"new", "1.1.0+0", 2)
    slots.begin_trial()
    again = Slots(tmp_path / "slots")  # power cut before confirm
    abandoned = again.recover()
    assert abandoned is not None and abandoned.version == "1.1.0+0"
    assert again.active().version == "1.0.0+0" and again.boot().trial is None


def test_a_half_written_slot_counts_as_empty(tmp_path: Path) -> None:
    slots = Slots(tmp_path / "slots")
    slots.initialise(b"factory", "1.0.0+0", 1)
    slots.stage(b"new", "1.1.0+0", 2)
    (tmp_path / "slots" / "b" / "image.bin").write_bytes(b"ne")  # torn image under its meta
    assert slots.image("b") is None
    with pytest.raises(AgentStateError, match="no valid image"):
        slots.begin_trial()


def test_a_damaged_pointer_is_refused(tmp_path: Path) -> None:
    slots = Slots(tmp_path / "slots")
    slots.initialise(b"factory", "1.0.0+0", 1)
    (tmp_path / "slots" / BOOT_FILE).write_text(json.dumps({"format": "trustroot.agent-slots/1", "active": "c"}))
    with pytest.raises(AgentStateError):
        slots.boot()


def test_staging_is_refused_while_a_trial_is_pending(tmp_path: Path) -> None:
    slots = Slots(tmp_path / "slots")
    slots.initialise(b"factory", "1.0.0+0", 1)
    slots.stage(b"new", "1.1.0+0", 2)
    slots.begin_trial()
    with pytest.raises(AgentStateError, match="on trial"):
        slots.stage(b"newer", "1.2.0+0", 3)


# --- state and wipe --------------------------------------------------------------------------------


def test_the_state_file_round_trips_and_refuses_a_foreign_format(tmp_path: Path) -> None:
    state = AgentState.load(tmp_path)
    state.results.append({"version": "1.1.0+0", "security_counter": 2, "status": "installed", "error": None})
    state.done_commands.append(3)
    state.save()
    again = AgentState.load(tmp_path)
    assert again.results == state.results and again.done_commands == [3]
    (tmp_path / "state.json").write_text("[]")
    with pytest.raises(AgentStateError):
        AgentState.load(tmp_path)


def test_wiping_overwrites_and_removes_each_declared_category(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "wifi-credentials").mkdir(parents=True)
    secret = data / "wifi-credentials" / "psk"
    secret.write_bytes(b"correct horse battery staple")
    keep = data / "not-personal"
    keep.mkdir()
    fd = os.open(secret, os.O_RDONLY)  # a handle open before the wipe reads the overwritten bytes
    try:
        wiped = wipe_personal_data(data, ("wifi-credentials", "owner-account"))
        assert os.pread(fd, 64, 0) == b"\x00" * len(b"correct horse battery staple")
    finally:
        os.close(fd)
    assert wiped == ["wifi-credentials", "owner-account"]
    assert not (data / "wifi-credentials").exists() and keep.exists()
