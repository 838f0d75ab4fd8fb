"""How one value that is not a container becomes JSON, for `tracking_core.convert`.

Type names are read without calling any code of the value's class; text never carries a memory
address (a default repr would give a new value in every process).
"""

from __future__ import annotations

import datetime as _dt
import math
import operator
import re
from collections.abc import Callable
from typing import Any

__all__ = [
    "MAX_INT_BITS",
    "huge_int",
    "other_value",
    "own_text",
    "text_of",
    "type_name",
    "utc_text",
]

_UTC = _dt.timezone.utc
_finite = math.isfinite

# Python refuses to print ints of more than 4300 digits (about 14,000 bits); JSON needs digits.
MAX_INT_BITS = 14_000
# A memory address in a default-style repr: "<Foo object at 0x7f...>", "<function f at 0x...>".
_ADDRESS = re.compile(r" at 0x[0-9A-Fa-f]+")
_NAME = type.__dict__["__name__"].__get__
_QUALNAME = type.__dict__["__qualname__"].__get__
_MODULE = type.__dict__["__module__"].__get__
_OBJECT_STR = object.__str__
_OBJECT_REPR = object.__repr__


def huge_int(value: int) -> str:
    return ("-0x" if value < 0 else "0x") + format(abs(value), "x")


_finite = math.isfinite


def type_name(cls: type, qualified: bool = False) -> str:
    """The name of `cls` (``module.QualName`` when `qualified`), read without calling any code of
    the class (a metaclass cannot change it)."""
    try:
        name = _QUALNAME(cls) if qualified else _NAME(cls)
        if type(name) is not str:
            return "object"
        if qualified:
            module = _MODULE(cls)
            if type(module) is str and module:
                return f"{module}.{name}"
        return name
    except Exception:
        return "object"


def own_text(cls: type) -> tuple[bool, bool]:
    """Whether `cls` defines its own ``__str__`` and its own ``__repr__`` (not `object`'s)."""
    return (
        getattr(cls, "__str__", _OBJECT_STR) is not _OBJECT_STR,
        getattr(cls, "__repr__", _OBJECT_REPR) is not _OBJECT_REPR,
    )


def text_of(text: object) -> str:
    if type(text) is str:
        return text
    if isinstance(text, str):
        return str.__str__(text)
    raise TypeError("__str__/__repr__ returned a non-string")


def other_value(value: Any, cls: type) -> Any:
    """A value of no known type: a number-like object's number, else its own text (without
    memory addresses), else ``"<module.QualName>"``."""
    if getattr(cls, "__index__", None) is not None:
        try:
            number = operator.index(value)
        except Exception:
            pass
        else:
            return number if number.bit_length() <= MAX_INT_BITS else huge_int(number)
    if getattr(cls, "__float__", None) is not None:
        try:
            real = float(value)
        except Exception:
            pass
        else:
            return real if _finite(real) else None
    own_str, own_repr = own_text(cls)
    if not (own_str or own_repr):
        # The default repr would show a memory address: a new value in every process.
        return f"<{type_name(cls, qualified=True)}>"
    try:
        text = text_of(str(value))
    except Exception:
        if not own_repr:
            raise
        text = text_of(repr(value))
    return _ADDRESS.sub("", text) if "0x" in text else text


def utc_text(value: _dt.datetime, datetime_format: Callable[[_dt.datetime], str] | None) -> str:
    """In UTC (a naive value is taken as UTC), as ISO 8601 or the caller's format."""
    offset = value.utcoffset()
    moment = _dt.datetime(
        value.year,
        value.month,
        value.day,
        value.hour,
        value.minute,
        value.second,
        value.microsecond,
        tzinfo=_UTC,
    )
    if offset is not None:
        moment -= offset
    if datetime_format is None:
        return _dt.datetime.isoformat(moment)
    return text_of(datetime_format(moment))
