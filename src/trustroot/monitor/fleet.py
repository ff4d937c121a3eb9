"""Fleet-wide outliers: many devices failing update authenticity checks at once.

One device failing to verify an update may be a flaky download; many devices failing within the
same few minutes means someone is serving forged or tampered updates to the fleet (a compromised
mirror, a man in the middle), which no single device's view shows. :class:`FleetMonitor` keeps, per
device, when it last reported ``update_auth_failures > 0`` and raises a ``fleet_outlier`` finding
when, within :data:`FLEET_WINDOW_S` seconds, at least ``max(FLEET_MIN_DEVICES, FLEET_MIN_SHARE x
fleet size)`` devices did. Pure: the fleet size and the times come in as arguments.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Final

from trustroot.monitor.detect import SEVERITY, Finding
from trustroot.monitor.points import TelemetryError

__all__ = ["FLEET_COOLDOWN_S", "FLEET_MIN_DEVICES", "FLEET_MIN_SHARE", "FLEET_WINDOW_S", "FleetMonitor"]

#: The window in which failures count as "at once", in seconds.
FLEET_WINDOW_S: Final = 600.0
#: Least number of devices, and least share of the fleet, failing within the window.
FLEET_MIN_DEVICES: Final = 3
FLEET_MIN_SHARE: Final = 0.02
#: Seconds before the fleet alert fires again.
FLEET_COOLDOWN_S: Final = 600.0
#: Devices remembered at most (the oldest failures forgotten first).
MAX_TRACKED_DEVICES: Final = 100_000
_STATE_VERSION: Final = 1


class FleetMonitor:
    """See the module docstring."""

    __slots__ = ("failing", "last_fired")

    def __init__(self) -> None:
        self.failing: dict[str, float] = {}
        self.last_fired: float | None = None

    def observe(self, device: str, failure_time: float, fleet_size: int) -> Finding | None:
        """Record that ``device`` failed an update check at ``failure_time``; a finding if the fleet is."""
        self.failing.pop(device, None)
        self.failing[device] = failure_time
        while len(self.failing) > MAX_TRACKED_DEVICES:
            del self.failing[next(iter(self.failing))]
        recent = sorted(d for d, t in self.failing.items() if 0 <= failure_time - t <= FLEET_WINDOW_S)
        needed = max(FLEET_MIN_DEVICES, math.ceil(FLEET_MIN_SHARE * max(fleet_size, 0)))
        if len(recent) < needed:
            return None
        if self.last_fired is not None and 0 <= failure_time - self.last_fired < FLEET_COOLDOWN_S:
            return None
        self.last_fired = failure_time
        return Finding(
            device=None,
            kind="fleet_outlier",
            severity=SEVERITY["fleet_outlier"],
            time=failure_time,
            score=round(len(recent) / needed, 4),
            rule=f"update authenticity failures on >= {needed} devices within {FLEET_WINDOW_S:g} s",
            evidence={
                "devices": recent[:50],
                "failing_devices": len(recent),
                "fleet_size": fleet_size,
                "window_s": FLEET_WINDOW_S,
            },
        )

    def to_state(self) -> dict[str, object]:
        return {"v": _STATE_VERSION, "failing": dict(self.failing), "last_fired": self.last_fired}

    @classmethod
    def from_state(cls, state: Mapping[str, object]) -> FleetMonitor:
        failing = state.get("failing")
        fired = state.get("last_fired")
        if state.get("v") != _STATE_VERSION or not isinstance(failing, Mapping):
            raise TelemetryError("fleet monitor state: unknown version or malformed")
        monitor = cls()
        for device, moment in failing.items():
            if isinstance(moment, bool) or not isinstance(moment, int | float) or not math.isfinite(moment):
                raise TelemetryError("fleet monitor state: a failure time is not a number")
            monitor.failing[str(device)[:128]] = float(moment)
        if fired is not None and (isinstance(fired, bool) or not isinstance(fired, int | float)):
            raise TelemetryError("fleet monitor state: last_fired is not a number")
        monitor.last_fired = None if fired is None else float(fired)
        return monitor
