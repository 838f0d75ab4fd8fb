"""A strict loopback fake of Amplitude's HTTP V2 API (``POST /2/httpapi``): a `VendorFake`.

It validates like Amplitude and answers with its JSON bodies, which carry ``code``: POST to
``{prefix}/2/httpapi``, plain ``application/json`` (no gzip), under 1 MB and 2000 events (413),
an ``api_key`` and ``events``. Each event: an ``event_type``; ``user_id``/``device_id`` strings,
no placeholder (shorter than ``options.min_id_length``, default 5: removed; an event left
without id is invalid); ``time`` in integer milliseconds; object properties, operations
(``$set``...) only on ``$identify`` and not mixed with plain keys. One bad event refuses the
request: 400 with ``events_with_invalid_fields``/``..._missing_fields``. Accepted events are
deduplicated by ``insert_id`` per device (else user) into `duplicates`, as Amplitude does.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, ClassVar

from tracking_core.fakes import FakeDestination, Refused, VendorFake
from tracking_core.receivers import ReceivedRequest, Reply

from .provider import INVALID_IDS, MIN_ID_LENGTH, PATH

__all__ = ["AmplitudeFake", "destination", "error_reply"]

#: A body of this many bytes or more, or this many events or more, gets a 413.
MAX_BODY_BYTES, MAX_EVENTS = 1_000_000, 2000
_MILLIS = range(10**11, 10**14)  # epoch ms; below: seconds, above: microseconds
#: The user-property operations Amplitude knows.
OPERATIONS = frozenset({"$set", "$setOnce", "$add", "$append", "$prepend", "$unset"})
OPERATIONS |= {"$preInsert", "$postInsert", "$remove", "$clearAll"}
#: The API key `destination()` expects.
TEST_KEY = "demo-amplitude-key"
_ID_FIELDS = ("user_id", "device_id")
_Problems = list[tuple[str, bool]]
_BAD_BODY = "Invalid JSON request body"
_MISSING = "Request missing required field"


def error_reply(
    code: int, error: str = "", *, headers: Mapping[str, str] | None = None, **fields: Any
) -> Reply:
    """An Amplitude answer: HTTP `code` with ``{"code": code, "error": error, **fields}``
    (``throttled_events=[0]``...) and the response `headers` (Amplitude sends no Retry-After)."""
    return Reply(code, {"code": code, "error": error, **fields}, headers=dict(headers or {}))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _valid_user_properties(event: dict[str, Any]) -> bool:
    value = event["user_properties"]
    if not isinstance(value, dict):
        return False
    ops = [key for key in value if isinstance(key, str) and key.startswith("$")]
    if ops and (event.get("event_type") != "$identify" or len(ops) != len(value)):
        return False  # operations only on $identify, and never mixed with plain keys
    return all(k in OPERATIONS and (k == "$clearAll" or isinstance(value[k], dict)) for k in ops)


def _problems(event: dict[str, Any], min_length: int) -> tuple[dict[str, Any], _Problems]:
    """The event as Amplitude keeps it (too-short ids removed) and its problems, as
    ``(field, missing)`` pairs."""
    kept = dict(event)
    problems: _Problems = []
    event_type = event.get("event_type")
    if not isinstance(event_type, str) or not event_type:
        problems.append(("event_type", event_type is None))
    present = [field for field in _ID_FIELDS if event.get(field) is not None]
    if not present:
        problems.append(("user_id", True))
    for field in present:
        if not isinstance(event[field], str) or event[field].lower() in INVALID_IDS:
            problems.append((field, False))
        elif len(event[field]) < min_length:
            del kept[field]  # Amplitude removes a too-short id
    if present and not any(field in kept for field in _ID_FIELDS):
        problems += [(field, False) for field in present]  # nothing identifies the event
    wrong = {
        "time": not (_is_int(event.get("time")) and event["time"] in _MILLIS),
        "insert_id": not isinstance(event.get("insert_id"), str) or not event["insert_id"],
        "event_properties": not isinstance(event.get("event_properties"), dict),
        "user_properties": "user_properties" in event and not _valid_user_properties(event),
    }
    problems += [(field, False) for field, bad in wrong.items() if field in event and bad]
    return kept, problems


class AmplitudeFake(VendorFake):
    """Amplitude's ``/2/httpapi`` (see the module doc). `api_key`: the key requests must carry
    (None: any string); `prefix`: a path prefix in front of ``/2/httpapi`` (a proxy)."""

    max_body_bytes = MAX_BODY_BYTES - 1
    encodings = frozenset({"", "identity"})
    id_key, properties_key = "insert_id", "event_properties"
    identify_when = ("event_type", "$identify")
    body_errors: ClassVar[Mapping[str, str]] = {
        **dict.fromkeys(("encoding", "gzip", "utf8", "json"), _BAD_BODY),
        "too_large": "Payload too large",
    }

    def __init__(self, api_key: str | None = None, *, prefix: str = "") -> None:
        super().__init__()
        self.api_key = api_key
        self.path = prefix.rstrip("/") + PATH

    def refusal(self, status: int, message: str) -> Reply:
        return error_reply(status, message)

    def dedupe_key(self, item: Mapping[str, Any]) -> tuple[str, str] | None:
        owner = item.get("device_id") or f"user:{item.get('user_id')}"
        return None if item.get("insert_id") is None else (str(item["insert_id"]), str(owner))

    def handle(self, request: ReceivedRequest) -> Reply:
        if request.path != self.path:
            raise Refused(400, "Invalid request path")
        if request.method != "POST":
            raise Refused(405, "Method not allowed")
        if self.media_type(request) != "application/json":
            raise Refused(400, _BAD_BODY)
        if not request.raw_body:
            raise Refused(400, "Missing request body")
        body = self.read_json(request)
        if not isinstance(body, dict):
            raise Refused(400, _BAD_BODY)
        if not isinstance(body.get("api_key"), str) or not body["api_key"]:
            raise Refused(400, _MISSING, error_reply(400, _MISSING, missing_field="api_key"))
        if self.api_key not in (None, body["api_key"]):
            raise Refused(400, "Invalid API key")
        events = body.get("events")
        if not isinstance(events, list) or not events:
            raise Refused(400, _MISSING, error_reply(400, _MISSING, missing_field="events"))
        if len(events) >= MAX_EVENTS:
            raise Refused(413, "Payload too large")
        options = {} if body.get("options") is None else body["options"]
        min_length = options.get("min_id_length", MIN_ID_LENGTH) if isinstance(options, dict) else 0
        if not _is_int(min_length) or min_length < 1:
            raise Refused(400, _BAD_BODY)
        if not all(isinstance(event, dict) for event in events):
            raise Refused(400, "Invalid event JSON")
        invalid: dict[str, Any] = {}  # field -> the indexes of the events at fault
        missing: dict[str, Any] = {}
        cleaned = []
        for index, event in enumerate(events):
            kept, problems = _problems(event, min_length)
            for field, absent in problems:
                (missing if absent else invalid).setdefault(field, []).append(index)
            cleaned.append(kept)
        if invalid or missing:
            error = "Invalid field values on some events" if invalid else _MISSING
            fields = {"events_with_invalid_fields": invalid, "events_with_missing_fields": missing}
            raise Refused(400, error, error_reply(400, error, **fields))
        self.record({**body, "events": cleaned}, cleaned)
        answer = {"code": 200, "events_ingested": len(events)}
        answer["payload_size_bytes"] = len(request.raw_body)
        return Reply(200, {**answer, "server_upload_time": int(time.time() * 1000)})


def destination() -> FakeDestination:
    """An `AmplitudeFake` expecting `TEST_KEY`, and the variables that point Amplitude at it."""
    return FakeDestination(
        "amplitude",
        AmplitudeFake(TEST_KEY),
        lambda url: {"AMPLITUDE_API_KEY": TEST_KEY, "AMPLITUDE_HOST": url},
    )
