"""The batching HTTP sender that every HTTP provider reuses.

A provider subclasses `HttpProvider` and writes only its wire mapping:

- `HttpProvider.encode`: one event or identify -> a `WireItem` (a JSON-ready payload and the
  *route* it goes to; one request never mixes routes), or `SkipItem` when the vendor cannot take it;
- `HttpProvider.build_request`: a route and a list of encoded items -> one `HttpRequest`
  (URL, headers, body). It is called again for every attempt, so per-attempt values
  (a ``sent_at``, a signature timestamp) are fresh while the items stay byte-identical;
- `HttpProvider.read_response` (optional): the vendor's answer -> an `Outcome`;
- the limits: `max_events`, `max_request_bytes`, `max_item_bytes` (or `HttpProvider.limits`
  per route).

The engine and this module do the rest: batching by count, time and encoded size; one
transport per provider (`tracking_core.transport.DefaultTransport`: keep-alive, TLS verification
on, the environment's proxies, one deadline per attempt, answers read up to
`tracking_core.transport.MAX_ANSWER_BYTES`); retries with exponential backoff and full jitter on
connection errors, timeouts, 408, 429 and 5xx, honouring ``Retry-After``; bounded attempts and
time per batch; 413 splits; partial rejections; a circuit that probes a dead destination slowly;
410 stops the provider; every drop counted under its reason; the provider's secrets masked, in
every form they are sent in, in every log line and ``last_error``.

``httpx`` is imported the first time a request is sent, so ``import tracking_core`` stays cheap.
"""

from __future__ import annotations

import abc
import base64
import dataclasses
import gzip
import json
import logging
import math
import os
import time
import types
import urllib.parse
import weakref
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from ._log import logger, mask, rate_limited, secret_forms
from ._version import __version__
from .engine import DeliveryControl, DropReason, Item
from .event import TrackingEvent, TrackingIdentify, json_safe, uuid4_strings
from .process import import_guard

if TYPE_CHECKING:
    import httpx

__all__ = [
    "HttpProvider",
    "HttpRequest",
    "HttpResponse",
    "Limits",
    "Outcome",
    "SkipItem",
    "WireItem",
    "dumps",
    "join_json",
    "parse_retry_after",
]

# A provider's first request imports the HTTP stack and builds its transport (SSL context,
# certifi) on a worker thread. A fork in the middle of that would leave the child with
# half-imported modules (or a held import lock), so forks wait for it (`ImportGuard`: one per
# process, its fork hooks safe whenever they are registered).
_STACK_LOCK = import_guard()


#: Bodies at least this large are gzipped when the request allows it.
GZIP_MIN_BYTES = 1024
#: The longest ``Retry-After`` honoured, in seconds (longer values are clamped).
RETRY_AFTER_MAX = 60.0


_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def dumps(value: Any) -> bytes:
    """Compact, strict JSON (no NaN tokens) as UTF-8 bytes; values are converted by
    `tracking_core.json_safe` when plain encoding fails."""
    try:
        text = _ENCODER.encode(value)
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


def _jitter() -> float:
    """A uniform random fraction in [0, 1) for full-jitter backoff (no `random` import)."""
    return int.from_bytes(os.urandom(7), "big") / (1 << 56)


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


class _SecretMask(logging.Filter):
    """Masks the live HTTP providers' secrets in httpcore's DEBUG lines (they show response
    headers, where a vendor may echo a key)."""

    def __init__(self) -> None:
        super().__init__()
        self.providers: weakref.WeakSet[HttpProvider] = weakref.WeakSet()

    def filter(self, record: logging.LogRecord) -> bool:
        forms = [form for provider in list(self.providers) for form in provider._masks()]
        if forms:
            message = record.getMessage()
            masked = mask(message, sorted(forms, key=len, reverse=True))
            if masked != message:
                record.msg, record.args = masked, None
        return True


_secret_mask = _SecretMask()
for _name in ("httpcore.http11", "httpcore.http2", "httpcore.connection", "httpcore.proxy"):
    logging.getLogger(_name).addFilter(_secret_mask)

#: Request headers whose values are credentials: masked in every form once sent.
_CREDENTIAL_HEADERS = frozenset({"authorization", "proxy-authorization"})

_transport: types.ModuleType | None = None


def _transport_module() -> types.ModuleType:
    """`tracking_core.transport`, imported on first use (it imports httpx and httpcore): kept
    here so that a request pays no import statement."""
    global _transport
    if _transport is None:
        from . import transport

        _transport = transport
    return _transport


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
    """Base class for providers that deliver batches over HTTP (see the module doc).

    Subclasses set `name` and implement `encode` and `build_request`. The engine recognises an
    `HttpProvider` and batches for it; `track` is not called.
    """

    name: str
    #: Items per request (the engine also caps batches by ``TRACKING_BATCH_SIZE``).
    max_events: int = 1000
    #: Encoded body size per request, in bytes, before compression.
    max_request_bytes: int = 1_000_000
    #: Encoded size of one item; None means `max_request_bytes` less the envelope.
    max_item_bytes: int | None = None

    #: The transport requests go through (built on the first request, in each process).
    _client: httpx.BaseTransport | None = None
    _client_pid: int = 0
    #: Values derived from what was sent (URL credentials, the Basic token made from them,
    #: Authorization values), masked like `secrets()`.
    _derived: tuple[str, ...] = ()
    _mask_cache: tuple[tuple[str, ...], tuple[str, ...]] | None = None
    _consecutive_failures: int = 0
    _circuit_until: float = 0.0

    # -- what a provider writes -------------------------------------------------------------

    @abc.abstractmethod
    def encode(self, item: TrackingEvent | TrackingIdentify) -> WireItem:
        """The wire form of one event or identify. Raise `SkipItem` to drop it (counted)."""

    @abc.abstractmethod
    def build_request(self, route: str, items: Sequence[bytes], batch_id: str) -> HttpRequest:
        """One request carrying `items` (each an encoded JSON value, in order) to `route`.

        `batch_id` is a UUID string that stays the same on every attempt of this batch.
        """

    def read_response(self, route: str, response: HttpResponse) -> Outcome:
        """What the vendor's answer means; the default reads the status code only."""
        return default_outcome(response)

    def limits(self, route: str) -> Limits:
        """The request limits for `route`; by default the class attributes."""
        return Limits(
            self.max_events,
            self.max_request_bytes,
            self.max_item_bytes if self.max_item_bytes is not None else self.max_request_bytes,
        )

    def secrets(self) -> Sequence[str]:
        """Values to mask in every log line this provider causes (keys, tokens)."""
        return ()

    def __repr__(self) -> str:
        # Never show attributes: they hold keys.
        return f"<{type(self).__name__} {getattr(self, 'name', '?')!r}>"

    # -- the protocol -------------------------------------------------------------------------

    def track(self, event: TrackingEvent) -> None:
        """Not used: the engine hands an `HttpProvider` batches through `deliver_batch`."""
        raise TypeError(
            f"{type(self).__name__} delivers in batches; register it with "
            "register_tracking_provider() and call tracking_core.track()"
        )

    def batch_limit(self) -> int:
        return self.max_events

    # -- delivery (engine side) ---------------------------------------------------------------

    def deliver_batch(self, items: Sequence[Item], control: DeliveryControl) -> None:
        """Encode `items`, group them by route, cut requests by the limits, and send them."""
        groups: dict[str, list[bytes]] = {}
        limits_of: dict[str, Limits] = {}  # limits() is asked once per route and batch
        for item in items:
            try:
                wire = self.encode(item)
                data = dumps(wire.payload)
            except SkipItem as skip:
                control.dropped(skip.reason, 1)
                self.warn(skip.reason, "%s dropped an item: %s", self.name, str(skip))
                continue
            except Exception as exc:
                control.dropped(DropReason.PROVIDER_ERROR, 1)
                self.warn(
                    "encode",
                    "%s could not encode an item (%s); dropped",
                    self.name,
                    type(exc).__name__,
                )
                continue
            route_limits = limits_of.get(wire.route)
            if route_limits is None:
                route_limits = limits_of[wire.route] = self.limits(wire.route)
            limit = route_limits.max_item_bytes
            if len(data) > limit:
                control.dropped(DropReason.TOO_LARGE, 1)
                self.warn(
                    DropReason.TOO_LARGE,
                    "%s dropped an item of %d bytes (limit %d)",
                    self.name,
                    len(data),
                    limit,
                )
                continue
            groups.setdefault(wire.route, []).append(data)
        for route, datas in groups.items():
            limits = limits_of[route]
            overhead = len(self.build_request(route, [], uuid4_strings(1)[0]).body) + 64
            chunk: list[bytes] = []
            size = overhead
            for data in datas:
                if chunk and (
                    len(chunk) >= limits.max_events or size + len(data) + 1 > limits.max_bytes
                ):
                    self._send(route, chunk, control)
                    chunk, size = [], overhead
                chunk.append(data)
                size += len(data) + 1
            if chunk:
                self._send(route, chunk, control)

    def _send(self, route: str, chunk: list[bytes], control: DeliveryControl) -> None:
        work = [chunk]
        while work:
            batch = work.pop()
            if control.stopped:  # a 410 earlier in this delivery: send nothing more
                control.dropped(DropReason.PROVIDER_STOPPED, len(batch))
                continue
            self._send_with_retries(route, batch, control, work)

    def _send_with_retries(
        self,
        route: str,
        batch: list[bytes],
        control: DeliveryControl,
        work: list[list[bytes]],
    ) -> None:
        settings = control.settings
        batch_id = uuid4_strings(1)[0]
        started = time.monotonic()
        attempt = 0
        while batch:
            attempt += 1
            wait = self._circuit_until - time.monotonic()
            if wait > 0 and not control.sleep(wait):
                self._give_up(control, batch, DropReason.SHUTDOWN, "the destination is down")
                return
            left = control.time_left()
            if left is not None and left <= 0:
                self._give_up(control, batch, DropReason.SHUTDOWN, "the shutdown budget ran out")
                return
            timeout = settings.http_timeout if left is None else min(settings.http_timeout, left)
            request = self.build_request(route, batch, batch_id)
            outcome = self._attempt(request, route, batch, timeout, attempt, control)
            # A retry the vendor asked for counts toward the circuit; a resend of the valid rest
            # after a partial rejection does not (the destination answered).
            transient = outcome.kind == "retry" and not outcome.rejected
            self._circuit(transient, settings.circuit_threshold, settings.circuit_probe_interval)
            rejected = sorted({i for i in outcome.rejected if 0 <= i < len(batch)})
            if rejected:
                control.dropped(DropReason.REJECTED, len(rejected))
                self.warn(
                    DropReason.REJECTED,
                    "%s: the vendor rejected %d of %d items: %s",
                    self.name,
                    len(rejected),
                    len(batch),
                    outcome.reason,
                )
            kept = [i for i in range(len(batch)) if i not in set(rejected)]
            if outcome.kind == "delivered":
                control.delivered(len(kept))
                return
            if outcome.kind == "reject":
                self._give_up(
                    control, [batch[i] for i in kept], DropReason.REJECTED, outcome.reason
                )
                return
            if outcome.kind == "gone":
                control.dropped(DropReason.PROVIDER_STOPPED, len(kept))
                control.stop_provider(f"the destination answered {outcome.reason}")
                return
            if outcome.kind == "split":
                if len(batch) == 1:
                    self._give_up(control, batch, DropReason.TOO_LARGE, outcome.reason)
                else:
                    half = len(batch) // 2
                    work.append(batch[half:])
                    work.append(batch[:half])
                return
            # retry
            control.failed()
            if outcome.retry_only is not None:
                again = sorted(set(outcome.retry_only) & set(kept))
                control.delivered(len(kept) - len(again))
            else:
                again = kept
            batch = [batch[i] for i in again]
            if not batch:
                return
            delay = outcome.retry_after
            if delay is not None:
                delay = min(max(delay, 0.0), RETRY_AFTER_MAX)
            else:
                ceiling = min(
                    settings.retry_backoff_max, settings.retry_backoff * 2 ** (attempt - 1)
                )
                delay = ceiling * _jitter()
            elapsed = time.monotonic() - started
            if attempt >= settings.max_attempts or elapsed + delay > settings.max_retry_time:
                self._give_up(
                    control,
                    batch,
                    DropReason.RETRIES_EXHAUSTED,
                    f"{outcome.reason} after {attempt} attempts in {elapsed:.1f}s",
                )
                return
            control.retried(len(batch))
            if not control.sleep(delay):
                self._give_up(control, batch, DropReason.SHUTDOWN, "the shutdown budget ran out")
                return

    def _circuit(self, failed: bool, threshold: int, probe_interval: float) -> None:
        if not failed:
            if self._circuit_until:
                logger.warning("tracking: %s answers again; resuming delivery", self.name)
            self._consecutive_failures = 0
            self._circuit_until = 0.0
            return
        self._consecutive_failures += 1
        if self._consecutive_failures >= threshold:
            if not self._circuit_until:
                logger.warning(
                    "tracking: %s failed %d times in a row; probing it every %gs",
                    self.name,
                    self._consecutive_failures,
                    probe_interval,
                )
            self._circuit_until = time.monotonic() + probe_interval

    def _give_up(
        self, control: DeliveryControl, batch: Sequence[bytes], reason: str, why: str
    ) -> None:
        if not batch:
            return
        control.dropped(reason, len(batch))
        self.warn(reason, "%s dropped %d items (%s): %s", self.name, len(batch), reason, why)

    def warn(self, key: str, message: str, *args: object) -> None:
        """Log a warning through the rate limiter (one line per key a minute), with this
        provider's secrets masked (in every form, see `_masks`) in every string argument.
        `message` is %-formatted and gets the prefix ``"tracking: "``."""
        forms = self._masks()
        safe = tuple(mask(a, forms) if isinstance(a, str) else a for a in args)
        rate_limited.log(logging.WARNING, f"{self.name}:{key}", "tracking: " + message, *safe)

    def _http(self) -> httpx.BaseTransport:
        pid = os.getpid()
        # Only this provider's worker thread sends, so no lock is needed. The transport is
        # used without an httpx.Client: we follow no redirects, keep no cookies and need no
        # auth flows, and that layer costs about a third of each request's CPU time.
        if self._client is None or self._client_pid != pid:
            with _STACK_LOCK:
                import encodings.idna  # noqa: F401 - else loaded by the first connection

                # After a fork the parent's connections are not ours: start afresh. The
                # transport (its module imports httpx and httpcore) reads the certificate and
                # proxy variables now.
                self._client = _transport_module().DefaultTransport()
            self._client_pid = pid
            _secret_mask.providers.add(self)
        return self._client

    def close(self) -> None:
        """Close this provider's HTTP connections (they reopen on the next request)."""
        client, self._client = self._client, None
        if client is not None and self._client_pid == os.getpid():
            client.close()

    def _masks(self) -> tuple[str, ...]:
        """Every form of this provider's secrets (its `secrets()`, what was derived from what it
        sent, and its transport's proxy credentials), as `tracking_core._log.secret_forms`
        gives them. Cached: recomputed only when one of them changes."""
        extra = getattr(self._client, "secrets", None)
        key = (*self.secrets(), *self._derived, *(extra() if callable(extra) else ()))
        cached = self._mask_cache
        if cached is not None and cached[0] == key:
            return cached[1]
        forms = secret_forms(key)
        self._mask_cache = (key, forms)
        return forms

    def _remember(self, *values: str | None) -> None:
        """Mask `values` (derived from a secret while sending) from now on."""
        new = tuple(v for v in values if v and v not in self._derived)
        if new:
            self._derived = (*self._derived, *new)

    def _attempt(
        self,
        request: HttpRequest,
        route: str,
        items: Sequence[bytes],
        timeout: float,
        attempt: int,
        control: DeliveryControl,
    ) -> Outcome:
        transport = self._http()  # first: it imports httpx under the fork lock
        import httpx

        stack = _transport_module()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": f"tracking-core/{__version__} ({self.name})",
            **request.headers,
        }
        for name, value in request.headers.items():
            if name.lower() in _CREDENTIAL_HEADERS and value not in self._derived:
                self._remember(value, value.partition(" ")[2])
        url = httpx.URL(request.url)
        if url.userinfo:
            # Credentials in the URL become Basic auth, as an httpx.Client would do, unless
            # the provider set its own Authorization header; they never go on the wire as-is.
            # Whatever is sent is masked from now on, the Basic token included.
            self._remember(url.username, url.password)
            if not any(name.lower() == "authorization" for name in headers):
                token = f"{url.username}:{url.password}".encode()
                basic = base64.b64encode(token).decode("ascii")
                self._remember(basic)
                headers["Authorization"] = "Basic " + basic
            url = url.copy_with(username=None, password=None)
        body = request.body
        if request.gzip and len(body) >= GZIP_MIN_BYTES:
            body = gzip.compress(body, compresslevel=5)
            headers["Content-Encoding"] = "gzip"
        started = time.monotonic()
        status: int | None = None
        try:
            # One deadline for the whole attempt (connect, TLS, sending, the answer's headers
            # and body), on top of the per-operation timeouts.
            connect = min(timeout, stack.CONNECT_TIMEOUT_MAX)
            limits = {"connect": connect, "read": timeout, "write": timeout, "pool": timeout}
            response = transport.handle_request(
                httpx.Request(
                    "POST",
                    url,
                    content=body,
                    headers=headers,
                    extensions={"timeout": limits, stack.DEADLINE: started + timeout},
                )
            )
            try:
                content, truncated = stack.read_answer(response, stack.MAX_ANSWER_BYTES)
            finally:
                response.close()
            status = response.status_code
            answer = HttpResponse(
                status,
                {k.lower(): v for k, v in response.headers.items()},
                content,
                len(items),
                items,
                truncated,
            )
            if truncated:
                control.answer_truncated()
                self.warn(
                    "answer_too_long",
                    "%s: an answer (HTTP %d) was longer than %d bytes; only its start was read",
                    self.name,
                    status,
                    stack.MAX_ANSWER_BYTES,
                )
            outcome = self.read_response(route, answer)
        except httpx.TransportError as exc:
            port = url.port or (443 if url.scheme == "https" else 80)
            failure = stack.describe_failure(exc, f"{url.host}:{port}")
            if failure.permanent:
                # Sending again cannot help (a certificate, proxy credentials): drop this
                # batch now, say how to fix it; later batches try again.
                outcome = Outcome("reject", failure.message)
                rate_limited.log(
                    logging.ERROR,
                    f"{self.name}:transport",
                    "tracking: %s: %s; the batch is dropped, not retried%s",
                    self.name,
                    mask(failure.message, self._masks()),
                    f" ({failure.hint})" if failure.hint else "",
                )
            else:
                outcome = Outcome("retry", failure.message)
        delivered = outcome.kind == "delivered" and not outcome.rejected
        control.batch_sent(status, None if delivered else mask(outcome.reason, self._masks()))
        if control.settings.debug:
            parts = urllib.parse.urlsplit(request.url)
            logger.info(
                "tracking: %s sent %d items to %s -> %s in %.1f ms (attempt %d)",
                self.name,
                len(items),
                mask(f"{parts.netloc.rpartition('@')[2]}{parts.path}", self._masks()),
                status if status is not None else mask(outcome.reason, self._masks()),
                (time.monotonic() - started) * 1000,
                attempt,
            )
        return outcome
