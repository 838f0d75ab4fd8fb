"""A strict loopback double of Amplitude's HTTP V2 API (``POST /2/httpapi``).

Use it as the responder of a `tracking_core.receivers.LoopbackReceiver`::

    fake = AmplitudeFake(api_key="test-key")
    with LoopbackReceiver(fake) as server:
        os.environ["AMPLITUDE_HOST"] = server.url
        ...
    assert fake.events[0]["event_type"] == "Signed Up"

It validates like the vendor (see docs "Fake-server rules (Amplitude)") and answers with
Amplitude's bodies, always JSON carrying ``code``:

- the path must be ``{prefix}/2/httpapi`` and the method POST; the body must be plain
  ``application/json`` (gzip is refused: Amplitude's support for it is unconfirmed);
- a body of 1 MB (1,000,000 bytes) or more, or 2000 events or more -> 413;
- ``api_key`` (a string, equal to the expected key when one is given) and a non-empty ``events``
  array are required (400 with ``missing_field`` / ``Invalid API key``);
- per event: a non-empty string ``event_type``; ``user_id`` and/or ``device_id``, strings, not a
  placeholder (``anonymous``, ``null``, ``0``, ``-1``...); an id shorter than
  ``options.min_id_length`` (default 5) is removed from the event as Amplitude does, and an event
  left with no id is invalid; ``time`` an integer of epoch milliseconds (floats, strings and
  values that look like seconds or microseconds are invalid); ``event_properties`` and
  ``user_properties`` objects; user-property operations (``$set``...) only on ``$identify``
  events and never mixed with plain keys;
- a request with any invalid event is refused whole: 400 with ``events_with_invalid_fields`` /
  ``events_with_missing_fields`` (maps of field -> indexes) and nothing is ingested;
- accepted events are deduplicated by ``insert_id`` (per device, else per user), as Amplitude
  does for seven days: repeats are counted in `duplicates`, not recorded again.

Failures are scripted with `fail_next`, and `error_reply` builds the vendor's error bodies.
Thread-safe: the receiver calls it from one thread per connection.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Mapping
from typing import Any

from tracking_core.receivers import ReceivedRequest, Reply

from .provider import INVALID_IDS, MIN_ID_LENGTH, PATH

__all__ = ["AmplitudeFake", "error_reply"]

#: Bodies of this many bytes or more get a 413 on /2/httpapi.
MAX_BODY_BYTES = 1_000_000
#: Requests with this many events or more get a 413 on /2/httpapi.
MAX_EVENTS = 2000
#: ``time`` values below this look like seconds, at or above the upper bound like microseconds.
MIN_MILLIS = 10**11
MAX_MILLIS = 10**14
#: The user-property operations Amplitude knows.
OPERATIONS = frozenset(
    {
        "$set",
        "$setOnce",
        "$add",
        "$append",
        "$prepend",
        "$unset",
        "$preInsert",
        "$postInsert",
        "$remove",
        "$clearAll",
    }
)
_ID_FIELDS = ("user_id", "device_id")


def error_reply(
    code: int, error: str = "", *, headers: Mapping[str, str] | None = None, **fields: Any
) -> Reply:
    """An Amplitude-shaped answer: HTTP `code` with ``{"code": code, "error": error, **fields}``.

    For instance ``error_reply(429, "Too many requests for some devices and users",
    throttled_events=[0], exceeded_daily_quota_users={"user-1": 500001})``. `headers` are
    response headers (Amplitude sends no ``Retry-After``; a test may, to keep retries fast).
    """
    return Reply(code, {"code": code, "error": error, **fields}, headers=dict(headers or {}))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class AmplitudeFake:
    """A strict, thread-safe stand-in for Amplitude's ``/2/httpapi`` (see the module doc).

    Args:
        api_key: the key requests must carry; None accepts any string key.
        prefix: a path prefix in front of ``/2/httpapi`` (a proxy), e.g. ``"/proxy"``.

    Attributes:
        events: accepted events other than ``$identify``, as received (short ids removed).
        identifies: accepted ``$identify`` events.
        batches: the body (parsed JSON) of every request whose events were ingested.
        duplicates: events ignored because their ``insert_id`` was already ingested.
        rejections: the body of every 4xx answer the fake's own validation gave.
    """

    def __init__(self, api_key: str | None = None, *, prefix: str = "") -> None:
        self.api_key = api_key
        self.path = prefix.rstrip("/") + PATH
        self.events: list[dict[str, Any]] = []
        self.identifies: list[dict[str, Any]] = []
        self.batches: list[dict[str, Any]] = []
        self.duplicates = 0
        self.rejections: list[dict[str, Any]] = []
        self._seen: set[tuple[str, str]] = set()
        self._script: deque[tuple[Reply, bool]] = deque()
        self._lock = threading.Lock()

    # -- scripting ----------------------------------------------------------------------------

    def fail_next(self, reply: Reply, times: int = 1, *, ingest: bool = False) -> None:
        """Answer the next `times` requests with `reply` instead of the normal answer.

        With `ingest`, those requests are still validated and their events ingested when
        valid (a 500 after the work was done: the client cannot tell, and must resend the same
        ``insert_id``s so the repeats are deduplicated).
        """
        with self._lock:
            self._script.extend([(reply, ingest)] * times)

    # -- the server ---------------------------------------------------------------------------

    def __call__(self, request: ReceivedRequest) -> Reply:
        with self._lock:
            scripted = self._script.popleft() if self._script else None
            if scripted is not None and not scripted[1]:
                return scripted[0]
            reply = self._handle(request)
            if reply.status >= 400 and isinstance(reply.body, dict):
                self.rejections.append(reply.body)
            return reply if scripted is None else scripted[0]

    def _handle(self, request: ReceivedRequest) -> Reply:
        if request.path != self.path:
            return error_reply(400, "Invalid request path")
        if request.method != "POST":
            return error_reply(405, "Method not allowed")
        content_type = request.headers.get("content-type", "")
        if content_type.split(";")[0].strip().lower() != "application/json":
            return error_reply(400, "Invalid JSON request body", detail="not application/json")
        if request.headers.get("content-encoding", "identity").lower() != "identity":
            return error_reply(400, "Invalid JSON request body", detail="compressed body")
        if len(request.raw_body) >= MAX_BODY_BYTES:
            return error_reply(413, "Payload too large")
        if not request.raw_body:
            return error_reply(400, "Missing request body")
        try:
            body = request.json()
        except ValueError:
            return error_reply(400, "Invalid JSON request body")
        if not isinstance(body, dict):
            return error_reply(400, "Invalid JSON request body")
        api_key = body.get("api_key")
        if not isinstance(api_key, str) or not api_key:
            return error_reply(400, "Request missing required field", missing_field="api_key")
        if self.api_key is not None and api_key != self.api_key:
            return error_reply(400, "Invalid API key")
        events = body.get("events")
        if not isinstance(events, list) or not events:
            return error_reply(400, "Request missing required field", missing_field="events")
        if len(events) >= MAX_EVENTS:
            return error_reply(413, "Payload too large")
        min_length = self._min_id_length(body.get("options"))
        if min_length is None:
            return error_reply(400, "Invalid JSON request body", detail="bad options")
        invalid: dict[str, list[int]] = {}
        missing: dict[str, list[int]] = {}
        cleaned: list[dict[str, Any]] = []
        for index, event in enumerate(events):
            if not isinstance(event, dict):
                return error_reply(400, "Invalid event JSON")
            kept = self._check_event(index, event, min_length, invalid, missing)
            cleaned.append(kept)
        if invalid or missing:
            return error_reply(
                400,
                "Invalid field values on some events"
                if invalid
                else "Request missing required field",
                events_with_invalid_fields=invalid,
                events_with_missing_fields=missing,
            )
        self._ingest(body, cleaned)
        return Reply(
            200,
            {
                "code": 200,
                "events_ingested": len(events),
                "payload_size_bytes": len(request.raw_body),
                "server_upload_time": int(time.time() * 1000),
            },
        )

    @staticmethod
    def _min_id_length(options: Any) -> int | None:
        if options is None:
            return MIN_ID_LENGTH
        if not isinstance(options, dict):
            return None
        value = options.get("min_id_length", MIN_ID_LENGTH)
        if not _is_int(value) or value < 1:
            return None
        return int(value)

    @staticmethod
    def _check_event(
        index: int,
        event: dict[str, Any],
        min_length: int,
        invalid: dict[str, list[int]],
        missing: dict[str, list[int]],
    ) -> dict[str, Any]:
        """Validate one event (filling `invalid`/`missing`); the event as it would be stored."""

        def bad(field: str, into: dict[str, list[int]] = invalid) -> None:
            into.setdefault(field, []).append(index)

        kept = dict(event)
        event_type = event.get("event_type")
        if event_type is None:
            bad("event_type", missing)
        elif not isinstance(event_type, str) or not event_type:
            bad("event_type")
        present = [f for f in _ID_FIELDS if event.get(f) is not None]
        if not present:
            bad("user_id", missing)
        for field in present:
            value = event[field]
            if not isinstance(value, str) or value.lower() in INVALID_IDS:
                bad(field)
            elif len(value) < min_length:
                del kept[field]  # Amplitude removes a too-short id
        if present and not any(f in kept for f in _ID_FIELDS):
            for field in present:  # every id was too short: nothing identifies the event
                bad(field)
        if "time" in event:
            when = event["time"]
            if not _is_int(when) or not MIN_MILLIS <= when < MAX_MILLIS:
                bad("time")
        if "insert_id" in event and (
            not isinstance(event["insert_id"], str) or not event["insert_id"]
        ):
            bad("insert_id")
        if "event_properties" in event and not isinstance(event["event_properties"], dict):
            bad("event_properties")
        if "user_properties" in event and not _valid_user_properties(
            event["user_properties"], event_type == "$identify"
        ):
            bad("user_properties")
        return kept

    def _ingest(self, body: dict[str, Any], events: list[dict[str, Any]]) -> None:
        accepted = []
        for event in events:
            insert_id = event.get("insert_id")
            if insert_id is not None:
                owner = event.get("device_id") or "user:" + str(event.get("user_id"))
                key = (insert_id, owner)
                if key in self._seen:
                    self.duplicates += 1
                    continue
                self._seen.add(key)
            accepted.append(event)
            if event.get("event_type") == "$identify":
                self.identifies.append(event)
            else:
                self.events.append(event)
        self.batches.append({**body, "events": accepted})


def _valid_user_properties(value: Any, identify: bool) -> bool:
    if not isinstance(value, dict):
        return False
    operations = [key for key in value if isinstance(key, str) and key.startswith("$")]
    if not operations:
        return True
    if not identify or len(operations) != len(value):
        return False  # operations only on $identify, and never mixed with plain keys
    return all(
        key in OPERATIONS and (key == "$clearAll" or isinstance(value[key], dict))
        for key in operations
    )
