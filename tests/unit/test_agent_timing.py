"""Backoff with full jitter, Retry-After, the accelerated clock, and the reconnect figure's arithmetic."""

from __future__ import annotations

import asyncio
import random
import statistics
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from trustroot.agent.simulator import BIN_S, default_time_scale, reconnect_peak_ratio
from trustroot.agent.timing import MAX_RETRY_AFTER_S, Backoff, ScaledClock, parse_retry_after
from trustroot.errors import UsageError


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
