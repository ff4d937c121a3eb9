"""Time for the agent: an injectable clock (real or accelerated) and capped exponential backoff with full jitter.

Every duration the agent handles is in the product's seconds ("simulated" seconds when the clock is
accelerated): the check-in interval the service answers, Retry-After, the backoff. A
:class:`ScaledClock` with scale K lets K simulated seconds pass per wall-clock second, which is
how the fleet simulator runs a day of a fleet in minutes; the CLI agent uses K = 1.

Backoff (guideline 9, provision 5.9-2: a device comes back after an outage without stampeding the
service): after the n-th consecutive failure the agent waits ``uniform(0, min(cap, base * 2**n))``
("full jitter"; with jitter off, exactly ``min(cap, base * 2**n)``), and never less than what a
Retry-After header asked for.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Final, Protocol

from trustroot.errors import UsageError

__all__ = [
    "MAX_RETRY_AFTER_S",
    "Backoff",
    "Clock",
    "ScaledClock",
    "parse_retry_after",
]

#: A Retry-After longer than this (seconds) is capped: a broken or hostile server cannot park a device.
MAX_RETRY_AFTER_S: Final = 3600.0


class Clock(Protocol):
    """What the agent asks of time."""

    scale: float

    def now(self) -> datetime:
        """The current (possibly simulated) UTC time."""
        ...

    def elapsed(self) -> float:
        """Simulated seconds since the clock started."""
        ...

    async def sleep(self, seconds: float, stop: asyncio.Event | None = None) -> bool:
        """Sleep ``seconds`` simulated seconds; return True early if ``stop`` is set meanwhile."""
        ...


@dataclass
class ScaledClock:
    """Wall time accelerated ``scale`` times from the moment the clock is made (``scale=1``: real time)."""

    scale: float = 1.0
    #: Timestamps (``now``) in wall-clock time instead of simulated time: what the fleet simulator
    #: uses, so that the service sees current times while intervals pass K times faster.
    real_time: bool = False
    origin: datetime = field(default_factory=lambda: datetime.now(UTC))
    _start: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        if not 0 < self.scale <= 100_000:
            raise UsageError(f"time scale {self.scale!r}: must be above 0 and at most 100000")

    def elapsed(self) -> float:
        return (time.monotonic() - self._start) * self.scale

    def restart(self) -> None:
        """Start counting again from now (simulated second 0 = now)."""
        self._start = time.monotonic()
        self.origin = datetime.now(UTC)

    def now(self) -> datetime:
        if self.real_time:
            return self.origin + timedelta(seconds=time.monotonic() - self._start)
        return self.origin + timedelta(seconds=self.elapsed())

    def wall(self, simulated_s: float) -> float:
        """Wall-clock seconds that ``simulated_s`` simulated seconds take."""
        return simulated_s / self.scale

    async def sleep(self, seconds: float, stop: asyncio.Event | None = None) -> bool:
        delay = max(0.0, seconds) / self.scale
        if stop is None:
            await asyncio.sleep(delay)
            return False
        try:
            await asyncio.wait_for(stop.wait(), timeout=delay)
        except TimeoutError:
            return False
        return True


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date), capped; None if absent or malformed."""
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return min(float(int(text[:12])), MAX_RETRY_AFTER_S)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return min(max(0.0, (when - now).total_seconds()), MAX_RETRY_AFTER_S)


@dataclass
class Backoff:
    """Capped exponential backoff with full jitter (AWS architecture blog, "Exponential Backoff And Jitter")."""

    base_s: float = 2.0
    cap_s: float = 300.0
    jitter: bool = True
    rng: random.Random = field(default_factory=random.SystemRandom)
    failures: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.base_s <= self.cap_s:
            raise UsageError(f"backoff base {self.base_s} s and cap {self.cap_s} s: need 0 < base <= cap")

    def ceiling(self) -> float:
        """The largest wait after the current number of failures."""
        return min(self.cap_s, self.base_s * 2.0 ** min(self.failures, 62))

    def next_delay(self, retry_after: float | None = None) -> float:
        """Count one more failure and return how long to wait before the next attempt."""
        ceiling = self.ceiling()
        self.failures += 1
        delay = self.rng.uniform(0.0, ceiling) if self.jitter else ceiling
        if retry_after is not None:
            delay = max(delay, min(retry_after, MAX_RETRY_AFTER_S))
        return delay

    def reset(self) -> None:
        """A success: the next failure starts from the base again."""
        self.failures = 0
