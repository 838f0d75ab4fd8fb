"""The one conversion rule for values JSON cannot carry (documented in docs/api.md)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import enum
import json
import math
import uuid
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tracking_core import json_safe


class Color(enum.Enum):
    RED = "red"
    BLUE = 2


@dataclasses.dataclass
class Point:
    x: int
    y: float


class BadRepr:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")

    def __str__(self) -> str:
        raise RuntimeError("no str")


class OnlyRepr:
    def __str__(self) -> str:
        raise RuntimeError("no str")

    def __repr__(self) -> str:
        return "<OnlyRepr>"


def strict(value: Any) -> Any:
    """Round-trip through strict JSON: fails on NaN tokens and non-JSON types."""
    return json.loads(json.dumps(value, allow_nan=False))


def test_conversion_table() -> None:
    tz = dt.timezone(dt.timedelta(hours=2))
    cases: list[tuple[Any, Any]] = [
        (None, None),
        (True, True),
        (3, 3),
        ("text", "text"),
        (1.5, 1.5),
        (float("nan"), "NaN"),
        (float("inf"), "Infinity"),
        (float("-inf"), "-Infinity"),
        (dt.datetime(2026, 1, 15, 10, 0, tzinfo=tz), "2026-01-15T10:00:00+02:00"),
        (dt.datetime(2026, 1, 15, 10, 0), "2026-01-15T10:00:00"),
        (dt.date(2026, 1, 15), "2026-01-15"),
        (dt.time(10, 30), "10:30:00"),
        (dt.timedelta(minutes=1, milliseconds=500), 60.5),
        (decimal.Decimal("19.99"), 19.99),
        (decimal.Decimal("NaN"), "NaN"),
        (decimal.Decimal("sNaN"), "NaN"),
        (decimal.Decimal("-Infinity"), "-Infinity"),
        (uuid.UUID("12345678-1234-5678-1234-567812345678"), "12345678-1234-5678-1234-567812345678"),
        (Color.RED, "red"),
        (Color.BLUE, 2),
        ({3, 1, 2}, [1, 2, 3]),
        (frozenset({"b", "a"}), ["a", "b"]),
        ((1, (2, 3)), [1, [2, 3]]),
        (b"caf\xc3\xa9", "café"),
        (b"\xff\xfe", "base64://4="),
        (bytearray(b"ab"), "ab"),
        (Point(1, float("nan")), {"x": 1, "y": "NaN"}),
        ({1: "a", None: "b", 2.5: "d"}, {"1": "a", "null": "b", "2.5": "d"}),
        ({True: "c", (1, 2): "e"}, {"true": "c", "[1, 2]": "e"}),
        (BadRepr(), "<unrepresentable BadRepr>"),
        (OnlyRepr(), "<OnlyRepr>"),
        (object, str(object)),
    ]
    for value, expected in cases:
        assert json_safe(value) == expected, value
        assert strict(json_safe(value)) == expected


def test_cycles_and_depth_are_cut_with_markers() -> None:
    cyclic: dict[str, Any] = {"name": "root"}
    cyclic["self"] = cyclic
    listed: list[Any] = [1]
    listed.append(listed)
    assert json_safe(cyclic) == {"name": "root", "self": "<cycle>"}
    assert json_safe(listed) == [1, "<cycle>"]
    shared = [1]
    assert json_safe({"a": shared, "b": shared}) == {"a": [1], "b": [1]}  # not a cycle
    deep: Any = "leaf"
    for _ in range(100):
        deep = [deep]
    converted = json_safe(deep)
    strict(converted)
    depth = 0
    while isinstance(converted, list):
        converted = converted[0]
        depth += 1
    assert converted == "<max depth>" and depth == 32


def test_conversion_is_deterministic_for_sets_of_mixed_types() -> None:
    value = {1, "1", 2.5, None, (1, 2)}
    first = json_safe(value)
    assert first == json_safe(set(reversed(list(value))))
    strict(first)


json_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(),
    st.binary(max_size=20),
    st.decimals(allow_nan=True, allow_infinity=True),
    st.datetimes(timezones=st.none() | st.timezones()),
    st.dates(),
    st.times(),
    st.timedeltas(),
    st.uuids(),
    st.sampled_from(list(Color)),
    st.builds(Point, st.integers(), st.floats()),
    st.builds(BadRepr),
)
values = st.recursive(
    json_leaves,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.tuples(children, children),
        st.frozensets(st.one_of(st.integers(), st.text(max_size=3)), max_size=4),
        st.dictionaries(
            st.one_of(st.text(max_size=5), st.integers(), st.none()), children, max_size=4
        ),
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(values)
def test_any_value_becomes_strict_json_deterministically(value: Any) -> None:
    converted = json_safe(value)
    text = json.dumps(converted, allow_nan=False)
    assert json.dumps(json_safe(value), allow_nan=False) == text
    for token in ("NaN", "Infinity"):
        # Only ever as a string value, never as a bare token.
        assert not any(
            isinstance(x, float) and not math.isfinite(x) for x in _floats(json.loads(text))
        ), token


def _floats(value: Any) -> list[float]:
    if isinstance(value, float):
        return [value]
    if isinstance(value, list):
        return [f for item in value for f in _floats(item)]
    if isinstance(value, dict):
        return [f for item in value.values() for f in _floats(item)]
    return []
