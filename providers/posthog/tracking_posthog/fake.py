"""A strict loopback fake of PostHog's ``/batch/`` capture endpoint.

`PostHogFake` is a responder for `tracking_core.receivers.LoopbackReceiver`::

    from tracking_core.receivers import LoopbackReceiver
    from tracking_posthog.fake import PostHogFake

    fake = PostHogFake(api_key="phc_test")
    with LoopbackReceiver(fake) as server:
        # POSTHOG_HOST=server.url, POSTHOG_API_KEY=phc_test
        ...
    fake.events, fake.identifies

It validates a request the way PostHog's capture service does (gzip by header or by magic bytes,
body size after decompression, JSON, the API key's shape, a non-empty batch, a non-empty event
name and ``distinct_id`` on every event, parseable ``uuid``/``timestamp``/``sent_at``) and answers
with the service's status codes and plain-text error messages. A request with one bad event is
refused as a whole, as the service does. In ``strict`` mode (the default) it also refuses what a
well-behaved server-side sender must never send although PostHog would take it: events without
``uuid`` or ``timestamp``, timestamps without a UTC offset or given as numbers, non-string
``distinct_id`` values, placeholder ids such as ``"anonymous"`` (PostHog refuses to merge
persons on them), and any key other than the expected one.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as _dt
import json
import threading
import uuid
import zlib
from collections.abc import Mapping
from typing import Any

from tracking_core.receivers import ReceivedRequest, Reply

__all__ = ["BATCH_BODY_LIMIT", "EVENT_SIZE_LIMIT", "PLACEHOLDER_IDS", "PostHogFake", "Rejection"]

#: The ``/batch/`` body limit of PostHog's capture service (after decompression).
BATCH_BODY_LIMIT = 20 * 1024 * 1024
#: Events larger than this are discarded with an ingestion warning (the request still gets 200).
EVENT_SIZE_LIMIT = 1_000_000
#: Ids PostHog will not merge persons on (compared case-insensitively); strict mode refuses them.
PLACEHOLDER_IDS = frozenset(
    {
        "anonymous",
        "guest",
        "distinctid",
        "distinct_id",
        "id",
        "not_authenticated",
        "email",
        "undefined",
        "true",
        "false",
        "[object object]",
        "nan",
        "none",
        "null",
        "0",
    }
)
_GZIP_MAGIC = b"\x1f\x8b\x08"
_SUCCESS: Mapping[str, Any] = {"status": 1}


@dataclasses.dataclass(frozen=True)
class Rejection:
    """A request the fake refused: the status and the message it answered with."""

    status: int
    message: str


class _Refused(Exception):
    """A refusal: the status and message the fake answers with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _refuse_constant(token: str) -> Any:
    raise ValueError(f"invalid JSON token {token}")


def _parse_time(value: Any, field: str, strict: bool) -> None:
    if not isinstance(value, str):
        raise _Refused(
            400,
            f"failed to parse request: invalid type for {field}: "
            f"{type(value).__name__}, expected an ISO 8601 string",
        )
    text = value[:-1] + "+00:00" if value.endswith(("Z", "z")) else value
    try:
        moment = _dt.datetime.fromisoformat(text)
    except ValueError:
        raise _Refused(400, f"failed to parse request: invalid {field} {value!r}") from None
    if strict and moment.utcoffset() is None:
        raise _Refused(400, f"fake (strict): {field} {value!r} has no UTC offset")


class PostHogFake:
    """A thread-safe PostHog ``/batch/`` responder that records what it accepts.

    Args:
        api_key: the project key to expect; None accepts any well-formed key.
        path_prefix: a proxy prefix the requests must carry (``"/proxy"`` accepts
            ``/proxy/batch/``).
        strict: refuse what a server-side sender must never send (see the module doc).
        max_body_bytes: the body limit after decompression (413 beyond it).
        max_event_bytes: events larger than this are discarded (see `discarded`), not accepted.
        max_events: refuse requests carrying more events than this (400); PostHog itself has no
            such limit, so the default is None (no limit). Tests use it to check a sender's cap.
        success_body: the JSON body of a 200 answer.

    Attributes (read them after `tracking_core.flush_tracking`; each list is appended in arrival
    order):
        events: accepted events other than ``$identify``, as dicts.
        identifies: accepted ``$identify`` events.
        batches: the parsed bodies of accepted requests.
        discarded: events accepted by the request but dropped for their size.
        rejections: the requests refused by validation (not the scripted failures).
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        path_prefix: str = "",
        strict: bool = True,
        max_body_bytes: int = BATCH_BODY_LIMIT,
        max_event_bytes: int = EVENT_SIZE_LIMIT,
        max_events: int | None = None,
        success_body: Any = _SUCCESS,
    ) -> None:
        self.api_key = api_key
        self.path_prefix = "/" + path_prefix.strip("/") if path_prefix.strip("/") else ""
        self.strict = strict
        self.max_body_bytes = max_body_bytes
        self.max_event_bytes = max_event_bytes
        self.max_events = max_events
        self.success_body = success_body
        self.events: list[dict[str, Any]] = []
        self.identifies: list[dict[str, Any]] = []
        self.batches: list[dict[str, Any]] = []
        self.discarded: list[dict[str, Any]] = []
        self.rejections: list[Rejection] = []
        self._scripted: collections.deque[Reply] = collections.deque()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<PostHogFake events={len(self.events)} identifies={len(self.identifies)}>"

    # -- scripting ------------------------------------------------------------------------

    def fail_next(self, reply: Reply, times: int = 1) -> None:
        """Answer the next `times` requests with `reply` (after any already scripted),
        without looking at them or recording their events."""
        with self._lock:
            self._scripted.extend([reply] * times)

    @staticmethod
    def error(status: int, message: str | None = None, retry_after: str | None = None) -> Reply:
        """A reply shaped like the capture service's errors (a plain-text message).

        `message` defaults to the service's text for the status (400, 401, 413, 429, 503).
        """
        default = {
            400: "failed to parse request: expected value at line 1 column 1",
            401: "API key is not valid: empty",
            413: "maximum event size exceeded",
            429: "rate limited",
            503: "transient error, please retry",
            504: "Request timeout",
        }
        headers = {"Retry-After": retry_after} if retry_after is not None else {}
        text = message if message is not None else default.get(status, f"HTTP {status}")
        return Reply(status, text, headers=headers)

    # -- reading what arrived -------------------------------------------------------------

    def all_events(self) -> list[dict[str, Any]]:
        """Every accepted event and identify, in arrival order."""
        with self._lock:
            return [event for batch in self.batches for event in batch["batch"]]

    def uuids(self) -> list[str]:
        """The ``uuid`` of every accepted event and identify, in arrival order."""
        return [str(event.get("uuid")) for event in self.all_events()]

    def clear(self) -> None:
        """Forget what was accepted, refused and scripted."""
        with self._lock:
            self.events.clear()
            self.identifies.clear()
            self.batches.clear()
            self.discarded.clear()
            self.rejections.clear()
            self._scripted.clear()

    # -- the responder --------------------------------------------------------------------

    def __call__(self, request: ReceivedRequest) -> Reply:
        """Validate `request` like PostHog and answer it (see the class doc)."""
        with self._lock:
            if self._scripted:
                return self._scripted.popleft()
        try:
            payload = self._validate(request)
        except _Refused as refused:
            with self._lock:
                self.rejections.append(Rejection(refused.status, refused.message))
            return Reply(refused.status, refused.message)
        kept: list[dict[str, Any]] = []
        too_big: list[dict[str, Any]] = []
        for event in payload["batch"]:
            size = len(json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode())
            (too_big if size > self.max_event_bytes else kept).append(event)
        with self._lock:
            self.batches.append(payload)
            self.discarded.extend(too_big)
            for event in kept:
                (self.identifies if event["event"] == "$identify" else self.events).append(event)
        return Reply(200, self.success_body)

    # -- validation -----------------------------------------------------------------------

    def _body(self, request: ReceivedRequest) -> bytes:
        encoding = request.headers.get("content-encoding", "").strip().lower()
        raw = request.raw_body
        if len(raw) > self.max_body_bytes:
            raise _Refused(413, "maximum event size exceeded")
        if encoding in ("gzip", "gzip-js") or (not encoding and raw.startswith(_GZIP_MAGIC)):
            try:
                # Decompress at most one byte past the limit (PostHog's gzip-bomb guard).
                inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
                body = inflater.decompress(raw, self.max_body_bytes + 1)
                if not inflater.eof and len(body) <= self.max_body_bytes:
                    raise OSError("truncated")
            except (OSError, zlib.error, EOFError):
                raise _Refused(400, "failed to decode request: invalid gzip data") from None
        elif encoding in ("", "identity"):
            body = raw
        else:
            raise _Refused(400, f"failed to decode request: unsupported encoding {encoding!r}")
        if len(body) > self.max_body_bytes:
            raise _Refused(413, "maximum event size exceeded")
        return body

    def _validate(self, request: ReceivedRequest) -> dict[str, Any]:
        if request.method != "POST":
            raise _Refused(405, f"method {request.method} not allowed (the sender must POST)")
        if request.path not in (f"{self.path_prefix}/batch", f"{self.path_prefix}/batch/"):
            raise _Refused(404, f"no route for {request.path}")
        content_type = request.headers.get("content-type", "")
        if content_type.split(";")[0].strip().lower() != "application/json":
            raise _Refused(400, f"failed to decode request: content type {content_type!r}")
        body = self._body(request)
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise _Refused(400, "failed to decode request: invalid body encoding") from None
        try:
            payload = json.loads(text, parse_constant=_refuse_constant)
        except ValueError as exc:
            raise _Refused(400, f"failed to parse request: {exc}") from None
        if not isinstance(payload, dict) or "batch" not in payload:
            raise _Refused(400, 'failed to parse request: expected {"api_key", "batch": [...]}')
        self._check_key(payload)
        if "historical_migration" in payload and not isinstance(
            payload["historical_migration"], bool
        ):
            raise _Refused(400, "failed to parse request: historical_migration must be a bool")
        if payload.get("sent_at") is not None:
            _parse_time(payload["sent_at"], "sent_at", self.strict)
        batch = payload["batch"]
        if not isinstance(batch, list):
            raise _Refused(400, "failed to parse request: batch must be an array")
        if not batch:
            raise _Refused(400, "request holds no event")
        if self.max_events is not None and len(batch) > self.max_events:
            raise _Refused(400, f"fake: {len(batch)} events in one request (max {self.max_events})")
        for event in batch:
            self._check_event(event)
        return payload

    def _check_key(self, payload: Mapping[str, Any]) -> None:
        key = payload.get("api_key", payload.get("token"))
        if key is None:
            raise _Refused(401, "event submitted without an api_key")
        if not isinstance(key, str):
            raise _Refused(400, "failed to parse request: api_key must be a string")
        key = key.strip()
        reason = None
        if not key:
            reason = "empty"
        elif len(key) > 64:
            reason = "too_long"
        elif not key.isascii():
            reason = "not_ascii"
        elif key.startswith("phx_"):
            reason = "personal_api_key"
        elif "\x00" in key:
            reason = "null_byte"
        elif self.api_key is not None and key != self.api_key:
            reason = "unknown project API key (fake)"
        if reason is not None:
            raise _Refused(401, f"API key is not valid: {reason}")

    def _check_event(self, event: Any) -> None:
        if not isinstance(event, dict):
            raise _Refused(400, "failed to parse request: an event is not an object")
        name = event.get("event")
        if not isinstance(name, str) or not name:
            raise _Refused(400, "event submitted with an empty event name")
        properties = event.get("properties", {})
        if properties is None:
            properties = {}
        if not isinstance(properties, dict):
            raise _Refused(400, "failed to parse request: properties must be an object")
        distinct_id = event.get("distinct_id", event.get("$distinct_id"))
        if distinct_id is None:
            distinct_id = properties.get("distinct_id")
        if distinct_id is None:
            raise _Refused(400, "event submitted without a distinct_id")
        if self.strict and not isinstance(distinct_id, str):
            raise _Refused(400, f"fake (strict): distinct_id {distinct_id!r} is not a string")
        text = str(distinct_id).strip()
        if not text:
            raise _Refused(400, "event submitted with an empty distinct_id")
        if self.strict and text.lower() in PLACEHOLDER_IDS:
            raise _Refused(400, f"fake (strict): placeholder distinct_id {text!r}")
        event_uuid = event.get("uuid")
        if event_uuid is None or event_uuid == "":
            if self.strict:
                raise _Refused(400, "fake (strict): event without a uuid (the dedupe key)")
        else:
            try:
                uuid.UUID(str(event_uuid))
            except ValueError:
                raise _Refused(
                    400, f"failed to parse request: invalid uuid {event_uuid!r}"
                ) from None
        if event.get("timestamp") is None:
            if self.strict:
                raise _Refused(400, "fake (strict): event without a timestamp")
        else:
            _parse_time(event["timestamp"], "timestamp", self.strict)
        for holder in (event, properties):
            for field in ("$set", "$set_once"):
                if field in holder and not isinstance(holder[field], dict):
                    raise _Refused(400, f"failed to parse request: {field} must be an object")
