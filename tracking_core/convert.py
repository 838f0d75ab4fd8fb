"""`json_safe()`: the one conversion of arbitrary Python values into values strict JSON can carry.

Every built-in wire format uses it; custom providers may call it. It converts value by value:
what cannot be converted becomes a placeholder, alone. Each such loss and each key collision is
logged (rate-limited, never the value) and reported to the sink `set_conversion_sink()` installs
(each lane's worker counts them per provider). The rule is on `json_safe` and in docs/api.md.
"""

from __future__ import annotations

import base64
import contextvars
import dataclasses
import datetime as _dt
import enum
import logging
import math
import operator
import sys
import threading
import types
from collections.abc import Callable, Mapping
from typing import Any

from ._log import rate_limited
from ._values import (
    MAX_INT_BITS,
    huge_int,
    other_value,
    text_of,
    type_name,
    utc_text,
)

__all__ = ["KEY_COLLISION", "MAX_DEPTH", "UNCONVERTIBLE", "json_safe", "set_conversion_sink"]

_UTC = _dt.timezone.utc

#: How deep `json_safe` follows nested containers before it stops with a marker string.
MAX_DEPTH = 32

#: The kinds of lossy conversion `json_safe` reports (counted per provider in tracking_stats()):
#: two keys of one mapping that convert to the same text, so one value is left out...
KEY_COLLISION = "key_collision"
#: ...and a value (or part of a container) that could not be converted or read, replaced by the
#: placeholder ``"<unconvertible TypeName>"``.
UNCONVERTIBLE = "unconvertible"

_PLAIN = frozenset({str, bool, type(None)})
_finite = math.isfinite
# A value that could not even be read out of its container (a mapping's __getitem__ raised).
_UNREADABLE = object()
_UNREADABLE_TEXT = "<unconvertible>"

_SINK: contextvars.ContextVar[Callable[[str], None] | None] = contextvars.ContextVar(
    "tracking_core_conversion_sink", default=None
)


def set_conversion_sink(sink: Callable[[str], None] | None) -> None:
    """Make `json_safe` call ``sink(kind)`` once per lossy conversion in the current context.

    `kind` is `KEY_COLLISION` or `UNCONVERTIBLE`. The sink belongs to the calling thread (and to
    asyncio tasks started from it, as any context variable): each provider's worker sets its own
    to count the conversions of the events it encodes. None removes it. A sink that raises is
    ignored. Every lossy conversion is also logged (a rate-limited WARNING naming the kind and
    where in the value it happened, never the value).
    """
    _SINK.set(sink)


def _passes_through(error: BaseException) -> bool:
    """Whether `error` must reach json_safe's caller instead of becoming a placeholder.

    KeyboardInterrupt always does; SystemExit does on the main thread, where it may come from a
    signal handler (a SIGTERM handler calling sys.exit()). On any other thread a SystemExit can
    only come from the value's own code, and would otherwise end the worker that converts it.
    """
    if isinstance(error, KeyboardInterrupt):
        return True
    return isinstance(error, SystemExit) and threading.current_thread() is threading.main_thread()


def _render(where: Any) -> str:
    """A JSONPath-like text for a position (``$.user.emails[2]``), keys cut to 40 characters."""
    parts: list[str] = []
    while where is not None:
        where, key = where
        if type(key) is int:
            parts.append("[*]" if key < 0 else f"[{key}]")
        elif key.isprintable():
            parts.append("." + key[:40])
        else:  # control characters or lone surrogates: escaped, so a log line stays one line
            parts.append(f"[{key[:40]!r}]")
        if len(parts) > 12:
            parts.append("...")
            break
    return "$" + "".join(reversed(parts))


def _report(kind: str, where: Any, message: str, *args: object) -> None:
    """One lossy conversion: to the context's sink, and to the rate-limited log."""
    sink = _SINK.get()
    if sink is not None:
        try:
            sink(kind)
        except BaseException as error:
            if _passes_through(error):
                raise
    rate_limited.log(
        logging.WARNING,
        "json_safe:" + kind,
        "tracking: %s: " + message + " (at %s)",
        kind,
        *args,
        _render(where),
    )


def _sort_key(value: Any) -> tuple[str, str]:
    # `value` is already converted (JSON types only), so its text never fails.
    return (type(value).__name__, str(value))


class _Conversion:
    """The state of one `json_safe` call: the containers on the current path (cycle detection)
    and the datetime formatter. Every method returns a value; none raises, but for
    KeyboardInterrupt (and SystemExit on the main thread)."""

    __slots__ = ("datetime_format", "path")

    def __init__(self, datetime_format: Callable[[_dt.datetime], str] | None) -> None:
        self.datetime_format = datetime_format
        self.path: set[int] = set()

    def unconvertible(self, value: Any, where: Any) -> str:
        placeholder = f"<unconvertible {type_name(type(value))}>"
        _report(
            UNCONVERTIBLE,
            where,
            "a %s value could not be converted; sent as %r",
            type_name(type(value)),
            placeholder,
        )
        return placeholder

    def convert(self, value: Any, depth: int, where: Any) -> Any:
        """`value` as a JSON value; `where` is its position, for reports."""
        try:
            if value is None or value is True or value is False:
                return value
            cls = type(value)
            if cls is str:
                return value
            if cls is int:
                return value if value.bit_length() <= MAX_INT_BITS else huge_int(value)
            if cls is float:
                return value if _finite(value) else None
            if cls is dict or cls is list or cls is tuple:
                return self.container(value, depth, where)
            if isinstance(value, enum.Enum):
                return self.convert(value.value, depth + 1, where)
            if isinstance(value, str):
                # A subclass is read as the text it stores; a proxy through str().
                return str.__str__(value) if issubclass(cls, str) else text_of(str(value))
            if isinstance(value, bool):
                return bool(value)
            if isinstance(value, int):
                number = int.__index__(value) if issubclass(cls, int) else operator.index(value)
                return number if number.bit_length() <= MAX_INT_BITS else huge_int(number)
            if isinstance(value, float):
                # Like json.dumps: a subclass is read as the float it stores.
                real = float.__float__(value) if issubclass(cls, float) else float(value)
                return real if _finite(real) else None
            if isinstance(value, _dt.datetime):
                return utc_text(value, self.datetime_format)
            if isinstance(value, (_dt.date, _dt.time)):
                return text_of(value.isoformat())
            if isinstance(value, _dt.timedelta):
                return value.total_seconds()
            # A Decimal or a UUID can exist only once its module was imported: looking the
            # module up instead of importing it keeps `import tracking_core` cheap.
            decimal = sys.modules.get("decimal")
            if decimal is not None and isinstance(value, decimal.Decimal):
                if not value.is_finite():
                    return None
                real = float(value)
                return real if _finite(real) else None
            uuid = sys.modules.get("uuid")
            if uuid is not None and isinstance(value, uuid.UUID):
                return text_of(str(value))
            if isinstance(value, (bytes, bytearray, memoryview)):
                # Through the buffer the object stores (a subclass's __bytes__ is not asked).
                raw = value.tobytes() if isinstance(value, memoryview) else bytes(memoryview(value))
                try:
                    return raw.decode("utf-8")
                except UnicodeDecodeError:
                    return "base64:" + base64.b64encode(raw).decode("ascii")
            if isinstance(value, (Mapping, list, tuple, set, frozenset)) or (
                dataclasses.is_dataclass(value) and not isinstance(value, type)
            ):
                return self.container(value, depth, where)
            return other_value(value, cls)
        except BaseException as error:
            if _passes_through(error):
                raise
            return self.unconvertible(value, where)

    def container(self, value: Any, depth: int, where: Any) -> Any:
        if depth >= MAX_DEPTH:
            return "<max depth>"
        marker = id(value)
        if marker in self.path:
            return "<cycle>"
        self.path.add(marker)
        try:
            if isinstance(value, Mapping):
                return self.mapping(value, depth, where)
            if isinstance(value, (list, tuple)):
                return self.sequence(value, depth, where)
            if isinstance(value, (set, frozenset)):
                return sorted(self.sequence(value, depth, where, unordered=True), key=_sort_key)
            return self.dataclass(value, depth, where)
        finally:
            self.path.discard(marker)

    def sequence(self, value: Any, depth: int, where: Any, *, unordered: bool = False) -> list[Any]:
        out: list[Any] = []
        convert = self.convert
        try:
            for item in value:
                out.append(convert(item, depth + 1, (where, -1 if unordered else len(out))))
        except BaseException as error:
            _read_part(error, value, where, len(out), "items")
        return out

    def mapping(self, value: Any, depth: int, where: Any) -> dict[str, Any]:
        pairs = _read_pairs(value, where)
        out: dict[str, Any] = {}
        # Keys of `out` that came from a non-string key: a string key with the same text wins.
        converted_keys: set[str] = set()
        for key, item in pairs:
            if type(key) is str:
                text, original = key, True
            else:
                text, original = self.key(key, depth, where), issubclass(type(key), str)
            if text in out:
                replace = original and text in converted_keys
                _report(
                    KEY_COLLISION,
                    where,
                    "two keys convert to the same text %r; one value was left out",
                    text[:40],
                )
                if not replace:
                    continue
                converted_keys.discard(text)
            elif not original:
                converted_keys.add(text)
            if item is _UNREADABLE:
                _report(UNCONVERTIBLE, (where, text), "a value could not be read from its mapping")
                out[text] = _UNREADABLE_TEXT
            else:
                out[text] = self.convert(item, depth + 1, (where, text))
        return out

    def key(self, key: Any, depth: int, where: Any) -> str:
        converted = self.convert(key, depth + 1, (where, "<key>"))
        if converted is None:
            return "null"
        if converted is True or converted is False:
            return "true" if converted else "false"
        if type(converted) is str:
            return converted
        return str(converted)  # a number, or a list/object converted from a tuple or a frozenset

    def dataclass(self, value: Any, depth: int, where: Any) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for field in dataclasses.fields(value):
            name = field.name
            try:
                item = getattr(value, name, None)
            except BaseException as error:
                if _passes_through(error):
                    raise
                _report(UNCONVERTIBLE, (where, name), "a dataclass field could not be read")
                out[name] = _UNREADABLE_TEXT
            else:
                out[name] = self.convert(item, depth + 1, (where, name))
        return out


def _read_pairs(mapping: Any, where: Any) -> list[tuple[Any, Any]]:
    """The (key, value) pairs of `mapping`: through ``items()``, else through its keys and
    ``mapping[key]`` (a value that cannot be read is `_UNREADABLE`); when the iteration itself
    fails, the pairs read before the failure (reported)."""
    try:
        if type(mapping) is dict:
            return list(mapping.items())
        # Each item unpacked; no length hint is asked (a raising __len__ does not matter).
        return [(key, item) for key, item in mapping.items()]
    except BaseException as error:
        if _passes_through(error):
            raise
    pairs: list[tuple[Any, Any]] = []
    try:
        for key in mapping:
            try:
                item = mapping[key]
            except BaseException as error:
                if _passes_through(error):
                    raise
                item = _UNREADABLE
            pairs.append((key, item))
    except BaseException as error:
        _read_part(error, mapping, where, len(pairs), "entries")
    return pairs


def _read_part(error: BaseException, container: Any, where: Any, read: int, what: str) -> None:
    """A container failed while being read: re-raise what must pass, else report what was kept."""
    if _passes_through(error):
        raise error
    _report(
        UNCONVERTIBLE,
        where,
        f"a %s failed while being read; the %d {what} read before were sent",
        type_name(type(container)),
        read,
    )


def json_safe(value: Any, *, datetime_format: Callable[[_dt.datetime], str] | None = None) -> Any:
    """Convert any Python value into one that strict JSON can carry, deterministically.

    The rule (the same for every built-in provider; documented in docs/api.md):

    - ``None``, ``bool``, ``int`` and ``str`` stay as they are; ``str``/``int``/``float``
      subclasses become the plain value they store; an int too large to print in decimal (over
      4300 digits) becomes its hexadecimal text, ``"0x..."``.
    - finite floats stay; NaN and the infinities become ``None`` (JSON null), from a float, a
      ``Decimal`` (a too large one too) or a number-like object.
    - ``datetime`` becomes ISO 8601 in UTC, ``YYYY-MM-DDTHH:MM:SS[.ffffff]+00:00`` (a naive one is
      taken as UTC); with `datetime_format`, the text that function makes of the UTC datetime.
      ``date`` and ``time`` become ``isoformat()``; ``timedelta`` its total seconds (a float).
    - ``Decimal`` becomes a float; ``UUID`` its string form; an ``Enum`` member its converted
      ``value``; an object with ``__index__`` (a numpy integer) that int, else one with
      ``__float__`` (a numpy float, a ``Fraction``) that float.
    - ``bytes``/``bytearray``/``memoryview`` become UTF-8 text, or ``"base64:<data>"`` when they
      are not valid UTF-8.
    - mappings become objects whose keys are strings (other keys are converted and then
      rendered as text: ``None`` -> ``"null"``, ``True`` -> ``"true"``, ``1`` -> ``"1"``); when
      two keys give the same text, the value of the key that was a string wins, else the first.
      A mapping is read through ``items()``, else through its keys; what was read before a
      failure is kept. Lists and tuples become arrays; sets become arrays sorted by (type name,
      text); dataclass instances become objects of their fields.
    - a container met again inside itself becomes ``"<cycle>"``; nesting deeper than 32
      becomes ``"<max depth>"``.
    - anything else becomes its text, ``str(value)`` (else ``repr(value)``), when its class has a
      ``__str__`` or ``__repr__`` of its own, with any memory address (`` at 0x...``) removed;
      else ``"<module.QualName>"`` of its class.
    - a value whose conversion raises (its ``__str__``, ``__float__``, ``tzinfo``, ``.value``,
      ``__class__``...) becomes ``"<unconvertible TypeName>"``; one that cannot even be read out
      of its mapping or dataclass, ``"<unconvertible>"``. Only that value is replaced.

    A mapping always becomes an object, so properties stay an object on the wire. It never
    raises, but for KeyboardInterrupt, and SystemExit on the main thread (either may come from
    a signal handler). Each key collision and each value replaced by a placeholder is reported
    to the sink set with `set_conversion_sink` and logged (rate-limited, without the value).
    """
    cls = type(value)
    if cls is dict or cls is types.MappingProxyType:
        # The common case, flat properties of plain values, without the recursive walk.
        for key, item in value.items():
            kind = type(item)
            if type(key) is not str or not (
                kind in _PLAIN
                or (kind is int and item.bit_length() <= MAX_INT_BITS)
                or (kind is float and _finite(item))
            ):
                break
        else:
            return dict(value)
    conversion = _Conversion(datetime_format)
    result = conversion.convert(value, 0, None)
    if type(result) is not dict and _is_mapping_type(cls):
        # A mapping that claims another class (its __class__ raises): read it all the same.
        conversion.path = {id(value)}
        result = conversion.mapping(value, 0, None)
    return result


def _is_mapping_type(cls: type) -> bool:
    try:
        return issubclass(cls, Mapping)
    except Exception:
        return False
