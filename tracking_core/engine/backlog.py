"""A lane's backlog: the bounded queue of items and markers one provider has yet to take."""

from __future__ import annotations

import collections
import threading
import time

from .markers import Flush
from .records import Record

__all__ = ["Backlog"]


class Backlog:
    """Records in arrival order, with markers among them, under one condition variable.

    The records are kept in the runs the dispatcher offered them in (a tuple of up to
    `DISPATCH_CHUNK` records, shared by every lane it went to), each with its arrival time.
    A queue of 20,000 events is then ~200 runs: the garbage collector's full collections visit
    what a tracked container holds, and a run of plain records is itself untracked, so a deep
    backlog costs them next to nothing (a deque of 20,000 records added ~2 ms per collection
    and lane on the benchmark machine, paid by whichever thread allocated last, often the
    application's).
    """

    def __init__(self) -> None:
        self.cond = threading.Condition(threading.Lock())
        self._runs: collections.deque[tuple[Record, ...] | Flush] = collections.deque()
        self._times: collections.deque[float] = collections.deque()
        self._head = 0  # records already taken from the first run
        self._count = 0  # records and markers waiting
        self.markers_waiting = 0
        #: Set by a shutdown: backoffs that would end after it are cut short.
        self.deadline: float | None = None

    def renew_lock(self) -> None:
        """A new condition variable, from the threading module as it is now (after gevent
        or eventlet patched it). Only for an empty backlog nobody waits on."""
        self.cond = threading.Condition(threading.Lock())

    def __len__(self) -> int:
        """Records and markers waiting."""
        return self._count

    # The caller holds `cond` for every method below.

    def extend(self, records: tuple[Record, ...]) -> None:
        self._runs.append(records)
        self._times.append(time.monotonic())
        self._count += len(records)
        self.cond.notify()

    def append_marker(self, marker: Flush) -> None:
        self._runs.append(marker)
        self._times.append(time.monotonic())
        self._count += 1
        self.markers_waiting += 1
        self.cond.notify()

    def _popleft(self) -> None:
        self._runs.popleft()
        self._times.popleft()
        self._head = 0

    def _records(self, limit: int) -> list[Record]:
        """Up to `limit` records from the head, up to the first marker."""
        batch: list[Record] = []
        runs = self._runs
        while runs and len(batch) < limit:
            run = runs[0]
            if isinstance(run, Flush):
                break
            start = self._head
            end = min(len(run), start + limit - len(batch))
            batch.extend(run[start:end])
            if end == len(run):
                self._popleft()
            else:
                self._head = end
        self._count -= len(batch)
        return batch

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
        runs = self._runs
        wake_at = None if wake_in is None else time.monotonic() + wake_in
        while True:
            if wake_at is not None and time.monotonic() >= wake_at:
                return [], None
            if not runs:
                self.cond.wait(None if wake_at is None else wake_at - time.monotonic())
                continue
            head = runs[0]
            if isinstance(head, Flush):
                self._popleft()
                self._count -= 1
                self.markers_waiting -= 1
                return [], head
            queued_at = self._times[0]
            now = time.monotonic()
            if (
                self.markers_waiting
                or self.deadline is not None
                or self._count >= trigger
                or now - queued_at >= interval
            ):
                return self._records(limit), None
            until = queued_at + interval
            self.cond.wait((until if wake_at is None else min(until, wake_at)) - now)

    def records(self) -> list[Record]:
        """Every record waiting, in order."""
        waiting: list[Record] = []
        for number, run in enumerate(self._runs):
            if not isinstance(run, Flush):
                waiting.extend(run[self._head :] if number == 0 else run)
        return waiting

    def clear(self) -> tuple[int, list[Flush]]:
        """Empty the backlog; returns how many items it held and the markers among them."""
        markers = [run for run in self._runs if isinstance(run, Flush)]
        held = self._count - len(markers)
        self._runs.clear()
        self._times.clear()
        self._head = self._count = 0
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
