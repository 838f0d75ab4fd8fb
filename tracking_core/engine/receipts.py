"""Per-event outcomes: `DeliveryReceipt`, and the watch that settles receipts as lanes report.

`tracking_core.submit_event` gives a receipt for one already-built event or identify. The
dispatcher registers it with `WATCH` before it hands the event to the lanes, naming the
providers it goes to; every place that settles items (a lane's queue bound, a worker, a plain
provider's call, an HTTP request's answer, a shutdown) reports their ids with the outcome,
``"delivered"`` or a `DropReason` value. Nothing here costs anything while no receipt waits:
each reporting place checks `Watch.active` first.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType

from .._log import logger

__all__ = ["DELIVERED", "UNCERTAIN", "WATCH", "DeliveryReceipt", "Watch"]

#: The outcome of an item a provider delivered.
DELIVERED = "delivered"
#: The outcome when a provider that reports only counts delivered part of a batch: this item
#: may or may not have arrived.
UNCERTAIN = "uncertain"


class DeliveryReceipt:
    """What became of one event or identify handed to `tracking_core.submit_event`.

    It is *done* once every provider the item went to has delivered it or dropped it for good
    (a drop is counted in `tracking_stats()` as always). Thread-safe; never raises.

    Attributes:
        event_id: the item's id, as every provider sent it.
    """

    __slots__ = ("_callbacks", "_done", "_event", "_expected", "_lock", "_outcomes", "event_id")

    def __init__(self, event_id: str) -> None:
        self.event_id = event_id
        self._expected: set[str] = set()
        self._outcomes: dict[str, str] = {}
        self._done = False
        self._event: threading.Event | None = None  # made by the first `wait` (costly to make)
        self._lock = threading.Lock()
        self._callbacks: list[Callable[[DeliveryReceipt], None]] = []

    def __repr__(self) -> str:
        state = "done" if self.done() else "pending"
        return f"DeliveryReceipt({self.event_id!r}, {state}, {dict(self.outcomes)!r})"

    def done(self) -> bool:
        """True once every provider the item went to has settled it."""
        return self._done

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until `done` (at most `timeout` seconds); returns `done()`."""
        with self._lock:
            if self._done:
                return True
            if self._event is None:
                self._event = threading.Event()
            event = self._event
        return event.wait(timeout)

    @property
    def outcomes(self) -> Mapping[str, str]:
        """Provider name -> ``"delivered"`` or the drop reason (a `DropReason` value), for
        every provider that has settled the item so far (a read-only copy)."""
        with self._lock:
            return MappingProxyType(dict(self._outcomes))

    @property
    def delivered(self) -> bool:
        """True when done and every provider delivered the item (and there was at least one)."""
        with self._lock:
            outcomes = list(self._outcomes.values())
        return self.done() and bool(outcomes) and all(o == DELIVERED for o in outcomes)

    def add_done_callback(self, callback: Callable[[DeliveryReceipt], None]) -> None:
        """Call `callback(receipt)` once when done: on the engine thread that settled the
        last provider, or at once when already done. What it raises is logged, not raised."""
        with self._lock:
            if not self._done:
                self._callbacks.append(callback)
                return
        _call(callback, self)

    # -- the engine's side ------------------------------------------------------------------

    def expect(self, providers: Iterable[str]) -> None:
        """The providers the item goes to (before any of them can settle it); done at once
        when there are none."""
        with self._lock:
            self._expected.update(providers)
        self._finish_if_settled()

    def settle(self, provider: str, outcome: str) -> bool:
        """`provider` settled the item; True when this made the receipt done. A provider not
        expected, or settling twice (a later report), is ignored."""
        with self._lock:
            if provider not in self._expected or provider in self._outcomes:
                return False
            self._outcomes[provider] = outcome
        return self._finish_if_settled()

    def pending(self, provider: str) -> bool:
        """True when `provider` is expected and has not settled the item yet."""
        with self._lock:
            return provider in self._expected and provider not in self._outcomes

    def _finish_if_settled(self) -> bool:
        with self._lock:
            if self._done or len(self._outcomes) < len(self._expected):
                return False
            self._done = True
            if self._event is not None:
                self._event.set()
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            _call(callback, self)
        return True


def _call(callback: Callable[[DeliveryReceipt], None], receipt: DeliveryReceipt) -> None:
    try:
        callback(receipt)
    except Exception:
        logger.log(logging.ERROR, "tracking: a receipt's done callback raised", exc_info=True)


class Watch:
    """The receipts not yet done, by event id (the same id may be submitted more than once)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._receipts: dict[str, list[DeliveryReceipt]] = {}
        #: True while any receipt waits: every reporting place checks it first.
        self.active = False

    def add(self, receipt: DeliveryReceipt, providers: Iterable[str]) -> None:
        """Watch `receipt`, expected from `providers` (call before handing the item out)."""
        with self._lock:
            self._receipts.setdefault(receipt.event_id, []).append(receipt)
            self.active = True
        receipt.expect(providers)
        if receipt.done():
            self._forget(receipt)

    def settle(self, provider: str, event_ids: Iterable[str], outcome: str) -> None:
        """`provider` settled the items with these ids: `outcome` for each."""
        if not self.active:
            return
        for event_id in event_ids:
            with self._lock:
                waiting = self._receipts.get(event_id)
                receipt = next((r for r in waiting or () if r.pending(provider)), None)
            if receipt is not None and receipt.settle(provider, outcome):
                self._forget(receipt)

    def pending(self, provider: str, event_ids: Iterable[str]) -> list[str]:
        """Of `event_ids`, those a receipt still waits on from `provider`."""
        if not self.active:
            return []
        with self._lock:
            return [
                event_id
                for event_id in event_ids
                if any(r.pending(provider) for r in self._receipts.get(event_id, ()))
            ]

    def clear(self) -> None:
        """Forget every receipt (a forked child: its parent's items are not its own)."""
        with self._lock:
            self._receipts.clear()
            self.active = False

    def _forget(self, receipt: DeliveryReceipt) -> None:
        with self._lock:
            waiting = self._receipts.get(receipt.event_id)
            if waiting is not None and receipt in waiting:
                waiting.remove(receipt)
                if not waiting:
                    del self._receipts[receipt.event_id]
            self.active = bool(self._receipts)


#: The process's watch.
WATCH = Watch()

if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=WATCH.clear)
