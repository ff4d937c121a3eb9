"""Detection on synthetic streams: normal noisy devices stay quiet, every labelled attack is caught."""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from trustroot.context.schema import Telemetry, TelemetryRule
from trustroot.monitor.baseline import WARMUP_POINTS, Baseline
from trustroot.monitor.detect import COOLDOWN_S, Conflict, DeviceMonitor, Finding, point_digest
from trustroot.monitor.fleet import FleetMonitor
from trustroot.monitor.points import TelemetryError, TelemetryPoint
from trustroot.monitor.policy import MonitorPolicy
from trustroot.monitor.synthetic import ATTACKS, Attack, SyntheticDevice

START = datetime(2026, 11, 22, tzinfo=UTC)
POLICY = MonitorPolicy.from_context(Telemetry(), released_versions={"1.0.0", "1.1.0"}, expected_version="1.1.0")


class StoreDouble:
    """What the ingest layer does before scoring: drop exact duplicates, report conflicting ones."""

    def __init__(self) -> None:
        self.digests: dict[tuple[str, int], str] = {}

    def split(self, device: str, points: Sequence[TelemetryPoint]) -> tuple[list[TelemetryPoint], list[Conflict]]:
        new, conflicts = [], []
        for point in points:
            digest = point_digest(point)
            stored = self.digests.get((device, point.seq))
            if stored is None:
                self.digests[(device, point.seq)] = digest
                new.append(point)
            elif stored != digest:
                conflicts.append(Conflict(point, stored, digest))
        return new, conflicts


def run(monitor: DeviceMonitor, points: Sequence[TelemetryPoint], **options: object) -> list[Finding]:
    return monitor.observe(points, POLICY, **options)  # type: ignore[arg-type]


def test_normal_noisy_devices_raise_at_most_one_percent_false_alarms() -> None:
    alerted = 0
    devices = 200
    for index in range(devices):
        device = SyntheticDevice(f"N{index}", random.Random(index), START)
        monitor = DeviceMonitor(device.serial)
        findings = []
        for _ in range(20):
            findings += run(monitor, [device.point() for _ in range(10)], source="192.0.2.1")
        alerted += bool(findings)
    assert alerted / devices <= 0.01


@pytest.mark.parametrize("attack", ATTACKS)
def test_every_attack_is_detected_with_its_kind_after_warm_up(attack: Attack) -> None:
    for index in range(30):
        device = SyntheticDevice(f"A{index}", random.Random(1000 + index), START)
        monitor = DeviceMonitor(device.serial)
        for _ in range(WARMUP_POINTS // 5 + 2):
            assert run(monitor, [device.point() for _ in range(5)]) == []
        findings = run(monitor, [device.point(attack)])
        kinds = {f.kind for f in findings}
        assert attack in kinds, (index, findings)
        finding = next(f for f in findings if f.kind == attack)
        assert finding.device == device.serial
        assert finding.severity in {"warning", "critical"}
        assert finding.evidence["point"]["seq"] == device.seq - 1  # type: ignore[index]
        json.dumps(finding.evidence)  # the evidence is plain JSON


@pytest.mark.parametrize("attack", ["port_scan", "brute_force", "unexpected_firmware"])
def test_attacks_that_rules_and_signatures_catch_even_during_warm_up(attack: Attack) -> None:
    device = SyntheticDevice("W1", random.Random(7), START)
    monitor = DeviceMonitor(device.serial)
    run(monitor, [device.point()])
    assert attack in {f.kind for f in run(monitor, [device.point(attack)])}


def test_a_cloned_device_reusing_seq_with_other_content_is_caught() -> None:
    store = StoreDouble()
    original = SyntheticDevice("C1", random.Random(1), START)
    monitor = DeviceMonitor("C1")
    for _ in range(5):
        new, conflicts = store.split("C1", [original.point() for _ in range(5)])
        assert run(monitor, new, conflicts=conflicts) == []
    clone = original.clone(random.Random(99))
    new, conflicts = store.split("C1", [original.point() for _ in range(3)])
    assert run(monitor, new, conflicts=conflicts) == []
    new, conflicts = store.split("C1", [clone.point() for _ in range(3)])  # same seqs, other content
    assert new == [] and len(conflicts) == 3
    findings = run(monitor, new, conflicts=conflicts)
    assert [f.kind for f in findings] == ["cloned_device"]
    assert findings[0].rule == "seq reused with other content"


def test_exact_redelivery_is_not_a_clone() -> None:
    store = StoreDouble()
    device = SyntheticDevice("R1", random.Random(2), START)
    monitor = DeviceMonitor("R1")
    batch = [device.point() for _ in range(5)]
    assert run(monitor, *store.split("R1", batch)[:1]) == []
    new, conflicts = store.split("R1", batch)
    assert new == [] and conflicts == []


def test_a_clone_streaming_from_another_address_is_caught() -> None:
    device = SyntheticDevice("S1", random.Random(3), START)
    monitor = DeviceMonitor("S1")
    findings: list[Finding] = []
    for turn in range(6):
        findings += run(monitor, [device.point()], source="198.51.100.1" if turn % 2 else "203.0.113.5")
    assert "cloned_device" in {f.kind for f in findings}


def test_a_device_that_moves_network_once_is_not_a_clone() -> None:
    device = SyntheticDevice("S2", random.Random(4), START)
    monitor = DeviceMonitor("S2")
    findings: list[Finding] = []
    for turn in range(10):
        findings += run(monitor, [device.point()], source="198.51.100.1" if turn < 5 else "203.0.113.5")
    assert findings == []


def test_seq_far_below_the_highest_is_another_stream() -> None:
    device = SyntheticDevice("B1", random.Random(5), START)
    monitor = DeviceMonitor("B1")
    device.seq = 500
    run(monitor, [device.point() for _ in range(3)])
    device.seq = 10
    assert [f.rule for f in run(monitor, [device.point()])] == ["seq went backwards"]


def test_window_rule_sums_across_batches_and_forgets_outside_the_window() -> None:
    device = SyntheticDevice("W2", random.Random(6), START, interval_s=20)
    monitor = DeviceMonitor("W2")
    quiet = [replace(device.point(), auth_failures=0) for _ in range(3)]
    run(monitor, quiet)
    first = replace(device.point(), auth_failures=6)
    assert run(monitor, [first]) == []
    second = replace(device.point(), auth_failures=6)  # 20 s later: 12 within 60 s > max 10
    findings = run(monitor, [second])
    assert [f.kind for f in findings] == ["brute_force"]
    assert findings[0].rule == "telemetry.rules[0]: auth_failures max 10 per 60 s"
    assert findings[0].evidence["value"] == 12.0
    later = SyntheticDevice("W3", random.Random(6), START, interval_s=60)
    spread = DeviceMonitor("W3")
    for _ in range(4):
        assert run(spread, [replace(later.point(), auth_failures=6)]) == []  # 6 per 60 s: under the max


def test_cooldown_keeps_one_alert_per_kind() -> None:
    device = SyntheticDevice("K1", random.Random(8), START)
    monitor = DeviceMonitor("K1")
    fired = [f for _ in range(4) for f in run(monitor, [device.point("unexpected_firmware")])]
    assert len(fired) == 1
    device.seq += int(COOLDOWN_S // device.interval_s) + 1
    assert [f.kind for f in run(monitor, [device.point("unexpected_firmware")])] == ["unexpected_firmware"]


def test_context_lists_and_min_rules() -> None:
    telemetry = Telemetry(
        rules=[TelemetryRule(metric="messages_out", min=1, window_s=120)],
        allowed_ports=[443],
        allowed_destinations=["203.0.113.0/24", "time.example.net"],
    )
    policy = MonitorPolicy.from_context(telemetry)
    device = SyntheticDevice("L1", random.Random(9), START, destinations=("203.0.113.10", "time.example.net"))
    monitor = DeviceMonitor("L1")
    assert monitor.observe([device.point() for _ in range(3)], policy) == []
    port = monitor.observe([replace(device.point(), listening_ports=(23, 443))], policy)
    assert [(f.kind, f.rule, f.evidence["ports"]) for f in port] == [("rule", "telemetry.allowed_ports", [23])]
    dest = monitor.observe([replace(device.point(), destinations=("198.51.100.9",))], policy)
    assert [(f.kind, f.rule) for f in dest] == [("rule", "telemetry.allowed_destinations")]
    silent = monitor.observe([replace(device.point(), messages_out=0) for _ in range(3)], policy)
    assert [f.rule for f in silent] == ["telemetry.rules[0]: messages_out min 1 per 120 s"]


def test_fleet_outlier_when_many_devices_fail_update_checks_at_once() -> None:
    fleet = FleetMonitor()
    base = START.timestamp()
    assert fleet.observe("D1", base, fleet_size=100) is None
    assert fleet.observe("D2", base + 30, fleet_size=100) is None
    found = fleet.observe("D3", base + 60, fleet_size=100)
    assert found is not None and found.kind == "fleet_outlier" and found.device is None
    assert found.evidence["devices"] == ["D1", "D2", "D3"]
    assert fleet.observe("D4", base + 70, fleet_size=100) is None  # cooldown
    spread = FleetMonitor()
    for index in range(5):
        assert spread.observe(f"D{index}", base + index * 1000, fleet_size=100) is None  # not at once
    big = FleetMonitor()
    assert all(big.observe(f"D{i}", base, fleet_size=1000) is None for i in range(19))  # 2 % of 1000 = 20
    assert big.observe("D19", base, fleet_size=1000) is not None
    restored = FleetMonitor.from_state(json.loads(json.dumps(fleet.to_state())))
    assert restored.failing == fleet.failing and restored.last_fired == fleet.last_fired


def test_state_round_trips_through_json_and_scores_the_same() -> None:
    first = SyntheticDevice("T1", random.Random(10), START)
    twin = SyntheticDevice("T1", random.Random(10), START)
    live = DeviceMonitor("T1")
    for _ in range(6):
        run(live, [first.point() for _ in range(5)], source="192.0.2.1")
        [twin.point() for _ in range(5)]
    restored = DeviceMonitor.from_state(json.loads(json.dumps(live.to_state())))
    assert restored.to_state() == live.to_state()
    attack = [first.point("exfiltration")]
    twin.point("exfiltration")
    assert run(restored, attack) == run(live, attack)


@pytest.mark.parametrize(
    "damage",
    [
        lambda s: s.update(v=2),
        lambda s: s.pop("baseline"),
        lambda s: s.update(max_seq="7"),
        lambda s: s["baseline"].update(stats=[[1, 0, 0]]),
        lambda s: s["baseline"]["stats"].__setitem__(0, [5, float("nan"), 1]),
        lambda s: s["baseline"]["stats"].__setitem__(0, [5, 1, -1]),
        lambda s: s.update(windows={"0": [["x", 1]]}),
    ],
)
def test_malformed_state_is_refused(damage: object) -> None:
    device = SyntheticDevice("M1", random.Random(11), START)
    monitor = DeviceMonitor("M1")
    run(monitor, [device.point() for _ in range(3)])
    state = json.loads(json.dumps(monitor.to_state()))
    damage(state)  # type: ignore[operator]
    with pytest.raises(TelemetryError) as refused:
        DeviceMonitor.from_state(state)
    assert refused.value.provision == "5.13-1"


def test_baseline_learns_batches_like_single_points() -> None:
    rng = random.Random(12)
    device = SyntheticDevice("L2", rng, START)
    from trustroot.monitor.features import feature_matrix, raw_matrix, times

    points = [device.point() for _ in range(40)]
    features = feature_matrix(raw_matrix(points), times(points)[1])
    batched, single = Baseline(), Baseline()
    batched.learn(features[:25])
    batched.learn(features[25:])
    for row in features:
        single.learn(row[None, :])
    for (m1, s1), (m2, s2) in [(batched.mean_std(), single.mean_std())]:
        assert m1 == pytest.approx(m2) and s1 == pytest.approx(s2)
    assert batched.count == single.count == 40


def test_the_detector_is_pure_time_comes_from_the_points() -> None:
    device = SyntheticDevice("P1", random.Random(13), START - timedelta(days=3650))
    monitor = DeviceMonitor("P1")
    findings = run(monitor, [device.point("unexpected_firmware")])
    assert findings[0].time == (START - timedelta(days=3650)).timestamp()
