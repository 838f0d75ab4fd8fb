"""A lane's backlog: the bounded queue of items and markers one provider has yet to take."""

from __future__ import annotations

import collections
import threading
import time

from .markers import Flush
from .records import Record

__all__ = ["Backlog"]


class Backlog:
    """Items in arrival order, with markers among them, under one condition variable.

    Arrival times are kept per offered run, not per item (``[monotonic time, items left]``):
    a tuple per event per provider would be one more object for the garbage collector to walk
    while a destination is slow.
    """

    def __init__(self) -> None:
        self.cond = threading.Condition(threading.Lock())
        self.items: collections.deque[object] = collections.deque()
        self._arrivals: collections.deque[list[float]] = collections.deque()
        self.markers_waiting = 0
        #: Set by a shutdown: backoffs that would end after it are cut short.
        self.deadline: float | None = None

    def renew_lock(self) -> None:
        """A new condition variable, from the threading module as it is now (after gevent
        or eventlet patched it). Only for an empty backlog nobody waits on."""
        self.cond = threading.Condition(threading.Lock())

    def __len__(self) -> int:
        return len(self.items)

    # The caller holds `cond` for every method below.

    def extend(self, items: list[object] | tuple[object, ...]) -> None:
        self.items.extend(items)
        self._arrivals.append([time.monotonic(), len(items)])
        self.cond.notify()

    def append_marker(self, marker: Flush) -> None:
        self.items.append(marker)
        self._arrivals.append([time.monotonic(), 1])
        self.markers_waiting += 1
        self.cond.notify()

    def _pop(self) -> object:
        run = self._arrivals[0]
        run[1] -= 1
        if not run[1]:
            self._arrivals.popleft()
        return self.items.popleft()

    def take(
        self, trigger: int, limit: int, interval: float, wake_in: float | None = None
    ) -> tuple[list[Record], Flush | None]:
        """Wait until a batch is due and return it, or a marker that reached the head; or
        return nothing after `wake_in` seconds (the delivery has held requests due then).

        A batch is due when `trigger` items wait, when the oldest waited `interval` seconds,
        or at once when a marker waits behind it or a shutdown is under way. A due batch takes
        up to `limit` items: when more than `trigger` wait (a backlog), requests grow up to
        what the destination takes instead of paying a request per `trigger` items.
        """
        items = self.items
        wake_at = None if wake_in is None else time.monotonic() + wake_in
        while True:
            if wake_at is not None and time.monotonic() >= wake_at:
                return [], None
            if not items:
                self.cond.wait(None if wake_at is None else wake_at - time.monotonic())
                continue
            head = items[0]
            if isinstance(head, Flush):
                self._pop()
                self.markers_waiting -= 1
                return [], head
            queued_at = self._arrivals[0][0]
            now = time.monotonic()
            if (
                self.markers_waiting
                or self.deadline is not None
                or len(items) >= trigger
                or now - queued_at >= interval
            ):
                batch: list[Record] = []
                while items and len(batch) < limit and not isinstance(items[0], Flush):
                    batch.append(self._pop())  # type: ignore[arg-type]
                return batch, None
            until = queued_at + interval
            self.cond.wait((until if wake_at is None else min(until, wake_at)) - now)

    def clear(self) -> tuple[int, list[Flush]]:
        """Empty the backlog; returns how many items it held and the markers among them."""
        markers = [item for item in self.items if isinstance(item, Flush)]
        held = len(self.items) - len(markers)
        self.items.clear()
        self._arrivals.clear()
        self.markers_waiting = 0
        return held, markers

    def sleep(self, seconds: float) -> bool:
        """Wait `seconds` (a retry backoff), woken by a shutdown. False at once when the
        shutdown's deadline comes before the end of the wait."""
        end = time.monotonic() + seconds
        while True:
            deadline = self.deadline
            if deadline is not None and deadline < end:
                return False
            left = end - time.monotonic()
            if left <= 0:
                return True
            self.cond.wait(left)
