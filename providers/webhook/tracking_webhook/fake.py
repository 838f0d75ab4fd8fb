"""A strict loopback fake of a webhook receiver: Segment's batch endpoint behind Standard Webhooks.

Use it as the responder of a `tracking_core.receivers.LoopbackReceiver`::

    fake = WebhookFake(secret="whsec_...", auth="Bearer t0ken", path="/v1/batch")
    with LoopbackReceiver(fake) as receiver:
        os.environ["TRACKING_WEBHOOK_URL"] = receiver.url + "/v1/batch"
        ...
        assert [e["event"] for e in fake.events] == ["Signed Up"]

It checks every request the way a careful receiver does, before it accepts anything:

- ``POST`` to `path` (when given), ``Content-Type: application/json``;
- the ``Authorization`` header equals `auth` (when given), else 401;
- with a `secret`: the Standard Webhooks headers ``webhook-id``, ``webhook-timestamp`` (integer
  seconds within `tolerance` of `clock`) and ``webhook-signature`` (a space-separated list; one
  ``v1`` entry must match the HMAC-SHA256 of ``"{id}.{timestamp}.{raw body}"``, compared in
  constant time), else 400. The signature is checked over the raw bytes, before parsing;
- a ``webhook-id`` seen before must carry the same messages (it is the batch's idempotency key)
  and a timestamp that does not go backwards;
- the body: at most `max_body_bytes`, strict JSON (no NaN), ``{"batch": [...], "sentAt": ISO
  8601}`` with 1 to `max_messages` messages of at most `max_message_bytes` each (too large:
  `too_large_status`, 400 like Segment by default, 413 for receivers that say so);
- each message: ``type`` ``track`` or ``identify``; ``messageId`` a UUID; ``timestamp`` an ISO
  8601 string with a zone (a number is refused: wrong unit); ``userId`` or ``anonymousId`` a
  non-empty string that is not a placeholder such as ``"anonymous"``; a track's ``event`` a
  non-empty string and ``properties`` an object; an identify's ``traits`` an object; no fields
  outside Segment's spec.

Accepted batches are answered ``200 {"success": true}`` and recorded: `events` (track
messages), `identifies`, `messages` (both, in order), `batches` (whole bodies). A message whose
``messageId`` was accepted before goes to `duplicates` instead (Segment dedupes on it), and a
request whose ``webhook-id`` was already accepted is answered 200 and counted in
`duplicate_deliveries` without recording anything. Every request, accepted or not, is in
`attempts`; every refusal's reason is in `refusals`.

Failures are scripted with `fail_next` (or `queue_replies`): a queued `Reply` answers the next
valid request instead of the fake (``Reply(503, headers={"Retry-After": "1"})``,
``Reply(410)``, ``Reply(301, headers={"Location": ...})``, ``Reply(action="hang")`` for a
timeout...). A queued 2xx answer accepts the batch and answers with that reply. All methods
are thread-safe.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime as _dt
import hashlib
import hmac
import json
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from typing import Any

from tracking_core.receivers import ReceivedRequest, Reply

from .provider import signing_key

__all__ = ["Attempt", "WebhookFake"]

_ISO_8601 = re.compile(
    r"^(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})$"
)
_PLACEHOLDER_IDS = {"anonymous", "null", "none", "nil", "undefined", "unknown", "0", "-1"}
_COMMON_FIELDS = {
    "type",
    "messageId",
    "timestamp",
    "userId",
    "anonymousId",
    "context",
    "integrations",
    "sentAt",
    "receivedAt",
    "originalTimestamp",
}
_FIELDS = {
    "track": _COMMON_FIELDS | {"event", "properties"},
    "identify": _COMMON_FIELDS | {"traits"},
}
_ENVELOPE_FIELDS = {"batch", "sentAt", "context", "integrations", "writeKey"}


class _Refused(Exception):
    """The fake's own refusal of a request (status, Segment-style error code, message)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclasses.dataclass(frozen=True)
class Attempt:
    """One request as the fake saw it, whatever it answered.

    Attributes:
        path: the request path.
        webhook_id: the ``webhook-id`` header, if any.
        timestamp: the ``webhook-timestamp`` header, if any.
        signature: the ``webhook-signature`` header, if any.
        sent_at: the body's ``sentAt``, when the body could be read.
        message_ids: the ``messageId`` of each message, when the body could be read.
        status: the status answered (None when a scripted reply hangs or resets).
        refusal: why the fake refused the request itself, when it did.
        received_at: `time.monotonic()` when it arrived.
    """

    path: str
    webhook_id: str | None
    timestamp: str | None
    signature: str | None
    sent_at: str | None
    message_ids: tuple[str, ...]
    status: int | None
    refusal: str | None
    received_at: float


def _parse_iso(value: Any) -> _dt.datetime | None:
    if not isinstance(value, str):
        return None
    match = _ISO_8601.match(value)
    if match is None:
        return None
    day, clock, fraction, zone = match.groups()
    micro = (fraction or "0")[:6].ljust(6, "0")
    zone = "+00:00" if zone == "Z" else zone
    try:
        return _dt.datetime.fromisoformat(f"{day}T{clock}.{micro}{zone}")
    except ValueError:
        return None


class WebhookFake:
    """A strict Segment-batch + Standard Webhooks receiver for a `LoopbackReceiver` (see the
    module doc for every rule it enforces).

    Args:
        secret: the signing secret, ``whsec_<base64>`` read exactly as the provider and the
            reference verifiers read it (`tracking_webhook.provider.signing_key`: any other
            form raises ValueError); None: no signature check (and a ``webhook-signature``
            header is then refused as unexpected).
        auth: the exact ``Authorization`` value required; None: not checked.
        path: the only path accepted (404 otherwise); None: any path.
        clock: the fake's Unix time, for the timestamp tolerance (injectable for tests).
        tolerance: seconds ``webhook-timestamp`` (and ``sentAt``) may differ from `clock`.
        max_body_bytes: body size limit (Segment: 500 KB).
        max_message_bytes: size limit of one message, re-encoded compactly (Segment: 32 KB).
        max_messages: messages per request.
        too_large_status: the answer to a body, message or count over its limit.
    """

    def __init__(
        self,
        *,
        secret: str | None = None,
        auth: str | None = None,
        path: str | None = None,
        clock: Callable[[], float] = time.time,
        tolerance: float = 300.0,
        max_body_bytes: int = 500_000,
        max_message_bytes: int = 32_000,
        max_messages: int = 500,
        too_large_status: int = 400,
    ) -> None:
        self._lock = threading.Lock()
        self._secret: str | None = None
        self._key: bytes | None = None
        self.secret = secret
        self.auth = auth
        self.path = path
        self.clock = clock
        self.tolerance = tolerance
        self.max_body_bytes = max_body_bytes
        self.max_message_bytes = max_message_bytes
        self.max_messages = max_messages
        self.too_large_status = too_large_status
        self._script: deque[Reply] = deque()
        self._ids_seen: dict[str, tuple[tuple[str, ...], int]] = {}
        self._ids_accepted: set[str] = set()
        self._message_ids: set[str] = set()
        self.events: list[dict[str, Any]] = []
        self.identifies: list[dict[str, Any]] = []
        self.messages: list[dict[str, Any]] = []
        self.batches: list[dict[str, Any]] = []
        self.duplicates: list[dict[str, Any]] = []
        self.duplicate_deliveries = 0
        self.attempts: list[Attempt] = []
        self.refusals: list[str] = []

    @property
    def secret(self) -> str | None:
        """The signing secret checked (None: signatures are not expected); may be changed.

        Raises ValueError for a secret that is not ``whsec_<base64>``."""
        return self._secret

    @secret.setter
    def secret(self, value: str | None) -> None:
        with self._lock:
            self._secret = value
            self._key = None if value is None else signing_key(value)

    # -- scripting ----------------------------------------------------------------------------

    def fail_next(self, reply: Reply, times: int = 1) -> None:
        """Answer the next `times` valid requests with `reply` instead of accepting them."""
        self.queue_replies(*([reply] * times))

    def queue_replies(self, *replies: Reply) -> None:
        """Answer the next valid requests with `replies`, in order (a 2xx answer accepts)."""
        with self._lock:
            self._script.extend(replies)

    def clear_script(self) -> None:
        """Forget the replies not used yet."""
        with self._lock:
            self._script.clear()

    # -- reading ------------------------------------------------------------------------------

    def event_names(self) -> list[str]:
        """The accepted track messages' ``event`` names, in order."""
        with self._lock:
            return [str(message["event"]) for message in self.events]

    def attempts_for(self, webhook_id: str) -> list[Attempt]:
        """Every request that carried `webhook_id`, in order."""
        with self._lock:
            return [a for a in self.attempts if a.webhook_id == webhook_id]

    # -- the responder ------------------------------------------------------------------------

    def __call__(self, request: ReceivedRequest) -> Reply:
        """Check `request` and answer it (see the module doc)."""
        headers = request.headers
        with self._lock:
            body: Any = None
            refusal: str | None = None
            try:
                body = self._check(request)
                reply = self._script.popleft() if self._script else Reply(200, {"success": True})
                if reply.action == "answer" and 200 <= reply.status < 300:
                    self._accept(headers.get("webhook-id"), body)
            except _Refused as refused:
                refusal = f"{refused.code}: {refused.message}"
                self.refusals.append(refusal)
                reply = Reply(refused.status, {"code": refused.code, "message": refused.message})
            batch = body.get("batch") if isinstance(body, dict) else None
            self.attempts.append(
                Attempt(
                    path=request.path,
                    webhook_id=headers.get("webhook-id"),
                    timestamp=headers.get("webhook-timestamp"),
                    signature=headers.get("webhook-signature"),
                    sent_at=body.get("sentAt") if isinstance(body, dict) else None,
                    message_ids=tuple(str(m.get("messageId")) for m in batch if isinstance(m, dict))
                    if isinstance(batch, list)
                    else (),
                    status=reply.status if reply.action == "answer" else None,
                    refusal=refusal,
                    received_at=request.received_at,
                )
            )
            return reply

    def _check(self, request: ReceivedRequest) -> dict[str, Any]:
        if request.method != "POST":
            raise _Refused(405, "method_not_allowed", f"{request.method} is not allowed")
        if self.path is not None and request.path != self.path:
            raise _Refused(404, "not_found", f"no endpoint at {request.path}")
        if self.auth is not None:
            given = request.headers.get("authorization", "")
            if not hmac.compare_digest(given.encode(), self.auth.encode()):
                raise _Refused(401, "unauthorized", "missing or wrong Authorization header")
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != "application/json":
            raise _Refused(400, "bad_request", "Content-Type must be application/json")
        self._check_signature(request)
        if len(request.raw_body) > self.max_body_bytes:
            raise _Refused(
                self.too_large_status,
                "payload_too_large",
                f"body of {len(request.raw_body)} bytes exceeds {self.max_body_bytes}",
            )
        try:
            body = request.json()
        except ValueError:
            raise _Refused(400, "invalid_json", "the body is not strict JSON") from None
        self._check_envelope(body)
        self._check_retry(request, body)
        return body  # type: ignore[no-any-return]

    def _check_signature(self, request: ReceivedRequest) -> None:
        headers = request.headers
        msg_id = headers.get("webhook-id")
        stamp = headers.get("webhook-timestamp")
        signature = headers.get("webhook-signature")
        if self._key is None:
            if signature is not None:
                raise _Refused(400, "bad_signature", "unexpected webhook-signature: no secret")
            return
        if not msg_id or not stamp or not signature:
            raise _Refused(400, "bad_signature", "missing webhook-id/-timestamp/-signature")
        if "." in msg_id:
            raise _Refused(400, "bad_signature", "webhook-id must not contain '.'")
        if not stamp.isdigit():
            raise _Refused(400, "bad_signature", "webhook-timestamp must be integer seconds")
        if abs(self.clock() - int(stamp)) > self.tolerance:
            raise _Refused(400, "bad_signature", "webhook-timestamp is outside the tolerance")
        signed = f"{msg_id}.{stamp}.".encode() + request.raw_body
        expected = hmac.new(self._key, signed, hashlib.sha256).digest()
        for entry in signature.split(" "):
            version, _, encoded = entry.partition(",")
            if version != "v1":
                continue  # unknown versions are ignored, as the spec says
            try:
                given = base64.b64decode(encoded, validate=True)
            except (binascii.Error, ValueError):
                continue
            if hmac.compare_digest(given, expected):
                return
        raise _Refused(400, "bad_signature", "no matching v1 signature")

    def _check_envelope(self, body: Any) -> None:
        if not isinstance(body, dict):
            raise _Refused(400, "bad_request", "the body must be a JSON object")
        unknown = set(body) - _ENVELOPE_FIELDS
        if unknown:
            raise _Refused(400, "bad_request", f"unknown fields {sorted(unknown)}")
        batch = body.get("batch")
        if not isinstance(batch, list) or not batch:
            raise _Refused(400, "bad_request", "batch must be a non-empty array")
        if len(batch) > self.max_messages:
            raise _Refused(
                self.too_large_status,
                "payload_too_large",
                f"{len(batch)} messages exceed {self.max_messages}",
            )
        sent_at = _parse_iso(body.get("sentAt"))
        if sent_at is None:
            raise _Refused(400, "bad_request", "sentAt must be an ISO 8601 string with a zone")
        if abs(sent_at.timestamp() - self.clock()) > self.tolerance:
            raise _Refused(400, "bad_request", "sentAt is not the time of this request")
        for index, message in enumerate(batch):
            problem = self._message_problem(message)
            if problem is not None:
                raise _Refused(400, "bad_request", f"batch[{index}]: {problem}")
            size = len(json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode())
            if size > self.max_message_bytes:
                raise _Refused(
                    self.too_large_status,
                    "payload_too_large",
                    f"batch[{index}] is {size} bytes, over {self.max_message_bytes}",
                )

    def _message_problem(self, message: Any) -> str | None:
        if not isinstance(message, dict):
            return "a message must be an object"
        kind = message.get("type")
        if kind not in _FIELDS:
            return f"type must be 'track' or 'identify', got {kind!r}"
        unknown = set(message) - _FIELDS[kind]
        if unknown:
            return f"unknown fields {sorted(unknown)}"
        message_id = message.get("messageId")
        try:
            if not isinstance(message_id, str) or str(uuid.UUID(message_id)) != message_id:
                raise ValueError
        except ValueError:
            return f"messageId must be a UUID string, got {message_id!r}"
        stamp = message.get("timestamp")
        if _parse_iso(stamp) is None:
            return f"timestamp must be an ISO 8601 string with a zone, got {stamp!r}"
        ids = [message.get("userId"), message.get("anonymousId")]
        for value in ids:
            if value is None:
                continue
            if not isinstance(value, str) or not value.strip():
                return f"userId/anonymousId must be non-empty strings, got {value!r}"
            if value.strip().lower() in _PLACEHOLDER_IDS:
                return f"{value!r} is a placeholder, not an id"
        if all(value is None for value in ids):
            return "userId or anonymousId is required"
        if kind == "track":
            event = message.get("event")
            if not isinstance(event, str) or not event:
                return "a track message needs an event name"
            if not isinstance(message.get("properties", {}), dict):
                return "properties must be an object"
        elif not isinstance(message.get("traits", {}), dict):
            return "traits must be an object"
        if not isinstance(message.get("context", {}), dict):
            return "context must be an object"
        return None

    def _check_retry(self, request: ReceivedRequest, body: dict[str, Any]) -> None:
        msg_id = request.headers.get("webhook-id")
        if not msg_id:
            return
        ids = tuple(str(m["messageId"]) for m in body["batch"])
        stamp_text = request.headers.get("webhook-timestamp", "")
        stamp = int(stamp_text) if stamp_text.isdigit() else 0
        seen = self._ids_seen.get(msg_id)
        if seen is not None:
            if seen[0] != ids:
                raise _Refused(400, "bad_request", "webhook-id reused for a different batch")
            if stamp < seen[1]:
                raise _Refused(400, "bad_request", "webhook-timestamp went backwards on a retry")
        self._ids_seen[msg_id] = (ids, stamp)

    def _accept(self, msg_id: str | None, body: dict[str, Any]) -> None:
        if msg_id is not None and msg_id in self._ids_accepted:
            self.duplicate_deliveries += 1
            return
        if msg_id is not None:
            self._ids_accepted.add(msg_id)
        self.batches.append(body)
        for message in body["batch"]:
            if message["messageId"] in self._message_ids:
                self.duplicates.append(message)
                continue
            self._message_ids.add(message["messageId"])
            self.messages.append(message)
            (self.events if message["type"] == "track" else self.identifies).append(message)

    def accepted_ids(self) -> list[str]:
        """The ``messageId`` of every accepted message, in order."""
        with self._lock:
            return [str(message["messageId"]) for message in self.messages]
