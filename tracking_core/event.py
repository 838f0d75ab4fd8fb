"""The records that flow through tracking-core, and the ids and times they carry.

`TrackingEvent` is what `track()` produces and every provider receives. `TrackingIdentify` is the
record behind `identify()`; plain providers get its fields as ``identify(user_id, traits)``, the
batching HTTP providers get the record itself (it carries an id and a timestamp like an event).
The JSON conversion rule, `json_safe`, lives in `tracking_core.convert` (re-exported here).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import os
from collections.abc import Mapping
from typing import Any

from .convert import KEY_COLLISION, UNCONVERTIBLE, json_safe, set_conversion_sink

__all__ = [
    "KEY_COLLISION",
    "PLACEHOLDER_IDS",
    "UNCONVERTIBLE",
    "TrackingEvent",
    "TrackingIdentify",
    "json_safe",
    "set_conversion_sink",
    "usable_id",
]

_UTC = _dt.timezone.utc


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


_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_UTC)
_MILLISECOND = _dt.timedelta(milliseconds=1)


def epoch_ms(when: _dt.datetime) -> int:
    """Whole milliseconds since the Unix epoch (exact integer arithmetic, no float rounding);
    a naive datetime is taken as UTC. The time field of Mixpanel and Amplitude events."""
    if when.tzinfo is None or when.utcoffset() is None:
        when = when.replace(tzinfo=_UTC)
    return (when - _EPOCH) // _MILLISECOND


def uuid5_string(namespace: str, name: str) -> str:
    """``str(uuid.uuid5(uuid.UUID(namespace), name))``, without importing `uuid` (which loads
    `platform`): a stable id derived from `name`, the same in every process."""
    import hashlib

    digest = bytearray(
        hashlib.sha1(bytes.fromhex(namespace.replace("-", "")) + name.encode()).digest()
    )
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = digest[:16].hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def utc_from_timestamp(seconds: float) -> _dt.datetime:
    """The aware UTC datetime for a POSIX timestamp (used for events accepted by `track()`)."""
    return _dt.datetime.fromtimestamp(seconds, _UTC)


def normalize_timestamp(value: _dt.datetime) -> _dt.datetime:
    """An aware UTC datetime: naive values are taken as UTC, aware ones converted to UTC."""
    if value.tzinfo is None or value.utcoffset() is None:
        return value.replace(tzinfo=_UTC)
    return value.astimezone(_UTC)
