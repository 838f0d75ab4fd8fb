"""A lane's worker thread (take a batch or a marker, deliver it, repeat), and what it lends
the provider while it delivers: `DeliveryControl`.

Whatever a provider raises (``SystemExit``, ``CancelledError`` and ``KeyboardInterrupt``
included) is that batch's failure, counted and logged; the loop goes on. It returns only after a
stop marker.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from .._log import logger, rate_limited
from ..event import set_conversion_sink
from .markers import Flush, Stop
from .plain import PlainDelivery
from .receipts import DELIVERED, UNCERTAIN, WATCH
from .records import ItemsView, Record, materialize, record_id
from .stats import DropReason
from .turn import Pacer, turn

if TYPE_CHECKING:
    from ..settings import EngineSettings
    from .lane import Lane

__all__ = ["DeliveryControl", "work"]


class DeliveryControl:
    """What the engine lends a provider while it delivers one batch."""

    def __init__(self, lane: Lane) -> None:
        self._lane = lane
        self._counters = lane.counters
        #: Items reported (delivered or dropped) during the current batch.
        self.reported = 0
        self._delivered = self._dropped = 0  # ever, for `tally`

    @property
    def settings(self) -> EngineSettings:
        return self._lane.settings

    def delivered(self, count: int, *, clear_error: bool = False) -> None:
        self._counters.deliver(count)
        if clear_error:
            self._counters.last_error = None
        self.reported += count
        self._delivered += count

    def dropped(self, reason: str, count: int) -> None:
        """Count `count` items as dropped for `reason` (logged, rate-limited, by the caller)."""
        if count > 0:
            self._counters.drop(reason, count)
            self.reported += count
            self._dropped += count

    def tally(self) -> tuple[int, int]:
        """(delivered, dropped): what was reported through this control so far."""
        return self._delivered, self._dropped

    def settled(self, event_ids: Sequence[str], outcome: str) -> None:
        """Report what became of the items with these ids (``"delivered"`` or the drop
        reason) to the receipts waiting on them, if any (`tracking_core.submit_event`). The
        built-in deliveries call it beside `delivered`/`dropped`; for a provider that only
        counts, the engine settles a batch's receipts from its counts when it returns."""
        if WATCH.active:
            WATCH.settle(self._lane.name, event_ids, outcome)

    def failed(self, error: str | None = None) -> None:
        """One failed attempt (and, when given, why: text without secrets)."""
        self._counters.fail(error)

    def retried(self, count: int) -> None:
        self._counters.retry(count)

    def answer_truncated(self) -> None:
        """Count an answer longer than the sender reads (only its start was read)."""
        self._counters.truncated()

    def batch_sent(self, status: int | None, error: str | None) -> None:
        """Count one request sent; remember its status and, when it failed, why."""
        self._counters.sent(status, error)

    @property
    def stopped(self) -> bool:
        """True once the provider was stopped for good (after a 410 Gone)."""
        return self._lane.stopped_why is not None

    def stop_provider(self, why: str) -> None:
        """Stop this provider for good: later items are dropped as ``provider_stopped``."""
        self._lane.stop_for_good(why)

    def time_left(self) -> float | None:
        """Seconds left in the shutdown budget, or None when no shutdown is under way."""
        deadline = self._lane.backlog.deadline
        return None if deadline is None else max(0.0, deadline - time.monotonic())

    def sleep(self, seconds: float) -> bool:
        """Wait `seconds` (a retry backoff). Returns False at once if shutdown's budget would be
        exceeded, so the caller can drop what it holds instead of waiting."""
        backlog = self._lane.backlog
        with backlog.cond:
            return backlog.sleep(seconds)


def work(lane: Lane) -> None:
    """The worker thread. The loop catches whatever a provider raises; this is the net
    under the engine's own code, so that a bug there never leaves a lane without a worker
    for good."""
    # Conversions this provider's wire mapping could not make as given are its to count.
    set_conversion_sink(lane.counters.note_conversion)
    try:
        _run(lane)
    except BaseException:
        logger.exception("tracking: %s's worker failed; it restarts on the next event", lane.name)
        with lane.backlog.cond:
            lane._thread = None
            lane.counters.in_flight = 0


def _limits(lane: Lane) -> tuple[int, int]:
    """(trigger, limit): a batch is due at ``TRACKING_BATCH_SIZE`` items (capped by what the
    provider takes at once); when more wait, it takes up to the provider's `batch_limit()`."""
    try:
        limit = max(1, int(lane.delivery.batch_limit()))
    except BaseException as exc:
        rate_limited.log(
            logging.ERROR,
            f"provider_error:{lane.name}:batch_limit",
            "tracking: provider %r raised %s in batch_limit(); using TRACKING_BATCH_SIZE",
            lane.name,
            type(exc).__name__,
        )
        limit = max(1, lane.settings.batch_size)
    return max(1, min(lane.settings.batch_size, limit)), limit


def _run(lane: Lane) -> None:
    control = DeliveryControl(lane)
    counters = lane.counters
    delivery = lane.delivery
    waits = getattr(delivery, "waits_for_batch", True)
    # A delivery that may hold requests for a later attempt (a `tracking_core.http.Sender`):
    # fresh batches go on while held ones wait for their backoff, up to its bound.
    holds = callable(getattr(delivery, "submit", None))
    pace = Pacer()
    while True:
        trigger, limit = _limits(lane)
        interval = lane.settings.flush_interval if waits else 0.0
        full = holds and delivery.full()
        wake_in = delivery.due_in() if holds else None
        with lane.backlog.cond:
            batch, marker = (
                ([], None) if full else lane.backlog.take(trigger, limit, interval, wake_in)
            )
            counters.in_flight = len(batch) + (delivery.held() if holds else 0)
        if marker is not None:
            if holds:
                delivery.drain(control)  # a flush covers the held requests too
                counters.in_flight = delivery.held()
            if _finish_marker(lane, marker):
                return
            continue
        if batch:
            _deliver(lane, control, batch, holds)
        if holds:
            delivery.resume(control, wait=full)
            counters.in_flight = delivery.held()
        if lane._spent_deadline is not None:
            _lift_spent_deadline(lane)
        pace()  # let the application's threads run between batches (the GIL)


def _deliver(lane: Lane, control: DeliveryControl, batch: list[Record], holds: bool) -> None:
    counters = lane.counters
    control.reported = 0
    try:
        if lane.stopped_why is not None:
            counters.drop(DropReason.PROVIDER_STOPPED, len(batch))
            lane.settle(batch, DropReason.PROVIDER_STOPPED)
        elif holds:  # the library's HTTP sender: each item made as it is encoded
            lane.delivery.submit(ItemsView(batch), control)
        else:
            with turn():
                items = materialize(batch, read_only=isinstance(lane.delivery, PlainDelivery))
            tally = control.tally() if WATCH.active else None
            lane.delivery.deliver_batch(items, control)
            if tally is not None:
                _settle_from_counts(lane, batch, control, tally)
    except BaseException as exc:
        # A bug in a provider's wire mapping must not kill the worker. What the provider
        # already reported for this batch stands; the rest is dropped.
        counters.fail(f"{type(exc).__name__} raised by the provider")
        counters.drop(DropReason.PROVIDER_ERROR, max(0, len(batch) - control.reported))
        if WATCH.active:  # what the provider did not report is what was dropped
            pending = WATCH.pending(lane.name, [record_id(record) for record in batch])
            WATCH.settle(lane.name, pending, DropReason.PROVIDER_ERROR)
        rate_limited.log(
            logging.ERROR,
            f"provider_error:{lane.name}",
            "tracking: provider %r raised %s while sending a batch of %d; dropped",
            lane.name,
            type(exc).__name__,
            len(batch),
        )
        logger.debug("tracking: provider %r traceback", lane.name, exc_info=True)
    finally:
        counters.in_flight = 0


def _settle_from_counts(
    lane: Lane, batch: list[Record], control: DeliveryControl, before: tuple[int, int]
) -> None:
    """A provider that reports counts, not ids: when it delivered the whole batch, its
    receipts are settled as delivered; otherwise they cannot be told apart, and each is
    settled as ``uncertain`` (a relay sends such an event again: at least once)."""
    delivered, dropped = control.tally()
    outcome = (
        DELIVERED if delivered - before[0] == len(batch) and dropped == before[1] else UNCERTAIN
    )
    pending = WATCH.pending(lane.name, [record_id(record) for record in batch])
    WATCH.settle(lane.name, pending, outcome)


def _lift_spent_deadline(lane: Lane) -> None:
    with lane.backlog.cond:
        lane._spent_deadline = None
        # The shutdown under way now, if any, applies from the next batch on.
        lane.backlog.deadline = lane._shutdown_deadline


def _finish_marker(lane: Lane, marker: Flush) -> bool:
    """Run the provider's own flush, finish `marker`; True when the worker must exit."""
    ok = True
    flush: Callable[[], None] | None = getattr(lane.delivery, "flush", None)
    if callable(flush) and lane.stopped_why is None:
        try:
            flush()
        except BaseException as exc:  # SystemExit and CancelledError included
            ok = False
            lane.counters.fail(f"{type(exc).__name__} raised by the provider's flush()")
            rate_limited.log(
                logging.ERROR,
                f"provider_error:{lane.name}:flush",
                "tracking: provider %r raised %s in flush()",
                lane.name,
                type(exc).__name__,
            )
            logger.debug("tracking: provider %r traceback", lane.name, exc_info=True)
    marker.finish(lane, ok)
    if not isinstance(marker, Stop):
        return False
    with lane.backlog.cond:
        lane.backlog.deadline = lane._shutdown_deadline = None
        if len(lane.backlog):
            return False  # accepted after the stop: keep working
        lane._thread = None
    close = getattr(lane.delivery, "close", None)
    if isinstance(lane.delivery, PlainDelivery) and callable(close):
        close()
    return True
