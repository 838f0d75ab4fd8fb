"""The webhook: Segment-format batches to any URL, signed per Standard Webhooks 1.0.

Each batch is one ``POST`` of ``{"batch": [message, ...], "sentAt": ...}`` (Segment HTTP Tracking
API messages), with the headers ``webhook-id`` (the batch's id, the same on every retry),
``webhook-timestamp`` (this attempt's Unix seconds) and, with a signing secret,
``webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">``.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import dataclasses
import datetime as _dt
import re
import time
import urllib.parse
from collections.abc import Callable, Sequence
from typing import Any

from tracking_core import DropReason, SettingsError, TrackingEvent, TrackingIdentify, json_safe
from tracking_core._version import __version__
from tracking_core.event import usable_id, uuid5_string
from tracking_core.http import HttpProvider, HttpRequest, HttpResponse, Outcome, SkipItem, WireItem
from tracking_core.http.wire import default_outcome, join_json
from tracking_core.kit import ProviderSettings, endpoint, integer, var

__all__ = ["WebhookProvider", "WebhookSettings", "anonymous_id_for", "sign", "signing_key"]

#: The prefix of a Standard Webhooks symmetric secret (the rest is base64).
SECRET_PREFIX = "whsec_"

#: Room left around the messages for ``{"batch":[...],"sentAt":"..."}``.
_ENVELOPE_BYTES = 128

#: The namespace of the generated ``anonymousId`` of events sent with neither id.
ANONYMOUS_NAMESPACE = "0b7c5d1e-52a4-4f0a-9c0e-7d9f3f1a6b21"

_UTC = _dt.timezone.utc


#: How to make a secret, as said in every refusal of one.
_MAKE_SECRET = (
    'make one with: python -c "import base64, os; '
    "print('whsec_' + base64.b64encode(os.urandom(32)).decode())\""
)

_BASE64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")


def signing_key(secret: str) -> bytes:
    """The HMAC key of a Standard Webhooks secret, ``whsec_<standard base64>`` (``=`` padding
    optional): the forms the reference verifiers (``standardwebhooks``, ``svix``) read as the
    same key. Raises ValueError (never holding the secret; saying how to make a good one) for
    anything else, which those libraries would read as other bytes or refuse."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError(
            f"must be {SECRET_PREFIX} followed by a base64 key, the form Standard Webhooks "
            f"verifiers read the same way (a base64 key without the prefix: put {SECRET_PREFIX} "
            f"in front of it); {_MAKE_SECRET}"
        )
    encoded = secret[len(SECRET_PREFIX) :]
    if not encoded:
        raise ValueError(f"starts with {SECRET_PREFIX} but holds no key after it; {_MAKE_SECRET}")
    if _BASE64.fullmatch(encoded):
        with contextlib.suppress(binascii.Error):  # e.g. a length no base64 text has
            return base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    raise ValueError(
        f"starts with {SECRET_PREFIX} but what follows is not standard base64 "
        f"(A-Z, a-z, 0-9, + and /, optional = padding); {_MAKE_SECRET}"
    )


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


def _signing_secret(variable: str, secret: str) -> str:
    """`secret`, when `signing_key` reads a key from it; its refusal names `variable`."""
    try:
        signing_key(secret)
    except ValueError as exc:
        raise SettingsError(variable, str(exc)) from None
    return secret


def _header_value(variable: str, value: str) -> str:
    if not all(" " <= char <= "~" or char == "\t" for char in value):
        raise SettingsError(
            variable,
            "must be printable ASCII on one line to be sent as the Authorization header",
        )
    return value


@dataclasses.dataclass(frozen=True)
class WebhookSettings(ProviderSettings):
    """The webhook provider's configuration. Its repr hides the URL (used exactly as given: it
    may carry credentials or a token), the Authorization value and the secret; `secrets` lists
    them with the parts of the URL a receiver may echo. `key` is the HMAC key derived from
    `secret` (see `signing_key`)."""

    url: str = var(
        "TRACKING_WEBHOOK_URL",
        "the full URL every batch is POSTed to; masked like a secret (it may hold credentials)",
        required=True,
        secret=True,
        check=endpoint,
    )
    auth: str | None = var(
        "TRACKING_WEBHOOK_AUTH",
        "sent verbatim as the Authorization header (e.g. 'Bearer <token>')",
        secret=True,
        check=_header_value,
    )
    secret: str | None = var(
        "TRACKING_WEBHOOK_SECRET",
        "Standard Webhooks signing secret, 'whsec_<base64>': signs every request",
        secret=True,
        check=_signing_secret,
    )
    max_events: int = var(
        "TRACKING_WEBHOOK_MAX_EVENTS", "messages per request", default="500", check=integer(1)
    )
    max_batch_bytes: int = var(
        "TRACKING_WEBHOOK_MAX_BATCH_BYTES",
        "bytes per request body",
        default="500000",
        check=integer(1024),
    )
    max_event_bytes: int = var(
        "TRACKING_WEBHOOK_MAX_EVENT_BYTES",
        "bytes per message; a larger event is dropped (too_large)",
        default="32000",
        check=integer(256),
    )
    key: bytes | None = dataclasses.field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.key is None and self.secret is not None:
            object.__setattr__(self, "key", signing_key(self.secret))

    def validate(self) -> None:
        """An Authorization value and credentials in the URL exclude each other: the HTTP
        client turns URL credentials into its own Authorization header."""
        parts = urllib.parse.urlsplit(self.url)
        if self.auth is not None and (parts.username or parts.password):
            raise SettingsError(
                self.name_of("auth"),
                f"cannot be combined with credentials in {self.variable('url').name} "
                "(user:password@); use one or the other",
            )

    def secrets(self) -> tuple[str, ...]:
        """The secrets, and the parts of the URL a receiver may echo (user info, query, query
        values, path: URLs often carry a token), longest first."""
        values: list[str] = [self.url]
        parts = urllib.parse.urlsplit(self.url)
        values += [parts.username or "", parts.password or "", parts.query]
        # A receiver may echo one query value alone (``token=abc`` -> ``abc``).
        values += [value for _, value in urllib.parse.parse_qsl(parts.query) if len(value) >= 4]
        if parts.path.strip("/"):
            values.append(parts.path)
        if self.auth:
            values.append(self.auth)
            values.append(self.auth.partition(" ")[2])  # the credentials after "Bearer "
        if self.secret:
            values.append(self.secret)
            values.append(self.secret.removeprefix(SECRET_PREFIX))
        # Longest first, so that a secret is masked whole before any part of it.
        return tuple(sorted({v for v in values if v}, key=len, reverse=True))


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
