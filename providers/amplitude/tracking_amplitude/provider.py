"""Amplitude: the wire mapping (HTTP V2 API, ``/2/httpapi``); the settings are in
`tracking_amplitude.settings` (re-exported here)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from typing import Any

from tracking_core import DropReason, TrackingEvent, TrackingIdentify, __version__, json_safe
from tracking_core.event import PLACEHOLDER_IDS, epoch_ms, usable_id
from tracking_core.http import HttpProvider, HttpRequest, HttpResponse, Outcome, SkipItem, WireItem
from tracking_core.http.wire import default_outcome, dumps, join_json, parse_retry_after

from .settings import DEFAULT_HOST, AmplitudeSettings

__all__ = [
    "DEFAULT_HOST",
    "INVALID_IDS",
    "MIN_ID_LENGTH",
    "PATH",
    "AmplitudeProvider",
    "AmplitudeSettings",
]

#: The HTTP V2 API's path, appended to the host (which may carry a proxy's path prefix).
PATH = "/2/httpapi"
#: Amplitude's default shortest accepted ``user_id``/``device_id``.
MIN_ID_LENGTH = 5
#: Placeholder ids Amplitude refuses with a 400 (compared case-insensitively).
INVALID_IDS = frozenset(
    "anonymous nil none null n/a na undefined unknown 00000000-0000-0000-0000-000000000000 {} "
    "lmy47d 0 -1".split()
) | {""}
_NOT_IDS = INVALID_IDS | PLACEHOLDER_IDS
#: Seconds Amplitude asks throttled users/devices to pause after a 429 (it sends no Retry-After).
THROTTLE_PAUSE = 30.0

_ROUTE = "httpapi"
# Items whose shortest id is N (< MIN_ID_LENGTH) go to the route "httpapi:N", whose requests carry
# "options": {"min_id_length": N}. The core never mixes routes in one request, so build_request
# knows the value from the route alone, without decoding the items.
_SHORT_ROUTE = _ROUTE + ":"
_LIBRARY = f"tracking-core/{__version__}"
#: 400 answer keys listing the events Amplitude refused (a map field -> indexes, or a list).
_REJECTED_KEYS = (
    "events_with_invalid_fields",
    "events_with_missing_fields",
    "events_with_invalid_id_lengths",
    "silenced_events",
)


def _short_route(route: str) -> int | None:
    """The ``min_id_length`` a route asks for, or None for the default route."""
    if route.startswith(_SHORT_ROUTE):
        return int(route[len(_SHORT_ROUTE) :])
    return None


def _indexes(value: Any) -> set[int]:
    """Item indexes from an answer field: a list of ints, or a map of field -> list of ints."""
    if isinstance(value, Mapping):
        found: set[int] = set()
        for part in value.values():
            found |= _indexes(part)
        return found
    if isinstance(value, list):
        return {i for i in value if isinstance(i, int) and not isinstance(i, bool)}
    return set()


def _names(value: Any) -> set[str]:
    """Ids from an ``exceeded_daily_quota_*`` field: a map id -> count, or a list of ids."""
    if isinstance(value, (Mapping, list)):
        return {str(key) for key in value}  # a map's keys, or a list's items
    return set()


class AmplitudeProvider(HttpProvider):
    """Events (and identifies, as ``$identify`` events) to Amplitude's HTTP V2 API.

    ``anonymous_id`` is sent as ``device_id``; an event with no usable id is dropped as
    ``unsupported``. Ids under 5 characters get ``"options": {"min_id_length": N}``. Success
    is the body's ``code``: a 400 listing events drops them and resends the rest at once; a
    429 waits 30 s (or ``Retry-After``) and drops events of users/devices over their quota.
    """

    name = "amplitude"
    #: Amplitude takes fewer than 2000 events per request...
    max_events = 1999
    #: ... and bodies under 1 MB.
    max_request_bytes = 999_000
    max_item_bytes = 990_000

    settings: AmplitudeSettings

    def __init__(self, settings: AmplitudeSettings, *, throttle_pause: float = THROTTLE_PAUSE):
        super().__init__(settings)
        self._url = settings.host + PATH
        self._head = b'{"api_key":' + dumps(settings.api_key) + b","
        self._throttle_pause = throttle_pause

    def encode(self, item: TrackingEvent | TrackingIdentify) -> WireItem:
        """One Amplitude event; raises `SkipItem` when it has no id Amplitude accepts."""
        extra: dict[str, Any]
        if isinstance(item, TrackingIdentify):
            ids, name = self._ids(item.user_id, None), "$identify"
            extra = {"user_properties": {"$set": json_safe(item.traits)}}
        else:
            ids, name = self._ids(item.user_id, item.anonymous_id), item.name
            extra = {"event_properties": json_safe(item.properties)}
        payload = {
            "event_type": name,
            **ids,
            "time": epoch_ms(item.timestamp),
            "insert_id": item.event_id,
            **extra,
            "library": _LIBRARY,
        }
        shortest = min(len(value) for value in ids.values())
        route = _ROUTE if shortest >= MIN_ID_LENGTH else f"{_SHORT_ROUTE}{shortest}"
        return WireItem(payload, route)

    @staticmethod
    def _ids(user_id: str | None, anonymous_id: str | None) -> dict[str, str]:
        pairs = (("user_id", user_id), ("device_id", anonymous_id))
        ids = {key: usable for key, value in pairs if (usable := usable_id(value, _NOT_IDS))}
        if ids:
            return ids
        given = [repr(v) for v in (user_id, anonymous_id) if v]
        if given:
            why = f"its id {' and '.join(given)} is a placeholder Amplitude rejects"
        else:
            why = "it has neither a user_id nor an anonymous_id (device_id)"
        raise SkipItem(DropReason.UNSUPPORTED, f"Amplitude cannot take this event: {why}")

    def build_request(self, route: str, items: Sequence[bytes], batch_id: str) -> HttpRequest:
        """``{"api_key", "options"?, "events": [...]}`` for ``POST {host}/2/httpapi``.

        No gzip: whether ``/2/httpapi`` accepts ``Content-Encoding: gzip`` is unconfirmed.
        """
        short = _short_route(route)
        options = b"" if short is None else b'"options":{"min_id_length":%d},' % short
        body = self._head + options + b'"events":' + join_json(items) + b"}"
        return HttpRequest(self._url, body, {"Accept": "application/json"})

    def read_response(self, route: str, response: HttpResponse) -> Outcome:
        """Reads the JSON body's ``code`` (Amplitude's status), not only the HTTP status."""
        data = response.json()
        code = data.get("code") if isinstance(data, dict) else None
        if not isinstance(code, int) or isinstance(code, bool):
            if 200 <= response.status < 300:
                # Not Amplitude's answer (a captive portal, a misrouted proxy): never count it.
                return Outcome(
                    "reject",
                    f"HTTP {response.status} without Amplitude's JSON code: {response.text()}",
                )
            return default_outcome(response)
        assert isinstance(data, dict)
        error = str(data.get("error") or "")
        if 200 <= code < 300:
            return Outcome("delivered")
        if code == 400:
            return self._bad_request(data, error, response)
        if code == 429:
            return self._throttled(data, error, response)
        return default_outcome(dataclasses.replace(response, status=code))

    def _bad_request(self, data: dict[str, Any], error: str, response: HttpResponse) -> Outcome:
        missing = data.get("missing_field")
        if missing:  # the request itself is wrong
            return Outcome("reject", f"Amplitude 400: {error} (missing_field {missing})")
        bad: set[int] = set()
        for key in _REJECTED_KEYS:
            bad |= _indexes(data.get(key))
        bad = {i for i in bad if 0 <= i < response.count}
        if not bad:  # "Invalid API key", "Invalid JSON request body"...: nothing to keep
            return Outcome("reject", f"Amplitude 400: {error or response.text()}")
        # Amplitude took none of the batch: resend the valid events at once, without the bad.
        return Outcome("retry", f"Amplitude 400: {error}", retry_after=0.0, rejected=sorted(bad))

    def _throttled(self, data: dict[str, Any], error: str, response: HttpResponse) -> Outcome:
        delay = parse_retry_after(response.headers.get("retry-after"))
        over_quota = self._over_daily_quota(data, response)
        reason = f"Amplitude 429: {error}"
        if over_quota:
            reason += f" ({len(over_quota)} events over their user/device daily quota dropped)"
        return Outcome(
            "retry",
            reason,
            retry_after=self._throttle_pause if delay is None else delay,
            rejected=over_quota,
        )

    @staticmethod
    def _over_daily_quota(data: dict[str, Any], response: HttpResponse) -> list[int]:
        """Indexes of the throttled events whose user or device is over its daily quota."""
        users = _names(data.get("exceeded_daily_quota_users"))
        devices = _names(data.get("exceeded_daily_quota_devices"))
        items = response.items
        if not (users or devices) or not items:
            return []
        candidates = _indexes(data.get("throttled_events")) or set(range(len(items)))
        found = []
        for index in sorted(candidates):
            if not 0 <= index < len(items):
                continue
            try:
                event = json.loads(items[index])
            except ValueError:
                continue
            if event.get("user_id") in users or event.get("device_id") in devices:
                found.append(index)
        return found
