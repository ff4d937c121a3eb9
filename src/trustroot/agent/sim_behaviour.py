"""Simulated device behaviour: normal telemetry, and the labelled attacks the simulator injects.

Every simulated device gets a :class:`Behaviour` (a telemetry sampler for the agent). A normal
device talks to its service and a few fixed cloud hosts, listens on no port (the template's
``allowed_ports = []``), runs the expected firmware and shows small random variation. From its
attack's start, an attacked device's points change as the attack would make them (in the spirit of
the labelled attacks of AWS IoT Device Defender's detect examples)::

    port_scan            botnet behaviour: hundreds of connection attempts to many addresses
    exfiltration         bytes out 100-1000 times the device's normal, to an unknown host
    brute_force          credential guessing against the device: many authentication failures
    unexpected_firmware  the device reports a firmware version the fleet never published
    cloned_device        the device's identity copied to a second host: a second agent instance
                         with the same certificate checks in and sends telemetry (simulator.py)
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from trustroot.agent.telemetry import TrafficCounters, point_time

__all__ = ["ATTACKS", "NORMAL_DESTINATIONS", "Behaviour"]

ATTACKS: Final = ("port_scan", "exfiltration", "brute_force", "unexpected_firmware", "cloned_device")
#: Where a normal simulated device sends data (documentation addresses, RFC 5737).
NORMAL_DESTINATIONS: Final = ("127.0.0.1", "203.0.113.10")


@dataclass
class Behaviour:
    """The telemetry sampler of one simulated device; ``attack`` starts at ``attack_at`` (agent seconds)."""

    rng: random.Random
    clock_elapsed: Any  # () -> float, the agent clock's simulated seconds
    attack: str | None = None
    attack_at: float | None = None
    base_bytes: int = field(default=0)

    def __post_init__(self) -> None:
        if not self.base_bytes:
            self.base_bytes = self.rng.randint(1500, 4000)

    def attacking(self) -> bool:
        return self.attack is not None and self.attack_at is not None and self.clock_elapsed() >= self.attack_at

    def __call__(self, moment: datetime, interval_s: int, firmware: str, counters: TrafficCounters) -> dict[str, Any]:
        own = counters.take()
        rng = self.rng
        point: dict[str, Any] = {
            "time": point_time(moment),
            "interval_s": interval_s,
            "auth_failures": 0,
            "connection_attempts": rng.randint(1, 3) + own["connection_attempts"],
            "bytes_in": int(self.base_bytes * rng.uniform(0.8, 1.2)) + own["bytes_in"],
            "bytes_out": int(self.base_bytes * rng.uniform(0.6, 1.0)) + own["bytes_out"],
            "messages_in": rng.randint(3, 6) + own["messages_in"],
            "messages_out": rng.randint(3, 6) + own["messages_out"],
            "message_size_max": max(own["message_size_max"], rng.randint(400, 900)),
            "update_auth_failures": own["update_auth_failures"],
            "listening_ports": [],
            "destinations": list(NORMAL_DESTINATIONS),
            "firmware_version": firmware,
            "cpu_percent": round(rng.uniform(5, 20), 2),
            "memory_percent": round(rng.uniform(30, 45), 2),
        }
        if self.attacking():
            self._attack(point)
        return point

    def _attack(self, point: dict[str, Any]) -> None:
        rng = self.rng
        if self.attack == "port_scan":
            point["connection_attempts"] += rng.randint(400, 900)
            point["destinations"] += [f"198.51.100.{i}" for i in rng.sample(range(1, 255), 60)]
            point["bytes_out"] += rng.randint(30_000, 60_000)
            point["messages_out"] += rng.randint(400, 900)
            point["cpu_percent"] = round(rng.uniform(50, 90), 2)
        elif self.attack == "exfiltration":
            point["bytes_out"] = self.base_bytes * rng.randint(100, 1000)
            point["messages_out"] += rng.randint(50, 200)
            point["destinations"] += ["192.0.2.66"]
            point["message_size_max"] = 65_000
        elif self.attack == "brute_force":
            point["auth_failures"] = rng.randint(50, 300)
            point["connection_attempts"] += point["auth_failures"]
            point["listening_ports"] = [22, 23]
        elif self.attack == "unexpected_firmware":
            point["firmware_version"] = "6.6.6-evil"
        # cloned_device: the original behaves normally; the clone is a second agent (simulator.py)
