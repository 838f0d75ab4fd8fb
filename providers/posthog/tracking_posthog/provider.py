"""PostHog: the wire mapping (``POST {host}/batch/``); the settings are in
`tracking_posthog.settings` (re-exported here)."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence
from typing import Any

from tracking_core import DropReason, TrackingEvent, TrackingIdentify, __version__
from tracking_core.event import PLACEHOLDER_IDS, usable_id, uuid4_strings
from tracking_core.http import HttpProvider, HttpRequest, HttpResponse, Outcome, SkipItem, WireItem
from tracking_core.http.wire import default_outcome, dumps, join_json
from tracking_core.kit import json_object

from .settings import DEFAULT_HOST, PostHogSettings

__all__ = ["DEFAULT_HOST", "LIB_NAME", "PostHogProvider", "PostHogSettings"]

#: What ``$lib`` says in every event.
LIB_NAME = "tracking-core"

#: Events per request. PostHog documents no count limit for ``/batch/``; this keeps one
#: request (and one retry) to a sensible size.
MAX_EVENTS_PER_REQUEST = 1000
#: PostHog refuses ``/batch/`` bodies over 20 MiB (after decompression); stay under 20 MB.
MAX_REQUEST_BYTES = 20_000_000
#: PostHog discards events over 1 MB (an ingestion warning); such events are dropped here and
#: counted as ``too_large`` instead of being sent for nothing.
MAX_EVENT_BYTES = 1_000_000

#: PostHog's own non-ids (it will not merge persons on them) with the common ones.
_PLACEHOLDERS = PLACEHOLDER_IDS | {
    "distinctid",
    "distinct_id",
    "id",
    "not_authenticated",
    "email",
}


def _iso(moment: _dt.datetime) -> str:
    if moment.tzinfo is None or moment.utcoffset() is None:
        moment = moment.replace(tzinfo=_dt.timezone.utc)
    return moment.isoformat()


class PostHogProvider(HttpProvider):
    """Sends events and identifies to PostHog's ``/batch/`` endpoint.

    - each event becomes ``{"event", "distinct_id", "properties", "timestamp", "uuid"}`` with
      ``uuid`` = the event id (PostHog's dedupe key) and ``timestamp`` in ISO 8601 with offset;
    - ``distinct_id`` is the user id, else the anonymous id, else a fresh random UUID with
      ``$process_person_profile: false`` (an anonymous server event: no person is created);
    - ``identify(user_id, traits)`` becomes a ``$identify`` event with ``properties.$set``;
    - every event carries ``$lib``/``$lib_version`` and, unless the caller gave ``$ip`` or
      ``$geoip_disable``, ``$geoip_disable: true`` (the request comes from a server, whose
      address says nothing about the user's location).

    Only HTTP 200 is success. Other 2xx are retried (PostHog's SDKs do the same); redirects are
    not followed and drop the batch with the target in the log line.
    """

    name = "posthog"
    max_events = MAX_EVENTS_PER_REQUEST
    max_request_bytes = MAX_REQUEST_BYTES
    max_item_bytes = MAX_EVENT_BYTES

    settings: PostHogSettings

    def __init__(self, settings: PostHogSettings) -> None:
        super().__init__(settings)
        self._url = settings.batch_url
        self._head = b'{"api_key":' + dumps(settings.api_key) + b',"historical_migration":false'

    def encode(self, item: TrackingEvent | TrackingIdentify) -> WireItem:
        """One ``/batch/`` event for a tracked event or an identify."""
        if isinstance(item, TrackingIdentify):
            name = "$identify"
            distinct_id = usable_id(item.user_id, _PLACEHOLDERS) or ""
            if not distinct_id:
                raise SkipItem(
                    DropReason.REJECTED,
                    "identify() with a blank or placeholder user id (PostHog refuses it)",
                )
            properties: dict[str, Any] = {"$set": json_object(item.traits)}
        else:
            name = item.name
            properties = json_object(item.properties)
            for operation in ("$set", "$set_once"):
                # PostHog refuses the whole request when a person operation is not an object.
                if operation in properties and not isinstance(properties[operation], dict):
                    del properties[operation]
            distinct_id = (
                usable_id(item.user_id, _PLACEHOLDERS)
                or usable_id(item.anonymous_id, _PLACEHOLDERS)
                or ""
            )
            if not distinct_id:
                distinct_id = uuid4_strings(1)[0]
                properties["$process_person_profile"] = False
        properties["$lib"] = LIB_NAME
        properties["$lib_version"] = __version__
        if "$ip" not in properties:
            properties.setdefault("$geoip_disable", True)
        return WireItem(
            {
                "event": name,
                "distinct_id": distinct_id,
                "properties": properties,
                "timestamp": _iso(item.timestamp),
                "uuid": item.event_id,
            }
        )

    def build_request(self, route: str, items: Sequence[bytes], batch_id: str) -> HttpRequest:
        """``{"api_key", "historical_migration": false, "sent_at", "batch"}``; ``sent_at`` is
        the time of this attempt (PostHog corrects client clock skew with it)."""
        sent_at = _dt.datetime.now(_dt.timezone.utc).isoformat()
        body = b"".join(
            (self._head, b',"sent_at":', dumps(sent_at), b',"batch":', join_json(items), b"}")
        )
        return HttpRequest(self._url, body, gzip=True)

    def read_response(self, route: str, response: HttpResponse) -> Outcome:
        """Exactly 200 is success; the body is not read (its shape is not a contract)."""
        status = response.status
        if status == 200:
            return Outcome("delivered")
        if 200 < status < 300:
            return Outcome("retry", f"HTTP {status} (PostHog accepts a batch with 200)")
        if 300 <= status < 400:
            target = response.headers.get("location", "?")
            return Outcome(
                "reject",
                f"HTTP {status} redirect to {target} (not followed): "
                f"set {PostHogSettings.variable('host').name} to the ingestion host",
            )
        if status == 401:
            return Outcome(
                "reject",
                f"HTTP 401: {response.text()} (check "
                f"{PostHogSettings.variable('api_key').name}: the project API key)",
            )
        return default_outcome(response)
