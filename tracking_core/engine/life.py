"""The engine's part in process life: fork, multiprocessing children, the exit flush.

After `os.fork()` the child gets an empty intake, empty lanes, zeroed counters and no threads
(they start on first use); nothing of the parent's is delivered twice. A fork waits for a plugin
discovery in progress (bounded), so the child never inherits half-imported modules.
multiprocessing ends its children with `os._exit()`, which skips `atexit`: a finalizer runs the
exit flush there instead. Celery's prefork pool (billiard) ends its children with `os._exit()`
straight from its worker loop, before any finalizer: there the flush runs on Celery's
``worker_process_shutdown`` signal, sent just before.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from .._log import logger

if TYPE_CHECKING:
    from .core import Engine

__all__ = ["ProcessLife"]

#: How long a fork waits for a discovery in progress.
FORK_WAIT = 10.0
#: Identifies tracking-core's receiver of Celery's ``worker_process_shutdown`` signal.
_CELERY_UID = "tracking-core-exit-flush"


class ProcessLife:
    """Fork hooks and exit flushes for one `Engine` (registered once, when it is made)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._mp_hooked = False
        self._mp_armed_pid = 0
        #: Called after every exit flush (atexit or a multiprocessing child's finalizer).
        self.after_exit_shutdown: Callable[[], None] | None = None
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(before=self._before_fork, after_in_child=self._after_fork_in_child)

    def _before_fork(self) -> None:
        mp_util = sys.modules.get("multiprocessing.util")
        if mp_util is not None and not self._mp_hooked:
            self._mp_hooked = True
            mp_util.register_after_fork(self, ProcessLife._flush_at_multiprocessing_exit)
        self._engine.dispatcher.wait_for_running_discovery(FORK_WAIT)

    def _after_fork_in_child(self) -> None:
        self._engine.after_fork()

    def arm_multiprocessing_exit(self) -> None:
        """When tracking starts in a process: flush at the exit of a multiprocessing child (any
        start method), which skips atexit, and at the exit of a Celery prefork child.

        A child forked after tracking started is armed by `_before_fork`; this covers children
        whose tracking starts inside them (forkserver, spawn, a fork of a fresh parent: a Celery
        worker's main process rarely tracks before it forks its pool).
        """
        self._flush_at_celery_process_exit()
        mp = sys.modules.get("multiprocessing")
        if mp is None or self._mp_armed_pid == os.getpid():
            return
        if mp.parent_process() is not None:
            self._flush_at_multiprocessing_exit()

    def _flush_at_multiprocessing_exit(self) -> None:
        # Called by multiprocessing (and billiard, which shares its registries) in a child it
        # forked, after it cleared the finalizers it inherited: such a child ends with
        # os._exit(), which skips atexit, but runs these.
        self._flush_at_celery_process_exit()
        mp_util = sys.modules.get("multiprocessing.util")
        if mp_util is not None:
            self._mp_armed_pid = os.getpid()
            mp_util.Finalize(self, self.shutdown_at_exit, exitpriority=0)

    def _flush_at_celery_process_exit(self) -> None:
        # A Celery prefork child (a billiard pool worker) leaves its worker loop through
        # os._exit(), before multiprocessing's finalizers could run; the last thing it runs is
        # Celery's worker_process_shutdown signal. Connected once per process (the dispatch uid),
        # only where Celery is loaded; sent only in pool children.
        signals = sys.modules.get("celery.signals")
        shutdown = getattr(signals, "worker_process_shutdown", None)
        if shutdown is None:
            return
        try:
            shutdown.connect(self._on_celery_process_shutdown, weak=False, dispatch_uid=_CELERY_UID)
        except Exception:  # an unexpected Celery: flushing at its exit is then not ours to do
            logger.debug("tracking: could not connect to Celery's worker_process_shutdown")

    def _on_celery_process_shutdown(self, **_: object) -> None:
        self.shutdown_at_exit()

    def shutdown_at_exit(self) -> None:
        """The exit flush: never raises; whatever interrupts it, what is left is logged."""
        from .core import log_shutdown  # core imports this module

        engine = self._engine
        try:
            engine.shutdown(None)
        except BaseException as exc:  # KeyboardInterrupt (a second Ctrl+C) included
            for lane in engine.lanes:
                lane.abandon()
            log_shutdown(engine.stats(), False, engine.settings.shutdown_timeout, 0.0)
            if not isinstance(exc, (KeyboardInterrupt, SystemExit)):
                logger.exception("tracking: shutdown at process exit failed")
        finally:
            if self.after_exit_shutdown is not None:
                self.after_exit_shutdown()
