"""The library's turn at the interpreter: one of its threads computes at a time.

Under the GIL, every thread that wants to run Python competes with the application's own. A
thread that holds the GIL keeps it until it blocks or a switch interval (5 ms) passes after
another thread asked for it, and the GIL then goes to any of the threads waiting. With the
dispatcher and a worker per provider all encoding at once, an application thread (an asyncio
loop's, a request handler's) could wait several intervals in a row, more with more providers.

So the library's CPU work (building records, encoding batches) takes *the turn* first: a lock
that the others wait for asleep, without asking for the GIL. The application then competes with
one library thread at a time, however many providers are enabled, and that thread lets go of
the GIL every `SLICE` of its work (`Pacer`): often enough that a loop's tick is not kept waiting
for a switch interval, not so often that a busy application (which keeps the GIL for a whole
switch interval each time it gets it) starves the library. Waiting on the network never holds the
turn: a slow destination does not keep the others from encoding.

The lock is made when the dispatcher starts in a process (`renew`), from the `threading` module
as it is then: under gevent or eventlet, a patched lock, since a worker yields to other green
threads while it holds the turn.
"""

from __future__ import annotations

import threading
import time

__all__ = ["SLICE", "Pacer", "renew", "turn"]

#: Seconds of the library's work between two hand-overs of the GIL (`Pacer`).
SLICE = 0.002

_lock = threading.Lock()


def turn() -> threading.Lock:
    """The turn, as a context manager: ``with turn(): ...``."""
    return _lock


def renew() -> None:
    """A fresh turn (when the dispatcher starts, and in a forked child: a lock held by a
    thread of the parent would never be released there)."""
    global _lock
    _lock = threading.Lock()


class Pacer:
    """Lets go of the GIL (``time.sleep(0)``) when called, at most once per `SLICE` seconds:
    call it often (every chunk, every few items) from a loop of the library's own work."""

    __slots__ = ("_until",)

    def __init__(self) -> None:
        self._until = time.monotonic() + SLICE

    def __call__(self) -> None:
        if time.monotonic() >= self._until:
            time.sleep(0)
            self._until = time.monotonic() + SLICE
