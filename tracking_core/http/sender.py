"""`Sender`: how one lane delivers an `HttpProvider`'s batches.

The engine wraps every `HttpProvider` in a `Sender` (one per lane, so one per provider and
process) the way it wraps a plain provider in `tracking_core.engine.plain.PlainDelivery`. The
sender encodes the items and groups them by route, cuts requests by the provider's limits, and
sends each request: up to ``TRACKING_MAX_ATTEMPTS`` attempts within ``TRACKING_MAX_RETRY_TIME``
seconds, with exponential backoff and full jitter or the answer's ``Retry-After`` in between;
413 halves a batch; items the answer names are dropped (``rejected``) and the rest resent or
counted; 410 stops the provider; a `Circuit` paces a failing destination. Every item ends
delivered or dropped under its reason, and every line it logs is masked (`SecretMasks`).

What it depends on can be replaced, so that these rules are tested in milliseconds: the
transport (any ``httpx.BaseTransport``, ``httpx.MockTransport`` included), the clock that
measures retry time and paces the circuit, the jitter, and the sleep.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

from .._log import logger
from ..engine import DeliveryControl, DropReason, Item
from ..event import uuid4_strings
from ..settings import EngineSettings
from .exchange import Exchange
from .masking import SecretMasks, warn
from .wire import RETRY_AFTER_MAX, HttpProvider, Limits, Outcome, SkipItem, dumps

if TYPE_CHECKING:
    import httpx

__all__ = ["Circuit", "Sender", "backoff", "cut", "encode_all", "full_jitter"]


def full_jitter() -> float:
    """A uniform random fraction in [0, 1) for full-jitter backoff (no `random` import)."""
    return int.from_bytes(os.urandom(7), "big") / (1 << 56)


def backoff(
    attempt: int, retry_after: float | None, settings: EngineSettings, jitter: float
) -> float:
    """Seconds to wait after failed attempt number `attempt` (1 for the first): the answer's
    `retry_after` (clamped to [0, `RETRY_AFTER_MAX`]) when it gave one, else full jitter: the
    fraction `jitter` of ``TRACKING_RETRY_BACKOFF`` doubled per attempt, capped by
    ``TRACKING_RETRY_BACKOFF_MAX``."""
    if retry_after is not None and not math.isnan(retry_after):
        return min(max(retry_after, 0.0), RETRY_AFTER_MAX)
    doubled = settings.retry_backoff * 2.0 ** min(attempt - 1, 64)
    return min(settings.retry_backoff_max, doubled) * jitter


def cut(datas: Sequence[bytes], limits: Limits, overhead: int) -> Iterator[list[bytes]]:
    """`datas` (encoded items of one route) in requests of at most ``limits.max_events``
    items and ``limits.max_bytes`` bytes, counting `overhead` bytes for the envelope."""
    chunk: list[bytes] = []
    size = overhead
    for data in datas:
        if chunk and (len(chunk) >= limits.max_events or size + len(data) + 1 > limits.max_bytes):
            yield chunk
            chunk, size = [], overhead
        chunk.append(data)
        size += len(data) + 1
    if chunk:
        yield chunk


def encode_all(
    provider: HttpProvider, items: Sequence[Item], control: DeliveryControl
) -> dict[str, tuple[Limits, list[bytes]]]:
    """`items` encoded and grouped by route, in order, with each route's limits. Items the
    mapping skips, cannot encode or makes too large are counted as dropped and logged."""
    groups: dict[str, tuple[Limits, list[bytes]]] = {}
    name = provider.name
    for item in items:
        try:
            wire = provider.encode(item)
            data = dumps(wire.payload)
        except SkipItem as skip:
            control.dropped(skip.reason, 1)
            warn(provider, skip.reason, "%s dropped an item: %s", name, str(skip))
            continue
        except Exception as exc:
            control.dropped(DropReason.PROVIDER_ERROR, 1)
            kind = type(exc).__name__
            warn(provider, "encode", "%s could not encode an item (%s); dropped", name, kind)
            continue
        group = groups.get(wire.route)
        if group is None:  # limits() is asked once per route and batch
            group = groups[wire.route] = (provider.limits(wire.route), [])
        limit = group[0].max_item_bytes
        if len(data) > limit:
            control.dropped(DropReason.TOO_LARGE, 1)
            warn(
                provider,
                DropReason.TOO_LARGE,
                "%s dropped an item of %d bytes (limit %d)",
                name,
                len(data),
                limit,
            )
            continue
        group[1].append(data)
    return groups


class Circuit:
    """A pace, not a gate: after `threshold` consecutive transient failures, each further
    attempt waits until `probe_interval` seconds after the latest failure; one success closes
    it. Batches keep their own bounded attempts and time (docs/design.md)."""

    def __init__(self, name: str, clock: Callable[[], float]) -> None:
        self.name = name
        self._clock = clock
        self.failures = 0
        #: While open: the clock's time before which no attempt starts.
        self.open_until: float | None = None

    def wait(self) -> float:
        """Seconds to wait before the next attempt (0 or less: none)."""
        until = self.open_until
        return 0.0 if until is None else until - self._clock()

    def record(self, failed: bool, threshold: int, probe_interval: float) -> None:
        """Note one attempt's result: `failed` when it was a transient failure."""
        if not failed:
            if self.open_until is not None:
                logger.warning("tracking: %s answers again; resuming delivery", self.name)
            self.failures = 0
            self.open_until = None
            return
        self.failures += 1
        if self.failures >= threshold:
            if self.open_until is None:
                logger.warning(
                    "tracking: %s failed %d times in a row; probing it every %gs",
                    self.name,
                    self.failures,
                    probe_interval,
                )
            self.open_until = self._clock() + probe_interval


class Sender:
    """Delivers an `HttpProvider`'s batches (see the module doc); one per lane.

    Args:
        provider: the wire mapping.
        transport: what requests go through; default: a
            `tracking_core.transport.DefaultTransport`, built on the first request under the
            fork guard and built again in a forked child. A given transport is used as is.
        clock: a monotonic clock, in seconds: measures a batch's retry time and paces the
            circuit. (Each attempt's own deadline is the transport's, on `time.monotonic`.)
        jitter: a random fraction in [0, 1) for each backoff.
        sleep: waits a backoff or a probe interval and returns False when it cannot (a
            shutdown's budget would run out first); default: the lane's
            `DeliveryControl.sleep`, which does exactly that.
    """

    def __init__(
        self,
        provider: HttpProvider,
        *,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
        jitter: Callable[[], float] = full_jitter,
        sleep: Callable[[float], bool] | None = None,
    ) -> None:
        self.provider = provider
        self.name: str = provider.name
        self.masks = SecretMasks(provider, self._transport_secrets)
        self.exchange = Exchange(provider, self.masks, transport)
        self.circuit = Circuit(self.name, clock)
        self._clock = clock
        self._jitter = jitter
        self._sleep = sleep

    def __repr__(self) -> str:
        return f"<Sender for {self.provider!r}>"

    def _transport_secrets(self) -> Sequence[str]:
        return self.exchange.secrets()

    @property
    def transport(self) -> httpx.BaseTransport | None:
        """The transport in use (None until the first request builds the default one)."""
        return self.exchange.transport

    def close(self) -> None:
        """Close the transport's connections (they reopen on the next request)."""
        self.exchange.close()

    def batch_limit(self) -> int:
        """The most items the lane hands over at once: the provider's `batch_limit()`."""
        return self.provider.batch_limit()

    def deliver_batch(self, items: Sequence[Item], control: DeliveryControl) -> None:
        """Encode `items`, group them by route, cut requests by the limits, and send them;
        every item is reported through `control` as delivered or dropped."""
        provider = self.provider
        with self.masks.active():
            for route, (limits, datas) in encode_all(provider, items, control).items():
                overhead = len(provider.build_request(route, [], uuid4_strings(1)[0]).body) + 64
                for chunk in cut(datas, limits, overhead):
                    work = [chunk]  # 413 halves go back on it
                    while work:
                        batch = work.pop()
                        if control.stopped:  # a 410 earlier in this delivery: send no more
                            control.dropped(DropReason.PROVIDER_STOPPED, len(batch))
                        else:
                            self._send(route, batch, control, work)

    def _wait(self, control: DeliveryControl, seconds: float) -> bool:
        return self._sleep(seconds) if self._sleep is not None else control.sleep(seconds)

    def _send(
        self, route: str, batch: list[bytes], control: DeliveryControl, work: list[list[bytes]]
    ) -> None:
        """Attempts at one batch, until it is settled (delivered, dropped, or split onto
        `work`)."""
        settings = control.settings
        batch_id = uuid4_strings(1)[0]
        started = self._clock()
        attempt = 0
        while batch:
            attempt += 1
            wait = self.circuit.wait()
            if wait > 0 and not self._wait(control, wait):
                self._give_up(control, batch, DropReason.SHUTDOWN, "the destination is down")
                return
            left = control.time_left()
            if left is not None and left <= 0:
                self._give_up(control, batch, DropReason.SHUTDOWN, "the shutdown budget ran out")
                return
            timeout = settings.http_timeout if left is None else min(settings.http_timeout, left)
            request = self.provider.build_request(route, batch, batch_id)
            outcome = self.exchange.attempt(request, route, batch, timeout, attempt, control)
            # A retry the vendor asked for counts toward the circuit; a resend of the valid rest
            # after a partial rejection does not (the destination answered).
            transient = outcome.kind == "retry" and not outcome.rejected
            self.circuit.record(
                transient, settings.circuit_threshold, settings.circuit_probe_interval
            )
            batch = self._settle(outcome, batch, control, work)
            if not batch:
                return
            delay = backoff(attempt, outcome.retry_after, settings, self._jitter())
            elapsed = self._clock() - started
            if attempt >= settings.max_attempts or elapsed + delay > settings.max_retry_time:
                why = f"{outcome.reason} after {attempt} attempts in {elapsed:.1f}s"
                self._give_up(control, batch, DropReason.RETRIES_EXHAUSTED, why)
                return
            control.retried(len(batch))
            if not self._wait(control, delay):
                self._give_up(control, batch, DropReason.SHUTDOWN, "the shutdown budget ran out")
                return

    def _settle(
        self,
        outcome: Outcome,
        batch: list[bytes],
        control: DeliveryControl,
        work: list[list[bytes]],
    ) -> list[bytes]:
        """Count what `outcome` settles of `batch`; returns what to send again (a retry)."""
        count = len(batch)
        rejected = {i for i in outcome.rejected if 0 <= i < count}
        if rejected:
            control.dropped(DropReason.REJECTED, len(rejected))
            warn(
                self.provider,
                DropReason.REJECTED,
                "%s: the vendor rejected %d of %d items: %s",
                self.name,
                len(rejected),
                count,
                outcome.reason,
            )
        kept = [i for i in range(count) if i not in rejected] if rejected else range(count)
        kind = outcome.kind
        if kind == "delivered":
            control.delivered(len(kept))
        elif kind == "reject":
            self._give_up(control, [batch[i] for i in kept], DropReason.REJECTED, outcome.reason)
        elif kind == "gone":
            control.dropped(DropReason.PROVIDER_STOPPED, len(kept))
            control.stop_provider(f"the destination answered {outcome.reason}")
        elif kind == "split":  # the halves of what was not rejected, each sent on its own
            rest = [batch[i] for i in kept] if rejected else batch
            if len(rest) == 1:
                self._give_up(control, rest, DropReason.TOO_LARGE, outcome.reason)
            elif rest:
                work.append(rest[len(rest) // 2 :])
                work.append(rest[: len(rest) // 2])
        else:  # retry
            control.failed()
            again: Sequence[int] = kept
            if outcome.retry_only is not None:
                again = sorted(set(outcome.retry_only).intersection(kept))
                control.delivered(len(kept) - len(again))
            if len(again) == count:
                return batch
            return [batch[i] for i in again]
        return []

    def _give_up(
        self, control: DeliveryControl, batch: Sequence[bytes], reason: str, why: str
    ) -> None:
        if not batch:
            return
        control.dropped(reason, len(batch))
        warn(
            self.provider,
            reason,
            "%s dropped %d items (%s): %s",
            self.name,
            len(batch),
            reason,
            why,
        )
