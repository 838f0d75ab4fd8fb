"""What a stream entry holds: one event or identify as JSON, with its id and timestamp.

``{"type": "track", "id": ..., "time": ..., "name": ..., "user_id": ..., "anonymous_id": ...,
"properties": {...}}`` or ``{"type": "identify", "id": ..., "time": ..., "user_id": ...,
"traits": {...}}`` in the entry's one field, ``event``. The time is ISO 8601 in UTC with
microseconds, so `decode` gives back the very id and timestamp `encode` was given: a relay
re-sends the event the application tracked, and the vendors deduplicate on its id.
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Mapping
from typing import Any

from tracking_core import TrackingEvent, TrackingIdentify
from tracking_core.kit import json_object

__all__ = ["FIELD", "Item", "decode", "encode"]

#: The entry's field that holds the JSON.
FIELD = b"event"

Item = TrackingEvent | TrackingIdentify

_encoder = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def _time(moment: _dt.datetime) -> str:
    if moment.tzinfo is None or moment.utcoffset() is None:
        moment = moment.replace(tzinfo=_dt.timezone.utc)
    return moment.astimezone(_dt.timezone.utc).isoformat(timespec="microseconds")


def encode(item: Item) -> bytes:
    """The JSON of `item` (properties and traits through `json_object`)."""
    payload: dict[str, Any]
    if isinstance(item, TrackingIdentify):
        payload = {"type": "identify", "id": item.event_id, "time": _time(item.timestamp)}
        payload.update(user_id=item.user_id, traits=json_object(item.traits))
    else:
        payload = {"type": "track", "id": item.event_id, "time": _time(item.timestamp)}
        payload.update(name=item.name, user_id=item.user_id, anonymous_id=item.anonymous_id)
        payload["properties"] = json_object(item.properties)
    return _encoder.encode(payload).encode()


def _text(data: Mapping[str, Any], name: str, *, optional: bool = False) -> Any:
    value = data.get(name)
    if (value is None and optional) or (isinstance(value, str) and value):
        return value
    raise ValueError(f"{name!r} is missing or not a non-empty string")


def decode(fields: Mapping[bytes, bytes]) -> Item:
    """The event or identify an entry holds. Raises ValueError when it holds none."""
    raw = fields.get(FIELD)
    if raw is None:
        raise ValueError(f"no {FIELD.decode()!r} field")
    data = json.loads(raw)
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    when = _dt.datetime.fromisoformat(_text(data, "time"))
    if when.tzinfo is None:
        raise ValueError("'time' has no UTC offset")
    kind, event_id = data.get("type"), _text(data, "id")
    values = data.get("traits" if kind == "identify" else "properties")
    if not isinstance(values, dict):
        raise ValueError("'properties' or 'traits' is not an object")
    if kind == "identify":
        return TrackingIdentify(_text(data, "user_id"), values, when, event_id)
    if kind != "track":
        raise ValueError(f"unknown type {kind!r:.40}")
    user, anonymous = (
        _text(data, "user_id", optional=True),
        _text(data, "anonymous_id", optional=True),
    )
    return TrackingEvent(_text(data, "name"), values, when, user, anonymous, event_id)
