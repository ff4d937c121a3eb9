"""The telemetry point: what a device reports, on every transport (HTTPS batches and MQTT).

This is the wire contract between the agent (which sends), the fleet service (which ingests) and
the detectors (which score). One point covers one reporting interval of one device. Counters are
totals over the interval, not since boot.

JSON form (one object per point; an HTTPS batch is ``{"points": [...]}``, an MQTT message on
``trustroot/<serial>/telemetry`` is one batch too)::

    {"time": "2026-11-22T10:00:00.000000Z", "interval_s": 60,
     "auth_failures": 0, "connection_attempts": 3, "bytes_in": 1200, "bytes_out": 800,
     "messages_in": 4, "messages_out": 4, "message_size_max": 512,
     "listening_ports": [443], "destinations": ["203.0.113.10"],
     "firmware_version": "1.0.0", "cpu_percent": 12.5, "memory_percent": 40.0,
     "update_auth_failures": 0, "seq": 17}

``seq`` increases by one per point of a device (the agent's queue numbering) and lets the service
drop duplicates that an at-least-once transport delivers twice.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from trustroot.errors import UsageError

__all__ = [
    "COUNTER_FIELDS",
    "MAX_BATCH_POINTS",
    "MAX_LIST_ITEMS",
    "TelemetryError",
    "TelemetryPoint",
    "parse_batch",
    "parse_point",
]

#: Integer fields counted over the interval (non-negative, below 2^53).
COUNTER_FIELDS: Final = (
    "auth_failures",
    "connection_attempts",
    "bytes_in",
    "bytes_out",
    "messages_in",
    "messages_out",
    "message_size_max",
    "update_auth_failures",
)
#: Most points in one batch, and most items in ``listening_ports`` / ``destinations``.
MAX_BATCH_POINTS: Final = 1000
MAX_LIST_ITEMS: Final = 64
_MAX_COUNTER: Final = 2**53 - 1
_MAX_INTERVAL_S: Final = 86_400
# \Z, not $: $ also matches before a trailing newline ("1.0.0\n" would pass).
_VERSION = re.compile(r"^[0-9A-Za-z.+_-]{1,64}\Z")
_DESTINATION = re.compile(r"^[0-9A-Za-z.:\[\]/_-]{1,253}\Z")
_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?Z\Z")
_FIELDS: Final = frozenset(
    {
        "time",
        "interval_s",
        *COUNTER_FIELDS,
        "listening_ports",
        "destinations",
        "firmware_version",
        "cpu_percent",
        "memory_percent",
        "seq",
    }
)


class TelemetryError(UsageError):
    """A telemetry point or batch is malformed (EN 303 645 provision 5.13-1: validate input)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, provision="5.13-1")


@dataclass(frozen=True, slots=True)
class TelemetryPoint:
    """One validated reporting interval of one device."""

    time: datetime
    interval_s: int
    auth_failures: int
    connection_attempts: int
    bytes_in: int
    bytes_out: int
    messages_in: int
    messages_out: int
    message_size_max: int
    update_auth_failures: int
    listening_ports: tuple[int, ...]
    destinations: tuple[str, ...]
    firmware_version: str
    cpu_percent: float
    memory_percent: float
    seq: int

    def to_json(self) -> dict[str, object]:
        """The wire form (inverse of :func:`parse_point`)."""
        return {
            "time": self.time.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "interval_s": self.interval_s,
            **{name: getattr(self, name) for name in COUNTER_FIELDS},
            "listening_ports": list(self.listening_ports),
            "destinations": list(self.destinations),
            "firmware_version": self.firmware_version,
            "cpu_percent": self.cpu_percent,
            "memory_percent": self.memory_percent,
            "seq": self.seq,
        }


def _int(raw: Mapping[str, object], name: str, where: str, low: int, high: int) -> int:
    value = raw.get(name)
    if type(value) is not int or not low <= value <= high:
        raise TelemetryError(f"{where}: {name} must be an integer from {low} to {high}, got {value!r:.40}")
    return value


def _percent(raw: Mapping[str, object], name: str, where: str) -> float:
    value = raw.get(name)
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not 0 <= value <= 100
    ):
        raise TelemetryError(f"{where}: {name} must be a number from 0 to 100, got {value!r:.40}")
    return float(value)


def parse_point(raw: object, where: str = "telemetry point") -> TelemetryPoint:
    """Validate one point of the wire form; every field is required and unknown fields are refused."""
    if not isinstance(raw, Mapping):
        raise TelemetryError(f"{where}: expected a JSON object, got {type(raw).__name__}")
    unknown = set(raw) - _FIELDS
    if unknown:
        raise TelemetryError(f"{where}: unknown field(s) {', '.join(sorted(map(str, unknown)))[:200]}")
    missing = _FIELDS - set(raw)
    if missing:
        raise TelemetryError(f"{where}: missing field(s) {', '.join(sorted(missing))}")
    stamp = raw["time"]
    if not isinstance(stamp, str) or not _TIME.match(stamp):
        raise TelemetryError(f"{where}: time must be UTC like 2026-11-22T10:00:00.000000Z, got {stamp!r:.40}")
    try:
        moment = datetime.fromisoformat(stamp.replace("Z", "+00:00")).astimezone(UTC)
    except ValueError as exc:
        raise TelemetryError(f"{where}: time {stamp!r:.40} is not a valid date") from exc
    ports = raw["listening_ports"]
    if not isinstance(ports, list) or len(ports) > MAX_LIST_ITEMS:
        raise TelemetryError(f"{where}: listening_ports must be a list of at most {MAX_LIST_ITEMS} ports")
    for port in ports:
        if type(port) is not int or not 1 <= port <= 65535:
            raise TelemetryError(f"{where}: listening_ports holds {port!r:.20}, not a port from 1 to 65535")
    dests = raw["destinations"]
    if not isinstance(dests, list) or len(dests) > MAX_LIST_ITEMS:
        raise TelemetryError(f"{where}: destinations must be a list of at most {MAX_LIST_ITEMS} hosts")
    for dest in dests:
        if not isinstance(dest, str) or not _DESTINATION.match(dest):
            raise TelemetryError(f"{where}: destinations holds {dest!r:.40}, not a host name or address")
    version = raw["firmware_version"]
    if not isinstance(version, str) or not _VERSION.match(version):
        raise TelemetryError(f"{where}: firmware_version must be 1-64 of [0-9A-Za-z.+_-], got {version!r:.40}")
    counters = {name: _int(raw, name, where, 0, _MAX_COUNTER) for name in COUNTER_FIELDS}
    return TelemetryPoint(
        time=moment,
        interval_s=_int(raw, "interval_s", where, 1, _MAX_INTERVAL_S),
        listening_ports=tuple(sorted(set(ports))),
        destinations=tuple(sorted(set(dests))),
        firmware_version=version,
        cpu_percent=_percent(raw, "cpu_percent", where),
        memory_percent=_percent(raw, "memory_percent", where),
        seq=_int(raw, "seq", where, 0, _MAX_COUNTER),
        **counters,
    )


def parse_batch(raw: object, where: str = "telemetry batch") -> list[TelemetryPoint]:
    """Validate ``{"points": [...]}`` with 1 to :data:`MAX_BATCH_POINTS` points."""
    if not isinstance(raw, Mapping) or set(raw) != {"points"}:
        raise TelemetryError(f'{where}: expected an object with exactly one field "points"')
    points = raw["points"]
    if not isinstance(points, list) or not 1 <= len(points) <= MAX_BATCH_POINTS:
        raise TelemetryError(f"{where}: points must be a list of 1 to {MAX_BATCH_POINTS} points")
    return [parse_point(item, f"{where} point {index}") for index, item in enumerate(points)]
