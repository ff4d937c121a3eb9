"""Fast parsing of telemetry batches straight from JSON bytes, with exactly the rules of :mod:`.points`.

:func:`trustroot.monitor.points.parse_batch` is the contract: readable, and naming the first problem
precisely. At ingest rates (tens of thousands of points a second) its per-field Python checks cost
more than everything else together, so :func:`parse_batch_json` first validates the whole batch in
pydantic-core (compiled; strict types, the same ranges, lengths and patterns, unknown fields
refused), then builds the points. When that validation refuses anything, the batch goes through
``parse_batch`` for the refusal and its message: a malformed batch is never accepted by one path
and refused by the other (tests/unit/test_monitor_wire.py compares both on mutated points).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any, Final

from pydantic import ConfigDict, Field, TypeAdapter, ValidationError
from typing_extensions import TypedDict

from trustroot.monitor.points import (
    MAX_BATCH_POINTS,
    MAX_LIST_ITEMS,
    TelemetryError,
    TelemetryPoint,
    parse_batch,
)

__all__ = ["batch_json_schema", "parse_batch_json"]

_COUNTER = Annotated[int, Field(strict=True, ge=0, le=2**53 - 1)]
_PERCENT = Annotated[float, Field(strict=True, ge=0, le=100, allow_inf_nan=False)]
_PORT = Annotated[int, Field(strict=True, ge=1, le=65535)]
_HOST = Annotated[str, Field(strict=True, pattern=r"^[0-9A-Za-z.:\[\]/_-]{1,253}$")]


class _Point(TypedDict):
    __pydantic_config__ = ConfigDict(extra="forbid", strict=True)  # type: ignore[misc]

    time: Annotated[str, Field(pattern=r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?Z$")]
    interval_s: Annotated[int, Field(strict=True, ge=1, le=86_400)]
    auth_failures: _COUNTER
    connection_attempts: _COUNTER
    bytes_in: _COUNTER
    bytes_out: _COUNTER
    messages_in: _COUNTER
    messages_out: _COUNTER
    message_size_max: _COUNTER
    update_auth_failures: _COUNTER
    listening_ports: Annotated[list[_PORT], Field(max_length=MAX_LIST_ITEMS)]
    destinations: Annotated[list[_HOST], Field(max_length=MAX_LIST_ITEMS)]
    firmware_version: Annotated[str, Field(pattern=r"^[0-9A-Za-z.+_-]{1,64}$")]
    cpu_percent: _PERCENT
    memory_percent: _PERCENT
    seq: _COUNTER


class _Batch(TypedDict):
    __pydantic_config__ = ConfigDict(extra="forbid", strict=True)  # type: ignore[misc]

    points: Annotated[list[_Point], Field(min_length=1, max_length=MAX_BATCH_POINTS)]


_ADAPTER: Final = TypeAdapter(_Batch)


def _slow(body: bytes, where: str) -> list[TelemetryPoint]:
    try:
        raw = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise TelemetryError(f"{where}: not a JSON document ({type(exc).__name__})") from None
    return parse_batch(raw, where)


def parse_batch_json(body: bytes, where: str = "telemetry batch") -> list[TelemetryPoint]:
    """Parse and validate a batch (``{"points": [...]}``) given as JSON bytes; :class:`TelemetryError` if bad."""
    try:
        batch = _ADAPTER.validate_json(body)
    except ValidationError:
        return _slow(body, where)
    points = []
    new = TelemetryPoint.__new__
    for item in batch["points"]:
        stamp = item["time"]
        try:
            moment = datetime.fromisoformat(stamp[:-1] + "+00:00").astimezone(UTC)
        except ValueError:
            return _slow(body, where)  # a well-formed but impossible date: the contract's message
        point = new(TelemetryPoint)
        fields = {
            **item,
            "time": moment,
            "cpu_percent": float(item["cpu_percent"]),
            "memory_percent": float(item["memory_percent"]),
            "listening_ports": tuple(sorted(set(item["listening_ports"]))),
            "destinations": tuple(sorted(set(item["destinations"]))),
        }
        for name, value in fields.items():
            object.__setattr__(point, name, value)
        points.append(point)
    return points


def batch_json_schema() -> dict[str, Any]:
    """The JSON Schema of a batch (for the published OpenAPI document)."""
    schema: dict[str, Any] = _ADAPTER.json_schema()
    point = schema.pop("$defs")["_Point"]
    point["title"] = "TelemetryPoint"
    schema["properties"]["points"]["items"] = point  # inline: an OpenAPI document has no $defs here
    schema["title"] = "TelemetryBatch"
    return schema
