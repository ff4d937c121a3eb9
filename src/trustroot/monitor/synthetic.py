"""Synthetic telemetry: normal, noisy devices and the labelled attacks, for tests and benchmarks.

Each device gets its own scale (some move ten times the data of others) and every point its own
noise (log-normal traffic, Poisson counts, occasional bursts of three times the usual). Attacks
change what a point says the way the real attack would::

    port_scan       connection_attempts 400-2,000 per minute, 20-64 destinations
    exfiltration    bytes_out 40-200 times the usual, to one new address
    brute_force     auth_failures 20-120 per minute
    unexpected_firmware  a version nobody released
    cloned_device   (a second stream: :meth:`SyntheticDevice.clone`)

Pure and reproducible: the random generator is passed in.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Final, Literal

from trustroot.monitor.points import TelemetryPoint

__all__ = ["ATTACKS", "Attack", "SyntheticDevice"]

Attack = Literal["port_scan", "exfiltration", "brute_force", "unexpected_firmware"]
ATTACKS: Final[tuple[Attack, ...]] = ("port_scan", "exfiltration", "brute_force", "unexpected_firmware")
_DESTINATIONS: Final = ("203.0.113.10", "203.0.113.11", "198.51.100.7", "time.example.net")


@dataclass
class SyntheticDevice:
    """One simulated device's telemetry stream."""

    serial: str
    rng: random.Random
    start: datetime
    interval_s: int = 60
    version: str = "1.0.0"
    seq: int = 0
    scale: float = field(default=0.0)
    destinations: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.scale:
            self.scale = self.rng.lognormvariate(0.0, 1.0)
        if not self.destinations:
            self.destinations = tuple(self.rng.sample(_DESTINATIONS, self.rng.randint(1, 3)))

    def _poisson(self, mean: float) -> int:
        # Knuth's method is fine for the small means used here; large means use a normal approximation.
        if mean > 30:
            return max(0, round(self.rng.gauss(mean, mean**0.5)))
        limit, k, product = pow(2.718281828459045, -mean), 0, self.rng.random()
        while product > limit:
            k += 1
            product *= self.rng.random()
        return k

    def point(self, attack: Attack | None = None) -> TelemetryPoint:
        """The next point (``attack`` shapes it)."""
        rng = self.rng
        burst = 3.0 if rng.random() < 0.02 else 1.0
        base = self.scale * burst
        bytes_out = round(rng.lognormvariate(0.0, 0.35) * 8000 * base)
        destinations = tuple(d for d in self.destinations if rng.random() < 0.9) or self.destinations[:1]
        point = TelemetryPoint(
            time=self.start + timedelta(seconds=self.seq * self.interval_s),
            interval_s=self.interval_s,
            auth_failures=self._poisson(0.05),
            connection_attempts=self._poisson(3 * burst),
            bytes_in=round(rng.lognormvariate(0.0, 0.35) * 12000 * base),
            bytes_out=bytes_out,
            messages_in=self._poisson(4 * burst),
            messages_out=self._poisson(4 * burst),
            message_size_max=rng.randint(200, 900),
            update_auth_failures=0,
            listening_ports=(443,),
            destinations=tuple(sorted(destinations)),
            firmware_version=self.version,
            cpu_percent=min(100.0, max(0.0, rng.gauss(20, 6) * burst)),
            memory_percent=min(100.0, max(0.0, rng.gauss(40, 3))),
            seq=self.seq,
        )
        self.seq += 1
        if attack == "port_scan":
            targets = {f"10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}" for _ in range(64)}
            point = replace(
                point,
                connection_attempts=rng.randint(400, 2000),
                destinations=tuple(sorted(targets))[: rng.randint(20, 64)],
            )
        elif attack == "exfiltration":
            point = replace(
                point,
                bytes_out=round(bytes_out * rng.uniform(40, 200)),
                destinations=tuple(sorted({*point.destinations, f"192.0.2.{rng.randint(1, 254)}"})),
            )
        elif attack == "brute_force":
            point = replace(point, auth_failures=rng.randint(20, 120))
        elif attack == "unexpected_firmware":
            point = replace(point, firmware_version="9.9.9-implant")
        return point

    def clone(self, serial_rng: random.Random) -> SyntheticDevice:
        """A second host holding this device's identity (and its seq counter, copied at cloning)."""
        return SyntheticDevice(
            serial=self.serial,
            rng=serial_rng,
            start=self.start,
            interval_s=self.interval_s,
            version=self.version,
            seq=self.seq,
            scale=self.scale,
            destinations=self.destinations,
        )
