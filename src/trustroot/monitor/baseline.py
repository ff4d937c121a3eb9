"""Per-device statistical baselines, learned online with river's running statistics.

A :class:`Baseline` holds one ``river.stats.Var`` (count, running mean, running variance; Welford's
update) per feature column of :mod:`trustroot.monitor.features`, and the destinations the device
was seen to contact. It judges a batch against what it learned *before* the batch, then learns from
the rows that raised nothing (an attack does not teach the baseline that it is normal).

A value is **excessive** when, after the warm-up of :data:`WARMUP_POINTS` points, it lies above the
mean by more than ``max(Z * std, floor)``: ``Z`` = :data:`Z_THRESHOLD` standard deviations, and the
floor keeps a very steady device (std near 0) from alerting on a small wobble: :data:`LOG_FLOOR` on
the log scale (a factor of 8 above the mean) and :data:`PERCENT_FLOOR` points for CPU and memory.
Only rises count: less traffic than usual is not an attack this module looks for. The score of a
value is its distance above the mean divided by that threshold (1.0 = just alerting).

The state serialises to plain JSON (:meth:`Baseline.to_state`, :meth:`Baseline.from_state`) so that
ingest workers share it through the store, or rebuild it, without pickle.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Final

import numpy as np
import numpy.typing as npt
from river import stats

from trustroot.monitor.features import FEATURES, LOG_COLUMNS, Matrix
from trustroot.monitor.points import TelemetryError

__all__ = [
    "LOG_FLOOR",
    "MAX_KNOWN_DESTINATIONS",
    "PERCENT_FLOOR",
    "WARMUP_POINTS",
    "Z_THRESHOLD",
    "Baseline",
]

#: Points a device reports before its baseline judges anything (only rules apply before).
WARMUP_POINTS: Final = 20
#: Standard deviations above the mean that make a value excessive.
Z_THRESHOLD: Final = 6.0
#: Least excess on the log1p scale: ln(8), a factor of 8 above the usual.
LOG_FLOOR: Final = math.log(8.0)
#: Least excess for CPU and memory, in percentage points.
PERCENT_FLOOR: Final = 75.0
#: Destinations remembered per device (the oldest forgotten first).
MAX_KNOWN_DESTINATIONS: Final = 64
_STATE_VERSION: Final = 1

_FLOORS: Final = np.array([LOG_FLOOR if i in LOG_COLUMNS else PERCENT_FLOOR for i in range(len(FEATURES))])


class Baseline:
    """What is usual for one device (see the module docstring)."""

    __slots__ = ("destinations", "stats")

    def __init__(self) -> None:
        self.stats: list[stats.Var] = [stats.Var() for _ in FEATURES]
        self.destinations: dict[str, None] = {}

    @property
    def count(self) -> int:
        """Points learned so far."""
        return int(self.stats[0].mean.n)

    @property
    def warm(self) -> bool:
        """Whether the warm-up is over (the baseline judges)."""
        return self.count >= WARMUP_POINTS

    def mean_std(self) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """Running mean and standard deviation of every column."""
        means = np.array([var.mean.get() for var in self.stats])
        stds = np.sqrt(np.maximum(np.array([var.get() for var in self.stats]), 0.0))
        return means, stds

    def scores(self, features: Matrix) -> Matrix:
        """Score of every value (>= 1.0 is excessive); all zero during the warm-up."""
        if not self.warm:
            return np.zeros_like(features)
        means, stds = self.mean_std()
        threshold = np.maximum(Z_THRESHOLD * stds, _FLOORS)
        excess: Matrix = np.maximum(features - means, 0.0) / threshold
        return excess

    def learn(self, features: Matrix) -> None:
        """Add the rows of ``features`` to the running statistics.

        One row updates each statistic (Welford); several are summarised with numpy first and merged
        in (river's parallel combination of two variances), so a batch costs the same per column
        whatever its size.
        """
        rows = len(features)
        if not rows:
            return
        if rows == 1:
            for var, value in zip(self.stats, features[0].tolist(), strict=True):
                var.update(value)
            return
        means = features.mean(axis=0).tolist()
        variances = features.var(axis=0, ddof=1).tolist()
        for index, running in enumerate(self.stats):
            running.__iadd__(stats.Var._from_state(rows, means[index], variances[index]))

    def unknown(self, destinations: Iterable[str]) -> list[str]:
        """The destinations this device was not seen to contact (empty during the warm-up)."""
        if not self.warm:
            return []
        return [d for d in destinations if d not in self.destinations]

    def learn_destinations(self, destinations: Iterable[str]) -> None:
        for destination in destinations:
            self.destinations.pop(destination, None)
            self.destinations[destination] = None
        while len(self.destinations) > MAX_KNOWN_DESTINATIONS:
            del self.destinations[next(iter(self.destinations))]

    def to_state(self) -> dict[str, object]:
        """JSON-ready state: per column [count, mean, variance], and the known destinations."""
        return {
            "v": _STATE_VERSION,
            "stats": [[var.mean.n, var.mean.get(), var.get()] for var in self.stats],
            "destinations": list(self.destinations),
        }

    @classmethod
    def from_state(cls, state: Mapping[str, object]) -> Baseline:
        """Rebuild from :meth:`to_state`'s output; a malformed state raises :class:`TelemetryError`."""
        columns = state.get("stats")
        dests = state.get("destinations")
        if state.get("v") != _STATE_VERSION or not isinstance(columns, list) or len(columns) != len(FEATURES):
            raise TelemetryError("monitor state: baseline has an unknown version or the wrong columns")
        if not isinstance(dests, list) or len(dests) > MAX_KNOWN_DESTINATIONS:
            raise TelemetryError("monitor state: baseline destinations must be a short list")
        baseline = cls()
        for index, item in enumerate(columns):
            if not (isinstance(item, list) and len(item) == 3 and all(isinstance(x, int | float) for x in item)):
                raise TelemetryError(f"monitor state: baseline column {index} is not [count, mean, variance]")
            n, mean, var = (float(x) for x in item)
            if not (math.isfinite(n) and math.isfinite(mean) and math.isfinite(var)) or n < 0 or var < 0:
                raise TelemetryError(f"monitor state: baseline column {index} holds an impossible value")
            # river's own constructor from a state; with n <= ddof the variance term is zero anyway.
            baseline.stats[index] = stats.Var._from_state(n, mean, var if n > 1 else 0.0)
        baseline.learn_destinations(str(d)[:253] for d in dests)
        return baseline
