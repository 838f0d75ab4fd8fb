"""Process life: fork, termination signals and the guard that forks wait for.

Everything here is about the process the library runs in, not about events:

- `import_guard()`: the one lock that a fork waits for while a worker imports the HTTP stack, so
  a child never inherits half-imported modules. Its fork hooks are safe whenever they are
  registered, even between the two halves of a fork in progress.
- `TerminationHandler`: what makes an ordinary stop (SIGTERM to a plain script, to uvicorn, to
  gunicorn; see docs/delivery.md) give pending events the shutdown budget:

  * SIGTERM with Python's default action (a plain script): the process would end at once, with
    no exit handler. The handler flushes within the budget, then ends the process as the
    default action would (killed by SIGTERM), so the exit status is unchanged.
  * SIGTERM handled by the application or its server (uvicorn, gunicorn): that handler still
    runs and decides how the process ends. Servers that, after their graceful shutdown, restore
    the default action and re-raise the signal on the main thread (uvicorn) would end the
    process before any exit handler: once tracking has started, the signal is held (blocked on
    the main thread) from the first SIGTERM on, and released at the end of the exit flush,
    which it then ends as the server meant it to. A SIGTERM sent to the process from outside
    meanwhile goes to another thread of the application's, or waits for that release (the
    library's own threads block the process's signals: `quiet`).
  * SIGINT raises KeyboardInterrupt (Python's default), which runs the exit flush.
"""

from __future__ import annotations

import os
import sys
from types import ModuleType

# Importing tracking_core imports this module (to install the SIGTERM handler): it loads
# nothing beyond what the interpreter already has. threading is imported where locks are made.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import signal
else:
    # The C module that `signal` wraps, loaded when the interpreter starts; `signal` itself
    # would load enum (and with it functools and collections) for the constants' enums.
    import _signal as signal
if TYPE_CHECKING:
    from collections.abc import Callable
    from types import FrameType
    from typing import Any, TypeAlias

__all__ = [
    "ImportGuard",
    "TerminationHandler",
    "arm_termination",
    "existing_process_state",
    "import_guard",
    "process_state",
]

_STATE_MODULE = "_tracking_core_process_state"


def existing_process_state() -> ModuleType | None:
    """The module of `process_state` if it was made in this process, else None."""
    return sys.modules.get(_STATE_MODULE)


def process_state() -> ModuleType:
    """The private module that holds tracking-core's process-wide objects.

    It lives in ``sys.modules`` under a name no import ever re-executes, so the objects on it
    survive ``importlib.reload`` and a second import of the package under another name.
    """
    holder = sys.modules.get(_STATE_MODULE)
    if holder is None:
        holder = sys.modules.setdefault(
            _STATE_MODULE, ModuleType(_STATE_MODULE, "tracking-core's process-wide state")
        )
    return holder


class ImportGuard:
    """A lock held while the HTTP stack is imported and a transport built; forks wait for it.

    The fork hooks remember whether the ``before`` half took the lock: a hook registered while
    a fork is in progress (its ``before`` half already ran) then never releases a lock it does
    not hold. The child always gets a new, free lock.
    """

    #: How long a fork waits for an import in progress before it forks anyway.
    FORK_WAIT = 10.0

    def __init__(self) -> None:
        import threading

        self._lock = threading.Lock()
        self._held_for_fork = False
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(
                before=self._before_fork,
                after_in_parent=self._after_fork_in_parent,
                after_in_child=self._after_fork_in_child,
            )

    def __enter__(self) -> ImportGuard:
        self._lock.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self._lock.release()

    def _before_fork(self) -> None:
        self._held_for_fork = self._lock.acquire(timeout=self.FORK_WAIT)

    def _after_fork_in_parent(self) -> None:
        if self._held_for_fork:
            self._held_for_fork = False
            self._lock.release()

    def _after_fork_in_child(self) -> None:
        import threading

        self._held_for_fork = False
        self._lock = threading.Lock()


def import_guard() -> ImportGuard:
    """The process-wide `ImportGuard` (one per process, whatever is reloaded)."""
    state = process_state()
    guard = getattr(state, "import_guard", None)
    if guard is None:
        import threading

        lock = sys.__dict__.setdefault("_tracking_core_guard_lock", threading.Lock())
        with lock:
            guard = getattr(state, "import_guard", None)
            if guard is None:
                guard = ImportGuard()
                setattr(state, "import_guard", guard)  # noqa: B010 - a dynamic module attribute
    return guard


#: The signals a process is stopped or steered by, sent to the process as a whole (``kill``,
#: Ctrl+C, a supervisor). Not the ones a fault raises on the thread that caused it.
_PROCESS_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGALRM")


def quiet(target: Callable[[], object]) -> Callable[[], None]:
    """`target`, to run on a thread of the library's own, blocking the process's signals there.

    The kernel hands a signal sent to the process to any thread that does not block it, and
    Python runs its handlers (KeyboardInterrupt, a server's SIGTERM handler, ours) only on the
    main thread, when that thread next runs Python code. A signal taken by one of our threads
    while the main thread sleeps in a system call (``time.sleep(120)``, a ``select``) would
    wait for that call to end: a Ctrl+C ignored for minutes. Blocked there, it goes to a
    thread of the application's (the main thread, as without tracking-core).

    Call it on the thread that starts the new one: a green thread (gevent, eventlet) runs on
    the OS thread that started it, whose mask must stay as it is, and that is how it is told
    apart (the main thread's recorded id is no guide: a forked child keeps its parent's).
    """
    import threading

    starter = threading.get_native_id()

    def run() -> None:
        if threading.get_native_id() != starter and hasattr(signal, "pthread_sigmask"):
            wanted = {getattr(signal, name) for name in _PROCESS_SIGNALS if hasattr(signal, name)}
            try:  # noqa: SIM105 - contextlib is not loaded by `import tracking_core`
                signal.pthread_sigmask(signal.SIG_BLOCK, wanted)
            except (OSError, ValueError):  # pragma: no cover - a platform without them
                pass
        target()

    return run


if TYPE_CHECKING:
    Handler: TypeAlias = "Callable[[int, FrameType | None], Any] | int | None"


class TerminationHandler:
    """The SIGTERM handler tracking-core installs (see the module doc).

    Args:
        previous: the handler it replaced: ``signal.SIG_DFL`` or the application's callable.
        shutdown: flushes within the shutdown budget (the engine's exit flush).
        budget: the shutdown budget in seconds, read when the signal arrives.
        active: whether there is anything to do, read when the signal arrives: tracking has
            started in this process and ``TRACKING_HANDLE_SIGNALS`` is not off. When it is not,
            the handler does exactly what `previous` would.
    """

    #: The handler installed in this process, if any (kept for `release_installed`: a server
    #: may have restored the previous handler by the time the exit flush runs).
    installed: TerminationHandler | None = None

    def __init__(
        self,
        previous: Handler,
        shutdown: Callable[[], object],
        budget: Callable[[], float],
        active: Callable[[], bool],
    ) -> None:
        self.previous, self._shutdown, self._budget, self._active = (
            previous,
            shutdown,
            budget,
            active,
        )
        self.held: set[int] = set()
        #: How a handler of ours is recognised, even across a reload of this module.
        self._tracking_core_termination = True

    def __call__(self, signum: int, frame: FrameType | None) -> Any:
        previous = self.previous
        active = self._active()
        if previous == signal.SIG_DFL:
            if active:
                import threading

                # On a thread of its own: this (main) thread may have been interrupted while
                # holding a lock the flush needs. Bounded either way.
                worker = threading.Thread(
                    target=quiet(self._shutdown), name="tracking-exit", daemon=True
                )
                worker.start()
                worker.join(self._budget() + 1.0)
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return None
        if active and hasattr(signal, "pthread_sigmask"):
            # Hold any re-raise of this signal on this (the main) thread until the exit flush
            # has run; see the module doc.
            signal.pthread_sigmask(signal.SIG_BLOCK, {signum})
            self.held.add(signum)
        if callable(previous):
            return previous(signum, frame)
        return None

    def release(self) -> None:
        """Unblock the signals held on this thread: one raised meanwhile is delivered now
        (and, with the default action, ends the process as it was meant to)."""
        held, self.held = self.held, set()
        if held and hasattr(signal, "pthread_sigmask"):
            try:  # noqa: SIM105 - contextlib is not loaded by `import tracking_core`
                signal.pthread_sigmask(signal.SIG_UNBLOCK, held)
            except (OSError, ValueError):
                pass

    @classmethod
    def release_installed(cls) -> None:
        """`release` the installed handler's held signals, if there is one."""
        if cls.installed is not None:
            cls.installed.release()

    @classmethod
    def install(
        cls,
        shutdown: Callable[[], object],
        budget: Callable[[], float],
        active: Callable[[], bool],
    ) -> TerminationHandler | None:
        """Install the handler for SIGTERM when called on the main thread and SIGTERM's handler
        is Python's default or a Python callable (not one of ours). Returns the installed
        handler (or the one already there), None when nothing was installed."""
        if not hasattr(signal, "SIGTERM"):
            return None
        try:
            current = signal.getsignal(signal.SIGTERM)
        except (OSError, ValueError):  # pragma: no cover
            return None
        if getattr(current, "_tracking_core_termination", False):
            cls.installed = current  # type: ignore[assignment]
            return cls.installed
        if current is None or current == signal.SIG_IGN:
            return None  # set outside Python, or deliberately ignored: not ours to change
        handler = cls(current, shutdown, budget, active)
        try:
            signal.signal(signal.SIGTERM, handler)
        except (OSError, ValueError, RuntimeError):
            return None  # not the main thread (ValueError), or signals unavailable here
        cls.installed = handler
        return handler


# -- installed at import: the runtime (if any) is found when the signal comes ------------------


def _runtime() -> Any:
    from .registry import existing_runtime

    return existing_runtime()


def _exit_flush() -> None:
    state = _runtime()
    if state is not None:
        state.engine.shutdown_at_exit()


def _budget() -> float:
    state = _runtime()
    return float(state.engine.settings.shutdown_timeout) if state is not None else 0.0


def _active() -> bool:
    """Tracking started in this process and TRACKING_HANDLE_SIGNALS is not off."""
    state = _runtime()
    return bool(state is not None and state.engine.started and state.engine.settings.handle_signals)


def arm_termination() -> None:
    """Install the SIGTERM handler when on the main thread.

    Called when the package is imported and when the engine starts: the first of them that
    runs on the main thread installs it. It reads nothing and starts nothing; what it does
    when SIGTERM comes depends on the settings then.
    """
    TerminationHandler.install(shutdown=_exit_flush, budget=_budget, active=_active)
