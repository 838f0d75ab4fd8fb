"""The records that flow through tracking-core, and the one JSON conversion rule.

`TrackingEvent` is what `track()` produces and every provider receives. `TrackingIdentify` is the
record behind `identify()`; plain providers get its fields as ``identify(user_id, traits)``, the
batching HTTP providers get the record itself (it carries an id and a timestamp like an event).

`json_safe()` is the single, deterministic conversion of arbitrary Python values into values that
strict JSON can carry. Every built-in wire format uses it, and custom providers may call it.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as _dt
import enum
import math
import os
import sys
import types
from collections.abc import Mapping
from typing import Any

__all__ = ["PLACEHOLDER_IDS", "TrackingEvent", "TrackingIdentify", "json_safe", "usable_id"]

_UTC = _dt.timezone.utc

#: How deep `json_safe` follows nested containers before it stops with a marker string.
MAX_DEPTH = 32


@dataclasses.dataclass(frozen=True, slots=True)
class TrackingEvent:
    """One accepted `track()` call.

    Attributes:
        name: the event name, a non-empty string.
        properties: a shallow snapshot of the caller's properties (merged with any
            `tracking_context` properties). Values are as the caller gave them; use `json_safe`
            to convert them for a wire format. Plain providers receive a read-only view; the
            snapshot is shared by every provider, so never change it.
        timestamp: when the event happened, an aware `datetime` in UTC.
        user_id: the identified user, if any.
        anonymous_id: an anonymous/device id, if any.
        event_id: a UUID4 string fixed when the event was accepted; providers send it as the
            vendor's dedupe key so that a retried batch is never counted twice.
    """

    name: str
    properties: Mapping[str, Any]
    timestamp: _dt.datetime
    user_id: str | None = None
    anonymous_id: str | None = None
    event_id: str = dataclasses.field(default_factory=lambda: uuid4_strings(1)[0])


@dataclasses.dataclass(frozen=True, slots=True)
class TrackingIdentify:
    """One accepted `identify()` call, with the same identity guarantees as an event."""

    user_id: str
    traits: Mapping[str, Any]
    timestamp: _dt.datetime
    event_id: str = dataclasses.field(default_factory=lambda: uuid4_strings(1)[0])


_PLAIN = frozenset({str, bool, type(None)})
# Python refuses to print ints of more than 4300 digits (about 14,000 bits); JSON needs digits.
_MAX_INT_BITS = 14_000


def _huge_int(value: int) -> str:
    return ("-0x" if value < 0 else "0x") + format(abs(value), "x")


_finite = math.isfinite


def _float(value: float) -> float | str:
    if math.isfinite(value):
        return value
    if math.isnan(value):
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


def _key(value: Any, depth: int, path: set[int]) -> str:
    if isinstance(value, str):
        return value
    converted = _convert(value, depth, path)
    if converted is None:
        return "null"
    if isinstance(converted, bool):
        return "true" if converted else "false"
    if isinstance(converted, (int, float, str)):
        return str(converted)
    return _fallback_text(converted)


def _fallback_text(value: Any) -> str:
    for render in (str, repr):
        try:
            text = render(value)
        except Exception:
            continue
        if isinstance(text, str):
            return text
    return f"<unrepresentable {type(value).__qualname__}>"


def _sort_key(value: Any) -> tuple[str, str]:
    return (type(value).__name__, _fallback_text(value))


def _convert(value: Any, depth: int, path: set[int]) -> Any:
    # The common scalar types first, exactly (bool is an int subclass and stays a bool).
    if value is None or value is True or value is False:
        return value
    cls = type(value)
    if cls is str:
        return value
    if cls is int:
        return value if value.bit_length() <= _MAX_INT_BITS else _huge_int(value)
    if cls is float:
        return _float(value)
    if isinstance(value, enum.Enum):
        return _convert(value.value, depth, path)
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        number = int.__index__(value)
        return number if number.bit_length() <= _MAX_INT_BITS else _huge_int(number)
    if isinstance(value, float):
        return _float(float(value))
    if isinstance(value, _dt.datetime):
        return value.isoformat()
    if isinstance(value, (_dt.date, _dt.time)):
        return value.isoformat()
    if isinstance(value, _dt.timedelta):
        return value.total_seconds()
    # A Decimal or a UUID can exist only once its module was imported: looking the module up
    # instead of importing it keeps `import tracking_core` cheap.
    decimal = sys.modules.get("decimal")
    if decimal is not None and isinstance(value, decimal.Decimal):
        return "NaN" if value.is_nan() else _float(float(value))
    uuid = sys.modules.get("uuid")
    if uuid is not None and isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        raw = bytes(value)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return "base64:" + base64.b64encode(raw).decode("ascii")
    is_container = isinstance(value, (Mapping, list, tuple, set, frozenset)) or (
        dataclasses.is_dataclass(value) and not isinstance(value, type)
    )
    if not is_container:
        return _fallback_text(value)
    if depth >= MAX_DEPTH:
        return "<max depth>"
    marker = id(value)
    if marker in path:
        return "<cycle>"
    path.add(marker)
    try:
        if isinstance(value, Mapping):
            out: dict[str, Any] = {}
            for key, item in list(value.items()):
                out[_key(key, depth + 1, path)] = _convert(item, depth + 1, path)
            return out
        if isinstance(value, (list, tuple)):
            return [_convert(item, depth + 1, path) for item in value]
        if isinstance(value, (set, frozenset)):
            items = [_convert(item, depth + 1, path) for item in value]
            return sorted(items, key=_sort_key)
        fields = dataclasses.fields(value)
        return {f.name: _convert(getattr(value, f.name, None), depth + 1, path) for f in fields}
    except Exception:
        # A container that cannot be iterated (a broken __iter__, a mapping that raises).
        return _fallback_text(value)
    finally:
        path.discard(marker)


def json_safe(value: Any) -> Any:
    """Convert any Python value into one that strict JSON can carry, deterministically.

    The rule (the same for every built-in provider; documented in docs/api.md):

    - ``None``, ``bool``, ``int`` and ``str`` stay as they are; ``str``/``int`` subclasses become
      plain ``str``/``int``; an int too large to print in decimal (over 4300 digits) becomes its
      hexadecimal text, ``"0x..."``.
    - finite floats stay; NaN becomes ``"NaN"``, infinities ``"Infinity"``/``"-Infinity"``.
    - ``datetime``, ``date`` and ``time`` become ISO 8601 strings (``isoformat()``, the offset
      kept as given); ``timedelta`` becomes its total seconds as a float.
    - ``Decimal`` becomes a float (NaN/infinities as above); ``UUID`` its string form;
      an ``Enum`` member its converted ``value``.
    - ``bytes``/``bytearray``/``memoryview`` become UTF-8 text, or ``"base64:<data>"`` when they
      are not valid UTF-8.
    - mappings become objects whose keys are strings (non-string keys are converted and then
      rendered as text: ``None`` -> ``"null"``, ``True`` -> ``"true"``, ``1`` -> ``"1"``);
      lists and tuples become arrays; sets become arrays sorted by (type name, text);
      dataclass instances become objects of their fields.
    - a container met again inside itself becomes ``"<cycle>"``; nesting deeper than 32
      becomes ``"<max depth>"``.
    - anything else becomes ``str(value)``, else ``repr(value)``, else
      ``"<unrepresentable TypeName>"`` when both raise.

    It never raises.
    """
    cls = type(value)
    if cls is dict or cls is types.MappingProxyType:
        # The common case, flat properties of plain values, without the recursive walk.
        for key, item in value.items():
            kind = type(item)
            if type(key) is not str or not (
                kind in _PLAIN
                or (kind is int and item.bit_length() <= _MAX_INT_BITS)
                or (kind is float and _finite(item))
            ):
                break
        else:
            return dict(value)
    try:
        return _convert(value, 0, set())
    except Exception:
        return f"<unrepresentable {type(value).__qualname__}>"


#: Ids that analytics vendors treat as "no id" or refuse outright (compared case-insensitively,
#: surrounding blanks ignored). A provider adds its vendor's own to these.
PLACEHOLDER_IDS = frozenset(
    {
        "",
        "anonymous",
        "anon",
        "guest",
        "nil",
        "none",
        "null",
        "n/a",
        "na",
        "nan",
        "undefined",
        "unknown",
        "<nil>",
        "0",
        "-1",
        "true",
        "false",
        "[]",
        "{}",
        "[object object]",
        "00000000-0000-0000-0000-000000000000",
    }
)


def usable_id(value: str | None, placeholders: frozenset[str] = PLACEHOLDER_IDS) -> str | None:
    """`value` when it is a real id; None when it is missing, blank or a placeholder such as
    ``"anonymous"`` (which vendors refuse, or worse, merge every such user into one)."""
    if value is None or value.strip().lower() in placeholders:
        return None
    return value


def uuid4_strings(count: int) -> list[str]:
    """`count` random (version 4) UUID strings, from one `os.urandom` call.

    The same format and randomness as ``str(uuid.uuid4())``, at a fraction of the cost per id.
    """
    raw = bytearray(os.urandom(16 * count))
    ids = []
    for start in range(0, 16 * count, 16):
        raw[start + 6] = (raw[start + 6] & 0x0F) | 0x40  # version 4
        raw[start + 8] = (raw[start + 8] & 0x3F) | 0x80  # RFC 4122 variant
        h = raw[start : start + 16].hex()
        ids.append(f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}")
    return ids


def utc_from_timestamp(seconds: float) -> _dt.datetime:
    """The aware UTC datetime for a POSIX timestamp (used for events accepted by `track()`)."""
    return _dt.datetime.fromtimestamp(seconds, _UTC)


def normalize_timestamp(value: _dt.datetime) -> _dt.datetime:
    """An aware UTC datetime: naive values are taken as UTC, aware ones converted to UTC."""
    if value.tzinfo is None or value.utcoffset() is None:
        return value.replace(tzinfo=_UTC)
    return value.astimezone(_UTC)
