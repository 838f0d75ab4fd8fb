"""The delivery engine: intake, dispatcher, one lane (queue + worker thread) per provider.

How an event travels:

1. `track()` checks its arguments, snapshots them into a tuple and puts it on the *intake*
   (a `queue.SimpleQueue`). That is all the caller pays for: no lock, no I/O, no id generation.
2. The *dispatcher* thread (started on first use) runs plugin discovery once, then turns each
   intake tuple into a `TrackingEvent` (UUID4 id, UTC timestamp) and offers it to every lane.
3. Each *lane* owns a bounded deque and one worker thread. A plain provider's worker calls
   ``provider.track(event)`` one event at a time (an ``async def`` method runs on the lane's own
   event loop). A batching provider (see `BatchingProvider`, implemented by
   `tracking_core.http.HttpProvider`) gets lists of up to ``batch_size`` items, sent when the batch
   is full or ``flush_interval`` seconds after its oldest item, or at once on flush/shutdown.

Flush and shutdown travel the same path as events (a marker behind everything accepted before
them), so "everything accepted before the call" is exact. Workers block on condition variables:
an idle process costs no CPU. After `os.fork()` the child gets an empty intake, empty lanes and
new threads; nothing of the parent's is delivered twice.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import os
import queue
import sys
import threading
import time
import types
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from ._log import enable_debug_logging, logger, rate_limited
from .event import (
    TrackingEvent,
    TrackingIdentify,
    normalize_timestamp,
    set_conversion_sink,
    utc_from_timestamp,
    uuid4_strings,
)
from .settings import EngineSettings

__all__ = [
    "BatchingProvider",
    "DeliveryControl",
    "DropReason",
    "Engine",
    "Lane",
    "ProviderStats",
]

Item = TrackingEvent | TrackingIdentify


class DropReason:
    """The reasons under which `tracking_stats()` counts dropped events."""

    QUEUE_FULL = "queue_full"
    TOO_LARGE = "too_large"
    REJECTED = "rejected"
    RETRIES_EXHAUSTED = "retries_exhausted"
    SHUTDOWN = "shutdown"
    BAD_INPUT = "bad_input"
    PROVIDER_ERROR = "provider_error"
    PROVIDER_STOPPED = "provider_stopped"
    UNSUPPORTED = "unsupported"


@dataclasses.dataclass(frozen=True)
class ProviderStats:
    """A snapshot of one provider's counters (see `tracking_stats()`).

    ``accepted == delivered + sum(dropped.values()) + queued`` holds whenever the provider is
    idle; while it works, ``queued`` counts the events waiting or in flight.

    Attributes:
        accepted: `track()`/`identify()` calls that reached this provider (bad input included).
        delivered: events the provider took (a plain provider returned; an HTTP one got a 2xx).
        failed: provider calls or HTTP attempts that failed (each retry counts).
        retried: events sent again after a failed attempt.
        batches: HTTP requests sent (batching providers only).
        dropped: events given up on, by reason (see `DropReason`).
        queued: events waiting or in flight now.
        last_status: the HTTP status of the latest answer (HTTP providers), or None.
        last_error: the latest failure, as text without secrets (an HTTP reason, or the
            exception type a plain provider raised), or None when the latest attempt succeeded.
        conversions: values this provider's wire mapping could not send as given, by kind
            (``key_collision``: two property keys became the same text, one value was kept;
            ``unconvertible``: a value was replaced by a placeholder). The events were sent.
    """

    accepted: int
    delivered: int
    failed: int
    retried: int
    batches: int
    dropped: Mapping[str, int]
    queued: int
    last_status: int | None = None
    last_error: str | None = None
    conversions: Mapping[str, int] = dataclasses.field(
        default_factory=lambda: types.MappingProxyType({})
    )


class _Counters:
    __slots__ = (
        "accepted",
        "batches",
        "conversions",
        "delivered",
        "dropped",
        "failed",
        "in_flight",
        "last_error",
        "last_status",
        "retried",
    )

    def __init__(self) -> None:
        self.last_status: int | None = None
        self.last_error: str | None = None
        self.accepted = 0
        self.delivered = 0
        self.failed = 0
        self.retried = 0
        self.batches = 0
        self.in_flight = 0
        self.dropped: dict[str, int] = {}
        self.conversions: dict[str, int] = {}

    def drop(self, reason: str, count: int = 1) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + count

    def note_conversion(self, kind: str) -> None:
        self.conversions[kind] = self.conversions.get(kind, 0) + 1


class _Flush:
    """A flush request travelling behind the events accepted before it."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self._lock = threading.Lock()
        self._pending: set[int] = set()
        self.ok = True

    def expect(self, lanes: Sequence[Lane]) -> None:
        with self._lock:
            self._pending = {id(lane) for lane in lanes}
            if not self._pending:
                self.done.set()

    def finish(self, lane: Lane, ok: bool = True) -> None:
        with self._lock:
            self._pending.discard(id(lane))
            if not ok:
                self.ok = False
            if not self._pending:
                self.done.set()


class _Stop(_Flush):
    """A shutdown request: like a flush, after which the lane's worker exits."""


class _Sync:
    """Marks the point up to which the dispatcher has handed everything to the lanes."""

    def __init__(self) -> None:
        self.done = threading.Event()


class _BadInput:
    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


@runtime_checkable
class BatchingProvider(Protocol):
    """A provider that takes lists of items (implemented by `tracking_core.http.HttpProvider`).

    The engine batches for it; it must deliver, count and drop each item through `control`.
    """

    name: str

    def batch_limit(self) -> int:
        """The most items this provider takes in one `deliver_batch` call."""
        ...

    def deliver_batch(self, items: Sequence[Item], control: DeliveryControl) -> None:
        """Deliver `items`; report every item as delivered or dropped through `control`."""
        ...


class DeliveryControl:
    """What the engine lends a batching provider while it delivers one batch."""

    def __init__(self, lane: Lane) -> None:
        self._lane = lane
        #: Items reported (delivered or dropped) during the current batch.
        self.reported = 0

    @property
    def settings(self) -> EngineSettings:
        return self._lane.settings

    def delivered(self, count: int) -> None:
        self._lane.counters.delivered += count
        self.reported += count

    def dropped(self, reason: str, count: int) -> None:
        """Count `count` items as dropped for `reason` (logged, rate-limited, by the caller)."""
        if count > 0:
            self._lane.counters.drop(reason, count)
            self.reported += count

    def failed(self) -> None:
        self._lane.counters.failed += 1

    def retried(self, count: int) -> None:
        self._lane.counters.retried += count

    def batch_sent(self, status: int | None, error: str | None) -> None:
        """Count one request sent; remember its status and, when it failed, why."""
        counters = self._lane.counters
        counters.batches += 1
        counters.last_status = status
        counters.last_error = error

    @property
    def stopped(self) -> bool:
        """True once the provider was stopped for good (after a 410 Gone)."""
        return self._lane.is_stopped()

    def stop_provider(self, why: str) -> None:
        """Stop this provider for good: later items are dropped as ``provider_stopped``."""
        self._lane.stop_for_good(why)

    def time_left(self) -> float | None:
        """Seconds left in the shutdown budget, or None when no shutdown is under way."""
        deadline = self._lane.shutdown_deadline
        return None if deadline is None else max(0.0, deadline - time.monotonic())

    def sleep(self, seconds: float) -> bool:
        """Wait `seconds` (a retry backoff). Returns False at once if shutdown's budget would be
        exceeded, so the caller can drop what it holds instead of waiting."""
        return self._lane.backoff_sleep(seconds)


class Lane:
    """One provider's queue and worker thread."""

    def __init__(self, provider: Any, settings: EngineSettings) -> None:
        self.provider = provider
        self.name: str = provider.name
        self.settings = settings
        self.batching = isinstance(provider, BatchingProvider)
        self.takes_identify = self.batching or callable(getattr(provider, "identify", None))
        self.counters = _Counters()
        self.shutdown_deadline: float | None = None
        self._stopped_why: str | None = None
        #: Set once the provider is unregistered (or replaced): the lane takes nothing new and
        #: its worker, once it has finished what it holds, is never started again.
        self.retired = False
        self._reset_runtime()

    def _reset_runtime(self) -> None:
        # Made again when the engine starts (`refresh`): under gevent or eventlet, primitives
        # made before monkey-patching (at import, or in a gunicorn --preload master) would
        # block the whole process instead of one green thread.
        self._cond = threading.Condition(threading.Lock())
        # Items in order, and when each run of them arrived: [monotonic time, items left] per
        # offer. Keeping times per run, not per item, spares a tuple per event per provider
        # (fewer objects for the garbage collector to walk while a destination is slow).
        self._items: collections.deque[object] = collections.deque()
        self._arrivals: collections.deque[list[float]] = collections.deque()
        self._controls_waiting = 0
        self._thread: threading.Thread | None = None
        self._loop: Any = None  # an asyncio loop, made the first time a method is async

    def after_fork(self) -> None:
        self._reset_runtime()
        self.counters = _Counters()
        self.shutdown_deadline = None

    def refresh(self) -> None:
        """Make the lane's lock anew, from the threading module as it is now (see
        `_reset_runtime`). Only for a lane with no worker and nothing queued."""
        if self._thread is None and not self._items:
            self._cond = threading.Condition(threading.Lock())

    def retire(self) -> _Stop:
        """Stop taking events; the worker finishes what it holds and exits. Returns the stop
        marker, done once it has."""
        stop = _Stop()
        stop.expect([self])
        with self._cond:
            self.retired = True
        self.offer_control(stop)
        return stop

    def is_idle(self) -> bool:
        """No worker running (it exited, or was never started)."""
        thread = self._thread
        return thread is None or not thread.is_alive()

    def wait_idle(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for the worker to exit; returns `is_idle()`."""
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(max(0.0, timeout))
        return self.is_idle()

    # -- producer side (the dispatcher thread) --------------------------------------------

    def offer(self, items: Sequence[Item]) -> None:
        """Queue `items` (from the dispatcher), dropping what exceeds the queue's bound."""
        counters = self.counters
        full = 0
        with self._cond:
            if self.retired:
                return  # unregistered while the dispatcher was handing these out
            counters.accepted += len(items)
            if self._stopped_why is not None:
                counters.drop(DropReason.PROVIDER_STOPPED, len(items))
                return
            room = self.settings.max_queue - len(self._items) - counters.in_flight
            if room < len(items):
                full = len(items) - max(room, 0)
                counters.drop(DropReason.QUEUE_FULL, full)
                items = items[: max(room, 0)]
            if items:
                now = time.monotonic()
                self._items.extend(items)
                self._arrivals.append([now, len(items)])
                if self._thread is None:
                    self._start()
                self._cond.notify()
        if full:
            rate_limited.log(
                logging.WARNING,
                f"queue_full:{self.name}",
                "tracking: %s has %d events waiting (TRACKING_MAX_QUEUE); dropping new events",
                self.name,
                self.settings.max_queue,
            )

    def offer_control(self, control: _Flush) -> None:
        with self._cond:
            self._items.append(control)
            self._arrivals.append([time.monotonic(), 1])
            self._controls_waiting += 1
            if self._thread is None:
                self._start()
            self._cond.notify()

    def count_bad_input(self) -> None:
        self.counters.accepted += 1
        self.counters.drop(DropReason.BAD_INPUT)

    def _start(self) -> None:
        # The caller holds the lock.
        target = self._run_batched if self.batching else self._run_plain
        thread = threading.Thread(
            target=self._work, args=(target,), name=f"tracking-{self.name}", daemon=True
        )
        try:
            thread.start()
        except RuntimeError:
            # Python 3.12 refuses new threads once the interpreter is exiting. What waits here
            # is counted as dropped (shutdown) when the exit flush's budget runs out.
            rate_limited.log(
                logging.ERROR,
                f"no_thread:{self.name}",
                "tracking: cannot start a worker for %s while the interpreter exits",
                self.name,
            )
            return
        self._thread = thread

    def ensure_started(self) -> None:
        """Start the worker now (the engine starts every lane with the dispatcher, so that
        no thread has to be created at interpreter exit)."""
        with self._cond:
            if self._thread is None and not self.retired:
                self._start()

    # -- state ------------------------------------------------------------------------------

    def queued(self) -> int:
        with self._cond:
            return len(self._items) + self.counters.in_flight

    def stats(self) -> ProviderStats:
        c = self.counters
        queued = max(0, len(self._items) - self._controls_waiting)
        return ProviderStats(
            accepted=c.accepted,
            delivered=c.delivered,
            failed=c.failed,
            retried=c.retried,
            batches=c.batches,
            dropped=types.MappingProxyType(dict(c.dropped)),
            queued=queued + c.in_flight,
            last_status=c.last_status,
            last_error=c.last_error,
            conversions=types.MappingProxyType(dict(c.conversions)),
        )

    def is_stopped(self) -> bool:
        return self._stopped_why is not None

    def stop_for_good(self, why: str) -> None:
        with self._cond:
            self._stopped_why = why
        logger.error("tracking: %s is stopped: %s", self.name, why)

    def begin_shutdown(self, deadline: float) -> None:
        with self._cond:
            self.shutdown_deadline = deadline
            self._cond.notify_all()

    def abandon(self) -> tuple[int, int]:
        """After a shutdown that ran out of time: drop (and count) what is still waiting.

        Returns (dropped, in flight). What is in flight stays the worker's to report, once its
        provider returns; markers still waiting are finished as failed, and the lane takes
        events again (tracking may be used after a shutdown).
        """
        with self._cond:
            markers = [item for item in self._items if isinstance(item, _Flush)]
            waiting = len(self._items) - len(markers)
            self._items.clear()
            self._arrivals.clear()
            self._controls_waiting = 0
            self.shutdown_deadline = None
            in_flight = self.counters.in_flight
        for marker in markers:
            marker.finish(self, ok=False)
        if waiting:
            self.counters.drop(DropReason.SHUTDOWN, waiting)
        return waiting, in_flight

    def backoff_sleep(self, seconds: float) -> bool:
        end = time.monotonic() + seconds
        with self._cond:
            while True:
                deadline = self.shutdown_deadline
                if deadline is not None and deadline < end:
                    return False
                left = end - time.monotonic()
                if left <= 0:
                    return True
                self._cond.wait(left)

    # -- worker side ------------------------------------------------------------------------

    def _work(self, loop: Callable[[], None]) -> None:
        """The worker thread: the lane's run loop, which returns only after a stop marker.

        The loops catch whatever a provider raises; this is the net under the engine's own
        code, so that a bug there never leaves a lane without a worker for good.
        """
        # Conversions this provider's wire mapping could not make as given are its to count.
        set_conversion_sink(self.counters.note_conversion)
        try:
            loop()
        except BaseException:
            logger.exception(
                "tracking: %s's worker failed; it restarts on the next event", self.name
            )
            with self._cond:
                self._thread = None
                self.counters.in_flight = 0

    def _call(self, method: Callable[..., Any], *args: Any) -> None:
        result = method(*args)
        if result is not None and hasattr(result, "__await__"):
            if self._loop is None:
                import asyncio  # only for providers with async methods: keeps import cheap

                self._loop = asyncio.new_event_loop()
            self._loop.run_until_complete(result)

    def _finish_control(self, control: _Flush) -> bool:
        ok = True
        flush = getattr(self.provider, "flush", None)
        if callable(flush) and self._stopped_why is None:
            try:
                self._call(flush)
            except BaseException as exc:  # SystemExit and CancelledError included
                ok = False
                self.counters.failed += 1
                rate_limited.log(
                    logging.ERROR,
                    f"provider_error:{self.name}:flush",
                    "tracking: provider %r raised %s in flush()",
                    self.name,
                    type(exc).__name__,
                )
                logger.debug("tracking: provider %r traceback", self.name, exc_info=True)
        control.finish(self, ok)
        if isinstance(control, _Stop):
            with self._cond:
                self.shutdown_deadline = None
                if self._items:
                    return False  # accepted after the stop: keep working
                self._thread = None
            if self._loop is not None:
                self._loop.close()
                self._loop = None
            return True
        return False

    def _pop(self) -> object:
        """The head item (the caller holds the lock and checked there is one)."""
        run = self._arrivals[0]
        run[1] -= 1
        if not run[1]:
            self._arrivals.popleft()
        return self._items.popleft()

    def _run_plain(self) -> None:
        items = self._items
        counters = self.counters
        while True:
            with self._cond:
                while not items:
                    self._cond.wait()
                item = self._pop()
                if isinstance(item, _Flush):
                    self._controls_waiting -= 1
                else:
                    counters.in_flight = 1
            if isinstance(item, _Flush):
                if self._finish_control(item):
                    return
                continue
            try:
                if isinstance(item, TrackingEvent):
                    self._call(self.provider.track, _read_only(item))
                else:
                    assert isinstance(item, TrackingIdentify)
                    traits = types.MappingProxyType(item.traits)
                    self._call(self.provider.identify, item.user_id, traits)
                counters.delivered += 1
                counters.last_error = None
            except BaseException as exc:
                # Whatever the provider raises (SystemExit, GeneratorExit, CancelledError and
                # KeyboardInterrupt included) is its own failure: the lane carries on.
                counters.failed += 1
                counters.last_error = f"{type(exc).__name__} raised by the provider"
                counters.drop(DropReason.PROVIDER_ERROR)
                if rate_limited.log(
                    logging.ERROR,
                    f"provider_error:{self.name}",
                    "tracking: provider %r raised %s; the event is dropped",
                    self.name,
                    type(exc).__name__,
                ):
                    logger.debug("tracking: provider %r traceback", self.name, exc_info=True)
            finally:
                counters.in_flight = 0

    def _take_batch(self, limit: int) -> tuple[list[Item], _Flush | None]:
        """Wait until a batch is due; return it, or a control that reached the head."""
        items = self._items
        interval = self.settings.flush_interval
        while True:
            if items:
                head = items[0]
                queued_at = self._arrivals[0][0]
                if isinstance(head, _Flush):
                    self._pop()
                    self._controls_waiting -= 1
                    return [], head
                now = time.monotonic()
                due = (
                    self._controls_waiting
                    or self.shutdown_deadline is not None
                    or len(items) >= limit
                    or now - queued_at >= interval
                )
                if due:
                    batch: list[Item] = []
                    while items and len(batch) < limit and not isinstance(items[0], _Flush):
                        batch.append(self._pop())  # type: ignore[arg-type]
                    self.counters.in_flight = len(batch)
                    return batch, None
                self._cond.wait(queued_at + interval - now)
            else:
                self._cond.wait()

    def _batch_limit(self) -> int:
        try:
            limit = int(self.provider.batch_limit())
        except BaseException as exc:
            rate_limited.log(
                logging.ERROR,
                f"provider_error:{self.name}:batch_limit",
                "tracking: provider %r raised %s in batch_limit(); using TRACKING_BATCH_SIZE",
                self.name,
                type(exc).__name__,
            )
            return max(1, self.settings.batch_size)
        return max(1, min(self.settings.batch_size, limit))

    def _run_batched(self) -> None:
        control = DeliveryControl(self)
        counters = self.counters
        while True:
            limit = self._batch_limit()
            with self._cond:
                batch, marker = self._take_batch(limit)
            if marker is not None:
                if self._finish_control(marker):
                    return
                continue
            control.reported = 0
            try:
                if self._stopped_why is not None:
                    counters.drop(DropReason.PROVIDER_STOPPED, len(batch))
                else:
                    self.provider.deliver_batch(batch, control)
            except BaseException as exc:
                # A bug in a provider's wire mapping must not kill the worker. What the
                # provider already reported for this batch stands; the rest is dropped.
                counters.failed += 1
                counters.drop(DropReason.PROVIDER_ERROR, max(0, len(batch) - control.reported))
                rate_limited.log(
                    logging.ERROR,
                    f"provider_error:{self.name}",
                    "tracking: provider %r raised %s while sending a batch of %d; dropped",
                    self.name,
                    type(exc).__name__,
                    len(batch),
                )
                logger.debug("tracking: provider %r traceback", self.name, exc_info=True)
            finally:
                counters.in_flight = 0


def _read_only(event: TrackingEvent) -> TrackingEvent:
    """The event with a read-only view of its properties, for a plain (custom) provider: one
    event object is shared by every provider, so none may change what the others see."""
    if type(event.properties) is dict:
        return dataclasses.replace(event, properties=types.MappingProxyType(event.properties))
    return event


# Intake tuples, built on the caller's thread: as cheap as a tuple can be.
#   ("t", name, properties dict | None, user_id, anonymous_id, time.time() float | datetime)
#   ("i", user_id, traits dict | None, time.time() float)
_EMPTY: Mapping[str, Any] = types.MappingProxyType({})


def _build(item: tuple[Any, ...], event_id: str) -> Item:
    if item[0] == "t":
        _, name, props, user_id, anonymous_id, ts = item
        when = utc_from_timestamp(ts) if type(ts) is float else normalize_timestamp(ts)
        return TrackingEvent(
            name,
            # The snapshot dict itself: a read-only view per queued event would be one more
            # object for the garbage collector to walk while a destination is slow. Plain
            # providers get the view (see _read_only); batching providers are wire mappings
            # that only read.
            props or _EMPTY,
            when,
            user_id,
            anonymous_id,
            event_id,
        )
    _, user_id, traits, ts = item
    return TrackingIdentify(
        user_id,
        traits or _EMPTY,
        utc_from_timestamp(ts),
        event_id,
    )


#: How many intake items the dispatcher takes at once (fewer locks and wake-ups per event).
DISPATCH_CHUNK = 100


class Engine:
    """The process-wide delivery machinery: intake, dispatcher, lanes (see the module doc)."""

    def __init__(self, discover: Callable[[], None]) -> None:
        self._discover = discover
        self.settings, errors = EngineSettings.from_environ()
        for error in errors:
            logger.warning("tracking: %s; using the default", error)
        if self.settings.debug:
            enable_debug_logging()
        # Held only for short steps that never wait or switch threads, so it is safe even when
        # made before gevent or eventlet patches the threading module. Everything that waits
        # (the intake, the discovery event, the lanes' conditions) is made at first use, by
        # `_start`, from the modules as they are then.
        self._lock = threading.Lock()
        self._lanes: dict[str, Lane] = {}
        self.lanes: tuple[Lane, ...] = ()
        #: Lanes unregistered or replaced whose workers are still finishing what they hold.
        self._retiring: list[Lane] = []
        self._discovered: threading.Event | None = None
        self._discovery_started = False
        self._discovery_done = False
        self._intake: queue.SimpleQueue[Any] | None = None
        self._dispatcher: threading.Thread | None = None
        self.intake_dropped = 0
        self.bad_input = 0
        self._mp_hooked = False
        self._mp_armed_pid = 0
        self._intake_dropped_logged = 0
        #: Called (without arguments) each time the engine starts in a process.
        self.on_start: Callable[[], None] | None = None
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(before=self._before_fork, after_in_child=self._after_fork_in_child)

    @property
    def started(self) -> bool:
        """True once tracking was used in this process (the dispatcher exists)."""
        return self._dispatcher is not None

    # -- registry -------------------------------------------------------------------------

    def add(self, provider: Any) -> Lane | None:
        """Register `provider`; returns the lane it replaced, if any (its name was taken)."""
        lane = Lane(provider, self.settings)
        with self._lock:
            old = self._lanes.pop(lane.name, None)
            self._lanes[lane.name] = lane
            self.lanes = tuple(self._lanes.values())
        if old is not None:
            self._retire(old)
        if self._dispatcher is not None:
            lane.ensure_started()
        return old

    def remove(self, name: str) -> bool:
        with self._lock:
            old = self._lanes.pop(name, None)
            self.lanes = tuple(self._lanes.values())
        if old is None:
            return False
        self._retire(old)
        return True

    def _retire(self, lane: Lane) -> None:
        # The removed provider still gets what it was handed, then its worker exits for good.
        with self._lock:
            self._retiring = [old for old in self._retiring if not old.is_idle()]
            self._retiring.append(lane)
        lane.retire()

    def names(self) -> list[str]:
        return [lane.name for lane in self.lanes]

    # -- intake (the caller's thread) -------------------------------------------------------

    def submit(self, item: object) -> None:
        intake = self._intake
        if self._dispatcher is None or intake is None:
            intake = self._start()
        if intake.qsize() >= self.settings.max_queue:
            self.intake_dropped += 1
            return
        intake.put(item)

    def _start(self) -> queue.SimpleQueue[Any]:
        """Start the dispatcher and the workers (first use in this process); returns the
        intake."""
        with self._lock:
            intake = self._intake
            if self._dispatcher is not None and intake is not None:
                return intake
            intake = self._intake = queue.SimpleQueue()
            if not self._discovery_done:
                self._discovered = threading.Event()
            for lane in self.lanes:
                lane.refresh()
            thread = threading.Thread(target=self._dispatch, name="tracking-dispatch", daemon=True)
            self._dispatcher = thread
        # Started outside the lock: under gevent, starting a thread switches to it.
        thread.start()
        # Workers start with the dispatcher, on first use, not with their first event: that
        # event may only reach its lane during the exit flush, when Python 3.12 no longer lets
        # a thread start.
        for lane in self.lanes:
            lane.ensure_started()
        self._arm_multiprocessing_exit()
        if self.on_start is not None:
            self.on_start()
        return intake

    def _arm_multiprocessing_exit(self) -> None:
        """In a multiprocessing child (any start method) flush at its exit, which skips atexit.

        A child forked after tracking started is armed by `_before_fork`; this covers children
        whose tracking starts inside them (forkserver, spawn-less fork of a fresh parent).
        """
        mp = sys.modules.get("multiprocessing")
        if mp is None or self._mp_armed_pid == os.getpid():
            return
        if mp.parent_process() is not None:
            self._mp_armed_pid = os.getpid()
            self._flush_at_multiprocessing_exit()

    # -- discovery --------------------------------------------------------------------------

    def _run_discovery(self) -> None:
        # Only the dispatcher thread runs this, before it hands out the next item.
        with self._lock:
            done = self._discovered
            run = not self._discovery_started
            self._discovery_started = True
        if run:
            try:
                self._discover()
            except Exception:
                logger.exception("tracking: provider discovery failed")
        self._discovery_done = True
        if done is not None:
            done.set()

    def ensure_discovered(self, timeout: float | None = None) -> bool:
        """Run discovery (once) and wait for it. Safe to call from a plugin's own hook."""
        if self._discovery_done:
            return True
        if threading.current_thread() is self._dispatcher:
            return False
        intake = self._start()
        done = self._discovered
        if done is None:
            return self._discovery_done
        intake.put(_Sync())  # wakes the dispatcher, which discovers before anything else
        return done.wait(timeout)

    # -- the dispatcher thread --------------------------------------------------------------

    def _dispatch(self) -> None:
        intake = self._intake
        assert intake is not None
        take = intake.get_nowait
        while True:
            chunk = [intake.get()]
            try:
                while len(chunk) < DISPATCH_CHUNK:
                    chunk.append(take())
            except queue.Empty:
                pass
            if not self._discovery_done:
                self._run_discovery()
            if self.intake_dropped != self._intake_dropped_logged:
                self._log_intake_drops()
            ids = iter(uuid4_strings(sum(1 for item in chunk if type(item) is tuple)))
            built: list[Item] = []
            for item in chunk:
                try:
                    if type(item) is tuple:
                        built.append(_build(item, next(ids)))
                        continue
                    if built:  # controls keep their place behind the events before them
                        self._fan_out(built)
                        built = []
                    self._control(item)
                except Exception:
                    logger.exception("tracking: internal error while dispatching; item dropped")
            if built:
                self._fan_out(built)

    def _log_intake_drops(self) -> None:
        # Counted on the callers' threads (no I/O there), logged here.
        self._intake_dropped_logged = self.intake_dropped
        rate_limited.log(
            logging.WARNING,
            "queue_full:intake",
            "tracking: %d calls dropped so far: more than TRACKING_MAX_QUEUE (%d) were waiting "
            "to be dispatched",
            self.intake_dropped,
            self.settings.max_queue,
        )

    def _fan_out(self, built: list[Item]) -> None:
        events_only: list[Item] | None = None
        for lane in self.lanes:
            if lane.takes_identify:
                lane.offer(built)
            else:
                if events_only is None:
                    events_only = [item for item in built if type(item) is TrackingEvent]
                if events_only:
                    lane.offer(events_only)

    def _control(self, item: object) -> None:
        if isinstance(item, _Flush):
            lanes = self.lanes
            item.expect(lanes)
            for lane in lanes:
                lane.offer_control(item)
        elif isinstance(item, _Sync):
            item.done.set()
        elif isinstance(item, _BadInput):
            self.bad_input += 1
            for lane in self.lanes:
                lane.count_bad_input()
            rate_limited.log(
                logging.WARNING,
                f"bad_input:{item.reason.split(':')[0]}",
                "tracking: dropped a call: %s",
                item.reason,
            )

    # -- flush, shutdown, fork --------------------------------------------------------------

    def flush(self, timeout: float | None) -> bool:
        deadline = time.monotonic() + (self.settings.flush_timeout if timeout is None else timeout)
        if not self.ensure_discovered(max(0.0, deadline - time.monotonic())):
            return False
        marker = _Flush()
        self.submit_control(marker)
        return marker.done.wait(max(0.0, deadline - time.monotonic())) and marker.ok

    def submit_control(self, marker: _Flush) -> None:
        self._start().put(marker)

    def shutdown(self, timeout: float | None) -> bool:
        """Flush within the budget, then stop the workers; log what was not delivered."""
        budget = self.settings.shutdown_timeout if timeout is None else timeout
        began = time.monotonic()
        deadline = began + max(0.0, budget)
        if self._dispatcher is not None:
            # The providers discovery is still registering are part of this shutdown.
            self.ensure_discovered(max(0.0, deadline - time.monotonic()))
        with self._lock:
            dispatcher = self._dispatcher
            lanes = self.lanes
            retiring = [lane for lane in self._retiring if not lane.is_idle()]
        if dispatcher is None and not any(lane.queued() for lane in lanes):
            return True
        dropped_before = {lane.name: sum(lane.counters.dropped.values()) for lane in lanes}
        for lane in (*lanes, *retiring):
            lane.begin_shutdown(deadline)
        stop = _Stop()
        self.submit_control(stop)
        finished = stop.done.wait(max(0.0, deadline - time.monotonic()))
        # Unregistered providers still finishing what they were handed get the same budget.
        for lane in retiring:
            while not lane.is_idle() and time.monotonic() < deadline:
                lane.wait_idle(deadline - time.monotonic())
            finished = finished and lane.is_idle()
        if not finished:
            for lane in (*lanes, *retiring):
                lane.abandon()
        self._log_shutdown(lanes, finished, budget, time.monotonic() - began, dropped_before)
        return finished and stop.ok

    def _log_shutdown(
        self,
        lanes: Sequence[Lane],
        finished: bool,
        budget: float,
        took: float,
        dropped_before: Mapping[str, int] | None = None,
    ) -> None:
        """When a shutdown dropped events or left some in flight: one line with each such
        provider's figures since the process started, exactly those of `tracking_stats()`
        (accepted = delivered + dropped + in flight, whose outcome is unknown)."""
        parts = []
        incomplete = False
        before = dropped_before or {}
        for name, snap in self.stats(lanes).items():
            dropped = sum(snap.dropped.values())
            waiting = snap.queued
            if not waiting and dropped <= before.get(name, 0):
                continue
            incomplete = True
            reasons = ", ".join(
                f"{reason} {count}" for reason, count in sorted(snap.dropped.items())
            )
            parts.append(
                f"{name}: {snap.accepted} accepted, {snap.delivered} delivered, "
                f"{dropped} dropped" + (f" ({reasons})" if reasons else "") + f", "
                f"{waiting} in flight (outcome unknown)"
            )
        if not incomplete:
            logger.debug("tracking: shutdown finished in %.2fs; everything delivered", took)
            return
        head = (
            f"tracking: shutdown finished in {took:.1f}s"
            if finished
            else f"tracking: shutdown ran out of its {budget:.1f}s budget"
        )
        logger.log(
            logging.WARNING if finished else logging.ERROR,
            "%s; not everything was delivered: %s",
            head,
            "; ".join(parts),
        )

    def reset(self, *, discover: bool, timeout: float = 5.0) -> None:
        """Forget every provider and count, re-read the settings (for test suites).

        Items still in the intake are handed out first; each removed provider gets up to
        `timeout` seconds to finish what it holds. With `discover`, plugin discovery runs again
        on next use; without it, discovery counts as done and finds nothing.
        """
        deadline = time.monotonic() + timeout
        if self._dispatcher is not None and self._intake is not None:
            sync = _Sync()
            self._intake.put(sync)
            sync.done.wait(timeout)
        with self._lock:
            lanes = self.lanes
            self._lanes = {}
            self.lanes = ()
            retiring, self._retiring = self._retiring, []
        stops = []
        for lane in lanes:
            lane.begin_shutdown(deadline)
            stops.append((lane, lane.retire()))
        for lane, stop in stops:
            if not stop.done.wait(max(0.0, deadline - time.monotonic())):
                lane.abandon()
        for lane in retiring:
            lane.wait_idle(max(0.0, deadline - time.monotonic()))
        self.settings, errors = EngineSettings.from_environ()
        for error in errors:
            logger.warning("tracking: %s; using the default", error)
        self.intake_dropped = 0
        self._intake_dropped_logged = 0
        self.bad_input = 0
        rate_limited.reset()
        with self._lock:
            self._discovery_started = not discover
            self._discovery_done = not discover
            if self._dispatcher is not None:
                self._discovered = threading.Event()
                if not discover:
                    self._discovered.set()

    def _before_fork(self) -> None:
        mp_util = sys.modules.get("multiprocessing.util")
        if mp_util is not None and not self._mp_hooked:
            self._mp_hooked = True
            mp_util.register_after_fork(self, Engine._flush_at_multiprocessing_exit)
        # Forking while discovery imports provider packages would leave the child with
        # half-initialised modules: let a running discovery finish first (bounded).
        done = self._discovered
        if (
            self._discovery_started
            and not self._discovery_done
            and done is not None
            and threading.current_thread() is not self._dispatcher
        ):
            done.wait(10.0)

    def _after_fork_in_child(self) -> None:
        # Nothing that waits is made here: gunicorn's gevent worker patches the threading
        # module only after the fork. `_start` makes the intake and the lanes' conditions on
        # first use in the child.
        self._lock = threading.Lock()
        self._intake = None
        self._dispatcher = None
        self._retiring = []
        self.intake_dropped = 0
        self._intake_dropped_logged = 0
        self.bad_input = 0
        if not self._discovery_done:
            self._discovery_started = False
            self._discovered = None
        for lane in self.lanes:
            lane.after_fork()

    def _flush_at_multiprocessing_exit(self) -> None:
        # Called by multiprocessing in a child it forked, after it cleared the finalizers it
        # inherited: such a child ends with os._exit(), which skips atexit, but runs these.
        mp_util = sys.modules.get("multiprocessing.util")
        if mp_util is not None:
            self._mp_armed_pid = os.getpid()
            mp_util.Finalize(self, self.shutdown_at_exit, exitpriority=0)

    #: Called after every exit shutdown (atexit or a multiprocessing child's finalizer).
    after_exit_shutdown: Callable[[], None] | None = None

    def shutdown_at_exit(self) -> None:
        """The exit flush: never raises; whatever interrupts it, what is left is logged."""
        try:
            self.shutdown(None)
        except BaseException as exc:  # KeyboardInterrupt (a second Ctrl+C) included
            for lane in self.lanes:
                lane.abandon()
            self._log_shutdown(self.lanes, False, self.settings.shutdown_timeout, 0.0)
            if not isinstance(exc, (KeyboardInterrupt, SystemExit)):
                logger.exception("tracking: shutdown at process exit failed")
        finally:
            if self.after_exit_shutdown is not None:
                self.after_exit_shutdown()

    def stats(self, lanes: Sequence[Lane] | None = None) -> dict[str, ProviderStats]:
        result = {}
        for lane in self.lanes if lanes is None else lanes:
            snap = lane.stats()
            if self.intake_dropped:
                dropped = dict(snap.dropped)
                dropped[DropReason.QUEUE_FULL] = (
                    dropped.get(DropReason.QUEUE_FULL, 0) + self.intake_dropped
                )
                snap = dataclasses.replace(
                    snap,
                    accepted=snap.accepted + self.intake_dropped,
                    dropped=types.MappingProxyType(dropped),
                )
            result[lane.name] = snap
        return result

    def report_bad_input(self, reason: str) -> None:
        self.submit(_BadInput(reason))
