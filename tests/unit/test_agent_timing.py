"""Backoff with full jitter, Retry-After, the accelerated clock, and the reconnect figure's arithmetic."""

from __future__ import annotations

import asyncio
import random
import statistics
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest

from trustroot.agent.sim_behaviour import ATTACKS, Behaviour
from trustroot.agent.simulator import BIN_S, default_time_scale, reconnect_peak_ratio
from trustroot.agent.telemetry import LinuxSampler, TrafficCounters
from trustroot.agent.timing import MAX_RETRY_AFTER_S, Backoff, ScaledClock, parse_retry_after
from trustroot.errors import UsageError
from trustroot.monitor.points import parse_point


def test_without_jitter_the_delay_doubles_up_to_the_cap() -> None:
    backoff = Backoff(base_s=2, cap_s=60, jitter=False)
    assert [backoff.next_delay() for _ in range(7)] == [2, 4, 8, 16, 32, 60, 60]
    backoff.reset()
    assert backoff.next_delay() == 2


def test_full_jitter_is_uniform_below_the_ceiling_and_spreads() -> None:
    rng = random.Random(7)
    delays = []
    for _ in range(2000):
        backoff = Backoff(base_s=2, cap_s=60, rng=rng)
        for _ in range(5):
            backoff.next_delay()
        delays.append(backoff.next_delay())  # ceiling 2 * 2**5 = 64, capped to 60
    assert all(0 <= d <= 60 for d in delays)
    assert 27 < statistics.fmean(delays) < 33  # uniform on [0, 60]: mean 30
    assert min(delays) < 3 and max(delays) > 57  # full jitter, not "equal jitter"


def test_retry_after_is_honoured_even_when_the_jitter_draws_less() -> None:
    backoff = Backoff(base_s=1, cap_s=10, rng=random.Random(1))
    assert all(backoff.next_delay(retry_after=30) >= 30 for _ in range(20))
    assert Backoff(base_s=1, cap_s=10).next_delay(retry_after=10**9) == MAX_RETRY_AFTER_S


def test_retry_after_header_forms() -> None:
    now = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
    assert parse_retry_after("7", now) == 7
    assert parse_retry_after(format_datetime(now + timedelta(seconds=90), usegmt=True), now) == 90
    assert parse_retry_after("99999999999", now) == MAX_RETRY_AFTER_S
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after(None, now) is None


def test_bad_backoff_settings_are_refused() -> None:
    with pytest.raises(UsageError):
        Backoff(base_s=10, cap_s=1)
    with pytest.raises(UsageError):
        ScaledClock(scale=0)


def test_the_scaled_clock_runs_k_times_faster() -> None:
    clock = ScaledClock(scale=100)

    async def nap() -> float:
        await clock.sleep(10)  # 10 simulated seconds = 0.1 s wall
        return clock.elapsed()

    elapsed = asyncio.run(nap())
    assert 10 <= elapsed < 40
    real = ScaledClock(scale=100, real_time=True)
    assert abs((real.now() - datetime.now(UTC)).total_seconds()) < 1


def test_a_set_stop_event_ends_the_sleep_early() -> None:
    clock = ScaledClock(scale=1)

    async def stopped() -> bool:
        stop = asyncio.Event()
        stop.set()
        return await clock.sleep(3600, stop)

    assert asyncio.run(stopped()) is True


def test_reconnect_peak_ratio_follows_the_definition() -> None:
    steady = [t + 0.5 for t in range(0, 100)]  # one request per second: 5 per 5-s bin
    burst = [120.1] * 20 + [t + 0.5 for t in range(121, 180)]  # 20 extra in the first bin after return
    ratio = reconnect_peak_ratio(steady + burst, (0.0, 100.0), returned_at=120.0)
    assert ratio == pytest.approx((20 + 4) / 5)  # bin [120, 125): 20 + requests at 121.5..124.5
    assert BIN_S == 5.0
    assert reconnect_peak_ratio([], (0.0, 100.0), 120.0) is None


def test_the_default_time_scale_fits_each_scenario_in_a_minute() -> None:
    assert default_time_scale("steady") == 5.0
    assert default_time_scale("deletion") == 75.0


def test_the_linux_sampler_reads_listening_ports_peers_and_load(tmp_path: Path) -> None:
    net = tmp_path / "net"
    net.mkdir()
    header = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
    (net / "tcp").write_text(
        header
        + "   0: 00000000:01BB 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1\n"
        + "   1: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2\n"
        + "   2: 0F02000A:C350 0A7100CB:01BB 01 00000000:00000000 00:00000000 00000000     0        0 3\n"
    )
    (tmp_path / "loadavg").write_text("0.50 0.40 0.30 1/100 1234\n")
    (tmp_path / "meminfo").write_text("MemTotal:       1000 kB\nMemFree:   100 kB\nMemAvailable:    600 kB\n")
    counters = TrafficCounters()
    counters.request(sent=300, received=700)
    counters.auth_failure()
    point = LinuxSampler(proc=tmp_path)(datetime(2026, 11, 22, 10, 0, tzinfo=UTC), 60, "1.0.0+0", counters)
    assert point["listening_ports"] == [443, 8080]
    assert point["destinations"] == ["203.0.113.10"]
    assert point["memory_percent"] == 40.0
    assert (point["bytes_out"], point["bytes_in"], point["auth_failures"]) == (300, 700, 1)
    point["seq"] = 1
    assert parse_point(point).firmware_version == "1.0.0+0"  # the wire contract of trustroot.monitor.points
    assert counters.take()["bytes_out"] == 0  # counters are per interval


@pytest.mark.parametrize("attack", [None, *ATTACKS])
def test_simulated_points_follow_the_wire_contract_before_and_during_attacks(attack: str | None) -> None:
    elapsed = [0.0]
    behaviour = Behaviour(random.Random(3), lambda: elapsed[0], attack=attack, attack_at=100.0)
    moment = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
    normal = parse_point({**behaviour(moment, 30, "1.0.0+0", TrafficCounters()), "seq": 1})
    elapsed[0] = 130.0
    attacked = parse_point({**behaviour(moment, 30, "1.0.0+0", TrafficCounters()), "seq": 2})
    assert normal.auth_failures == 0 and normal.listening_ports == ()
    changed = {
        "port_scan": attacked.connection_attempts > 300 and len(attacked.destinations) > 50,
        "exfiltration": attacked.bytes_out >= 100 * 1500,
        "brute_force": attacked.auth_failures >= 50,
        "unexpected_firmware": attacked.firmware_version != "1.0.0+0",
    }
    assert changed.get(attack or "", attack in (None, "cloned_device"))
