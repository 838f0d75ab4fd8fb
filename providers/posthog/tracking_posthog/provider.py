"""PostHog: the settings block and the wire mapping (``POST {host}/batch/``).

Everything else (batching, retries with backoff, ``Retry-After``, 413 splits, gzip, counting,
logging) is done by `tracking_core.http.HttpProvider` and the engine.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import urllib.parse
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from tracking_core import (
    DropReason,
    SettingsError,
    TrackingEvent,
    TrackingIdentify,
    __version__,
    json_safe,
)
from tracking_core.event import PLACEHOLDER_IDS, usable_id
from tracking_core.http import (
    HttpProvider,
    HttpRequest,
    HttpResponse,
    Outcome,
    SkipItem,
    WireItem,
    default_outcome,
    dumps,
    join_json,
)
from tracking_core.settings import env_secret, env_url

__all__ = [
    "API_KEY_VARIABLE",
    "DEFAULT_HOST",
    "HOST_VARIABLE",
    "LIB_NAME",
    "MAX_EVENTS_PER_REQUEST",
    "MAX_EVENT_BYTES",
    "MAX_REQUEST_BYTES",
    "PostHogProvider",
    "PostHogSettings",
]

#: The variable that enables the provider (``POSTHOG_API_KEY_FILE`` is accepted too).
API_KEY_VARIABLE = "POSTHOG_API_KEY"
#: The variable that overrides the ingestion host (a path prefix is allowed).
HOST_VARIABLE = "POSTHOG_HOST"
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
_MAX_KEY_LENGTH = 64


def _key_problem(key: str) -> str | None:
    """Why PostHog's capture service would refuse `key` (its ``validate_token``), or None.

    The text never repeats the key.
    """
    if len(key) > _MAX_KEY_LENGTH:
        return f"is longer than {_MAX_KEY_LENGTH} characters; expected a project API key"
    if not key.isascii():
        return "contains non-ASCII characters; expected the project API key (phc_...)"
    if "\x00" in key:
        return "contains a NUL character"
    if key.startswith("phx_"):
        return (
            "holds a personal API key (phx_...), which capture refuses; "
            "use the project API key (phc_...)"
        )
    return None


def _ingestion_host(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.path in ("", "/") and not parts.query:
        base = f"{parts.scheme.lower()}://{(parts.hostname or '').lower()}"
        if parts.port is None and base in _APP_HOSTS:
            return _APP_HOSTS[base]
    return url


@dataclasses.dataclass(frozen=True)
class PostHogSettings:
    """The PostHog provider's configuration.

    Attributes:
        api_key: the project API key (``phc_...``); hidden from ``repr``.
        host: the ingestion base URL without a trailing slash; it may carry a path prefix
            (a reverse proxy), and ``/batch/`` is appended to it.
    """

    api_key: str = dataclasses.field(repr=False)
    host: str = DEFAULT_HOST

    @property
    def batch_url(self) -> str:
        """The URL every batch is posted to."""
        return f"{self.host}/batch/"

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> PostHogSettings | None:
        """Read ``POSTHOG_API_KEY`` (or ``POSTHOG_API_KEY_FILE``) and ``POSTHOG_HOST``.

        Returns None when no key is configured (the provider stays off).

        Raises:
            tracking_core.SettingsError: a malformed value; the message names the variable and
                never contains the key.
        """
        api_key = env_secret(environ, API_KEY_VARIABLE)
        if api_key is None:
            return None
        problem = _key_problem(api_key)
        if problem is not None:
            direct = (environ.get(API_KEY_VARIABLE) or "").strip()
            variable = API_KEY_VARIABLE if direct else f"{API_KEY_VARIABLE}_FILE"
            raise SettingsError(variable, problem)
        host = env_url(environ, HOST_VARIABLE, DEFAULT_HOST) or DEFAULT_HOST
        return cls(api_key=api_key, host=_ingestion_host(host))


#: PostHog's own non-ids (it will not merge persons on them) with the common ones.
_PLACEHOLDERS = PLACEHOLDER_IDS | {
    "distinctid",
    "distinct_id",
    "id",
    "not_authenticated",
    "email",
}


def _properties(values: Mapping[str, Any]) -> dict[str, Any]:
    converted = json_safe(dict(values))
    return converted if isinstance(converted, dict) else {}


def _iso(moment: _dt.datetime) -> str:
    if moment.tzinfo is None or moment.utcoffset() is None:
        moment = moment.replace(tzinfo=_dt.timezone.utc)
    return moment.isoformat()


class PostHogProvider(HttpProvider):
    """Sends events and identifies to PostHog's ``/batch/`` endpoint.

    Wire mapping:

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

    def __init__(self, settings: PostHogSettings) -> None:
        self._settings = settings
        self._url = settings.batch_url
        self._head = b'{"api_key":' + dumps(settings.api_key) + b',"historical_migration":false'

    @property
    def settings(self) -> PostHogSettings:
        """The configuration this provider was built with."""
        return self._settings

    def secrets(self) -> Sequence[str]:
        """The API key, so that no log line shows it."""
        return (self._settings.api_key,)

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
            properties: dict[str, Any] = {"$set": _properties(item.traits)}
        else:
            name = item.name
            properties = _properties(item.properties)
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
                distinct_id = str(uuid.uuid4())
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
                f"set {HOST_VARIABLE} to the ingestion host",
            )
        if status == 401:
            return Outcome(
                "reject",
                f"HTTP 401: {response.text()} (check {API_KEY_VARIABLE}: the project API key)",
            )
        return default_outcome(response)
