"""Awkward values: each raises where `json_safe` looks (the last six are those of issue #10,
item 6, which used to fail the conversion). The conversion tests and the reliability suite's
bad-input tests both send them."""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Callable
from typing import Any

__all__ = ["ITEM_6", "BothRaise", "ClassRaises", "RaisingTz", "ReprRaises", "StrRaises"]


class ReprRaises:
    """`repr()` raises; `str()` works."""

    def __str__(self) -> str:
        return "repr-raises-but-str-works"

    def __repr__(self) -> str:
        raise RuntimeError("no repr for you")


class StrRaises:
    """`str()` raises; `repr()` works."""

    def __str__(self) -> str:
        raise RuntimeError("no str for you")

    def __repr__(self) -> str:
        return "<StrRaises>"


class BothRaise:
    """Neither `str()` nor `repr()` works."""

    def __str__(self) -> str:
        raise RuntimeError("no str")

    def __repr__(self) -> str:
        raise RuntimeError("no repr")


class FloatFloatRaises(float):
    """A float subclass whose `__float__` raises."""

    def __float__(self) -> float:
        raise RuntimeError("no float")


class RaisingTz(dt.tzinfo):
    """A time zone whose offset cannot be had."""

    def utcoffset(self, when: dt.datetime | None) -> dt.timedelta:
        raise RuntimeError("no offset")

    def dst(self, when: dt.datetime | None) -> dt.timedelta:
        raise RuntimeError("no dst")

    def tzname(self, when: dt.datetime | None) -> str:
        return "BROKEN"


class BytesBytesRaises(bytes):
    """A bytes subclass whose `__bytes__` raises."""

    def __bytes__(self) -> bytes:
        raise RuntimeError("no bytes")


class ClassRaises:
    """An object whose `__class__` raises (so every `isinstance` check on it raises)."""

    @property  # type: ignore[misc]
    def __class__(self) -> type:
        raise RuntimeError("no class")


class ValueRaises(enum.Enum):
    """An Enum whose `.value` raises."""

    MEMBER = 1

    @property
    def value(self) -> Any:
        raise RuntimeError("no value")


def released_memoryview() -> memoryview:
    view = memoryview(b"gone")
    view.release()
    return view


#: (id, a factory of the bad value, what it becomes).
ITEM_6: list[tuple[str, Callable[[], Any], Any]] = [
    # A float subclass is read as the float it stores, like json.dumps does.
    ("float-subclass-float-raises", lambda: FloatFloatRaises(2.5), 2.5),
    (
        "datetime-tzinfo-raises",
        lambda: dt.datetime(2026, 1, 15, tzinfo=RaisingTz()),
        "<unconvertible datetime>",
    ),
    ("memoryview-released", released_memoryview, "<unconvertible memoryview>"),
    # A bytes subclass is read through the buffer it stores.
    ("bytes-subclass-bytes-raises", lambda: BytesBytesRaises(b"caf\xc3\xa9"), "café"),
    ("object-class-raises", ClassRaises, "<unconvertible ClassRaises>"),
    ("enum-value-raises", lambda: ValueRaises.MEMBER, "<unconvertible ValueRaises>"),
]
