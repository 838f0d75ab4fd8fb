"""`Sender`: how one lane delivers an `HttpProvider`'s batches.

The engine wraps every `HttpProvider` in a `Sender` (one per lane, so one per provider and
process) the way it wraps a plain provider in `tracking_core.engine.plain.PlainDelivery`. The
sender encodes the items and groups them by route, cuts requests by the provider's limits, and
sends each request: up to ``TRACKING_MAX_ATTEMPTS`` attempts within ``TRACKING_MAX_RETRY_TIME``
seconds, with a backoff (`retry.backoff`: full jitter, growing with the destination's failures
in a row) or the answer's ``Retry-After`` in between, during which the request is held and
fresh batches go on; 413 halves a batch; items the answer names are dropped (``rejected``)
and the rest resent or counted; 410 stops the provider; a `Circuit` paces a failing
destination. Every item ends delivered or dropped under its reason (and the receipts waiting
on an item hear which, by its id), and every line it logs is masked (`SecretMasks`).

What it depends on can be replaced, so that these rules are tested in milliseconds: the
transport (any ``httpx.BaseTransport``, ``httpx.MockTransport`` included), the clock that
measures retry time and paces the circuit, the jitter, and the sleep.
"""

from __future__ import annotations

import dataclasses
import heapq
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

from ..engine import DeliveryControl, DropReason, Item
from ..engine.receipts import DELIVERED
from ..engine.turn import Pacer, turn
from ..event import uuid4_strings
from .exchange import Exchange
from .masking import SecretMasks, warn
from .retry import Circuit, backoff, full_jitter
from .wire import HttpProvider, Limits, Outcome, SkipItem, dumps

if TYPE_CHECKING:
    import httpx

__all__ = ["Circuit", "Sender", "backoff", "cut", "encode_all", "full_jitter"]


def cut(datas: Sequence[bytes], limits: Limits, overhead: int) -> Iterator[range]:
    """`datas` (encoded items of one route) in requests of at most ``limits.max_events``
    items and ``limits.max_bytes`` bytes, counting `overhead` bytes for the envelope: the
    index range of each request."""
    start = 0
    size = overhead
    for index, data in enumerate(datas):
        if index > start and (
            index - start >= limits.max_events or size + len(data) + 1 > limits.max_bytes
        ):
            yield range(start, index)
            start, size = index, overhead
        size += len(data) + 1
    if start < len(datas):
        yield range(start, len(datas))


#: One route's encoded items: its limits, the items' bytes and, in the same order, their ids.
Group = tuple[Limits, list[bytes], list[str]]


def encode_all(
    provider: HttpProvider, items: Sequence[Item], control: DeliveryControl
) -> dict[str, Group]:
    """`items` encoded and grouped by route, in order, with each route's limits. Items the
    mapping skips, cannot encode or makes too large are counted as dropped and logged."""
    groups: dict[str, Group] = {}
    name = provider.name
    pace = Pacer()
    for number, item in enumerate(items, 1):
        if not number % 16:
            pace()  # a large batch: let the application's threads have the GIL
        try:
            wire = provider.encode(item)
            data = dumps(wire.payload)
        except SkipItem as skip:
            _drop_one(control, item, skip.reason)
            warn(provider, skip.reason, "%s dropped an item: %s", name, str(skip))
            continue
        except Exception as exc:
            _drop_one(control, item, DropReason.PROVIDER_ERROR)
            kind = type(exc).__name__
            warn(provider, "encode", "%s could not encode an item (%s); dropped", name, kind)
            continue
        group = groups.get(wire.route)
        if group is None:  # limits() is asked once per route and batch
            group = groups[wire.route] = (provider.limits(wire.route), [], [])
        limit = group[0].max_item_bytes
        if len(data) > limit:
            _drop_one(control, item, DropReason.TOO_LARGE)
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
        group[2].append(item.event_id)
    return groups


def _drop_one(control: DeliveryControl, item: Item, reason: str) -> None:
    control.dropped(reason, 1)
    control.settled((item.event_id,), reason)


@dataclasses.dataclass(order=True)
class _Request:
    """One request's items being attempted, ordered by when its next attempt is due."""

    due: float
    route: str = dataclasses.field(compare=False)
    items: list[bytes] = dataclasses.field(compare=False)
    ids: list[str] = dataclasses.field(compare=False)  # the items' event ids, in order
    batch_id: str = dataclasses.field(compare=False)
    started: float = dataclasses.field(compare=False)
    attempt: int = dataclasses.field(default=0, compare=False)


class Sender:
    """Delivers an `HttpProvider`'s batches (see the module doc); one per lane.

    Retries do not block fresh batches: a request whose attempt failed is held until its
    backoff is over, while the lane hands over new items; at most `MAX_HELD` requests are held
    at once (order across requests is not promised: the vendors order by timestamp).

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

    #: Requests held for a later attempt at most; past it the lane waits for them.
    MAX_HELD = 8

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
        self._held: list[_Request] = []  # a heap: the earliest due first

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

    def held(self) -> int:
        """Items held for a later attempt (a retry's backoff, or the circuit's pace)."""
        return sum(len(request.items) for request in self._held)

    def due_in(self) -> float | None:
        """Seconds until the earliest held request is due (None: none is held)."""
        return self._held[0].due - self._clock() if self._held else None

    def full(self) -> bool:
        """True when `MAX_HELD` requests wait for a later attempt: the lane then waits for them
        before it hands over fresh items."""
        return len(self._held) >= self.MAX_HELD

    def submit(self, items: Sequence[Item], control: DeliveryControl) -> None:
        """Encode `items`, cut them into requests by the limits and attempt each one now. What
        must be tried again later is held (`held`, `due_in`): fresh batches are not kept
        waiting behind a backoff. The lane calls `resume` when held requests are due."""
        provider = self.provider
        now = self._clock()
        # All of it runs in the library's turn (engine/turn.py); the network's waits give the
        # turn back.
        with self.masks.active(), turn():
            groups = encode_all(provider, items, control)
            for route, (limits, datas, ids) in groups.items():
                overhead = len(provider.build_request(route, [], uuid4_strings(1)[0]).body) + 64
                for part in cut(datas, limits, overhead):
                    chunk, chunk_ids = datas[part.start : part.stop], ids[part.start : part.stop]
                    self._attempt(_request(now, route, chunk, chunk_ids), control)
        self.resume(control)

    def resume(self, control: DeliveryControl, *, wait: bool = False) -> None:
        """Attempt the held requests that are due; with `wait`, first wait for the earliest
        (through `sleep`, which a shutdown cuts short)."""
        with self.masks.active():
            if wait and self._held:
                delay = self._held[0].due - self._clock()
                if delay > 0 and not self._wait(control, delay):
                    # The shutdown's deadline comes first: try now what its budget still allows.
                    self._held[0].due = self._clock()
            while self._held and self._held[0].due <= self._clock():
                self._attempt(heapq.heappop(self._held), control)

    def drain(self, control: DeliveryControl) -> None:
        """Attempt every held request until it is settled (a flush waits for them)."""
        while self._held:
            self.resume(control, wait=True)

    def deliver_batch(self, items: Sequence[Item], control: DeliveryControl) -> None:
        """`submit` then `drain`: every item is delivered or dropped when it returns."""
        self.submit(items, control)
        self.drain(control)

    def _wait(self, control: DeliveryControl, seconds: float) -> bool:
        return self._sleep(seconds) if self._sleep is not None else control.sleep(seconds)

    def _hold(self, request: _Request, due: float) -> None:
        request.due = due
        heapq.heappush(self._held, request)

    def _attempt(self, request: _Request, control: DeliveryControl) -> None:
        """One attempt at `request` (or, while the circuit paces the destination, none yet);
        what the answer settles is counted, what must be tried again is held. Whatever the
        wire mapping raises drops this request's items (``provider_error``), nothing else."""
        try:
            with turn():
                self._try(request, control)
        except Exception as exc:
            control.failed(f"{type(exc).__name__} raised by the provider")
            reason, why = DropReason.PROVIDER_ERROR, f"{type(exc).__name__} raised"
            _give_up(self.provider, control, request.ids, reason, why)

    def _try(self, request: _Request, control: DeliveryControl) -> None:
        if control.stopped:  # a 410 earlier: send no more
            _report(control, request.ids, DropReason.PROVIDER_STOPPED)
            return
        settings = control.settings
        left = control.time_left()
        if left is not None and left <= 0:
            _give_up(self.provider, control, request.ids, DropReason.SHUTDOWN, "the budget ran out")
            return
        paced = self.circuit.wait()
        if paced > 0 and left is None:  # a shutdown probes at once, within its budget
            request.started += paced  # pacing is not the batch's own retry time
            self._hold(request, self._clock() + paced)
            return
        request.attempt += 1
        timeout = settings.http_timeout if left is None else min(settings.http_timeout, left)
        wire = self.provider.build_request(request.route, request.items, request.batch_id)
        outcome = self.exchange.attempt(
            wire, request.route, request.items, timeout, request.attempt, control
        )
        # A retry the vendor asked for counts toward the circuit; a resend of the valid rest
        # after a partial rejection does not (the destination answered).
        transient = outcome.kind == "retry" and not outcome.rejected
        self.circuit.record(transient, settings.circuit_threshold, settings.circuit_probe_interval)
        again, halves = _settle(self.provider, outcome, request.ids, control)
        now = self._clock()
        for half in halves:  # 413: each half is a request of its own, sent now, in order
            items = [request.items[i] for i in half]
            ids = [request.ids[i] for i in half]
            self._attempt(_request(now, request.route, items, ids), control)
        if not again:
            return
        if len(again) < len(request.items):
            request.items = [request.items[i] for i in again]
            request.ids = [request.ids[i] for i in again]
        again_ids = request.ids
        # The backoff grows with the destination's failures in a row, not with this request's
        # attempts: a destination that fails now and then (its other requests succeed) is
        # tried again soon; one that keeps failing is waited on longer each time.
        streak = max(1, self.circuit.failures)
        delay = backoff(streak, outcome.retry_after, settings, self._jitter())
        left = control.time_left()
        if left is not None and delay > left:
            if outcome.retry_after is not None:  # the destination asked for more than is left
                why = f"{outcome.reason}; it asked for {delay:g}s, the shutdown budget has less"
                _give_up(self.provider, control, again_ids, DropReason.SHUTDOWN, why)
                return
            delay = left / 2  # a backoff of ours: try again within the shutdown's budget
        elapsed = now - request.started
        if request.attempt >= settings.max_attempts or elapsed + delay > settings.max_retry_time:
            why = f"{outcome.reason} after {request.attempt} attempts in {elapsed:.1f}s"
            _give_up(self.provider, control, again_ids, DropReason.RETRIES_EXHAUSTED, why)
            return
        control.retried(len(again_ids))
        if outcome.retry_after is not None:
            self.circuit.pause(now + delay)  # the destination asked: nothing before then
        self._hold(request, now + delay)


def _request(now: float, route: str, items: list[bytes], ids: list[str]) -> _Request:
    return _Request(now, route, items, ids, uuid4_strings(1)[0], now)


def _report(control: DeliveryControl, ids: Sequence[str], reason: str | None) -> None:
    """Count the items with these `ids` delivered (`reason` None) or dropped for `reason`,
    and tell the receipts waiting on them."""
    if not ids:
        return
    if reason is None:
        control.delivered(len(ids))
    else:
        control.dropped(reason, len(ids))
    control.settled(ids, DELIVERED if reason is None else reason)


def _settle(
    provider: HttpProvider,
    outcome: Outcome,
    ids: list[str],
    control: DeliveryControl,
) -> tuple[list[int], list[list[int]]]:
    """Count what `outcome` settles of a request's items (their `ids`); returns the indices
    to send again (a retry) and the halves to send on their own (413)."""
    count = len(ids)
    rejected = sorted({i for i in outcome.rejected if 0 <= i < count})
    if rejected:
        _report(control, [ids[i] for i in rejected], DropReason.REJECTED)
        warn(
            provider,
            DropReason.REJECTED,
            "%s: the vendor rejected %d of %d items: %s",
            provider.name,
            len(rejected),
            count,
            outcome.reason,
        )
    dropped = set(rejected)
    kept = [i for i in range(count) if i not in dropped]
    kind = outcome.kind
    if kind == "delivered":
        _report(control, [ids[i] for i in kept], None)
    elif kind == "reject":
        _give_up(provider, control, [ids[i] for i in kept], DropReason.REJECTED, outcome.reason)
    elif kind == "gone":
        _report(control, [ids[i] for i in kept], DropReason.PROVIDER_STOPPED)
        control.stop_provider(f"the destination answered {outcome.reason}")
    elif kind == "split":  # the halves of what was not rejected, each sent on its own
        if len(kept) == 1:
            _give_up(provider, control, [ids[kept[0]]], DropReason.TOO_LARGE, outcome.reason)
        elif kept:
            return [], [kept[: len(kept) // 2], kept[len(kept) // 2 :]]
    else:  # retry
        control.failed()
        again = kept
        if outcome.retry_only is not None:
            again = sorted(set(outcome.retry_only).intersection(kept))
            resend = set(again)
            _report(control, [ids[i] for i in kept if i not in resend], None)
        return again, []
    return [], []


def _give_up(
    provider: HttpProvider,
    control: DeliveryControl,
    ids: Sequence[str],
    reason: str,
    why: str,
) -> None:
    if not ids:
        return
    _report(control, ids, reason)
    warn(
        provider,
        reason,
        "%s dropped %d items (%s): %s",
        provider.name,
        len(ids),
        reason,
        why,
    )
