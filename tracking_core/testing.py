"""Test helpers for applications and provider authors, and an opt-in pytest plugin.

Enable the fixtures in a test suite with, in ``conftest.py``::

    pytest_plugins = ["tracking_core.testing"]

The plugin is opt-in (it is not registered through a ``pytest11`` entry point) because its
fixtures reset the process-wide tracking state: loading it into every pytest run of every project
that has tracking-core installed would be a surprise.

Fixtures:

- ``tracking_events``: a `RecordingProvider` registered for the test; nothing leaves the process.
  Discovery is off (no installed provider is enabled), and the state is reset after the test.
- ``clean_tracking``: only the reset, before and after the test.
- ``loopback_receiver``: a started `LoopbackReceiver` (a real HTTP server on 127.0.0.1).
- ``tracking_env``: a function ``configure(**variables)`` that sets environment variables
  (``None`` removes one) on top of `FAST_DELIVERY`, then resets tracking with discovery on, so a
  provider package's tests enable it exactly as users do.

It also re-exports the loopback receiver (`tracking_core.receivers`) and the base of vendor
fakes (`tracking_core.fakes`: `VendorFake`, `Refused`, `Rejection`, `FakeDestination`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest

from . import api
from .api import flush_tracking, register_tracking_provider
from .event import TrackingEvent, json_safe
from .fakes import FakeDestination, Refused, Rejection, VendorFake
from .receivers import LoopbackReceiver, ReceivedRequest, Reply
from .registry import runtime

__all__ = [
    "FAST_DELIVERY",
    "FakeDestination",
    "LoopbackReceiver",
    "ReceivedRequest",
    "RecordingProvider",
    "Refused",
    "Rejection",
    "Reply",
    "VendorFake",
    "configure_tracking",
    "reset_tracking",
]

#: Engine settings that make tests quick: short batch interval and retry backoffs.
FAST_DELIVERY: Mapping[str, str] = {
    "TRACKING_FLUSH_INTERVAL": "0.05",
    "TRACKING_RETRY_BACKOFF": "0.01",
    "TRACKING_RETRY_BACKOFF_MAX": "0.05",
}


def reset_tracking(*, discover: bool = False, timeout: float = 5.0) -> None:
    """Remove every provider, zero the counters and re-read the ``TRACKING_*`` settings.

    With ``discover=True`` plugin discovery runs again, from the current environment, on next
    use (to test a provider package's variables); otherwise discovery counts as done and enables
    nothing. Each removed provider gets up to `timeout` seconds to finish what it holds.
    """
    runtime().engine.reset(discover=discover, timeout=timeout)
    api._submit = api._first_submit  # the next call reads TRACKING_SYNC again


def configure_tracking(
    monkeypatch: pytest.MonkeyPatch, variables: Mapping[str, str | None], *, discover: bool = True
) -> None:
    """Set environment variables through `monkeypatch` (``None`` removes one), then
    `reset_tracking` so the engine re-reads its settings and discovery runs again."""
    for name, value in variables.items():
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    reset_tracking(discover=discover)


class RecordingProvider:
    """A provider that keeps what it receives, for assertions. Thread-safe.

    Attributes:
        events: every `TrackingEvent`, in order.
        identifies: every ``(user_id, traits)`` pair, in order.
        flushes: how many times ``flush()`` was called.
    """

    def __init__(self, name: str = "recorder") -> None:
        self.name = name
        self.events: list[TrackingEvent] = []
        self.identifies: list[tuple[str, Mapping[str, Any] | None]] = []
        self.flushes = 0
        self._lock = threading.Lock()

    def track(self, event: TrackingEvent) -> None:
        with self._lock:
            self.events.append(event)

    def identify(self, user_id: str, traits: Mapping[str, Any] | None) -> None:
        with self._lock:
            self.identifies.append((user_id, traits))

    def flush(self) -> None:
        with self._lock:
            self.flushes += 1

    # -- assertions ---------------------------------------------------------------------------

    def names(self) -> list[str]:
        """The event names received, in order (call `flush_tracking` first, or use `settle`)."""
        with self._lock:
            return [event.name for event in self.events]

    def settle(self, timeout: float = 5.0) -> RecordingProvider:
        """Flush tracking so that every event tracked so far is here; returns self."""
        if not flush_tracking(timeout):
            raise AssertionError(f"tracking did not flush within {timeout}s")
        return self

    def find(self, name: str) -> list[TrackingEvent]:
        """The events called `name`."""
        with self._lock:
            return [event for event in self.events if event.name == name]

    def assert_tracked(
        self, name: str, properties: Mapping[str, Any] | None = None, **fields: Any
    ) -> TrackingEvent:
        """Flush, then assert one event called `name` arrived whose properties include
        `properties` (compared after `json_safe`) and whose other fields equal `fields`
        (``user_id=...``, ``anonymous_id=...``). Returns the last such event."""
        self.settle()
        candidates = self.find(name)
        if not candidates:
            raise AssertionError(f"no event {name!r} was tracked; got {self.names()!r}")
        wanted = json_safe(dict(properties or {}))
        for event in reversed(candidates):
            props = json_safe(dict(event.properties))
            if all(props.get(k, object()) == v for k, v in wanted.items()) and all(
                getattr(event, k) == v for k, v in fields.items()
            ):
                return event
        raise AssertionError(
            f"event {name!r} was tracked {len(candidates)} time(s), never with "
            f"properties {wanted!r} and {fields!r}; last: {candidates[-1]!r}"
        )


@pytest.fixture
def clean_tracking() -> Iterator[None]:
    """Reset tracking before and after the test (no discovery)."""
    reset_tracking()
    try:
        yield
    finally:
        reset_tracking()


@pytest.fixture
def tracking_events(clean_tracking: None) -> RecordingProvider:
    """A `RecordingProvider` registered for this test, with discovery off."""
    recorder = RecordingProvider()
    register_tracking_provider(recorder)
    return recorder


@pytest.fixture
def loopback_receiver() -> Iterator[LoopbackReceiver]:
    """A started `LoopbackReceiver` answering 200; stopped after the test."""
    with LoopbackReceiver() as receiver:
        yield receiver


@pytest.fixture
def tracking_env(monkeypatch: pytest.MonkeyPatch, clean_tracking: None) -> Callable[..., None]:
    """``configure(**variables)``: `FAST_DELIVERY` plus `variables` (None removes one) into the
    environment, then tracking reset with discovery on. Everything is undone after the test."""

    def configure(**variables: str | None) -> None:
        configure_tracking(monkeypatch, {**FAST_DELIVERY, **variables})

    return configure
