"""The wire mapping: what an HTTP provider declares, and the types it speaks in.

`HttpProvider` is the class provider authors subclass. It holds no sending state: the engine
gives each lane a `tracking_core.http.sender.Sender` that calls the mapping's methods.
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

from ..convert import _SINK as _conversion_sink
from ..event import TrackingEvent, TrackingIdentify, json_safe
from .masking import warn

__all__ = [
    "RETRY_AFTER_MAX",
    "HttpProvider",
    "HttpRequest",
    "HttpResponse",
    "Limits",
    "Outcome",
    "SkipItem",
    "WireItem",
    "default_outcome",
    "dumps",
    "join_json",
    "parse_retry_after",
]

#: The longest ``Retry-After`` honoured, in seconds (longer values are clamped).
RETRY_AFTER_MAX = 60.0

_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _one_pass_encoder() -> Callable[[Any, int], Sequence[str]]:
    """`_ENCODER`'s C encoder, made once: ``JSONEncoder.encode`` makes it again on every call
    (about a third of the cost of encoding one event). It skips the check for circular
    references: a value that holds itself fails with `RecursionError` instead of `ValueError`,
    and takes the `json_safe` path like every other value JSON cannot carry. Without the C
    accelerator (on PyPy, say), `_ENCODER.encode` does it all."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return lambda value, _level: (_ENCODER.encode(value),)
    encoder: Callable[[Any, int], Sequence[str]] = make(
        None,  # no circular-reference markers
        _ENCODER.default,
        json.encoder.encode_basestring,  # ensure_ascii=False
        None,  # no indent
        ":",
        ",",
        False,  # sort_keys
        False,  # skipkeys
        False,  # allow_nan
    )
    return encoder


_encode_once = _one_pass_encoder()

# The optional extra ``tracking-core[orjson]``: the same JSON, encoded in C (about ten times
# faster than the standard library's encoder per event; docs/benchmarks.md). What orjson would
# write differently from `json_safe` (datetimes, subclasses, dataclasses) it refuses under
# these options, as it refuses non-text keys, integers over 64 bits and lone surrogates: those
# values take the standard library's path below, so the bytes do not depend on the extra
# (`_fast_differs` catches the one difference in what it does write).
try:
    import orjson as _orjson
except ImportError:  # pragma: no cover - the extra is not installed
    _fast = None
    _FAST_OPTIONS = 0
else:
    _fast = _orjson.dumps
    _FAST_OPTIONS = (
        _orjson.OPT_PASSTHROUGH_DATETIME
        | _orjson.OPT_PASSTHROUGH_SUBCLASS
        | _orjson.OPT_PASSTHROUGH_DATACLASS
    )


def _fast_differs(encoded: bytes) -> bool:
    """True when orjson's `encoded` may hold a float under 1e-4, which it writes "1e-7" and
    "0.00001" where the standard library writes "1e-07" and "1e-05" (the same numbers; the one
    difference left). A string that looks alike (a UUID's "...8e-1b...") says True too: the
    standard library's path then encodes it, as without the extra."""
    if b"0.0000" in encoded:
        return True
    at = encoded.find(b"e-")
    while at != -1:
        digit_before, digit_after = encoded[at - 1 : at], encoded[at + 2 : at + 4]
        if digit_before.isdigit() and digit_after[:1].isdigit() and not digit_after[1:].isdigit():
            return True
        at = encoded.find(b"e-", at + 2)
    return False


def dumps(value: Any) -> bytes:
    """Compact, strict JSON (no NaN tokens) as UTF-8 bytes; values are converted by
    `tracking_core.json_safe` when plain encoding fails. With the ``orjson`` extra installed,
    orjson encodes what it encodes exactly as this does (NaN and infinities as null, as
    `json_safe` makes them)."""
    if _fast is not None:
        try:
            encoded: bytes = _fast(value, option=_FAST_OPTIONS)
        except Exception:
            pass  # the standard library's path decides what to send
        else:
            if not _fast_differs(encoded):
                return encoded
    return _dumps_stdlib(value)


def _dumps_stdlib(value: Any) -> bytes:
    """`dumps` with the standard library's encoder alone."""
    try:
        text = "".join(_encode_once(value, 0))
    except Exception:  # a value JSON cannot carry, or a mapping that raises while read
        text = _ENCODER.encode(json_safe(value))
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: keep the event, replace the bad characters
        return text.encode("utf-8", "replace")


def join_json(items: Sequence[bytes]) -> bytes:
    """A JSON array made of already encoded items."""
    return b"[" + b",".join(items) + b"]"


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (seconds or an HTTP date), clamped to
    [0, `RETRY_AFTER_MAX`]; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            import email.utils  # ~10 ms of imports, only for a Retry-After given as a date

            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if math.isnan(seconds):
        return None
    return min(max(seconds, 0.0), RETRY_AFTER_MAX)


class SkipItem(Exception):
    """Raised by `HttpProvider.encode` for an item the vendor cannot take; counted as dropped."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclasses.dataclass(frozen=True)
class WireItem:
    """One encoded item: the JSON-ready `payload` and the `route` (request kind) it goes to."""

    payload: Any
    route: str = "default"


@dataclasses.dataclass(frozen=True)
class Limits:
    """A vendor's request limits for one route.

    Attributes:
        max_events: items per request.
        max_bytes: encoded (uncompressed) body size per request.
        max_item_bytes: encoded size of one item; larger items are dropped as ``too_large``.
    """

    max_events: int
    max_bytes: int
    max_item_bytes: int


@dataclasses.dataclass(frozen=True)
class HttpRequest:
    """One request to send. `gzip`: compress the body when it is large enough to be worth it."""

    url: str
    body: bytes
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict)
    gzip: bool = False


@dataclasses.dataclass(frozen=True)
class HttpResponse:
    """The vendor's answer, as given to `HttpProvider.read_response`.

    Attributes:
        status: the HTTP status code.
        headers: the response headers, names in lower case.
        body: the body, decoded when it came gzip- or deflate-encoded, and at most
            `tracking_core.transport.MAX_ANSWER_BYTES` long.
        count: how many items the request carried.
        items: the encoded items the request carried, in order (indexes in an `Outcome` refer
            to them), for vendors whose answer names items by their ids.
        truncated: the answer was longer than `body`: only its start was read (its status
            still counts).
    """

    status: int
    headers: Mapping[str, str]
    body: bytes
    count: int
    items: Sequence[bytes] = ()
    truncated: bool = False

    def json(self) -> Any:
        """The body parsed as JSON, or None when it is not JSON."""
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    def text(self, limit: int = 200) -> str:
        """The start of the body as text, for log lines."""
        return self.body[:limit].decode("utf-8", "replace").strip()


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What a response means for the batch it answered.

    Attributes:
        kind: ``"delivered"``; ``"retry"`` (transient: back off and send again); ``"split"``
            (413: halve the batch; a single item is dropped as too large); ``"reject"`` (drop
            the whole batch, not retried); ``"gone"`` (drop it and stop this provider).
        reason: a short text for the log (never a secret).
        retry_after: with ``"retry"``, seconds to wait instead of the computed backoff.
        rejected: item indexes the vendor refused; they are dropped (``rejected``), whatever
            the kind.
        retry_only: with ``"retry"``, the only indexes to send again; the others that are not
            rejected count as delivered. None: every item not rejected is sent again.
    """

    kind: Literal["delivered", "retry", "split", "reject", "gone"]
    reason: str = ""
    retry_after: float | None = None
    rejected: Sequence[int] = ()
    retry_only: Sequence[int] | None = None


def default_outcome(response: HttpResponse) -> Outcome:
    """The status-code reading every provider starts from."""
    status = response.status
    if 200 <= status < 300:
        return Outcome("delivered")
    if status == 410:
        return Outcome("gone", f"HTTP 410 Gone: {response.text()}")
    if status == 413:
        return Outcome("split", "HTTP 413 Payload Too Large")
    if status in (408, 429) or status >= 500:
        return Outcome(
            "retry",
            f"HTTP {status}",
            retry_after=parse_retry_after(response.headers.get("retry-after")),
        )
    return Outcome("reject", f"HTTP {status}: {response.text()}")


class HttpProvider(abc.ABC):
    """Base class of a provider that delivers batches over HTTP: its wire mapping only.

    Subclasses set `name` and implement `encode` and `build_request`; `read_response`, the
    limits and `secrets` have defaults. The engine recognises an `HttpProvider` and gives its
    lane a `tracking_core.http.sender.Sender`, which batches, sends, retries and counts; the
    provider itself holds no sending state and needs no ``track`` method.
    """

    name: str
    #: The provider's configuration (a `tracking_core.kit.ProviderSettings`, as
    #: `tracking_core.kit.ProviderPlugin` builds providers: ``provider(settings)``), or None.
    settings: Any = None
    #: Items per request (the engine also caps batches by ``TRACKING_BATCH_SIZE``).
    max_events: int = 1000
    #: Encoded body size per request, in bytes, before compression.
    max_request_bytes: int = 1_000_000
    #: Encoded size of one item; None means `max_request_bytes` less the envelope.
    max_item_bytes: int | None = None

    def __init__(self, settings: Any = None) -> None:
        self.settings = settings

    @abc.abstractmethod
    def encode(self, item: TrackingEvent | TrackingIdentify) -> WireItem:
        """The wire form of one event or identify. Raise `SkipItem` to drop it (counted)."""

    @abc.abstractmethod
    def build_request(self, route: str, items: Sequence[bytes], batch_id: str) -> HttpRequest:
        """One request carrying `items` (each an encoded JSON value, in order) to `route`.

        `batch_id` is a UUID string that stays the same on every attempt of this batch. This is
        called again for every attempt, so per-attempt values (a ``sent_at``, a signature
        timestamp) are fresh while the items stay byte-identical.
        """

    def read_response(self, route: str, response: HttpResponse) -> Outcome:
        """What the vendor's answer means; the default reads the status code only."""
        return default_outcome(response)

    def validation_request(
        self, route: str, items: Sequence[bytes], batch_id: str
    ) -> HttpRequest | None:
        """The request that has the vendor check `items` without recording them, as
        `build_request` would send them (``tracking send --validate``), or None (the default):
        the vendor offers no validation. Override it together with `read_validation`."""
        return None

    def read_validation(self, route: str, response: HttpResponse) -> list[str]:
        """What the vendor found in a `validation_request`, one line each (none: valid). Called
        for 2xx answers only; other answers go through `read_response`."""
        return []

    def note_conversion(self, kind: str, message: str, *args: object) -> None:
        """Count one value this mapping sends other than it was given (a name rewritten, a
        value cut to the vendor's limit, a parameter left out) under `kind` in the provider's
        `conversions` (``tracking_stats()``), and log `message` like `warn` (rate-limited per
        kind, masked). Never put the value itself in the message: it may be personal data."""
        sink = _conversion_sink.get()
        if sink is not None:
            with contextlib.suppress(Exception):
                sink(kind)
        self.warn(f"conversion:{kind}", message, *args)

    def limits(self, route: str) -> Limits:
        """The request limits for `route`; by default the class attributes."""
        return Limits(
            self.max_events,
            self.max_request_bytes,
            self.max_item_bytes if self.max_item_bytes is not None else self.max_request_bytes,
        )

    def batch_limit(self) -> int:
        """The most items the engine hands over at once; by default `max_events`."""
        return self.max_events

    def secrets(self) -> Sequence[str]:
        """Values to mask in every log line this provider causes (keys, tokens).

        By default the secrets of the provider's ``settings`` attribute, when it has one with
        a ``secrets()`` method (as `tracking_core.kit.ProviderSettings` does), else none.
        """
        settings = getattr(self, "settings", None)
        secrets = getattr(settings, "secrets", None)
        return tuple(secrets()) if callable(secrets) else ()

    def warn(self, key: str, message: str, *args: object) -> None:
        """Log a warning through the rate limiter (one line per key a minute), with this
        provider's secrets masked in every string argument, in every form they are sent in
        (what its sender derived from them included). `message` is %-formatted and gets the
        prefix ``"tracking: "``."""
        warn(self, key, message, *args)

    def __repr__(self) -> str:
        # Never show attributes: they hold keys.
        return f"<{type(self).__name__} {getattr(self, 'name', '?')!r}>"
