"""The webhook provider: Segment-format batches to any URL, signed per Standard Webhooks 1.0.

This module is the wire mapping only (settings, event -> message, request, response reading);
batching, retries, backoff, 413 splits and the 410 stop are the core's (`tracking_core.http`).

What is sent, for each batch (one ``POST`` to ``TRACKING_WEBHOOK_URL``)::

    {"batch": [message, ...], "sentAt": "2026-01-15T10:00:02.123Z"}

with Segment HTTP Tracking API messages (see `WebhookProvider.encode`) and, on every attempt,
the headers ``webhook-id`` (the batch's id, the same on every retry), ``webhook-timestamp``
(this attempt's Unix seconds) and, when ``TRACKING_WEBHOOK_SECRET`` is set,
``webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">``.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import dataclasses
import datetime as _dt
import hashlib
import hmac
import re
import time
import urllib.parse
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from tracking_core import (
    DropReason,
    SettingsError,
    TrackingEvent,
    TrackingIdentify,
    __version__,
    json_safe,
)
from tracking_core.event import usable_id
from tracking_core.http import (
    HttpProvider,
    HttpRequest,
    HttpResponse,
    Outcome,
    SkipItem,
    WireItem,
    default_outcome,
    join_json,
)
from tracking_core.settings import env_int, env_secret, env_url

__all__ = [
    "AUTH_VAR",
    "MAX_BATCH_BYTES_VAR",
    "MAX_EVENTS_VAR",
    "MAX_EVENT_BYTES_VAR",
    "SECRET_VAR",
    "URL_VAR",
    "WebhookProvider",
    "WebhookSettings",
    "anonymous_id_for",
    "format_timestamp",
    "sign",
    "signing_key",
]

#: Enables the provider: the full URL every batch is POSTed to (``_FILE`` variant accepted).
URL_VAR = "TRACKING_WEBHOOK_URL"
#: Sent verbatim as the ``Authorization`` header (``_FILE`` variant accepted).
AUTH_VAR = "TRACKING_WEBHOOK_AUTH"
#: Standard Webhooks signing secret, ``whsec_<base64>`` (``_FILE`` variant accepted).
SECRET_VAR = "TRACKING_WEBHOOK_SECRET"
#: Messages per request.
MAX_EVENTS_VAR = "TRACKING_WEBHOOK_MAX_EVENTS"
#: Bytes per request body.
MAX_BATCH_BYTES_VAR = "TRACKING_WEBHOOK_MAX_BATCH_BYTES"
#: Bytes per encoded message; larger events are dropped as ``too_large``.
MAX_EVENT_BYTES_VAR = "TRACKING_WEBHOOK_MAX_EVENT_BYTES"

#: Defaults that Segment's batch endpoint accepts (500 KB per request, 32 KB per message).
DEFAULT_MAX_EVENTS = 500
DEFAULT_MAX_BATCH_BYTES = 500_000
DEFAULT_MAX_EVENT_BYTES = 32_000

#: The prefix of a Standard Webhooks symmetric secret (the rest is base64).
SECRET_PREFIX = "whsec_"

#: Room left around the messages for ``{"batch":[...],"sentAt":"..."}``.
_ENVELOPE_BYTES = 128

#: The namespace of the generated ``anonymousId`` of events sent with neither id.
ANONYMOUS_NAMESPACE = uuid.UUID("0b7c5d1e-52a4-4f0a-9c0e-7d9f3f1a6b21")

_UTC = _dt.timezone.utc


#: How to make a secret, as said in every refusal of one.
_MAKE_SECRET = (
    'make one with: python -c "import base64, os; '
    "print('whsec_' + base64.b64encode(os.urandom(32)).decode())\""
)

_BASE64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")


def signing_key(secret: str) -> bytes:
    """The HMAC key of a Standard Webhooks secret, ``whsec_<base64>``: the decoded bytes.

    The remainder is standard base64 (``A-Z a-z 0-9 + /``), with or without its ``=``
    padding: exactly the forms that the reference verifiers (``standardwebhooks`` and ``svix``)
    read as the same key from the same text, so a receiver verifies with the secret as it is.
    Raises ValueError, whose message never holds the secret and says how to make a good one,
    for anything else: raw text or a key without the prefix (those libraries would read other
    bytes from it), the URL-safe alphabet, whitespace, or nothing after the prefix.
    """
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
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
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
    return str(uuid.uuid5(ANONYMOUS_NAMESPACE, event_id))


def _source(environ: Mapping[str, str], name: str) -> str:
    """The variable a secret was read from: `name`, or ``<name>_FILE`` when `name` is unset."""
    return name if (environ.get(name) or "").strip() else f"{name}_FILE"


def _read_url(environ: Mapping[str, str]) -> str | None:
    raw = env_secret(environ, URL_VAR)  # the URL may hold credentials: _FILE works too
    if raw is None:
        return None
    source = _source(environ, URL_VAR)
    env_url({source: raw}, source, endpoint=True)  # its errors never repeat the value
    # The URL is the endpoint itself, kept as given (a trailing slash can matter to a server,
    # and a redirect to the slashed form would not be followed).
    return raw


def _check_header_value(variable: str, value: str) -> None:
    if not all(" " <= char <= "~" or char == "\t" for char in value):
        raise SettingsError(
            variable,
            "must be printable ASCII on one line to be sent as the Authorization header",
        )


@dataclasses.dataclass(frozen=True)
class WebhookSettings:
    """The webhook provider's configuration (see `from_environ`). Its repr hides the URL, the
    Authorization value and the secret.

    Attributes:
        url: the endpoint, exactly as configured (may carry credentials or a token).
        auth: the ``Authorization`` header value, or None.
        secret: the signing secret as configured (``whsec_<base64>``), or None (no signature).
        key: the HMAC key derived from `secret` (see `signing_key`).
        max_events: messages per request.
        max_batch_bytes: bytes per request body.
        max_event_bytes: bytes per encoded message.
    """

    url: str = dataclasses.field(repr=False)
    auth: str | None = dataclasses.field(default=None, repr=False)
    secret: str | None = dataclasses.field(default=None, repr=False)
    key: bytes | None = dataclasses.field(default=None, repr=False)
    max_events: int = DEFAULT_MAX_EVENTS
    max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES
    max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> WebhookSettings | None:
        """Read the settings; None when ``TRACKING_WEBHOOK_URL`` (and its ``_FILE``) is unset.

        Raises `tracking_core.SettingsError`, naming the variable but never its value, for a
        malformed URL, an Authorization value that cannot be a header, a secret that is not
        ``whsec_<base64>`` (see `signing_key`), an unreadable ``_FILE``, or a limit that is not
        a whole number.
        """
        url = _read_url(environ)
        if url is None:
            return None
        auth = env_secret(environ, AUTH_VAR)
        if auth is not None:
            _check_header_value(_source(environ, AUTH_VAR), auth)
            parts = urllib.parse.urlsplit(url)
            if parts.username or parts.password:
                # The HTTP client turns URL credentials into its own Authorization header.
                raise SettingsError(
                    _source(environ, AUTH_VAR),
                    f"cannot be combined with credentials in {URL_VAR} (user:password@); "
                    "use one or the other",
                )
        secret = env_secret(environ, SECRET_VAR)
        key: bytes | None = None
        if secret is not None:
            try:
                key = signing_key(secret)
            except ValueError as exc:
                raise SettingsError(_source(environ, SECRET_VAR), str(exc)) from None
        return cls(
            url=url,
            auth=auth,
            secret=secret,
            key=key,
            max_events=env_int(environ, MAX_EVENTS_VAR, DEFAULT_MAX_EVENTS, minimum=1),
            max_batch_bytes=env_int(
                environ, MAX_BATCH_BYTES_VAR, DEFAULT_MAX_BATCH_BYTES, minimum=1024
            ),
            max_event_bytes=env_int(
                environ, MAX_EVENT_BYTES_VAR, DEFAULT_MAX_EVENT_BYTES, minimum=256
            ),
        )

    def secret_values(self) -> tuple[str, ...]:
        """Every configured value that must never reach a log line.

        Webhook URLs often carry credentials (``user:password@``, ``?token=``) or a token in
        the path, so the URL, its user info, its query and its path are masked too: debug lines
        show the host only.
        """
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

    def __init__(
        self, settings: WebhookSettings, *, clock: Callable[[], float] = time.time
    ) -> None:
        """`clock` gives the Unix time of each attempt (``sentAt``, ``webhook-timestamp``)."""
        self.settings = settings
        self._clock = clock
        self._secrets = settings.secret_values()
        self.max_events = settings.max_events
        self.max_request_bytes = settings.max_batch_bytes
        self.max_item_bytes = min(
            settings.max_event_bytes, settings.max_batch_bytes - _ENVELOPE_BYTES
        )

    def secrets(self) -> Sequence[str]:
        """The URL (and its parts), the Authorization value and the signing secret."""
        return self._secrets

    def encode(self, item: TrackingEvent | TrackingIdentify) -> WireItem:
        """One Segment message.

        An event becomes ``{"type": "track", "messageId": event_id, "event", "properties",
        "userId"?, "anonymousId"?, "timestamp", "context"}``; an event with neither id gets the
        `anonymous_id_for` its event id. An identify becomes ``{"type": "identify",
        "messageId", "userId", "traits", "timestamp", "context"}``. Property values and traits
        are converted by `tracking_core.json_safe`.
        """
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
                f"set {URL_VAR} to the final URL",
            )
        if status in (501, 505):
            return Outcome("reject", f"HTTP {status}: {response.text()}")
        if status in (401, 403):
            return Outcome(
                "reject",
                f"HTTP {status} (check {AUTH_VAR} and {SECRET_VAR}): {response.text()}",
            )
        return default_outcome(response)
