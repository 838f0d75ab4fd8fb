"""The intake and the dispatcher: from a caller's tuple to an event in every lane.

`track()` puts a tuple on the intake (a `queue.SimpleQueue`: a C-level put, no lock). The
dispatcher thread runs plugin discovery once, then takes the intake in chunks, gives each event
its id (one ``os.urandom`` call per chunk) and hands each lane one list per chunk. Markers keep
their place: the events before a marker are handed out before it.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from .._log import logger, rate_limited
from ..event import (
    uuid4_strings,
)
from ..process import quiet
from .lane import Lane
from .markers import BadInput, Flush, Submitted, Sync
from .receipts import WATCH
from .records import Record, build, build_item
from .turn import Pacer, in_burst, renew, turn

if TYPE_CHECKING:
    from ..settings import EngineSettings

__all__ = ["DISPATCH_CHUNK", "Dispatcher"]

#: How many intake items the dispatcher takes at once (fewer locks and wake-ups per event).
DISPATCH_CHUNK = 100


class Dispatcher:
    """The intake, the dispatcher thread and the discovery that runs on it.

    Args:
        lanes: the registered lanes now (read at every hand-out).
        settings: the engine's settings now.
        discover: plugin discovery, run once on the dispatcher thread.
        before_start: called when the dispatcher starts in a process, before its thread runs.
        after_start: called once its thread runs.
    """

    def __init__(
        self,
        lanes: Callable[[], Sequence[Lane]],
        settings: Callable[[], EngineSettings],
        discover: Callable[[], None],
        before_start: Callable[[], None],
        after_start: Callable[[], None],
    ) -> None:
        self._lanes = lanes
        self._settings = settings
        self._discover = discover
        self._before_start = before_start
        self._after_start = after_start
        # Held only for short steps that never wait or switch threads, so it is safe even when
        # made before gevent or eventlet patches the threading module. What waits (the intake,
        # the discovery event) is made by `start`, from the modules as they are then.
        self._lock = threading.Lock()
        self.intake: queue.SimpleQueue[Any] | None = None
        self.thread: threading.Thread | None = None
        self.discovery_started = False
        self.discovery_done = False
        self._discovered: threading.Event | None = None
        self.intake_dropped = 0
        self._intake_dropped_logged = 0

    def after_fork(self) -> None:
        """In a forked child: no thread, no intake (made again on first use); a discovery
        that was running in the parent runs again here."""
        self._lock = threading.Lock()
        renew()
        self.intake = None
        self.thread = None
        self.intake_dropped = self._intake_dropped_logged = 0
        if not self.discovery_done:
            self.discovery_started = False
            self._discovered = None

    def start(self) -> queue.SimpleQueue[Any]:
        """Start the dispatcher if it is not running in this process; returns the intake."""
        with self._lock:
            intake = self.intake
            if self.thread is not None and intake is not None:
                return intake
            intake = self.intake = queue.SimpleQueue()
            renew()
            if not self.discovery_done:
                self._discovered = threading.Event()
            thread = threading.Thread(
                target=quiet(self._run), name="tracking-dispatch", daemon=True
            )
            self._before_start()
            self.thread = thread
        # Started outside the lock: under gevent, starting a thread switches to it.
        thread.start()
        self._after_start()
        return intake

    def submit(self, item: object) -> bool:
        """Put `item` on the intake (starting it first); count it dropped when full (and
        return False)."""
        intake = self.intake
        if intake is None or self.thread is None:
            intake = self.start()
        if intake.qsize() >= self._settings().max_queue:
            self.intake_dropped += 1
            return False
        intake.put(item)
        return True

    def sync(self, timeout: float) -> None:
        """Wait until everything on the intake now has been handed out."""
        if self.thread is not None and self.intake is not None:
            marker = Sync()
            self.intake.put(marker)
            marker.done.wait(timeout)

    def reset(self, *, discover: bool) -> None:
        """Zero the intake's drop count; with `discover`, discovery runs again on next use,
        else it counts as done (for `Engine.reset`)."""
        self.intake_dropped = self._intake_dropped_logged = 0
        with self._lock:
            self.discovery_started = self.discovery_done = not discover
            if self.thread is not None:
                self._discovered = threading.Event()
                if not discover:
                    self._discovered.set()

    # -- discovery --------------------------------------------------------------------------

    def ensure_discovered(self, timeout: float | None) -> bool:
        """Run discovery (once) and wait for it. Safe to call from a plugin's own hook."""
        if self.discovery_done:
            return True
        if threading.current_thread() is self.thread:
            return False
        intake = self.start()
        done = self._discovered
        if done is None:
            return self.discovery_done
        intake.put(Sync())  # wakes the dispatcher, which discovers before anything else
        return done.wait(timeout)

    def wait_for_running_discovery(self, timeout: float) -> None:
        """Before a fork: let a discovery in progress (importing provider packages) finish."""
        done = self._discovered
        if (
            self.discovery_started
            and not self.discovery_done
            and done is not None
            and threading.current_thread() is not self.thread
        ):
            done.wait(timeout)

    def _run_discovery(self) -> None:
        with self._lock:
            done = self._discovered
            run = not self.discovery_started
            self.discovery_started = True
        if run:
            try:
                self._discover()
            except Exception:
                logger.exception("tracking: provider discovery failed")
        self.discovery_done = True
        if done is not None:
            done.set()

    # -- the dispatcher thread --------------------------------------------------------------

    def _run(self) -> None:
        intake = self.intake
        assert intake is not None
        take = intake.get_nowait
        while True:
            chunk = [intake.get()]
            if not self.discovery_done:
                self._run_discovery()
            # The whole intake is handed out in one turn (engine/turn.py), chunk by chunk: the
            # lanes then see a burst at once and batch it up to what each destination takes,
            # instead of encoding it as it trickles in.
            pace = Pacer()
            with turn():
                while True:
                    try:
                        while len(chunk) < DISPATCH_CHUNK:
                            chunk.append(take())
                    except queue.Empty:
                        pass
                    if self.intake_dropped != self._intake_dropped_logged:
                        # Counted on the callers' threads (no I/O there), logged here.
                        self._intake_dropped_logged = self.intake_dropped
                        _log_intake_drops(self.intake_dropped, self._settings().max_queue)
                    _dispatch(chunk, self._lanes())
                    if not intake.qsize():
                        in_burst(False)
                        break
                    in_burst(True)
                    # More waits: let the application's threads have the GIL between chunks,
                    # so a burst never holds a caller's track() (or an asyncio loop) for a
                    # switch interval (5 ms) at a time.
                    pace()
                    chunk = []


def _log_intake_drops(dropped: int, bound: int) -> None:
    rate_limited.log(
        logging.WARNING,
        "queue_full:intake",
        "tracking: %d calls dropped so far: more than TRACKING_MAX_QUEUE (%d) were waiting "
        "to be dispatched",
        dropped,
        bound,
    )


def _dispatch(chunk: list[Any], lanes: Sequence[Lane]) -> None:
    """Hand out one chunk of the intake: events to every lane, markers in their place."""
    ids = iter(uuid4_strings(sum(1 for item in chunk if type(item) is tuple)))
    built: list[Record] = []
    for item in chunk:
        try:
            if type(item) is tuple:
                built.append(build(item, next(ids)))
                continue
            if type(item) is Submitted:
                record = build_item(item.item)
                WATCH.add(item.receipt, [lane.name for lane in lanes if _takes(lane, record)])
                built.append(record)
                continue
            if built:  # markers keep their place behind the events before them
                _fan_out(built, lanes)
                built = []
            _marker(item, lanes)
        except Exception:
            logger.exception("tracking: internal error while dispatching; item dropped")
    if built:
        _fan_out(built, lanes)


def _fan_out(built: list[Record], lanes: Sequence[Lane]) -> None:
    # One tuple for every lane (see `Backlog`): of plain records, the collector drops it.
    records = tuple(built)
    events_only: tuple[Record, ...] | None = None
    for lane in lanes:
        if lane.takes_identify:
            lane.offer(records)
        else:
            if events_only is None:
                events_only = tuple([record for record in built if record[0] == "t"])
            if events_only:
                lane.offer(events_only)


def _takes(lane: Lane, record: Record) -> bool:
    return not lane.retired and (lane.takes_identify or record[0] == "t")


def _marker(item: object, lanes: Sequence[Lane]) -> None:
    if isinstance(item, Flush):
        item.expect(lanes)
        for lane in lanes:
            lane.offer_marker(item)
    elif isinstance(item, Sync):
        item.done.set()
    elif isinstance(item, BadInput):
        for lane in lanes:
            lane.count_bad_input()
        rate_limited.log(
            logging.WARNING,
            f"bad_input:{item.reason.split(':')[0]}",
            "tracking: dropped a call: %s",
            item.reason,
        )
