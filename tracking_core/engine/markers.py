"""Markers that travel the intake and the lanes behind the events accepted before them."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

__all__ = ["BadInput", "Flush", "Stop", "Submitted", "Sync"]


class Flush:
    """A flush request: done once every lane it was handed to has reached it."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self._lock = threading.Lock()
        self._pending: set[int] = set()
        self.ok = True

    def expect(self, lanes: Sequence[Any]) -> None:
        with self._lock:
            self._pending = {id(lane) for lane in lanes}
            if not self._pending:
                self.done.set()

    def finish(self, lane: Any, ok: bool = True) -> None:
        with self._lock:
            self._pending.discard(id(lane))
            if not ok:
                self.ok = False
            if not self._pending:
                self.done.set()


class Stop(Flush):
    """A shutdown request: like a flush, after which the lane's worker exits."""


class Sync:
    """Marks the point up to which the dispatcher has handed everything to the lanes."""

    def __init__(self) -> None:
        self.done = threading.Event()


class BadInput:
    """A `track()`/`identify()` call refused on the caller's thread, logged by the dispatcher."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


class Submitted:
    """An event or identify made by the application, with the receipt that reports on it
    (`tracking_core.submit_event`). It travels with the events around it, not as a marker."""

    __slots__ = ("item", "receipt")

    def __init__(self, item: Any, receipt: Any) -> None:
        self.item = item
        self.receipt = receipt
