"""A strict loopback fake of Segment's HTTP Tracking API batch endpoint, and of RudderStack's
data plane (``vendor="rudderstack"``), which takes the same batches: a `VendorFake`.

It checks what the vendor checks: ``POST {path_prefix}/v1/batch`` as ``application/json``
(gzip allowed), the write key as the Basic auth user (Segment also takes it as the body's
``writeKey``; else 401), a strict JSON ``{"batch": [...]}`` body of at most 500 KB (Segment) or
4 MB (RudderStack), and each message: a known ``type``, a ``messageId``, a ``userId`` or an
``anonymousId``, an ``event`` on a track, at most 32 KB (else 400, as Segment answers).
``strict`` (the default) also refuses a ``timestamp`` that is not ISO 8601 with an offset.
Messages are deduplicated on ``messageId``, as both vendors do. Segment answers
``200 {"success": true}`` and errors as ``{"code", "message"}``; RudderStack answers in text.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime as _dt
import json
from collections.abc import Mapping
from typing import Any

from tracking_core.fakes import FakeDestination, Refused, VendorFake
from tracking_core.receivers import ReceivedRequest, Reply

__all__ = ["SegmentFake", "destination", "rudderstack_destination"]

#: The write keys the destinations expect.
TEST_SEGMENT_KEY = "demo-segment-write-key-01"
TEST_RUDDERSTACK_KEY = "demo-rudderstack-write-key-01"
TYPES = frozenset({"track", "identify", "page", "screen", "group", "alias"})
BODY_LIMITS = {"segment": 500_000, "rudderstack": 4_000_000}


def _basic_user(request: ReceivedRequest) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        return base64.b64decode(token, validate=True).decode().partition(":")[0]
    except (binascii.Error, UnicodeDecodeError):
        return None


@dataclasses.dataclass(eq=False, repr=False)
class SegmentFake(VendorFake):
    """Segment's ``/v1/batch``, or RudderStack's (see the module doc).

    Args:
        write_key: the key to expect; None accepts any non-empty key.
        vendor: ``"segment"`` or ``"rudderstack"``: the body limit and the answers.
        path_prefix: a proxy prefix the requests must carry (``/proxy`` -> ``/proxy/v1/batch``).
        strict: also refuse a timestamp that is not ISO 8601 with an offset.
    """

    id_key, user_key, identify_when = "messageId", "userId", ("type", "identify")
    too_large_status = 400

    write_key: str | None = None
    _: dataclasses.KW_ONLY
    vendor: str = "segment"
    path_prefix: str = ""
    strict: bool = True
    max_message_bytes: int = 32_000

    def __post_init__(self) -> None:
        super().__post_init__()
        self.max_body_bytes = BODY_LIMITS[self.vendor]

    def refusal(self, status: int, message: str) -> Reply:
        if self.vendor == "segment":
            return Reply(status, {"code": f"http_{status}", "message": message})
        return Reply(status, message)

    def dedupe_key(self, item: Mapping[str, Any]) -> str:
        return str(item["messageId"])

    def handle(self, request: ReceivedRequest) -> Reply:
        if request.method != "POST":
            raise Refused(405, f"method {request.method} not allowed")
        prefix = "/" + self.path_prefix.strip("/") if self.path_prefix.strip("/") else ""
        if request.path.rstrip("/") != f"{prefix}/v1/batch":
            raise Refused(404, f"no route for {request.path}")
        if self.media_type(request) != "application/json":
            raise Refused(400, "the Content-Type must be application/json")
        body = self.read_json(request)
        key = _basic_user(request)
        if key is None and self.vendor == "segment" and isinstance(body, dict):
            key = body.get("writeKey")
        if not key or self.write_key not in (None, key):
            raise Refused(401, "invalid write key")
        batch = body.get("batch") if isinstance(body, dict) else None
        if not isinstance(batch, list) or not batch:
            raise Refused(400, 'expected {"batch": [message, ...]} with at least one message')
        for message in batch:
            self._check(message)
        self.record(body, batch)
        return Reply(200, {"success": True} if self.vendor == "segment" else "OK")

    def _check(self, message: Any) -> None:
        if not isinstance(message, dict) or message.get("type") not in TYPES:
            raise Refused(400, f"a message of unknown type: {str(message)[:80]}")
        size = len(json.dumps(message, separators=(",", ":")).encode())
        if size > self.max_message_bytes:
            raise Refused(400, f"a message of {size} bytes (max {self.max_message_bytes})")
        if not isinstance(message.get("messageId"), str) or not message["messageId"]:
            raise Refused(400, "a message without a messageId")
        if not any(
            isinstance(message.get(k), str) and message[k] for k in ("userId", "anonymousId")
        ):
            raise Refused(400, "a message without a userId or an anonymousId")
        if message["type"] == "track" and not (
            isinstance(message.get("event"), str) and message["event"]
        ):
            raise Refused(400, "a track message without an event name")
        stamp = message.get("timestamp")
        if self.strict and stamp is not None:
            try:
                aware = _dt.datetime.fromisoformat(str(stamp)).utcoffset() is not None
            except ValueError:
                aware = False
            if not aware:
                raise Refused(
                    400, f"fake (strict): timestamp {stamp!r} is not ISO 8601 with offset"
                )


def destination() -> FakeDestination:
    """A Segment fake expecting the test key, and the variables that point Segment at it."""
    fake = SegmentFake(TEST_SEGMENT_KEY)
    variables = {"SEGMENT_WRITE_KEY": TEST_SEGMENT_KEY}
    return FakeDestination("segment", fake, lambda url: {**variables, "SEGMENT_HOST": url})


def rudderstack_destination() -> FakeDestination:
    """A RudderStack fake expecting the test key, and the variables that point RudderStack at it."""
    fake = SegmentFake(TEST_RUDDERSTACK_KEY, vendor="rudderstack")
    variables = {"RUDDERSTACK_WRITE_KEY": TEST_RUDDERSTACK_KEY}
    return FakeDestination(
        "rudderstack", fake, lambda url: {**variables, "RUDDERSTACK_DATA_PLANE_URL": url}
    )
