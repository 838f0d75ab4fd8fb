"""A strict loopback fake of a webhook receiver: Segment's batch endpoint behind Standard
Webhooks (a `VendorFake`). It checks what a careful receiver checks before accepting anything:

- ``POST`` to `path` as ``application/json``, ``Authorization`` equal to `auth` (else 401);
- with a `secret`, ``webhook-id``, ``webhook-timestamp`` (integer seconds within `tolerance` of
  `clock`) and ``webhook-signature`` (a ``v1`` entry is the HMAC-SHA256 of ``"{id}.{timestamp}.
  {raw body}"``), else 400; a ``webhook-id`` sent before carries the first attempt's messages
  and a timestamp that does not go backwards;
- at most `max_body_bytes` of strict JSON ``{"batch": [...], "sentAt": ISO 8601}``, 1 to
  `max_messages` messages of at most `max_message_bytes` (else `too_large_status`, 400 as
  Segment, or 413), each a ``track`` or ``identify`` with a UUID ``messageId``, a zoned
  ``timestamp``, a real ``userId``/``anonymousId`` and only the fields of Segment's spec.

It answers ``200 {"success": true}``, else ``{"code", "message"}`` (Segment-style codes). Again
accepted: a ``messageId`` goes to `duplicates`, a ``webhook-id`` to `duplicate_deliveries` (200).
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import datetime as _dt
import hashlib
import hmac
import json
import re
import time
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from tracking_core.fakes import FakeDestination, Refused, VendorFake
from tracking_core.receivers import ReceivedRequest, Reply

from .provider import signing_key

__all__ = ["WebhookFake", "destination"]

#: The credentials and path `destination()` expects.
TEST_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
TEST_AUTH = "Bearer demo-webhook-token"
TEST_PATH = "/hooks/analytics"
_ISO_8601 = re.compile(r"(\d{4}-\d\d-\d\d)T(\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")  # canonical
_PLACEHOLDER_IDS = {"anonymous", "null", "none", "nil", "undefined", "unknown", "0", "-1"}
_COMMON = {"type", "messageId", "timestamp", "userId", "anonymousId", "context", "integrations"}
_COMMON |= {"sentAt", "receivedAt", "originalTimestamp"}
_FIELDS = {"track": _COMMON | {"event", "properties"}, "identify": _COMMON | {"traits"}}
_ENVELOPE = {"batch", "sentAt", "context", "integrations", "writeKey"}


def _parse_iso(value: Any) -> _dt.datetime | None:
    match = _ISO_8601.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        return None
    day, clock, fraction, zone = match.groups()
    stamp = f"{day}T{clock}.{(fraction or '0')[:6]:0<6}{zone.replace('Z', '+00:00')}"
    with contextlib.suppress(ValueError):
        return _dt.datetime.fromisoformat(stamp)
    return None


def _signed(secret: str, content: bytes, signature: str) -> bool:
    """Whether an entry of `signature` is ``v1,`` and the HMAC-SHA256 of `content` with
    `secret`'s key (other versions are ignored, as the spec says), compared in constant time."""
    digest = base64.b64encode(hmac.new(signing_key(secret), content, hashlib.sha256).digest())
    wanted = b"v1," + digest
    return any(hmac.compare_digest(entry.encode(), wanted) for entry in signature.split(" "))


@dataclasses.dataclass(eq=False, repr=False, kw_only=True)
class WebhookFake(VendorFake):
    """Segment's batch endpoint behind Standard Webhooks (see the module doc). `secret`:
    ``whsec_<base64>``, read as the provider reads it (`tracking_webhook.provider.signing_key`,
    ValueError for another form), or None: no signature expected. `auth`, `path`: None is not
    checked. `clock`: the fake's Unix time; `tolerance` (300 s), the limits (Segment's) and all
    of these may be changed on the instance."""

    id_key, user_key, identify_when = "messageId", "userId", ("type", "identify")
    tolerance = 300.0
    body_errors: ClassVar[Mapping[str, str]] = {
        "encoding": "bad_request: unsupported Content-Encoding {encoding!r}",
        "gzip": "bad_request: invalid gzip data",
        "too_large": "payload_too_large: body of {size} bytes exceeds {limit}",
        **dict.fromkeys(("utf8", "json"), "invalid_json: the body is not strict JSON"),
    }

    secret: str | None = None
    auth: str | None = None
    path: str | None = None
    clock: Callable[[], float] = time.time
    max_body_bytes: int = 500_000
    max_message_bytes: int = 32_000
    max_messages: int = 500
    too_large_status: int = 400

    def __post_init__(self) -> None:
        if self.secret is not None:
            signing_key(self.secret)  # as strict as the provider: ValueError for another form
        super().__post_init__()
        self._accepted_ids: set[str] = set()
        self.duplicate_deliveries = 0

    def refusal(self, status: int, message: str) -> Reply:
        """``{"code", "message"}``; a message ``"<code>: <text>"`` gives its own code."""
        match = re.fullmatch(r"([a-z_]+): (.+)", message, re.DOTALL)
        code, text = match.groups() if match else (f"http_{status}", message)
        return Reply(status, {"code": code, "message": text})

    def dedupe_key(self, item: Mapping[str, Any]) -> str:
        return str(item["messageId"])

    def event_names(self) -> list[str]:
        """The accepted track messages' ``event`` names, in order."""
        with self._lock:
            return [str(message["event"]) for message in self.events]

    def clear(self) -> None:
        super().clear()
        self._accepted_ids.clear()
        self.duplicate_deliveries = 0

    def handle(self, request: ReceivedRequest) -> Reply:
        if request.method != "POST":
            raise Refused(405, f"method_not_allowed: {request.method} is not allowed")
        if self.path is not None and request.path != self.path:
            raise Refused(404, f"not_found: no endpoint at {request.path}")
        given = request.headers.get("authorization", "").encode()
        if self.auth is not None and not hmac.compare_digest(given, self.auth.encode()):
            raise Refused(401, "unauthorized: missing or wrong Authorization header")
        if self.media_type(request) != "application/json":
            raise Refused(400, "bad_request: Content-Type must be application/json")
        self._check_signature(request)
        body = self.read_json(request)
        self._check_envelope(body)
        self._check_retry(request, [str(m["messageId"]) for m in body["batch"]])
        msg_id = request.headers.get("webhook-id")
        if msg_id is not None and msg_id in self._accepted_ids:
            self.duplicate_deliveries += 1
        else:
            self._accepted_ids.add(msg_id or "")
            self.record(body, body["batch"])
        return Reply(200, {"success": True})

    def _check_signature(self, request: ReceivedRequest) -> None:
        msg_id, stamp, signature = (
            request.headers.get(f"webhook-{name}") for name in ("id", "timestamp", "signature")
        )
        if self.secret is None:
            if signature is not None:
                raise Refused(400, "bad_signature: unexpected webhook-signature: no secret")
            return
        if not msg_id or not stamp or not signature:
            problem = "missing webhook-id/-timestamp/-signature"
        elif "." in msg_id:
            problem = "webhook-id must not contain '.'"
        elif not stamp.isdigit():
            problem = "webhook-timestamp must be integer seconds"
        elif abs(self.clock() - int(stamp)) > self.tolerance:
            problem = "webhook-timestamp is outside the tolerance"
        elif not _signed(self.secret, f"{msg_id}.{stamp}.".encode() + request.raw_body, signature):
            problem = "no matching v1 signature"
        else:
            return
        raise Refused(400, f"bad_signature: {problem}")

    def _check_envelope(self, body: Any) -> None:
        if not isinstance(body, dict):
            raise Refused(400, "bad_request: the body must be a JSON object")
        if set(body) - _ENVELOPE:
            raise Refused(400, f"bad_request: unknown fields {sorted(set(body) - _ENVELOPE)}")
        batch = body.get("batch")
        if not isinstance(batch, list) or not batch:
            raise Refused(400, "bad_request: batch must be a non-empty array")
        if len(batch) > self.max_messages:
            message = f"{len(batch)} messages exceed {self.max_messages}"
            raise Refused(self.too_large_status, f"payload_too_large: {message}")
        sent_at = _parse_iso(body.get("sentAt"))
        if sent_at is None:
            raise Refused(400, "bad_request: sentAt must be an ISO 8601 string with a zone")
        if abs(sent_at.timestamp() - self.clock()) > self.tolerance:
            raise Refused(400, "bad_request: sentAt is not the time of this request")
        for index, message in enumerate(batch):
            problem = _message_problem(message)
            if problem is not None:
                raise Refused(400, f"bad_request: batch[{index}]: {problem}")
            size = len(json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode())
            if size > self.max_message_bytes:
                problem = f"batch[{index}] is {size} bytes, over {self.max_message_bytes}"
                raise Refused(self.too_large_status, f"payload_too_large: {problem}")

    def _check_retry(self, request: ReceivedRequest, message_ids: list[str]) -> None:
        """A ``webhook-id`` sent before (`requests` holds every earlier request, scripted or
        not) must carry the first attempt's messages and a timestamp not before any earlier."""
        msg_id = request.headers.get("webhook-id")
        earlier = [r for r in self.requests if msg_id and r.headers.get("webhook-id") == msg_id]
        if not earlier:
            return
        try:
            first = [str(m["messageId"]) for m in json.loads(earlier[0].body)["batch"]]
        except (ValueError, LookupError, TypeError):
            first = message_ids  # the first attempt could not be read: nothing to compare
        if first != message_ids:
            raise Refused(400, "bad_request: webhook-id reused for a different batch")
        stamps = [r.headers.get("webhook-timestamp", "") for r in earlier]
        stamp = request.headers.get("webhook-timestamp", "")
        if stamp.isdigit() and int(stamp) < max((int(s) for s in stamps if s.isdigit()), default=0):
            raise Refused(400, "bad_request: webhook-timestamp went backwards on a retry")


def _message_problem(message: Any) -> str | None:
    if not isinstance(message, dict):
        return "a message must be an object"
    kind = message.get("type")
    if kind not in _FIELDS:
        return f"type must be 'track' or 'identify', got {kind!r}"
    if set(message) - _FIELDS[kind]:
        return f"unknown fields {sorted(set(message) - _FIELDS[kind])}"
    message_id = message.get("messageId")
    if not isinstance(message_id, str) or not _UUID.fullmatch(message_id):
        return f"messageId must be a UUID string, got {message_id!r}"
    if _parse_iso(message.get("timestamp")) is None:
        return f"timestamp must be an ISO 8601 string with a zone, got {message.get('timestamp')!r}"
    ids = [message.get("userId"), message.get("anonymousId")]
    for value in ids:
        if value is not None and (not isinstance(value, str) or not value.strip()):
            return f"userId/anonymousId must be non-empty strings, got {value!r}"
        if value is not None and value.strip().lower() in _PLACEHOLDER_IDS:
            return f"{value!r} is a placeholder, not an id"
    if ids == [None, None]:
        return "userId or anonymousId is required"
    if kind == "track" and (not isinstance(message.get("event"), str) or not message["event"]):
        return "a track message needs an event name"
    for field in ("properties", "traits", "context"):
        if not isinstance(message.get(field, {}), dict):
            return f"{field} must be an object"
    return None


def destination() -> FakeDestination:
    """A `WebhookFake` expecting the ``TEST_*`` credentials and path, and the variables for it."""
    fake = WebhookFake(secret=TEST_SECRET, auth=TEST_AUTH, path=TEST_PATH)
    credentials = {"TRACKING_WEBHOOK_AUTH": TEST_AUTH, "TRACKING_WEBHOOK_SECRET": TEST_SECRET}
    return FakeDestination(
        "webhook", fake, lambda url: {"TRACKING_WEBHOOK_URL": url + TEST_PATH, **credentials}
    )
