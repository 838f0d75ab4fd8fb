"""What waits in the engine: intake tuples, the records lanes queue, the items providers get.

- An intake tuple is built on the caller's thread, as cheap as a tuple can be:
  ``("t", name, user_id, anonymous_id, time.time() float | datetime, key1, ..., keyN, value1,
  ..., valueN)`` or ``("i", user_id, time.time() float, keys..., values...)``: the properties
  (traits) spread into it, keys then values.
- The dispatcher turns it into a *record* (`build`), its id and UTC time fixed.
- A lane's worker makes the `TrackingEvent` or `TrackingIdentify` just before its provider gets
  it (`materialize`).
"""

from __future__ import annotations

import types
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from ..event import (
    TrackingEvent,
    TrackingIdentify,
    normalize_timestamp,
    utc_from_timestamp,
)

__all__ = ["Item", "ItemsView", "Record", "build", "build_item", "materialize", "record_id"]

#: What a provider gets.
Item = TrackingEvent | TrackingIdentify
#: An event or identify as it waits in a lane.
Record = tuple[Any, ...]

_EMPTY: Mapping[str, Any] = types.MappingProxyType({})


def build(item: tuple[Any, ...], event_id: str) -> Record:
    """The record of an intake tuple: its id and UTC time fixed, as every lane will see them.

    A record is one flat tuple: ``("t", name, time, user_id, anonymous_id, event_id, keys...,
    values...)`` or ``("i", user_id, time, event_id, keys..., values...)``. When the values are
    plain (text, numbers, booleans, None), the garbage collector stops tracking such a tuple
    the first time it looks at it: a backlog of any length then adds nothing to what its full
    collections walk. A `TrackingEvent`, a dict or a nested tuple per queued event would (a
    collection untracks one level of tuples at a time, the outermost last), and those
    collections are pauses of a caller's `track()` and of an asyncio loop. The worker makes the
    `TrackingEvent` just before its provider gets it (`materialize`, `ItemsView`).
    """
    if item[0] == "t":
        ts = item[4]
        when = utc_from_timestamp(ts) if type(ts) is float else normalize_timestamp(ts)
        return ("t", item[1], when, item[2], item[3], event_id, *item[5:])
    return ("i", item[1], utc_from_timestamp(item[2]), event_id, *item[3:])


def build_item(item: Item) -> Record:
    """The record of an event or identify made by the application (`submit_event`): its id
    and timestamp kept as they are."""
    if isinstance(item, TrackingEvent):
        when = normalize_timestamp(item.timestamp)
        head: tuple[Any, ...] = ("t", item.name, when, item.user_id, item.anonymous_id)
        props: Mapping[str, Any] = item.properties
    else:
        head = ("i", item.user_id, normalize_timestamp(item.timestamp))
        props = item.traits
    snapshot = dict(props)
    return (*head, item.event_id, *snapshot, *snapshot.values())


def record_id(record: Record) -> str:
    """The event id of `record`."""
    return record[5] if record[0] == "t" else record[3]  # type: ignore[no-any-return]


def materialize(records: Sequence[Record], read_only: bool = False) -> list[Item]:
    """The events and identifies of `records`. With `read_only` (a plain provider, which may
    keep what it is given), properties are read-only views: one snapshot is shared by every
    provider, so none may change what the others see."""
    return [_item(record, read_only) for record in records]


def _item(record: Record, read_only: bool = False) -> Item:
    if record[0] == "t":
        props = _pairs(record, 6)
        values = types.MappingProxyType(props) if read_only and props else props
        return TrackingEvent(record[1], values, *record[2:6])
    return TrackingIdentify(record[1], _pairs(record, 4), record[2], record[3])


class ItemsView(Sequence[Item]):
    """The items of `records`, each made when it is read (`materialize` makes them all at
    once). For the library's own wire mappings, which read each item once: an item then lives
    only while it is encoded, so a batch of a thousand never outlives the young garbage
    collections, and the full collections (which pause every thread) stay as rare as the
    application alone makes them."""

    __slots__ = ("_records",)

    def __init__(self, records: Sequence[Record]) -> None:
        self._records = records

    def __len__(self) -> int:
        return len(self._records)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return ItemsView(self._records[index])
        return _item(self._records[index])

    def __iter__(self) -> Iterator[Item]:
        return map(_item, self._records)


def _pairs(record: Record, start: int) -> Mapping[str, Any]:
    """The properties spread into `record` from `start` on (keys, then values), as a dict."""
    count = (len(record) - start) // 2
    if not count:
        return _EMPTY
    return dict(zip(record[start : start + count], record[start + count :], strict=True))
