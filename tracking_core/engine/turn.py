"""The library's turn at the interpreter: one of its threads runs Python at a time.

Under the GIL, every thread that wants to run Python competes with the application's own. A
thread that holds the GIL keeps it until it blocks or a switch interval (5 ms) passes after
another thread asked for it, and the GIL then goes to any of the threads waiting. With the
dispatcher and a worker per provider computing at once, an application thread (an asyncio
loop's, a request handler's) loses that race again and again: measured with four busy threads,
a 1 ms asyncio ticker woke up to 40 ms late.

So all of the library's CPU work (building records, encoding, building and parsing HTTP
requests) runs under *the turn*: a lock the other library threads wait for asleep, without
asking for the GIL. Waiting on the network gives the turn back (`away`): a stalled destination
does not keep the others from working. The application then competes with one library thread
at a time, however many providers are enabled, and that thread *naps* (sleeps `NAP` seconds
while it keeps the turn) once per `SLICE` of the library's work. A nap is a real sleep, not
``time.sleep(0)``: a thread that drops the GIL for no time takes it straight back before a
waiting thread wakes up, so only a sleep hands the GIL to an application thread that wants it.
Measured beside four busy threads, the ticker's worst lateness fell from 40 ms to 2-3 ms; the
cost is at most ``NAP / SLICE`` of the library's throughput while it computes without a break.
While the application is in a burst of calls (the dispatcher finds more waiting each time it
has handed a chunk out), its thread is running and wants the GIL back at once: the naps then
come every `SLICE_IN_BURST` (`in_burst`). Measured against a receiver that never answers, the
slowest of 20,000 ``track()`` calls with one provider went from a median of 1.5 ms to 1.0 ms
over seven runs each.

The lock is made when the dispatcher starts in a process (`renew`), from the `threading` module
as it is then: under gevent or eventlet, a patched lock, since a worker yields to other green
threads while it holds the turn.
"""

from __future__ import annotations

import threading
import time

__all__ = ["NAP", "SLICE", "SLICE_IN_BURST", "Pacer", "away", "in_burst", "renew", "turn"]

#: Seconds of the library's work between two naps.
SLICE = 0.001

#: ...while the application is in a burst of `track()` calls (`in_burst`): its thread is
#: running and wants the GIL back as soon as it lets go.
SLICE_IN_BURST = 0.00025

#: Seconds a nap lasts (the kernel's timer slack adds about 50 µs).
NAP = 0.00005

_monotonic = time.monotonic
_sleep = time.sleep


class _Holder:
    """A thread's state: how deep in the turn it is and the lock it took."""

    __slots__ = ("depth", "lock")

    def __init__(self) -> None:
        self.depth = 0
        self.lock: threading.Lock | None = None


_lock = threading.Lock()
# Per thread; made again by `renew` from the `threading` module as it is then, so that under
# gevent or eventlet each green thread has its own.
_local = threading.local()
_next_nap = 0.0
_slice = SLICE


def _current() -> _Holder:
    local = _local
    try:
        holder: _Holder = local.holder
    except AttributeError:
        holder = local.holder = _Holder()
    return holder


def _nap_if_due() -> None:
    """Sleep `NAP` (keeping the turn) when `SLICE` has passed since the last nap."""
    global _next_nap
    if _monotonic() >= _next_nap:
        _sleep(NAP)
        _next_nap = _monotonic() + _slice


def _take(holder: _Holder, depth: int) -> None:
    lock = _lock
    lock.acquire()
    holder.lock = lock
    holder.depth = depth
    _nap_if_due()


def _give(holder: _Holder) -> None:
    lock, holder.lock = holder.lock, None
    holder.depth = 0
    if lock is not None:
        lock.release()


class _Turn:
    """The turn, as a context manager. Re-entrant: a thread that holds it may enter it again
    (the outermost exit gives it back). It remembers the thread's state it entered with, so a
    `renew` meanwhile does not confuse its exit."""

    __slots__ = ("_holder",)

    def __enter__(self) -> None:
        holder = self._holder = _current()
        if holder.depth == 0:
            _take(holder, 1)
        else:
            holder.depth += 1

    def __exit__(self, *exc: object) -> None:
        holder = self._holder
        if holder.depth <= 1:
            _give(holder)
        else:
            holder.depth -= 1

    def acquire(self, timeout: float = -1) -> bool:
        """Take the turn (not re-entrant; for tests and fork checks)."""
        return _lock.acquire(timeout=timeout)

    def release(self) -> None:
        """Give back a turn taken with `acquire`."""
        _lock.release()


class _Away:
    """Gives the turn back for the duration of a blocking wait (a socket read, a connect) when
    this thread holds it, and takes it again afterwards; anywhere else it does nothing."""

    __slots__ = ("_depth", "_holder")

    def __enter__(self) -> None:
        holder = self._holder = _current()
        self._depth = holder.depth
        if holder.depth:
            _give(holder)

    def __exit__(self, *exc: object) -> None:
        if self._depth:
            _take(self._holder, self._depth)


def turn() -> _Turn:
    """The turn, as a context manager: ``with turn(): ...``."""
    return _Turn()


def away() -> _Away:
    """``with away(): <a blocking wait>``: the turn is free meanwhile (when this thread held
    it)."""
    return _Away()


def in_burst(burst: bool) -> None:
    """Tell the turn whether the application is in a burst of calls (the dispatcher finds more
    waiting each time it has handed a chunk out): a burst's naps come every `SLICE_IN_BURST`."""
    global _slice, _next_nap
    new = SLICE_IN_BURST if burst else SLICE
    if new != _slice:
        _slice = new
        _next_nap = min(_next_nap, _monotonic() + new)


def renew() -> None:
    """A fresh turn (when the dispatcher starts, and in a forked child: a lock held by a
    thread of the parent would never be released there), made from the `threading` module as
    it is now."""
    global _lock, _local, _slice
    _lock = threading.Lock()
    _local = threading.local()
    _slice = SLICE  # a burst in the parent is not the child's


class Pacer:
    """Naps (see the module) when called, at most once per `SLICE` of the library's work:
    call it often (every chunk, every few items) from a loop of the library's own work, while
    holding the turn. Outside the turn it does nothing: a nap there would only hand the GIL to
    another library thread."""

    __slots__ = ()

    def __call__(self) -> None:
        if _monotonic() >= _next_nap and _current().depth:
            _nap_if_due()
