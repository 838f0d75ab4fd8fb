"""When to try again: the backoff between attempts, and the circuit that paces a destination
that is down."""

from __future__ import annotations

import collections
import math
import os
from collections.abc import Callable

from .._log import logger
from ..settings import EngineSettings
from .wire import RETRY_AFTER_MAX

__all__ = ["Circuit", "backoff", "full_jitter"]


def full_jitter() -> float:
    """A uniform random fraction in [0, 1) for full-jitter backoff (no `random` import)."""
    return int.from_bytes(os.urandom(7), "big") / (1 << 56)


def backoff(
    streak: int, retry_after: float | None, settings: EngineSettings, jitter: float
) -> float:
    """Seconds to wait after a failure, the destination's `streak`-th in a row (1 for the
    first): the answer's `retry_after` (clamped to [0, `RETRY_AFTER_MAX`]) when it gave one,
    else full jitter: the fraction `jitter` of ``TRACKING_RETRY_BACKOFF`` doubled per failure
    in the streak, capped by ``TRACKING_RETRY_BACKOFF_MAX``."""
    if retry_after is not None and not math.isnan(retry_after):
        return min(max(retry_after, 0.0), RETRY_AFTER_MAX)
    doubled = settings.retry_backoff * 2.0 ** min(streak - 1, 64)
    return min(settings.retry_backoff_max, doubled) * jitter


class Circuit:
    """A pace, not a gate: after `threshold` consecutive transient failures, when they are also
    nearly all of the latest attempts (`DOMINANT` of the last `WINDOW`), each further attempt
    waits until `probe_interval` seconds after the latest failure; one success closes it. A
    flaky destination (some answers fail at random) never opens it; a dead one does after
    `threshold` attempts. Batches keep their own bounded attempts and time (docs/design.md)."""

    #: How many of the latest attempts the circuit looks at...
    WINDOW = 20
    #: ...and the share of them that must have failed for it to open.
    DOMINANT = 0.9

    def __init__(self, name: str, clock: Callable[[], float]) -> None:
        self.name = name
        self._clock = clock
        self.failures = 0
        self._recent: collections.deque[bool] = collections.deque(maxlen=self.WINDOW)
        #: While open: the clock's time before which no attempt starts.
        self.open_until: float | None = None

    def wait(self) -> float:
        """Seconds to wait before the next attempt (0 or less: none)."""
        until = self.open_until
        return 0.0 if until is None else until - self._clock()

    def pause(self, until: float) -> None:
        """Send nothing before the clock's `until` (a ``Retry-After``: it is the destination's,
        so it applies to every request, fresh ones included)."""
        self.open_until = until if self.open_until is None else max(self.open_until, until)

    def record(self, failed: bool, threshold: int, probe_interval: float) -> None:
        """Note one attempt's result: `failed` when it was a transient failure."""
        self._recent.append(failed)
        if not failed:
            if self.open_until is not None:
                logger.warning("tracking: %s answers again; resuming delivery", self.name)
            self.failures = 0
            self.open_until = None
            return
        self.failures += 1
        dominant = sum(self._recent) >= self.DOMINANT * len(self._recent)
        if self.failures >= threshold and dominant:
            if self.open_until is None:
                logger.warning(
                    "tracking: %s failed %d times in a row; probing it every %gs",
                    self.name,
                    self.failures,
                    probe_interval,
                )
            self.open_until = self._clock() + probe_interval
