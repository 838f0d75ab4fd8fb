"""A lane: one provider's backlog and worker thread, and what the worker lends the provider.

Every provider goes through the same loop: an HTTP provider is sent by a `Sender`
(`tracking_core.http.sender`), a plain one is wrapped in `PlainDelivery` and takes batches of one,
at once, and any other `BatchingProvider` takes its batches itself.
"""

from __future__ import annotations

import functools
import logging
import sys
import threading
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from .._log import logger, rate_limited
from ..process import quiet
from ..settings import EngineSettings
from .backlog import Backlog
from .markers import Flush, Stop
from .plain import PlainDelivery
from .receipts import WATCH
from .records import Item, Record, record_id
from .stats import Counters, DropReason, ProviderStats
from .worker import DeliveryControl, work

__all__ = ["BatchingProvider", "DeliveryControl", "Item", "Lane"]


@runtime_checkable
class BatchingProvider(Protocol):
    """A provider that takes lists of items (as `tracking_core.http.sender.Sender` does).

    The engine batches for it; it must deliver, count and drop each item through `control`.
    """

    name: str

    def batch_limit(self) -> int:
        """The most items this provider takes in one `deliver_batch` call."""
        ...

    def deliver_batch(self, items: Sequence[Item], control: DeliveryControl) -> None:
        """Deliver `items`; report every item as delivered or dropped through `control`."""
        ...


def delivery_for(provider: Any) -> tuple[Any, bool]:
    """What takes `provider`'s batches (a `Sender` for an HTTP provider, the provider itself
    for a batching one, else `PlainDelivery`), and whether it takes identify calls."""
    wire = sys.modules.get(f"{__package__.rpartition('.')[0]}.http.wire")  # or no HttpProvider
    if wire is not None and isinstance(provider, wire.HttpProvider):
        from ..http.sender import Sender

        return Sender(provider), True
    if isinstance(provider, BatchingProvider):
        return provider, True
    plain = PlainDelivery(provider)
    return plain, plain.takes_identify


class Lane:
    """One provider's backlog and worker thread."""

    def __init__(self, provider: Any, settings: EngineSettings) -> None:
        self.provider = provider
        self.name: str = provider.name
        self.settings = settings
        self.delivery, self.takes_identify = delivery_for(provider)
        self.counters = Counters()
        self.backlog = Backlog()
        self.stopped_why: str | None = None
        #: Set once the provider is unregistered (or replaced): the lane takes nothing new and
        #: its worker, once it has finished what it holds, is never started again.
        self.retired = False
        self._thread: threading.Thread | None = None
        self._spent_deadline: float | None = None
        self._shutdown_deadline: float | None = None

    def after_fork(self) -> None:
        """In a forked child: nothing queued, no worker, zeroed counters, and a new delivery
        when the lane made it (a `Sender` holding the parent's retries would send them again
        from here; a plain provider's event loop was the parent's)."""
        self.backlog = Backlog()
        self.counters = Counters()
        self._thread = None
        if self.delivery is not self.provider:
            self.delivery, self.takes_identify = delivery_for(self.provider)

    def refresh(self) -> None:
        """Make the lane's lock anew, from the threading module as it is now: under gevent or
        eventlet, one made before monkey-patching would block the whole process. Only for a
        lane with no worker and nothing queued (the engine calls it when it starts)."""
        if self._thread is None and not len(self.backlog):
            self.backlog.renew_lock()

    # -- producer side (the dispatcher thread) --------------------------------------------

    def offer(self, items: tuple[Record, ...]) -> None:
        """Queue `items` (from the dispatcher, one tuple shared by every lane it goes to),
        dropping what exceeds the queue's bound."""
        backlog = self.backlog
        full = 0
        with backlog.cond:
            if self.retired:  # unregistered while the dispatcher was handing these out
                self.settle(items, DropReason.PROVIDER_STOPPED)
                return
            self.counters.accept(len(items))
            if self.stopped_why is not None:
                self.counters.drop(DropReason.PROVIDER_STOPPED, len(items))
                self.settle(items, DropReason.PROVIDER_STOPPED)
                return
            room = self.settings.max_queue - len(backlog) - self.counters.in_flight
            if room < len(items):
                full = len(items) - max(room, 0)
                self.counters.drop(DropReason.QUEUE_FULL, full)
                self.settle(items[max(room, 0) :], DropReason.QUEUE_FULL)
                items = items[: max(room, 0)]
            if items:
                backlog.extend(items)
                if self._thread is None:
                    self._start()
        if full:
            rate_limited.log(
                logging.WARNING,
                f"queue_full:{self.name}",
                "tracking: %s has %d events waiting (TRACKING_MAX_QUEUE); dropping new events",
                self.name,
                self.settings.max_queue,
            )

    def offer_marker(self, marker: Flush) -> None:
        with self.backlog.cond:
            self.backlog.append_marker(marker)
            if self._thread is None:
                self._start()

    def settle(self, records: Sequence[Record], outcome: str) -> None:
        """Report `outcome` for `records` to the receipts waiting on them (if any)."""
        if WATCH.active:
            WATCH.settle(self.name, [record_id(record) for record in records], outcome)

    def count_bad_input(self) -> None:
        self.counters.accept(1)
        self.counters.drop(DropReason.BAD_INPUT)

    def _start(self) -> None:
        # The caller holds the backlog's lock.
        thread = threading.Thread(
            target=quiet(functools.partial(work, self)), name=f"tracking-{self.name}", daemon=True
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
        with self.backlog.cond:
            if self._thread is None and not self.retired:
                self._start()

    def retire(self) -> Stop:
        """Stop taking events; the worker finishes what it holds and exits. Returns the stop
        marker, done once it has."""
        stop = Stop()
        stop.expect([self])
        with self.backlog.cond:
            self.retired = True
        self.offer_marker(stop)
        return stop

    # -- state ------------------------------------------------------------------------------

    def queued(self) -> int:
        backlog = self.backlog
        with backlog.cond:
            return len(backlog) - backlog.markers_waiting + self.counters.in_flight

    def stats(self, intake_full: int = 0) -> ProviderStats:
        backlog = self.backlog
        return self.counters.snapshot(max(0, len(backlog) - backlog.markers_waiting), intake_full)

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

    def stop_for_good(self, why: str) -> None:
        with self.backlog.cond:
            self.stopped_why = why
        logger.error("tracking: %s is stopped: %s", self.name, why)

    def begin_shutdown(self, deadline: float) -> None:
        with self.backlog.cond:
            self._shutdown_deadline = deadline
            # A batch still in flight from a shutdown that ran out of time keeps that spent
            # deadline: this shutdown does not wait for its retries all over again.
            spent = self._spent_deadline
            self.backlog.deadline = deadline if spent is None else spent
            self.backlog.cond.notify_all()

    def abandon(self) -> tuple[int, int]:
        """After a shutdown that ran out of time: drop (and count) what is still waiting.

        Returns (dropped, in flight). What is in flight stays the worker's to report, once its
        provider returns; markers still waiting are finished as failed, and the lane takes
        events again (tracking may be used after a shutdown).
        """
        with self.backlog.cond:
            if WATCH.active:
                self.settle(self.backlog.records(), DropReason.SHUTDOWN)
            waiting, markers = self.backlog.clear()
            in_flight = self.counters.in_flight
            self._shutdown_deadline = None
            if in_flight:
                # The batch in flight keeps the spent deadline (its next attempt gives up at
                # once, and a later shutdown does not wait for its retries); the worker lifts
                # it when that batch is done.
                self._spent_deadline = self.backlog.deadline
            else:
                self.backlog.deadline = None
        for marker in markers:
            marker.finish(self, ok=False)
        if waiting:
            self.counters.drop(DropReason.SHUTDOWN, waiting)
        return waiting, in_flight
