"""The pure core of staged rollouts: cohorts, the anti-rollback rule, automatic pause, the state machine."""

from __future__ import annotations

import itertools
import math
from datetime import UTC, datetime, timedelta

import pytest

from trustroot.errors import StateError
from trustroot.fleet.releases.models import RolloutState
from trustroot.fleet.rollouts import (
    DEFAULT_MIN_SAMPLE,
    cohort_fraction,
    failure_share,
    in_cohort,
    may_offer,
    next_state,
    should_pause,
    stage_due,
)

SERIALS = [f"ACME-{n:08d}" for n in range(10_000)]


def _tolerance(percent: float, n: int = len(SERIALS)) -> float:
    """Four binomial standard deviations (plus one device), as a count."""
    p = percent / 100
    return 4 * math.sqrt(n * p * (1 - p)) + 1


def test_cohort_fraction_is_stable_and_in_range() -> None:
    first = [cohort_fraction(7, serial) for serial in SERIALS[:500]]
    again = [cohort_fraction(7, serial) for serial in SERIALS[:500]]
    assert first == again
    assert all(0.0 <= value < 1.0 for value in first)
    assert cohort_fraction(7, "ACME-00000001") != cohort_fraction(8, "ACME-00000001")


@pytest.mark.parametrize("percent", [1, 10, 50, 99])
def test_cohorts_are_proportional(percent: float) -> None:
    chosen = sum(in_cohort(3, serial, percent) for serial in SERIALS)
    expected = len(SERIALS) * percent / 100
    assert abs(chosen - expected) <= _tolerance(percent), (chosen, expected)


def test_every_device_is_in_the_hundred_percent_stage() -> None:
    assert all(in_cohort(3, serial, 100) for serial in SERIALS)


def test_cohorts_grow_and_never_drop_a_device() -> None:
    stages = [1, 10, 50, 100]
    cohorts = [{s for s in SERIALS if in_cohort(11, s, p)} for p in stages]
    for smaller, larger in itertools.pairwise(cohorts):
        assert smaller <= larger


def test_cohorts_of_two_rollouts_are_independent() -> None:
    first = {s for s in SERIALS if in_cohort(1, s, 10)}
    second = {s for s in SERIALS if in_cohort(2, s, 10)}
    both = len(first & second)
    assert abs(both - len(SERIALS) * 0.01) <= _tolerance(1)  # not the same 10 % every time


@pytest.mark.parametrize(
    ("release", "reported", "offered"),
    [(5, 4, True), (5, 5, True), (5, 6, False), (0, 0, True), (1, 2**32 - 1, False)],
)
def test_never_offer_below_the_reported_counter(release: int, reported: int, offered: bool) -> None:
    assert may_offer(release, reported) is offered


@pytest.mark.parametrize(
    ("offered", "failed", "threshold", "pause"),
    [
        (0, 0, 0.05, False),
        (19, 19, 0.05, False),  # below the minimum sample nothing is judged
        (20, 0, 0.05, False),
        (20, 1, 0.05, True),  # exactly at the threshold: paused
        (40, 1, 0.05, False),  # 2.5 %
        (40, 2, 0.05, True),  # 5 %
        (100, 4, 0.05, False),
        (100, 5, 0.05, True),
        (100, 99, 1.0, False),
        (100, 100, 1.0, True),
    ],
)
def test_pause_at_the_threshold_after_the_minimum_sample(
    offered: int, failed: int, threshold: float, pause: bool
) -> None:
    assert should_pause(offered, failed, threshold, DEFAULT_MIN_SAMPLE) is pause


def test_failure_share_before_any_offer_is_zero() -> None:
    assert failure_share(0, 0) == 0.0
    assert failure_share(40, 2) == 0.05


def test_stage_time() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    assert not stage_due(start, 24, start + timedelta(hours=23, minutes=59))
    assert stage_due(start, 24, start + timedelta(hours=24))
    assert stage_due(start, 0, start)


A, P, X, S = RolloutState.ACTIVE, RolloutState.PAUSED, RolloutState.ABORTED, RolloutState.SUPERSEDED

#: (state, action, state after it or None when refused)
TRANSITIONS = [
    (A, "pause", P),
    (A, "resume", None),
    (A, "abort", X),
    (A, "advance", A),
    (A, "supersede", S),
    (P, "pause", None),
    (P, "resume", A),
    (P, "abort", X),
    (P, "advance", None),
    (P, "supersede", S),
    *[(final, action, None) for final in (X, S) for action in ("pause", "resume", "abort", "advance", "supersede")],
]


@pytest.mark.parametrize(("state", "action", "after"), TRANSITIONS, ids=[f"{s.value}-{a}" for s, a, _ in TRANSITIONS])
def test_the_state_machine(state: RolloutState, action: str, after: RolloutState | None) -> None:
    if after is None:
        with pytest.raises(StateError, match=f"is {state.value} cannot"):
            next_state(state, action)
    else:
        assert next_state(state, action) is after
