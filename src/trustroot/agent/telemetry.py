"""What a Linux-class device measures for telemetry (the fields of :mod:`trustroot.monitor.points`).

:class:`LinuxSampler` reads the kernel's view: listening TCP ports and remote peers from
``/proc/net/tcp`` and ``/proc/net/tcp6``, CPU from ``/proc/loadavg``, memory from
``/proc/meminfo``; traffic and message counts come from the agent's own counters (its connection
to the service), and authentication failures from what the device's services report through
:meth:`TrafficCounters.auth_failure`. The simulator replaces the sampler with a behaviour model.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final

__all__ = ["LinuxSampler", "Sampler", "TrafficCounters", "point_time"]

#: A sampler: (time of the point, interval in seconds, running firmware version, counters) -> point fields.
Sampler = Callable[[datetime, int, str, "TrafficCounters"], dict[str, Any]]
_MAX_PEERS: Final = 64
_LISTEN: Final = "0A"
_ESTABLISHED: Final = "01"


def point_time(moment: datetime) -> str:
    """The wire form of a point's time."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class TrafficCounters:
    """The agent's own traffic over one interval (taken and reset by the sampler)."""

    bytes_in: int = 0
    bytes_out: int = 0
    messages_in: int = 0
    messages_out: int = 0
    message_size_max: int = 0
    connection_attempts: int = 0
    auth_failures: int = 0
    update_auth_failures: int = 0

    def request(self, sent: int, received: int) -> None:
        self.messages_out += 1
        self.bytes_out += sent
        self.message_size_max = max(self.message_size_max, sent, received)
        if received:
            self.messages_in += 1
            self.bytes_in += received

    def auth_failure(self) -> None:
        self.auth_failures += 1

    def take(self) -> dict[str, int]:
        values = dict(vars(self))
        for name in values:
            setattr(self, name, 0)
        return values


def _hex_address(text: str) -> str:
    address, _, _port = text.partition(":")
    if len(address) == 8:
        raw = bytes.fromhex(address)[::-1]
        return ".".join(str(b) for b in raw)
    words = [bytes.fromhex(address[i : i + 8])[::-1].hex() for i in range(0, 32, 8)]
    full = "".join(words)
    return ":".join(full[i : i + 4] for i in range(0, 32, 4))


def _tcp_table(root: Path) -> tuple[list[int], list[str]]:
    ports: set[int] = set()
    peers: set[str] = set()
    for name in ("tcp", "tcp6"):
        path = root / "net" / name
        try:
            lines = path.read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 4:
                continue
            local, remote, state = fields[1], fields[2], fields[3]
            if state == _LISTEN:
                ports.add(int(local.rsplit(":", 1)[1], 16))
            elif state == _ESTABLISHED and len(peers) < _MAX_PEERS:
                address = _hex_address(remote)
                if address not in ("127.0.0.1", "0000:0000:0000:0000:0000:0000:0000:0001"):
                    peers.add(address)
    return sorted(p for p in ports if 1 <= p <= 65535)[:_MAX_PEERS], sorted(peers)


@dataclass
class LinuxSampler:
    """Samples this Linux machine (``proc`` is injectable for tests)."""

    proc: Path = Path("/proc")

    def __call__(self, moment: datetime, interval_s: int, firmware: str, counters: TrafficCounters) -> dict[str, Any]:
        ports, peers = _tcp_table(self.proc)
        try:
            load = float((self.proc / "loadavg").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            load = 0.0
        cpu = min(100.0, 100.0 * load / max(1, os.cpu_count() or 1))
        memory = 0.0
        try:
            lines = (self.proc / "meminfo").read_text().splitlines()
            info = {line.split(":")[0]: int(line.split()[1]) for line in lines}
            memory = 100.0 * (1 - info["MemAvailable"] / info["MemTotal"])
        except (OSError, KeyError, ValueError, IndexError, ZeroDivisionError):
            pass
        return {
            "time": point_time(moment),
            "interval_s": interval_s,
            **counters.take(),
            "listening_ports": ports,
            "destinations": peers,
            "firmware_version": firmware,
            "cpu_percent": round(cpu, 2),
            "memory_percent": round(min(100.0, max(0.0, memory)), 2),
        }
