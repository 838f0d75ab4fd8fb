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
from typing import Any, cast

from ._log import logger
from .discovery import PluginReport, discover
from .engine import BatchingProvider, Engine
from .process import (
    TerminationHandler,
    arm_termination,
    existing_process_state,
    process_state,
)

__all__ = [
    "Runtime",
    "arm_termination",
    "existing_runtime",
    "release_held_signals",
    "runtime",
    "validate_provider",
]


def validate_provider(provider: Any) -> None:
    """Raise TypeError/ValueError unless `provider` has a non-empty str `name` and a callable
    `track`, or is an HTTP provider (a `tracking_core.http.HttpProvider`: a wire mapping, which
    needs no ``track``) or a batching provider (`tracking_core.engine.BatchingProvider`, such
    as a `tracking_core.http.sender.Sender`)."""
    name = getattr(provider, "name", None)
    if not isinstance(name, str):
        raise TypeError(
            f"a tracking provider needs a str `name` attribute; {type(provider).__name__!r} "
            f"has {type(name).__name__}"
        )
    if not name.strip():
        raise ValueError("a tracking provider's `name` must not be empty")
    wire = sys.modules.get(f"{__package__}.http.wire")  # none exists before it is imported
    if wire is not None and isinstance(provider, wire.HttpProvider):
        return
    if isinstance(provider, BatchingProvider):  # a Sender given its own transport, for one
        return
    if not callable(getattr(provider, "track", None)):
        raise TypeError(f"tracking provider {name!r} needs a callable `track(event)` method")


class Runtime:
    """The registry and the engine of this process, plus what discovery reported."""

    def __init__(self) -> None:
        self.engine = Engine(self._discover)
        self.plugins: list[PluginReport] = []
        atexit.register(self._at_exit)
        self.engine.on_start = arm_termination
        self.engine.life.after_exit_shutdown = release_held_signals

    def register(self, provider: Any) -> None:
        validate_provider(provider)
        if self.engine.add(provider) is not None:
            logger.info("tracking: provider %r replaced by a new one of that name", provider.name)

    def _discover(self) -> None:
        self.plugins = discover(self.register, os.environ)

    def _at_exit(self) -> None:
        self.engine.shutdown_at_exit()


def existing_runtime() -> Runtime | None:
    """The process-wide `Runtime` if tracking was used in this process, else None."""
    holder = existing_process_state()
    return cast("Runtime | None", getattr(holder, "runtime", None))


def runtime() -> Runtime:
    """The process-wide `Runtime`, created on first use."""
    state = existing_runtime()
    if state is not None:
        return state
    with _creation_lock():
        holder = process_state()
        if getattr(holder, "runtime", None) is None:
            setattr(holder, "runtime", Runtime())  # noqa: B010 - a dynamic module attribute
        return cast(Runtime, getattr(holder, "runtime"))  # noqa: B009


def _creation_lock() -> threading.Lock:
    # The lock itself must also survive a reload, so it is kept beside the state. setdefault on
    # sys.__dict__ is atomic under the GIL.
    return sys.__dict__.setdefault("_tracking_core_creation_lock", threading.Lock())  # type: ignore[no-any-return]


def release_held_signals() -> None:
    """After an exit flush: deliver a SIGTERM the handler held (see `tracking_core.process`)."""
    TerminationHandler.release_installed()
