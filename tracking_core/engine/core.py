"""`Engine`: the lanes by provider name, the dispatcher, flush, shutdown and stats."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .._log import enable_debug_logging, logger, rate_limited
from ..settings import EngineSettings
from .dispatch import Dispatcher
from .lane import Lane
from .life import ProcessLife
from .markers import BadInput, Flush, Stop
from .stats import ProviderStats

__all__ = ["Engine", "log_shutdown"]


class Engine:
    """The process-wide delivery machinery (see the package doc).

    Args:
        discover: plugin discovery; it registers providers through the runtime.
    """

    def __init__(self, discover: Callable[[], None]) -> None:
        self.settings = self._read_settings()
        # Held only for short steps that never wait (see `Dispatcher`).
        self._lock = threading.Lock()
        self._lanes: dict[str, Lane] = {}
        self.lanes: tuple[Lane, ...] = ()
        #: Lanes unregistered or replaced whose workers are still finishing what they hold.
        self._retiring: list[Lane] = []
        self.dispatcher = Dispatcher(
            lambda: self.lanes, lambda: self.settings, discover, self._refresh, self._started
        )
        #: Put a call on the intake: what `track()` and `identify()` call.
        self.submit = self.dispatcher.submit
        #: Called (without arguments) each time the engine starts in a process.
        self.on_start: Callable[[], None] | None = None
        self.life = ProcessLife(self)

    @staticmethod
    def _read_settings() -> EngineSettings:
        settings, errors = EngineSettings.from_environ()
        for error in errors:
            logger.warning("tracking: %s; using the default", error)
        if settings.debug:
            enable_debug_logging()
        return settings

    @property
    def started(self) -> bool:
        """True once tracking was used in this process (the dispatcher exists)."""
        return self.dispatcher.thread is not None

    def _refresh(self) -> None:
        for lane in self.lanes:
            lane.refresh()

    def _started(self) -> None:
        # Workers start with the dispatcher, on first use, not with their first event: that
        # event may only reach its lane during the exit flush, when Python 3.12 no longer lets
        # a thread start.
        for lane in self.lanes:
            lane.ensure_started()
        self.life.arm_multiprocessing_exit()
        if self.on_start is not None:
            self.on_start()

    def after_fork(self) -> None:
        # Nothing that waits is made here: gunicorn's gevent worker patches the threading
        # module only after the fork. The dispatcher makes its intake, and the lanes their
        # locks, on first use in the child.
        self._lock = threading.Lock()
        self._retiring = []
        self.dispatcher.after_fork()
        for lane in self.lanes:
            lane.after_fork()

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
        if self.started:
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

    def ensure_discovered(self, timeout: float | None = None) -> bool:
        """Run plugin discovery (once) and wait for it, at most `timeout` seconds."""
        return self.dispatcher.ensure_discovered(timeout)

    def report_bad_input(self, reason: str) -> None:
        self.submit(BadInput(reason))

    # -- flush and shutdown -----------------------------------------------------------------

    def flush(self, timeout: float | None) -> bool:
        deadline = time.monotonic() + (self.settings.flush_timeout if timeout is None else timeout)
        if not self.ensure_discovered(max(0.0, deadline - time.monotonic())):
            return False
        marker = Flush()
        self.dispatcher.start().put(marker)
        return marker.done.wait(max(0.0, deadline - time.monotonic())) and marker.ok

    def shutdown(self, timeout: float | None) -> bool:
        """Flush within the budget, then stop the workers; log what was not delivered."""
        budget = self.settings.shutdown_timeout if timeout is None else timeout
        began = time.monotonic()
        deadline = began + max(0.0, budget)
        if self.started:
            # The providers discovery is still registering are part of this shutdown.
            self.ensure_discovered(max(0.0, deadline - time.monotonic()))
        with self._lock:
            lanes = self.lanes
            retiring = [lane for lane in self._retiring if not lane.is_idle()]
        if not self.started and not any(lane.queued() for lane in lanes):
            return True
        dropped_before = {lane.name: lane.counters.total_dropped() for lane in lanes}
        for lane in (*lanes, *retiring):
            lane.begin_shutdown(deadline)
        stop = Stop()
        self.dispatcher.start().put(stop)
        finished = stop.done.wait(max(0.0, deadline - time.monotonic()))
        # Unregistered providers still finishing what they were handed get the same budget.
        for lane in retiring:
            finished = lane.wait_idle(deadline - time.monotonic()) and finished
        if not finished:
            for lane in (*lanes, *retiring):
                lane.abandon()
        log_shutdown(self.stats(lanes), finished, budget, time.monotonic() - began, dropped_before)
        return finished and stop.ok

    def shutdown_at_exit(self) -> None:
        """The exit flush (see `ProcessLife.shutdown_at_exit`)."""
        self.life.shutdown_at_exit()

    def reset(self, *, discover: bool, timeout: float = 5.0) -> None:
        """Forget every provider and count, re-read the settings (for test suites).

        Items still in the intake are handed out first; each removed provider gets up to
        `timeout` seconds to finish what it holds. With `discover`, plugin discovery runs again
        on next use; without it, discovery counts as done and finds nothing.
        """
        deadline = time.monotonic() + timeout
        self.dispatcher.sync(timeout)
        with self._lock:
            lanes, self._lanes, self.lanes = self.lanes, {}, ()
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
        self.settings = self._read_settings()
        rate_limited.reset()
        self.dispatcher.reset(discover=discover)

    def stats(self, lanes: Sequence[Lane] | None = None) -> dict[str, ProviderStats]:
        full = self.dispatcher.intake_dropped
        return {lane.name: lane.stats(full) for lane in (self.lanes if lanes is None else lanes)}


def log_shutdown(
    stats: Mapping[str, ProviderStats],
    finished: bool,
    budget: float,
    took: float,
    dropped_before: Mapping[str, int] | None = None,
) -> None:
    """When a shutdown dropped events or left some in flight: one line with each such
    provider's figures since the process started, exactly those of `tracking_stats()`
    (accepted = delivered + dropped + in flight, whose outcome is unknown)."""
    parts = []
    before = dropped_before or {}
    for name, snap in stats.items():
        dropped = sum(snap.dropped.values())
        if not snap.queued and dropped <= before.get(name, 0):
            continue
        reasons = ", ".join(f"{why} {count}" for why, count in sorted(snap.dropped.items()))
        parts.append(
            f"{name}: {snap.accepted} accepted, {snap.delivered} delivered, "
            f"{dropped} dropped" + (f" ({reasons})" if reasons else "") + ", "
            f"{snap.queued} in flight (outcome unknown)"
        )
    if not parts:
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
