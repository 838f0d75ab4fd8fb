"""What `tracking_stats()` reports: the drop reasons, `ProviderStats`, and the counters behind it.

The counters are updated under a lock of their own, so they stay exact on a free-threaded Python
build too, where ``+=`` on a shared attribute is not atomic.
"""

from __future__ import annotations

import dataclasses
import enum
import threading
import types
from collections.abc import Mapping

__all__ = ["Counters", "DropReason", "ProviderStats"]


class DropReason(str, enum.Enum):
    """The reasons under which `tracking_stats()` counts dropped events.

    Members are strings (``DropReason.QUEUE_FULL == "queue_full"``); the ``dropped`` mappings
    of `ProviderStats` are keyed by the plain string values.
    """

    QUEUE_FULL = "queue_full"
    TOO_LARGE = "too_large"
    REJECTED = "rejected"
    RETRIES_EXHAUSTED = "retries_exhausted"
    SHUTDOWN = "shutdown"
    BAD_INPUT = "bad_input"
    PROVIDER_ERROR = "provider_error"
    PROVIDER_STOPPED = "provider_stopped"
    UNSUPPORTED = "unsupported"

    def __str__(self) -> str:
        return self.value


def _key(reason: str) -> str:
    return reason.value if isinstance(reason, DropReason) else str(reason)


_EMPTY: Mapping[str, int] = types.MappingProxyType({})


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
        truncated_answers: answers longer than the 64 KiB the sender reads of any answer
            (`tracking_core.transport.MAX_ANSWER_BYTES`): only their start was read.
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
    conversions: Mapping[str, int] = dataclasses.field(default_factory=lambda: _EMPTY)
    truncated_answers: int = 0


class Counters:
    """One provider's counters, updated by its lane and the dispatcher."""

    __slots__ = (
        "_lock",
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
        "truncated_answers",
    )

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.accepted = 0
        self.delivered = 0
        self.failed = 0
        self.retried = 0
        self.batches = 0
        self.truncated_answers = 0
        self.in_flight = 0
        self.last_status: int | None = None
        self.last_error: str | None = None
        self.dropped: dict[str, int] = {}
        self.conversions: dict[str, int] = {}

    def accept(self, count: int) -> None:
        with self._lock:
            self.accepted += count

    def deliver(self, count: int) -> None:
        with self._lock:
            self.delivered += count

    def drop(self, reason: str, count: int = 1) -> None:
        key = _key(reason)
        with self._lock:
            self.dropped[key] = self.dropped.get(key, 0) + count

    def fail(self, error: str | None = None) -> None:
        with self._lock:
            self.failed += 1
            if error is not None:
                self.last_error = error

    def retry(self, count: int) -> None:
        with self._lock:
            self.retried += count

    def sent(self, status: int | None, error: str | None) -> None:
        """One request sent: its status, and why it failed (None when it did not)."""
        with self._lock:
            self.batches += 1
            self.last_status = status
            self.last_error = error

    def truncated(self) -> None:
        with self._lock:
            self.truncated_answers += 1

    def note_conversion(self, kind: str) -> None:
        with self._lock:
            self.conversions[kind] = self.conversions.get(kind, 0) + 1

    def total_dropped(self) -> int:
        with self._lock:
            return sum(self.dropped.values())

    def snapshot(self, queued: int, extra_full: int = 0) -> ProviderStats:
        """The counters as `ProviderStats`; `extra_full` calls dropped at the shared intake
        are added as ``queue_full`` (they reached no lane)."""
        with self._lock:
            dropped = dict(self.dropped)
            if extra_full:
                full = DropReason.QUEUE_FULL.value
                dropped[full] = dropped.get(full, 0) + extra_full
            return ProviderStats(
                accepted=self.accepted + extra_full,
                delivered=self.delivered,
                failed=self.failed,
                retried=self.retried,
                batches=self.batches,
                dropped=types.MappingProxyType(dropped),
                queued=queued + self.in_flight,
                last_status=self.last_status,
                last_error=self.last_error,
                conversions=types.MappingProxyType(dict(self.conversions)),
                truncated_answers=self.truncated_answers,
            )
