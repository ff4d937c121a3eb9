"""The fast batch parser accepts and refuses exactly what the contract's parse_batch does."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trustroot.monitor.points import TelemetryError, parse_batch
from trustroot.monitor.synthetic import SyntheticDevice
from trustroot.monitor.wire import batch_json_schema, parse_batch_json

START = datetime(2026, 11, 22, tzinfo=UTC)


def valid_point(seed: int = 1) -> dict[str, Any]:
    return SyntheticDevice("W", random.Random(seed), START).point().to_json()


def both(raw: bytes) -> tuple[object, object]:
    """What each parser makes of ``raw``: the points, or the refusal's message."""
    try:
        slow: object = parse_batch(json.loads(raw))
    except TelemetryError as exc:
        slow = exc.message
    except ValueError:
        slow = "not JSON"
    try:
        fast: object = parse_batch_json(raw)
    except TelemetryError as exc:
        fast = "not JSON" if "not a JSON document" in exc.message else exc.message
    return slow, fast


BAD_VALUES: list[tuple[str, object]] = [
    ("time", "2026-11-22T10:00:00+00:00"),
    ("time", "2026-11-22T10:00:00Z\n"),
    ("time", "2026-02-30T10:00:00Z"),
    ("time", 0),
    ("interval_s", 0),
    ("interval_s", 86_401),
    ("interval_s", 1.0),
    ("interval_s", True),
    ("auth_failures", -1),
    ("auth_failures", 2**53),
    ("auth_failures", "1"),
    ("bytes_out", 1.5),
    ("bytes_out", None),
    ("listening_ports", [0]),
    ("listening_ports", [65536]),
    ("listening_ports", [True]),
    ("listening_ports", list(range(1, 66))),
    ("listening_ports", "443"),
    ("destinations", ["bad host"]),
    ("destinations", ["x" * 254]),
    ("destinations", ["a\n"]),
    ("destinations", [1]),
    ("firmware_version", ""),
    ("firmware_version", "1.0\n"),
    ("firmware_version", "1 0"),
    ("firmware_version", "v" * 65),
    ("cpu_percent", -0.1),
    ("cpu_percent", 100.5),
    ("cpu_percent", "5"),
    ("cpu_percent", True),
    ("memory_percent", None),
    ("seq", -1),
    ("seq", 1.0),
]


@pytest.mark.parametrize(("field", "value"), BAD_VALUES)
def test_every_bad_value_is_refused_by_both_with_the_contract_s_message(field: str, value: object) -> None:
    point = valid_point()
    point[field] = value
    slow, fast = both(json.dumps({"points": [valid_point(2), point]}).encode())
    assert isinstance(slow, str) and slow == fast
    assert "point 1" in fast


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"[]",
        b"{}",
        b'{"points": []}',
        b'{"points": {}}',
        b'{"points": [], "extra": 1}',
        b'{"points": [' + b",".join([json.dumps(valid_point()).encode()] * 1001) + b"]}",
        b'{"points": [{"seq": 1}]}',
        json.dumps({"points": [dict(valid_point(), device="OTHER")]}).encode(),
        json.dumps({"points": [valid_point()]}).encode().replace(b'"seq"', b'"seq2"'),
        b'{"points": [NaN]}',
        b"\xff\xfe",
    ],
)
def test_malformed_batches_are_refused_alike(raw: bytes) -> None:
    slow, fast = both(raw)
    assert isinstance(slow, str) and slow == fast


def test_valid_batches_give_the_same_points() -> None:
    device = SyntheticDevice("V", random.Random(3), START)
    points = [device.point(attack) for attack in (None, "port_scan", "exfiltration", None)]
    raw = json.dumps({"points": [dict(p.to_json(), cpu_percent=12) for p in points]}).encode()
    slow, fast = both(raw)
    assert isinstance(fast, list) and slow == fast
    assert all(type(p.cpu_percent) is float for p in fast)


_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-5, max_value=2**54),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
    st.lists(st.integers(min_value=-2, max_value=70_000), max_size=4),
    st.lists(st.text(max_size=8), max_size=3),
)


@settings(max_examples=150, deadline=None)
@given(field=st.sampled_from(sorted(valid_point())), value=_VALUES)
def test_random_values_in_any_field_are_judged_alike(field: str, value: object) -> None:
    point = valid_point()
    point[field] = value
    slow, fast = both(json.dumps({"points": [point]}).encode())
    assert slow == fast


def test_the_published_schema_names_every_field_and_has_no_dangling_refs() -> None:
    schema = batch_json_schema()
    text = json.dumps(schema)
    assert "$ref" not in text and "$defs" not in text
    assert set(schema["properties"]["points"]["items"]["properties"]) == set(valid_point())
