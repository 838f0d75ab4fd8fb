"""Mixpanel: the wire mapping (the settings are in `tracking_mixpanel.settings`, re-exported here).

Events go to ``POST {host}/track?verbose=1`` as a JSON array (with a project secret or a service
account, to ``POST {host}/import?strict=1`` with HTTP Basic auth); identifies to ``POST
{host}/engage?verbose=1`` as ``$set`` profile updates. The core does everything else.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import re
import time
import urllib.parse
from collections.abc import Mapping, Sequence
from typing import Any

from tracking_core import DropReason, TrackingEvent, TrackingIdentify, json_safe
from tracking_core import __version__ as core_version
from tracking_core.event import epoch_ms, usable_id, uuid5_string
from tracking_core.http import (
    HttpProvider,
    HttpRequest,
    HttpResponse,
    Outcome,
    SkipItem,
    WireItem,
    default_outcome,
    join_json,
)

from .settings import (
    DEFAULT_HOST,
    ID_MERGE_MODES,
    ID_MERGE_ORIGINAL,
    ID_MERGE_SIMPLIFIED,
    MixpanelSettings,
)

__all__ = [
    "DEFAULT_HOST",
    "ID_MERGE_MODES",
    "ID_MERGE_ORIGINAL",
    "ID_MERGE_SIMPLIFIED",
    "MixpanelProvider",
    "MixpanelSettings",
]

#: Events per request, on every route (Mixpanel's documented maximum).
MAX_EVENTS = 2000
#: Uncompressed body size per request (Mixpanel: 10 MB).
MAX_REQUEST_BYTES = 10_000_000
#: Encoded size of one event or profile update (Mixpanel: 1 MB).
MAX_ITEM_BYTES = 1_000_000
#: ``/track`` only takes events from the last 5 days (``/import`` has no such window).
TRACK_MAX_AGE = _dt.timedelta(days=5)
#: Mixpanel refuses events stamped more than an hour in the future...
MAX_FUTURE = _dt.timedelta(hours=1)
#: ...or before 1971-01-01.
MIN_TIME = _dt.datetime(1971, 1, 1, tzinfo=_dt.timezone.utc)

_INSERT_ID = re.compile(r"[A-Za-z0-9-]{1,36}")
_INSERT_ID_NAMESPACE = "6f1d3a52-8a0e-4d43-9a39-1c8f5d1f4b7e"

#: Event properties the provider always sets itself (a caller's value for them is replaced).
RESERVED_PROPERTIES = ("token", "distinct_id", "time", "$insert_id", "$user_id", "$device_id")

ROUTE_EVENTS = "events"
ROUTE_ENGAGE = "engage"


def insert_id_for(event_id: str) -> str:
    """The ``$insert_id`` for an event id: the id itself when Mixpanel takes it (a UUID4 string
    does), else a UUID derived from it, so the value is the same on every attempt."""
    if _INSERT_ID.fullmatch(event_id) and usable_id(event_id) is not None:
        return event_id
    return uuid5_string(_INSERT_ID_NAMESPACE, event_id)


def mixpanel_datetime(when: _dt.datetime) -> str:
    """Mixpanel's form for a Date property, ``YYYY-MM-DDTHH:MM:SS`` in UTC ("An ISO formatted
    date YYYY-MM-DDTHH:MM:SS in UTC", docs.mixpanel.com/docs/data-structure/property-reference/
    data-type). A naive value is taken as UTC; microseconds are dropped (truncated)."""
    offset = when.utcoffset()
    if offset is not None:
        when = when - offset
    return (
        f"{when.year:04d}-{when.month:02d}-{when.day:02d}"
        f"T{when.hour:02d}:{when.minute:02d}:{when.second:02d}"
    )


class MixpanelProvider(HttpProvider):
    """Events to ``/track`` (or ``/import``), profile updates to ``/engage`` (two routes)."""

    name = "mixpanel"
    max_events, max_request_bytes, max_item_bytes = MAX_EVENTS, MAX_REQUEST_BYTES, MAX_ITEM_BYTES

    settings: MixpanelSettings

    def __init__(self, settings: MixpanelSettings) -> None:
        super().__init__(settings)
        self._authorization = settings.authorization()

    def encode(self, item: TrackingEvent | TrackingIdentify) -> WireItem:
        """An event -> a ``{"event", "properties"}`` record; an identify -> a ``$set`` update."""
        if isinstance(item, TrackingIdentify):
            return self._encode_identify(item)
        return self._encode_event(item)

    def _encode_event(self, event: TrackingEvent) -> WireItem:
        self._check_time(event.timestamp)
        user_id = usable_id(event.user_id)
        device_id = usable_id(event.anonymous_id)
        if (event.user_id is not None and user_id is None) or (
            event.anonymous_id is not None and device_id is None
        ):
            self.warn(
                "placeholder_id",
                "%s: an empty or placeholder id (like 'anonymous') was left out of an event; "
                "Mixpanel refuses them",
                self.name,
            )
        properties: dict[Any, Any] = {"mp_lib": "tracking-core", "$lib_version": core_version}
        # Server events would otherwise be geolocated at the server's address; a caller's own
        # "ip" property (the end user's address) wins.
        properties["ip"] = "0"
        converted = json_safe(event.properties, datetime_format=mixpanel_datetime)
        for key, value in converted.items():
            if key not in RESERVED_PROPERTIES:
                properties[key] = value
        properties["token"] = self.settings.token
        simplified = self.settings.id_merge == ID_MERGE_SIMPLIFIED
        if user_id is not None:
            distinct_id = user_id
        elif device_id is not None:
            # Simplified ID Merge: what it derives (and Mixpanel's client SDKs send) for a
            # device. Original ID Merge: the anonymous id itself.
            distinct_id = f"$device:{device_id}" if simplified else device_id
        else:
            distinct_id = ""  # Mixpanel's documented value for events that belong to no user
        properties["distinct_id"] = distinct_id
        properties["time"] = epoch_ms(event.timestamp)
        properties["$insert_id"] = insert_id_for(event.event_id)
        if simplified:
            # The properties Simplified ID Merge resolves (and merges) identities from.
            if user_id is not None:
                properties["$user_id"] = user_id
            if device_id is not None:
                properties["$device_id"] = device_id
        return WireItem({"event": event.name, "properties": properties}, ROUTE_EVENTS)

    def _check_time(self, when: _dt.datetime) -> None:
        now = _dt.datetime.fromtimestamp(time.time(), _dt.timezone.utc)
        if when < MIN_TIME:
            raise SkipItem(DropReason.REJECTED, "event time is before 1971 (Mixpanel refuses it)")
        if when > now + MAX_FUTURE:
            raise SkipItem(
                DropReason.REJECTED,
                "event time is more than 1 hour in the future (Mixpanel refuses it)",
            )
        if not self.settings.import_auth and when < now - TRACK_MAX_AGE:
            raise SkipItem(
                DropReason.REJECTED,
                "event is older than 5 days, which /track refuses; set "
                f"{MixpanelSettings.variable('api_secret').name} or a service account to send "
                "through /import",
            )

    def _encode_identify(self, identify: TrackingIdentify) -> WireItem:
        if usable_id(identify.user_id) is None:
            raise SkipItem(
                DropReason.REJECTED,
                "identify() with an empty or placeholder user id (Mixpanel refuses it)",
            )
        update = {
            "$token": self.settings.token,
            "$distinct_id": identify.user_id,
            "$ip": "0",
            "$set": json_safe(identify.traits, datetime_format=mixpanel_datetime),
        }
        return WireItem(update, ROUTE_ENGAGE)

    def build_request(self, route: str, items: Sequence[bytes], batch_id: str) -> HttpRequest:
        """``/engage`` for profile updates (never gzipped); ``/track`` or ``/import`` for events."""
        body = join_json(items)
        host = self.settings.host
        if route == ROUTE_ENGAGE:
            return HttpRequest(f"{host}/engage?verbose=1", body, {}, gzip=False)
        if self._authorization is None:
            return HttpRequest(f"{host}/track?verbose=1", body, {}, gzip=True)
        query = {"strict": "1"}
        if self.settings.uses_service_account and self.settings.project_id:
            query["project_id"] = self.settings.project_id
        url = f"{host}/import?{urllib.parse.urlencode(query)}"
        return HttpRequest(url, body, {"Authorization": self._authorization}, gzip=True)

    def read_response(self, route: str, response: HttpResponse) -> Outcome:
        """Mixpanel's answer: ``/track``/``/engage`` say ``1``/``{"status": 1}`` or ``0``;
        ``/import?strict=1`` lists the records it refused in a 400 and keeps the rest."""
        if route == ROUTE_EVENTS and self._authorization is not None:
            return self._read_import(response)
        return self._read_status(route, response)

    def _read_status(self, route: str, response: HttpResponse) -> Outcome:
        if not 200 <= response.status < 300:
            return _with_error(default_outcome(response), response)
        answer = response.json()
        status: Any = None
        error: Any = None
        if isinstance(answer, Mapping):
            status, error = answer.get("status"), answer.get("error")
        elif isinstance(answer, int) and not isinstance(answer, bool):
            status = answer  # the plain-text "1"/"0" parses as a number
        if status == 1:
            return Outcome("delivered")
        if status == 0:
            where = "/engage" if route == ROUTE_ENGAGE else "/track"
            return Outcome("reject", f"{where} refused the batch: {error or response.text()}")
        self.warn(
            "unexpected_answer",
            "%s: unexpected answer (HTTP %d, %r); counted as delivered",
            self.name,
            response.status,
            response.text(80),
        )
        return Outcome("delivered")

    def _read_import(self, response: HttpResponse) -> Outcome:
        answer = response.json() if response.status == 400 else None
        failed = answer.get("failed_records") if isinstance(answer, Mapping) else None
        records = [
            record
            for record in (failed if isinstance(failed, list) else ())
            if isinstance(record, Mapping) and type(record.get("index")) is int
        ]
        if records:  # strict=1: the other records were imported; do not send them again
            example = f"{records[0].get('field', '?')}: {records[0].get('message', '')}"
            return Outcome(
                "delivered",
                f"/import refused {len(records)} records, e.g. {example}",
                rejected=[record["index"] for record in records],
            )
        return _with_error(default_outcome(response), response)


def _with_error(outcome: Outcome, response: HttpResponse) -> Outcome:
    """`outcome` with Mixpanel's JSON ``error`` text as the reason, when there is one."""
    answer = response.json()
    if isinstance(answer, Mapping) and isinstance(answer.get("error"), str):
        return dataclasses.replace(outcome, reason=f"HTTP {response.status}: {answer['error']}")
    return outcome
