"""Shared fixtures of the reliability suite: the report that docs/ publishes, the installed
fakes on 127.0.0.1, and the in-process helpers every fault, load and bad-input test reuses (the
harness shared with the process tests is tests/harness.py).

- ``reliability_report``: each scenario records its figures through ``reliability_report.add(...)``.
  At the end of the session, when ``TRACKING_RELIABILITY_REPORT`` names a path, the rows are
  written there as a Markdown table (sorted by scenario), ready for the "Delivery guarantees" page.
- ``destinations``: the fake of every installed plugin that ships one (the four built-in
  providers' here), each served by a started `RestartableReceiver` (it can be stopped to refuse
  connections and started again on the same port). A dict keyed by provider name.
- ``enable_providers``: ``enable_providers("posthog", ..., **TRACKING_variables)`` points the named
  providers (all when none is named) at their fakes through the environment, runs plugin
  discovery exactly as users get it, and registers a `RecordingProvider` alongside, whose events
  are the ids every destination must receive. Undone (shutdown, environment, reset) after the
  test.
- `recorded`: what a destination accepted against what the `RecordingProvider` was given (check
  it with `assert_exactly_once`). `QueueWatch` samples ``tracking_stats()[name].queued``.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest

import tracking_core as tc
from tracking_core.discovery import installed_fakes
from tracking_core.receivers import ReceivedRequest, Reply, Responder
from tracking_core.testing import (
    FAST_DELIVERY,
    RecordingProvider,
    configure_tracking,
    reset_tracking,
)

from ..harness import Served, Tally, environment, served_fakes, tally

REPORT_VARIABLE = "TRACKING_RELIABILITY_REPORT"

#: Every provider whose plugin ships a fake, by name: each scenario runs against each.
PROVIDERS: tuple[str, ...] = tuple(
    destination.provider for destination in installed_fakes() if destination.fake.served
)

#: The name of the `RecordingProvider` that `enable_providers` registers.
RECORDER = "recorder"

#: Engine settings every reliability test starts from (on top of `FAST_DELIVERY`): quick batches
#: and backoffs, enough attempts to ride out a scripted outage, short timeouts and budgets.
BASE_SETTINGS: Mapping[str, str] = {
    **FAST_DELIVERY,
    "TRACKING_BATCH_SIZE": "50",
    "TRACKING_MAX_ATTEMPTS": "10",
    "TRACKING_MAX_RETRY_TIME": "10",
    "TRACKING_HTTP_TIMEOUT": "5",
    "TRACKING_CIRCUIT_THRESHOLD": "5",
    "TRACKING_CIRCUIT_PROBE_INTERVAL": "0.2",
    "TRACKING_SHUTDOWN_TIMEOUT": "2",
    "TRACKING_FLUSH_TIMEOUT": "15",
}


# -- the report -----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ReportRow:
    """One scenario's figures. `lost`: accepted, but neither delivered nor counted as dropped."""

    scenario: str
    load: str
    happened: str
    lost: int


class ReliabilityReport:
    """The rows recorded during the session (thread-safe)."""

    def __init__(self) -> None:
        self.rows: list[ReportRow] = []
        self._lock = threading.Lock()

    def add(self, scenario: str, load: str, happened: str, lost: int) -> None:
        """Record one scenario's result."""
        with self._lock:
            self.rows.append(ReportRow(scenario, load, happened, lost))

    def markdown(self) -> str:
        """The rows as a Markdown table, sorted by scenario."""

        def cell(text: str) -> str:
            return " ".join(text.split()).replace("|", "\\|")

        lines = ["| scenario | load | what happened | events lost |", "|---|---|---|---|"]
        with self._lock:
            rows = sorted(self.rows, key=lambda row: row.scenario)
        for row in rows:
            lines.append(
                f"| {cell(row.scenario)} | {cell(row.load)} | {cell(row.happened)} | {row.lost} |"
            )
        return "\n".join(lines) + "\n"


@pytest.fixture(scope="session")
def reliability_report() -> Iterator[ReliabilityReport]:
    """The session's `ReliabilityReport`; written to ``$TRACKING_RELIABILITY_REPORT`` at the end."""
    report = ReliabilityReport()
    yield report
    target = os.environ.get(REPORT_VARIABLE)
    if target:
        Path(target).write_text(report.markdown(), encoding="utf-8")


# -- destinations ---------------------------------------------------------------------------


@pytest.fixture
def destinations() -> Iterator[dict[str, Served]]:
    """Every installed fake, keyed by provider name, served by a started `RestartableReceiver`;
    stopped after the test."""
    with served_fakes() as found:
        yield found


class ProviderSwitch:
    """``enable(*providers, recorder=True, **variables)``: see the ``enable_providers`` fixture."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, destinations: Mapping[str, Served]):
        self._monkeypatch = monkeypatch
        self._destinations = destinations

    def __call__(
        self, *providers: str, recorder: bool = True, **variables: str | None
    ) -> RecordingProvider:
        """Enable `providers` (all when none is given) against their fakes, on top of
        `BASE_SETTINGS` and with the engine settings `variables` (``MAX_QUEUE="200"`` or
        ``TRACKING_MAX_QUEUE="200"``), and return the `RecordingProvider` registered beside them
        (not registered when `recorder` is false). May be called again in the same test: each
        call starts afresh."""
        names = list(providers) or list(self._destinations)
        chosen = [self._destinations[name] for name in names]
        settings = {
            name if name.startswith("TRACKING_") else f"TRACKING_{name}": value
            for name, value in variables.items()
        }
        env = environment(chosen, {**BASE_SETTINGS, **settings})
        configure_tracking(self._monkeypatch, env, discover=True)
        enabled = tc.list_tracking_providers()
        if sorted(enabled) != sorted(names):
            raise AssertionError(f"discovery enabled {enabled!r}, expected {names!r}")
        recording = RecordingProvider(RECORDER)
        if recorder:
            tc.register_tracking_provider(recording)
        return recording


@pytest.fixture
def enable_providers(destinations: dict[str, Served]) -> Iterator[ProviderSwitch]:
    """A `ProviderSwitch`: ``enable_providers("posthog", MAX_QUEUE="200")`` enables PostHog
    against its fake (plus a `RecordingProvider`, returned). After the test: a 1 s shutdown,
    the environment restored, tracking reset (discovery off), before the servers stop."""
    reset_tracking()
    with pytest.MonkeyPatch.context() as monkeypatch:
        switch = ProviderSwitch(monkeypatch, destinations)
        try:
            yield switch
        finally:
            tc.shutdown_tracking(1.0)
            monkeypatch.undo()
            reset_tracking(timeout=2.0)


# -- answers and tracking ----------------------------------------------------------------------


def slow_responder(fake: Responder, delay: float) -> Responder:
    """`fake`'s answers, each sent `delay` seconds late (the fake records the request first)."""

    def respond(request: ReceivedRequest) -> Reply:
        return dataclasses.replace(fake(request), delay=delay)

    return respond


def track_burst(count: int, scenario: str, *, start: int = 0, users: int = 11) -> float:
    """Call `tc.track` `count` times from this thread; return how long the calls took (s).

    Events are named ``"Reliability Check"``, carry ``{"seq": n, "scenario": scenario}`` and
    one of `users` user ids every fake accepts (``user-0000n``)."""
    began = time.perf_counter()
    for seq in range(start, start + count):
        tc.track(
            "Reliability Check",
            {"seq": seq, "scenario": scenario},
            user_id=f"user-{seq % users:05d}",
        )
    return time.perf_counter() - began


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.005) -> bool:
    """Poll `predicate` until it is true; False when `timeout` seconds pass first."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def stats_of(name: str) -> tc.ProviderStats:
    """``tracking_stats()[name]``, with a clear failure when the provider is not registered."""
    stats = tc.tracking_stats()
    if name not in stats:
        raise AssertionError(f"{name!r} is not registered; providers: {sorted(stats)!r}")
    return stats[name]


def settle(name: str, timeout: float = 5.0, quiet: float = 0.2) -> tc.ProviderStats:
    """Wait until provider `name` holds nothing (``queued == 0``) and its counters have not
    moved for `quiet` seconds; return the final stats."""
    deadline = time.monotonic() + timeout
    last = stats_of(name)
    still_since = time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.02)
        now = stats_of(name)
        if now != last or now.queued:
            last, still_since = now, time.monotonic()
        elif time.monotonic() - still_since >= quiet:
            return now
    raise AssertionError(f"{name} did not settle within {timeout}s: {last!r}")


def recorded(destination: Served, recorder: RecordingProvider) -> Tally:
    """What `destination`'s fake accepted, by event id, against the ids `recorder` was given
    and the provider's counters (call after flushing or settling)."""
    if not wait_until(lambda: stats_of(RECORDER).queued == 0, 5.0):
        raise AssertionError("the recording provider did not catch up")
    expected = [event.event_id for event in list(recorder.events)]
    return tally(destination, expected, stats=stats_of(destination.provider))


class QueueWatch:
    """A context manager sampling ``tracking_stats()`` every few ms in a thread: `peak` maps
    each provider to the most events it held (``queued``) at once."""

    def __init__(self, interval: float = 0.002) -> None:
        self.interval = interval
        self.peak: dict[str, int] = {}
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="queue-watch", daemon=True)

    def _run(self) -> None:
        while True:
            for name, stats in tc.tracking_stats().items():
                self.peak[name] = max(self.peak.get(name, 0), stats.queued)
            self.samples += 1
            if self._stop.wait(self.interval):
                return

    def __enter__(self) -> QueueWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


def timed_shutdown(budget: float) -> tuple[bool, float]:
    """``shutdown_tracking(budget)`` and how long it took (s)."""
    began = time.monotonic()
    finished = tc.shutdown_tracking(budget)
    return finished, time.monotonic() - began


__all__ = [
    "BASE_SETTINGS",
    "PROVIDERS",
    "RECORDER",
    "ProviderSwitch",
    "QueueWatch",
    "ReliabilityReport",
    "ReportRow",
    "recorded",
    "settle",
    "slow_responder",
    "stats_of",
    "timed_shutdown",
    "track_burst",
    "wait_until",
]
