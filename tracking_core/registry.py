"""The process-wide provider registry.

There is exactly one `Runtime` per process, even when ``tracking_core`` is reloaded or imported a
second time under another module name: it lives on a private module object in ``sys.modules``
that no reload re-executes. A forked child keeps the registry but gets fresh queues and threads
(see `tracking_core.engine`).
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
import types
from typing import Any, cast

from ._log import logger
from .discovery import PluginReport, discover
from .engine import Engine
from .process import TerminationHandler

__all__ = ["Runtime", "runtime", "validate_provider"]

_STATE_MODULE = "_tracking_core_process_state"


def validate_provider(provider: Any) -> None:
    """Raise TypeError/ValueError unless `provider` has a non-empty str `name` and a callable
    `track` (or is a batching provider)."""
    name = getattr(provider, "name", None)
    if not isinstance(name, str):
        raise TypeError(
            f"a tracking provider needs a str `name` attribute; {type(provider).__name__!r} "
            f"has {type(name).__name__}"
        )
    if not name.strip():
        raise ValueError("a tracking provider's `name` must not be empty")
    if not callable(getattr(provider, "track", None)):
        raise TypeError(f"tracking provider {name!r} needs a callable `track(event)` method")


class Runtime:
    """The registry and the engine of this process, plus what discovery reported."""

    def __init__(self) -> None:
        self.engine = Engine(self._discover)
        self.plugins: list[PluginReport] = []
        self._lock = threading.Lock()
        self.termination: TerminationHandler | None = None
        atexit.register(self._at_exit)
        self.engine.on_start = self.arm_termination
        self.engine.after_exit_shutdown = self._release_held_signals
        self.arm_termination()

    def arm_termination(self) -> None:
        """Install the SIGTERM handler (see `tracking_core.process`) if this is the main thread
        and TRACKING_HANDLE_SIGNALS is not off. Runs when the package is imported and when the
        engine starts, whichever first happens on the main thread."""
        if self.termination is not None or not self.engine.settings.handle_signals:
            return
        engine = self.engine
        self.termination = TerminationHandler.install(
            shutdown=engine.shutdown_at_exit,
            budget=lambda: engine.settings.shutdown_timeout,
            started=lambda: engine.started,
        )

    def _release_held_signals(self) -> None:
        if self.termination is not None:
            self.termination.release()

    def register(self, provider: Any) -> None:
        validate_provider(provider)
        if self.engine.add(provider) is not None:
            logger.info("tracking: provider %r replaced by a new one of that name", provider.name)

    def _discover(self) -> None:
        self.plugins = discover(self.register, os.environ)

    def _at_exit(self) -> None:
        self.engine.shutdown_at_exit()


def runtime() -> Runtime:
    """The process-wide `Runtime`, created on first use."""
    holder = sys.modules.get(_STATE_MODULE)
    state = getattr(holder, "runtime", None) if holder is not None else None
    if state is not None:
        return cast(Runtime, state)
    with _creation_lock():
        holder = sys.modules.get(_STATE_MODULE)
        if holder is None:
            holder = types.ModuleType(_STATE_MODULE, "tracking-core's process-wide state")
            sys.modules[_STATE_MODULE] = holder
        if getattr(holder, "runtime", None) is None:
            setattr(holder, "runtime", Runtime())  # noqa: B010 - a dynamic module attribute
        return cast(Runtime, getattr(holder, "runtime"))  # noqa: B009


def _creation_lock() -> threading.Lock:
    # The lock itself must also survive a reload, so it is kept beside the state. setdefault on
    # sys.__dict__ is atomic under the GIL.
    return sys.__dict__.setdefault("_tracking_core_creation_lock", threading.Lock())  # type: ignore[no-any-return]
