"""Features of telemetry points: one row of numbers per point, built for a whole batch at once.

Counters are turned into rates per minute (so devices reporting every 10 s and every 5 min compare),
lists into their lengths; CPU and memory stay percentages. Baselines learn the counters and list
lengths on a log scale (``log1p``): device traffic is multiplicative (a device that moves 10 kB
moves 8-12 kB, not 10 kB +- 2 kB at every size), so a fixed distance on that scale is a fixed factor.

::

    column                   from                         scale
    auth_failures            count * 60 / interval_s      log1p
    connection_attempts      count * 60 / interval_s      log1p
    bytes_in, bytes_out      count * 60 / interval_s      log1p
    messages_in/out          count * 60 / interval_s      log1p
    message_size_max         bytes                        log1p
    update_auth_failures     count * 60 / interval_s      log1p
    destinations             number of hosts              log1p
    listening_ports          number of ports              log1p
    cpu_percent              percent                      linear
    memory_percent           percent                      linear
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import numpy as np
import numpy.typing as npt

from trustroot.monitor.points import TelemetryPoint

__all__ = ["FEATURES", "LOG_COLUMNS", "RATE_COLUMNS", "column", "feature_matrix", "raw_matrix", "times"]

#: The feature columns, in order.
FEATURES: Final = (
    "auth_failures",
    "connection_attempts",
    "bytes_in",
    "bytes_out",
    "messages_in",
    "messages_out",
    "message_size_max",
    "update_auth_failures",
    "destinations",
    "listening_ports",
    "cpu_percent",
    "memory_percent",
)
#: Columns that are counts over the interval (turned into per-minute rates).
RATE_COLUMNS: Final = (0, 1, 2, 3, 4, 5, 7)
#: Columns learned on the log1p scale (the others, CPU and memory, are linear).
LOG_COLUMNS: Final = tuple(range(10))

Matrix = npt.NDArray[np.float64]


def column(name: str) -> int:
    """The index of feature ``name``."""
    return FEATURES.index(name)


def raw_matrix(points: Sequence[TelemetryPoint]) -> Matrix:
    """The points' raw values (counts per interval, list lengths, percentages): ``len(points)`` x 12."""
    return np.array(
        [
            (
                p.auth_failures,
                p.connection_attempts,
                p.bytes_in,
                p.bytes_out,
                p.messages_in,
                p.messages_out,
                p.message_size_max,
                p.update_auth_failures,
                len(p.destinations),
                len(p.listening_ports),
                p.cpu_percent,
                p.memory_percent,
            )
            for p in points
        ],
        dtype=np.float64,
    ).reshape(len(points), len(FEATURES))


def feature_matrix(raw: Matrix, intervals: npt.NDArray[np.float64]) -> Matrix:
    """The learned scale of ``raw`` (see the module docstring): rates per minute, then log1p."""
    scaled = raw.copy()
    scaled[:, RATE_COLUMNS] *= (60.0 / intervals)[:, None]
    scaled[:, LOG_COLUMNS] = np.log1p(scaled[:, LOG_COLUMNS])
    return scaled


def times(points: Sequence[TelemetryPoint]) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """The points' times (POSIX seconds) and intervals (seconds)."""
    stamps = np.fromiter((p.time.timestamp() for p in points), dtype=np.float64, count=len(points))
    intervals = np.fromiter((p.interval_s for p in points), dtype=np.float64, count=len(points))
    return stamps, intervals
