"""A strict loopback fake of PostHog's ``/batch/`` capture endpoint: a `VendorFake`.

It validates like PostHog's capture service (gzip by header or magic bytes, the body size after
decompression, JSON, the API key's shape, a non-empty batch, an event name and ``distinct_id``
on every event, parseable ``uuid``/``timestamp``/``sent_at``), answers with its statuses and
plain-text messages, and refuses a request with one bad event as a whole. ``strict`` (the
default) also refuses what a careful server-side sender never sends although PostHog takes it:
no ``uuid`` or ``timestamp``, a timestamp without UTC offset or as a number, a non-string
``distinct_id``, a placeholder id such as ``"anonymous"`` (persons are not merged on them).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import uuid
from collections.abc import Mapping
from typing import Any, ClassVar

from tracking_core.fakes import FakeDestination, Refused, VendorFake
from tracking_core.receivers import ReceivedRequest, Reply

__all__ = ["BATCH_BODY_LIMIT", "EVENT_SIZE_LIMIT", "PLACEHOLDER_IDS", "PostHogFake", "destination"]

#: The ``/batch/`` body limit of PostHog's capture service (after decompression).
BATCH_BODY_LIMIT = 20 * 1024 * 1024
#: Events larger than this are discarded with an ingestion warning (the request still gets 200).
EVENT_SIZE_LIMIT = 1_000_000
#: Ids PostHog will not merge persons on (compared case-insensitively); strict mode refuses them.
PLACEHOLDER_IDS = frozenset(
    {"anonymous", "guest", "distinctid", "distinct_id", "id", "not_authenticated", "email"}
    | {"undefined", "true", "false", "[object object]", "nan", "none", "null", "0"}
)
#: The test project key `destination()` expects.
TEST_KEY = "phc_demo_key_0123456789"
_PARSE = "failed to parse request: "


def _check_time(value: Any, field: str, strict: bool) -> None:
    if not isinstance(value, str):
        kind = type(value).__name__
        raise Refused(400, f"{_PARSE}invalid type for {field}: {kind}, expected an ISO 8601 string")
    text = value[:-1] + "+00:00" if value.endswith(("Z", "z")) else value
    try:
        moment = _dt.datetime.fromisoformat(text)
    except ValueError:
        raise Refused(400, f"{_PARSE}invalid {field} {value!r}") from None
    if strict and moment.utcoffset() is None:
        raise Refused(400, f"fake (strict): {field} {value!r} has no UTC offset")


@dataclasses.dataclass(eq=False, repr=False)
class PostHogFake(VendorFake):
    """PostHog's ``/batch/`` (see the module doc).

    Args:
        api_key: the project key to expect; None accepts any well-formed key.
        path_prefix: a proxy prefix the requests must carry (``"proxy"``: ``/proxy/batch/``).
        strict: refuse what a server-side sender must never send (see the module doc).
        max_body_bytes: the body limit after decompression (413 beyond it).
        max_event_bytes: larger events go to `discarded` (the request still succeeds).
        max_events: refuse requests with more events (400; PostHog has no such limit).
        success_body: the JSON body of a 200 answer.
    """

    id_key, user_key, identify_when = "uuid", "distinct_id", ("event", "$identify")
    encodings = frozenset({"", "identity", "gzip", "gzip-js"})
    sniff_gzip = True
    body_errors: ClassVar[Mapping[str, str]] = {
        "encoding": "failed to decode request: unsupported encoding {encoding!r}",
        "gzip": "failed to decode request: invalid gzip data",
        "too_large": "maximum event size exceeded",
        "utf8": "failed to decode request: invalid body encoding",
        "json": _PARSE + "{error}",
    }
    status_messages: ClassVar[Mapping[int, str]] = {
        400: _PARSE + "expected value at line 1 column 1",
        401: "API key is not valid: empty",
        413: "maximum event size exceeded",
        429: "rate limited",
        503: "transient error, please retry",
    }

    api_key: str | None = None
    _: dataclasses.KW_ONLY
    path_prefix: str = ""
    strict: bool = True
    max_body_bytes: int = BATCH_BODY_LIMIT
    max_event_bytes: int = EVENT_SIZE_LIMIT
    max_events: int | None = None
    success_body: Any = dataclasses.field(default_factory=lambda: {"status": 1})
    discarded: list[dict[str, Any]] = dataclasses.field(default_factory=list, init=False)

    def refusal(self, status: int, message: str) -> Reply:
        """The capture service's errors are plain text."""
        return Reply(status, message)

    def clear(self) -> None:
        super().clear()
        self.discarded.clear()

    def handle(self, request: ReceivedRequest) -> Reply:
        if request.method != "POST":
            raise Refused(405, f"method {request.method} not allowed (the sender must POST)")
        prefix = "/" + self.path_prefix.strip("/") if self.path_prefix.strip("/") else ""
        if request.path not in (f"{prefix}/batch", f"{prefix}/batch/"):
            raise Refused(404, f"no route for {request.path}")
        content_type = request.headers.get("content-type", "")
        if content_type.split(";")[0].strip().lower() != "application/json":
            raise Refused(400, f"failed to decode request: content type {content_type!r}")
        payload = self.read_json(request)
        if not isinstance(payload, dict) or "batch" not in payload:
            raise Refused(400, _PARSE + 'expected {"api_key", "batch": [...]}')
        self._check_key(payload.get("api_key", payload.get("token")))
        if not isinstance(payload.get("historical_migration", False), bool):
            raise Refused(400, _PARSE + "historical_migration must be a bool")
        if payload.get("sent_at") is not None:
            _check_time(payload["sent_at"], "sent_at", self.strict)
        batch = payload["batch"]
        if not isinstance(batch, list):
            raise Refused(400, _PARSE + "batch must be an array")
        if not batch:
            raise Refused(400, "request holds no event")
        if self.max_events is not None and len(batch) > self.max_events:
            raise Refused(400, f"fake: {len(batch)} events in one request (max {self.max_events})")
        for event in batch:
            self._check_event(event)
        kept: list[dict[str, Any]] = []
        for event in batch:
            size = len(json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode())
            (self.discarded if size > self.max_event_bytes else kept).append(event)
        self.record(payload, kept)
        return Reply(200, self.success_body)

    def _check_key(self, key: Any) -> None:
        if key is None:
            raise Refused(401, "event submitted without an api_key")
        if not isinstance(key, str):
            raise Refused(400, _PARSE + "api_key must be a string")
        key = key.strip()
        for reason, found in (
            ("empty", not key),
            ("too_long", len(key) > 64),
            ("not_ascii", not key.isascii()),
            ("personal_api_key", key.startswith("phx_")),
            ("null_byte", "\x00" in key),
            ("unknown project API key (fake)", self.api_key not in (None, key)),
        ):
            if found:
                raise Refused(401, f"API key is not valid: {reason}")

    def _check_event(self, event: Any) -> None:
        if not isinstance(event, dict):
            raise Refused(400, _PARSE + "an event is not an object")
        name = event.get("event")
        if not isinstance(name, str) or not name:
            raise Refused(400, "event submitted with an empty event name")
        props = {} if event.get("properties") is None else event["properties"]
        if not isinstance(props, dict):
            raise Refused(400, _PARSE + "properties must be an object")
        distinct_id = event.get("distinct_id", event.get("$distinct_id", props.get("distinct_id")))
        if distinct_id is None:
            raise Refused(400, "event submitted without a distinct_id")
        if self.strict and not isinstance(distinct_id, str):
            raise Refused(400, f"fake (strict): distinct_id {distinct_id!r} is not a string")
        text = str(distinct_id).strip()
        if not text:
            raise Refused(400, "event submitted with an empty distinct_id")
        if self.strict and text.lower() in PLACEHOLDER_IDS:
            raise Refused(400, f"fake (strict): placeholder distinct_id {text!r}")
        if event.get("uuid") in (None, ""):
            if self.strict:
                raise Refused(400, "fake (strict): event without a uuid (the dedupe key)")
        else:
            try:
                uuid.UUID(str(event["uuid"]))
            except ValueError:
                raise Refused(400, f"{_PARSE}invalid uuid {event['uuid']!r}") from None
        if event.get("timestamp") is not None:
            _check_time(event["timestamp"], "timestamp", self.strict)
        elif self.strict:
            raise Refused(400, "fake (strict): event without a timestamp")
        for holder in (event, props):
            for field in ("$set", "$set_once"):
                if field in holder and not isinstance(holder[field], dict):
                    raise Refused(400, f"{_PARSE}{field} must be an object")


def destination() -> FakeDestination:
    """A `PostHogFake` expecting `TEST_KEY`, and the variables that point PostHog at it."""
    return FakeDestination(
        "posthog",
        PostHogFake(TEST_KEY),
        lambda url: {"POSTHOG_API_KEY": TEST_KEY, "POSTHOG_HOST": url},
    )
