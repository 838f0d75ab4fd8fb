"""PostHog: the settings declaration and the wire mapping (``POST {host}/batch/``)."""

from __future__ import annotations

import dataclasses
import datetime as _dt
import urllib.parse
from collections.abc import Sequence
from typing import Any

from tracking_core import (
    DropReason,
    SettingsError,
    TrackingEvent,
    TrackingIdentify,
    __version__,
)
from tracking_core.event import PLACEHOLDER_IDS, usable_id, uuid4_strings
from tracking_core.http import HttpProvider, HttpRequest, HttpResponse, Outcome, SkipItem, WireItem
from tracking_core.http.wire import default_outcome, dumps, join_json
from tracking_core.kit import ProviderSettings, json_object, url, var

__all__ = ["DEFAULT_HOST", "LIB_NAME", "PostHogProvider", "PostHogSettings"]

#: PostHog Cloud US ingestion host.
DEFAULT_HOST = "https://us.i.posthog.com"
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

# The app hosts are not ingestion hosts; posthog-python rewrites them the same way.
_APP_HOSTS = {
    "https://app.posthog.com": "https://us.i.posthog.com",
    "https://us.posthog.com": "https://us.i.posthog.com",
    "https://eu.posthog.com": "https://eu.i.posthog.com",
}


def _api_key(variable: str, key: str) -> str:
    """`key`, unless PostHog's capture refuses it (``validate_token``); never repeats it."""
    if len(key) > 64:
        problem = "is longer than 64 characters; expected a project API key"
    elif not key.isascii():
        problem = "contains non-ASCII characters; expected the project API key (phc_...)"
    elif "\x00" in key:
        problem = "contains a NUL character"
    elif key.startswith("phx_"):
        problem = "holds a personal API key (phx_...), which capture refuses; use the project "
        problem += "API key (phc_...)"
    else:
        return key
    raise SettingsError(variable, problem)


def _ingestion_host(variable: str, text: str) -> str:
    """A base URL (`tracking_core.kit.url`), with PostHog's app hosts made ingestion hosts."""
    host = url(variable, text)
    parts = urllib.parse.urlsplit(host)
    if parts.path in ("", "/") and not parts.query and parts.port is None:
        return _APP_HOSTS.get(f"{parts.scheme.lower()}://{(parts.hostname or '').lower()}", host)
    return host


@dataclasses.dataclass(frozen=True)
class PostHogSettings(ProviderSettings):
    """The PostHog provider's configuration (the key is hidden from ``repr``)."""

    api_key: str = var(
        "POSTHOG_API_KEY", "project API key (phc_...)", required=True, secret=True, check=_api_key
    )
    host: str = var(
        "POSTHOG_HOST",
        "ingestion base URL (EU: https://eu.i.posthog.com); a path prefix (a proxy) is kept",
        default=DEFAULT_HOST,
        check=_ingestion_host,
    )

    @property
    def batch_url(self) -> str:
        """The URL every batch is posted to."""
        return f"{self.host}/batch/"


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
