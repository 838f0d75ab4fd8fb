"""The webhook: Segment-format batches to any URL, signed per Standard Webhooks 1.0.

Each batch is one ``POST`` of ``{"batch": [message, ...], "sentAt": ...}`` (Segment HTTP Tracking
API messages), with the headers ``webhook-id`` (the batch's id, the same on every retry),
``webhook-timestamp`` (this attempt's Unix seconds) and, with a signing secret,
``webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">``.
"""

from __future__ import annotations

import base64
import datetime as _dt
import time
from collections.abc import Callable, Sequence
from typing import Any

from tracking_core import DropReason, TrackingEvent, TrackingIdentify, json_safe
from tracking_core._version import __version__
from tracking_core.event import usable_id, uuid5_string
from tracking_core.http import HttpProvider, HttpRequest, HttpResponse, Outcome, SkipItem, WireItem
from tracking_core.http.wire import default_outcome, join_json

from .settings import SECRET_PREFIX, WebhookSettings, signing_key

__all__ = [
    "SECRET_PREFIX",
    "WebhookProvider",
    "WebhookSettings",
    "anonymous_id_for",
    "sign",
    "signing_key",
]

#: Room left around the messages for ``{"batch":[...],"sentAt":"..."}``.
_ENVELOPE_BYTES = 128

#: The namespace of the generated ``anonymousId`` of events sent with neither id.
ANONYMOUS_NAMESPACE = "0b7c5d1e-52a4-4f0a-9c0e-7d9f3f1a6b21"

_UTC = _dt.timezone.utc


def sign(key: bytes, message_id: str, timestamp: int, body: bytes) -> str:
    """The Standard Webhooks ``v1`` signature of `body`: ``v1,<base64 HMAC-SHA256>`` over
    ``"{message_id}.{timestamp}.{body}"``, exactly the bytes sent."""
    import hmac  # with hashlib: only when a request is signed

    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, "sha256").digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def format_timestamp(moment: _dt.datetime) -> str:
    """ISO 8601 in UTC with milliseconds and a ``Z``, as Segment writes them
    (``2026-01-15T10:00:00.000Z``). A naive datetime is taken as UTC."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(_UTC).replace(tzinfo=None)
    return moment.isoformat(timespec="milliseconds") + "Z"


def anonymous_id_for(event_id: str) -> str:
    """The ``anonymousId`` sent for an event with neither a user id nor an anonymous id.

    Segment requires one of the two on every message. It is a UUID derived from the event's id
    (UUID5), so it is the same on every retry, is never a shared placeholder such as
    ``"anonymous"``, and each such event counts as its own anonymous visitor.
    """
    return uuid5_string(ANONYMOUS_NAMESPACE, event_id)


class WebhookProvider(HttpProvider):
    """Sends events and identifies as Segment HTTP Tracking API batches to one URL.

    Any 2xx is success. A 3xx is not followed and drops the batch (update the URL instead);
    410 stops the provider; 408, 429 and 5xx (but 501 and 505) are retried by the core with
    backoff, honouring ``Retry-After``; 413 halves the batch; other statuses drop it.
    """

    name = "webhook"
    settings: WebhookSettings

    def __init__(
        self, settings: WebhookSettings, *, clock: Callable[[], float] = time.time
    ) -> None:
        """`clock` gives the Unix time of each attempt (``sentAt``, ``webhook-timestamp``)."""
        super().__init__(settings)
        self._clock = clock
        self.max_events = settings.max_events
        self.max_request_bytes = settings.max_batch_bytes
        self.max_item_bytes = min(
            settings.max_event_bytes, settings.max_batch_bytes - _ENVELOPE_BYTES
        )

    def encode(self, item: TrackingEvent | TrackingIdentify) -> WireItem:
        """One Segment ``track`` message (with neither id: `anonymous_id_for` its event id) or
        ``identify`` message."""
        context = {"library": {"name": "tracking-core", "version": __version__}}
        if isinstance(item, TrackingIdentify):
            if usable_id(item.user_id) is None:
                raise SkipItem(
                    DropReason.REJECTED,
                    "identify() with a blank or placeholder user id (receivers refuse it)",
                )
            return WireItem(
                {
                    "type": "identify",
                    "messageId": item.event_id,
                    "userId": item.user_id,
                    "traits": json_safe(item.traits),
                    "timestamp": format_timestamp(item.timestamp),
                    "context": context,
                }
            )
        message: dict[str, Any] = {
            "type": "track",
            "messageId": item.event_id,
            "event": item.name,
            "properties": json_safe(item.properties),
        }
        user_id, anonymous_id = usable_id(item.user_id), usable_id(item.anonymous_id)
        if user_id:
            message["userId"] = user_id
        if anonymous_id:
            message["anonymousId"] = anonymous_id
        if not user_id and not anonymous_id:
            message["anonymousId"] = anonymous_id_for(item.event_id)
        message["timestamp"] = format_timestamp(item.timestamp)
        message["context"] = context
        return WireItem(message)

    def build_request(self, route: str, items: Sequence[bytes], batch_id: str) -> HttpRequest:
        """The batch body with a fresh ``sentAt``, and this attempt's headers (signed when a
        secret is set). `batch_id`, the same on every retry, is the ``webhook-id``."""
        now = self._clock()
        sent_at = format_timestamp(_dt.datetime.fromtimestamp(now, _UTC))
        body = b'{"batch":' + join_json(items) + b',"sentAt":"' + sent_at.encode() + b'"}'
        timestamp = int(now)
        headers = {"webhook-id": batch_id, "webhook-timestamp": str(timestamp)}
        if self.settings.key is not None:
            headers["webhook-signature"] = sign(self.settings.key, batch_id, timestamp, body)
        if self.settings.auth is not None:
            headers["Authorization"] = self.settings.auth
        return HttpRequest(self.settings.url, body, headers)

    def read_response(self, route: str, response: HttpResponse) -> Outcome:
        """Any 2xx is success; 3xx, 501 and 505 drop the batch; the rest as the core reads it
        (410 stops the provider, 413 splits, 408/429/5xx retry with ``Retry-After``)."""
        status = response.status
        if 300 <= status < 400:
            return Outcome(
                "reject",
                f"HTTP {status}: the receiver redirects, and redirects are not followed; "
                f"set {WebhookSettings.variable('url').name} to the final URL",
            )
        if status in (501, 505):
            return Outcome("reject", f"HTTP {status}: {response.text()}")
        if status in (401, 403):
            return Outcome(
                "reject",
                f"HTTP {status} (check {WebhookSettings.variable('auth').name} and "
                f"{WebhookSettings.variable('secret').name}): {response.text()}",
            )
        return default_outcome(response)
