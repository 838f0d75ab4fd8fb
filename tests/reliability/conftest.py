"""Shared fixtures of the reliability suite: the report that docs/ publishes, the four built-in
destinations on 127.0.0.1, and the helpers every fault, load and bad-input test reuses.

- ``reliability_report``: each scenario records its figures through ``reliability_report.add(...)``.
  At the end of the session, when ``TRACKING_RELIABILITY_REPORT`` names a path, the rows are
  written there as a Markdown table (sorted by scenario), ready for the "Delivery guarantees" page.
- ``destinations``: the four `builtin_destinations()` (PostHog, Mixpanel, Amplitude, webhook
  fakes), each served by a started `RestartableReceiver` (it can be stopped to refuse connections
  and started again on the same port). A dict keyed by provider name.
- ``enable_providers``: ``enable_providers("posthog", ..., **TRACKING_variables)`` points the named
  built-in providers (all four when none is named) at their fakes through the environment, runs
  plugin discovery exactly as users get it, and registers a `RecordingProvider` alongside, whose
  events are the ids every destination must receive. Undone (shutdown, environment, reset) after
  the test.
- `tally` / `assert_exactly_once`: what a destination accepted against what was tracked, and the
  exactly-once-or-counted check. `QueueWatch` samples ``tracking_stats()[name].queued``.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from tracking_amplitude.fake import error_reply as amplitude_error
from tracking_posthog.fake import PostHogFake

import tracking_core as tc
from tracking_core.demo import DEMO_KEYS, Destination, builtin_destinations
from tracking_core.receivers import (
    LoopbackReceiver,
    ReceivedRequest,
    Reply,
    Responder,
    _Handler,
    _Server,
)
from tracking_core.testing import (
    FAST_DELIVERY,
    RecordingProvider,
    configure_tracking,
    reset_tracking,
)

REPORT_VARIABLE = "TRACKING_RELIABILITY_REPORT"
_VARIABLE_PREFIXES = ("TRACKING_", "POSTHOG_", "MIXPANEL_", "AMPLITUDE_")

#: The built-in providers, in the order `builtin_destinations()` gives them.
ALL_PROVIDERS: tuple[str, ...] = ("posthog", "mixpanel", "amplitude", "webhook")

#: The name of the `RecordingProvider` that `enable_providers` registers.
RECORDER = "recorder"

#: Engine settings every reliability test starts from (on top of `FAST_DELIVERY`): quick batches
#: and backoffs, enough attempts to ride out a scripted outage, short timeouts and budgets.
#: ``None`` removes a variable the surrounding environment may set.
BASE_SETTINGS: Mapping[str, str | None] = {
    **FAST_DELIVERY,
    "TRACKING_BATCH_SIZE": "50",
    "TRACKING_MAX_QUEUE": None,
    "TRACKING_MAX_ATTEMPTS": "10",
    "TRACKING_MAX_RETRY_TIME": "10",
    "TRACKING_HTTP_TIMEOUT": "5",
    "TRACKING_CIRCUIT_THRESHOLD": "5",
    "TRACKING_CIRCUIT_PROBE_INTERVAL": "0.2",
    "TRACKING_SHUTDOWN_TIMEOUT": "2",
    "TRACKING_FLUSH_TIMEOUT": "15",
    "TRACKING_DEBUG": None,
    "TRACKING_DISABLED": None,
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


class RestartableReceiver(LoopbackReceiver):
    """A `LoopbackReceiver` that comes back on the same port when started again after `stop`.

    While stopped, connections to its `url` are refused (nothing listens on the port). Stop it
    before the provider opens a connection: a keep-alive connection accepted earlier is still
    served by its handler thread.
    """

    def __init__(self, responder: Responder | None = None) -> None:
        super().__init__(responder)
        self.port = 0

    def start(self) -> RestartableReceiver:
        self._stopping.clear()
        server = _Server(("127.0.0.1", self.port), _Handler)
        server.receiver = self
        self._server = server
        self.port = int(self.url.rpartition(":")[2])
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self


@pytest.fixture
def destinations() -> Iterator[dict[str, Destination]]:
    """The four built-in destinations, keyed by provider name, each fake served (started) by a
    `RestartableReceiver`; stopped after the test."""
    found = {destination.provider: destination for destination in builtin_destinations()}
    for destination in found.values():
        destination.server = RestartableReceiver(destination.fake)
        destination.server.start()
    try:
        yield found
    finally:
        for destination in found.values():
            destination.server.stop()


class ProviderSwitch:
    """``enable(*providers, recorder=True, **variables)``: see the ``enable_providers`` fixture."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, destinations: dict[str, Destination]):
        self._monkeypatch = monkeypatch
        self._destinations = destinations

    def environment(
        self, providers: Sequence[str], variables: Mapping[str, str | None]
    ) -> dict[str, str | None]:
        """The variables `__call__` sets: `BASE_SETTINGS`, the fakes' keys and URLs, then
        `variables` (names without the ``TRACKING_`` prefix get it)."""
        env: dict[str, str | None] = {**BASE_SETTINGS, **DEMO_KEYS}
        env["TRACKING_PROVIDERS"] = ",".join(providers)
        for name in providers:
            destination = self._destinations[name]
            env.update(destination.environment(destination.server.url))
        for name, value in variables.items():
            env[name if name.startswith(_VARIABLE_PREFIXES) else f"TRACKING_{name}"] = value
        return env

    def __call__(
        self, *providers: str, recorder: bool = True, **variables: str | None
    ) -> RecordingProvider:
        """Enable `providers` (all four when none is given) against their fakes, with the engine
        settings `variables` (``MAX_QUEUE="200"`` or ``TRACKING_MAX_QUEUE="200"``), and return
        the `RecordingProvider` registered beside them (not registered when `recorder` is
        false). May be called again in the same test: each call starts afresh."""
        names = list(providers) or list(ALL_PROVIDERS)
        unknown = [name for name in names if name not in self._destinations]
        if unknown:
            raise ValueError(f"not a built-in provider: {unknown!r}")
        configure_tracking(self._monkeypatch, self.environment(names, variables), discover=True)
        enabled = tc.list_tracking_providers()
        if sorted(enabled) != sorted(names):
            raise AssertionError(f"discovery enabled {enabled!r}, expected {names!r}")
        recording = RecordingProvider(RECORDER)
        if recorder:
            tc.register_tracking_provider(recording)
        return recording


@pytest.fixture
def enable_providers(destinations: dict[str, Destination]) -> Iterator[ProviderSwitch]:
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


# -- vendor-shaped answers and request reading ----------------------------------------------


def vendor_error(provider: str, status: int, retry_after: str | None = None) -> Reply:
    """An error answer shaped like `provider`'s vendor's (its body and content type), with a
    ``Retry-After`` header when `retry_after` is given."""
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    text = {413: "payload too large", 429: "rate limited"}.get(status, f"error {status}")
    if provider == "posthog":
        return PostHogFake.error(status, retry_after=retry_after)
    if provider == "amplitude":
        return amplitude_error(status, text, headers=headers)
    if provider == "mixpanel":
        return Reply(status, {"error": text, "status": 0}, headers=headers)
    if provider == "webhook":
        return Reply(status, {"code": f"http_{status}", "message": text}, headers=headers)
    raise ValueError(f"not a built-in provider: {provider!r}")


def wire_count(request: ReceivedRequest) -> int:
    """How many events a request to a built-in fake carries (a JSON array, or the ``batch`` /
    ``events`` array of a JSON object); 0 when the body is not such JSON."""
    try:
        body = request.json()
    except ValueError:
        return 0
    if isinstance(body, list):
        return len(body)
    if isinstance(body, dict):
        for key in ("batch", "events"):
            if isinstance(body.get(key), list):
                return len(body[key])
    return 0


def slow_responder(fake: Responder, delay: float) -> Responder:
    """`fake`'s answers, each sent `delay` seconds late (the fake records the request first)."""

    def respond(request: ReceivedRequest) -> Reply:
        return dataclasses.replace(fake(request), delay=delay)

    return respond


# -- tracking and checking ------------------------------------------------------------------


def track_burst(count: int, scenario: str, *, start: int = 0) -> float:
    """Call `tc.track` `count` times from this thread; return how long the calls took (s).

    Events are named ``"Reliability Check"``, carry ``{"seq": n, "scenario": scenario}`` and a
    user id every fake accepts (``user-0000n``)."""
    began = time.perf_counter()
    for seq in range(start, start + count):
        tc.track(
            "Reliability Check",
            {"seq": seq, "scenario": scenario},
            user_id=f"user-{seq % 11:05d}",
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


def vendor_duplicates(fake: Any) -> int:
    """Repeats a deduplicating fake absorbed (Amplitude's ``duplicates`` count, the webhook's
    ``duplicates`` list and ``duplicate_deliveries``); 0 for the others."""
    found = getattr(fake, "duplicates", 0)
    count = found if isinstance(found, int) else len(found)
    return count + int(getattr(fake, "duplicate_deliveries", 0))


@dataclasses.dataclass(frozen=True)
class Tally:
    """What one destination accepted, against what was tracked and what the engine counted.

    Attributes:
        provider: the provider name.
        expected: the event ids tracked (those the `RecordingProvider` received).
        arrived: the event ids the fake accepted, in arrival order, repeats included.
        absorbed: repeats a deduplicating fake received and did not record.
        stats: ``tracking_stats()[provider]``.
    """

    provider: str
    expected: frozenset[str]
    arrived: tuple[str, ...]
    absorbed: int
    stats: tc.ProviderStats

    @property
    def delivered(self) -> int:
        """Distinct tracked events the fake accepted."""
        return len(set(self.arrived) & self.expected)

    @property
    def dropped(self) -> int:
        return sum(self.stats.dropped.values())

    @property
    def repeats(self) -> int:
        """Events the destination received more than once (recorded or absorbed)."""
        return len(self.arrived) - len(set(self.arrived)) + self.absorbed

    @property
    def unexpected(self) -> frozenset[str]:
        """Ids the fake accepted that were never tracked."""
        return frozenset(self.arrived) - self.expected

    @property
    def lost(self) -> int:
        """Tracked events neither delivered nor counted as dropped (must be 0)."""
        return len(self.expected) - self.delivered - self.dropped

    def summary(self) -> str:
        """``"200/200 delivered once; dropped: none"`` and the like, for the report."""
        dropped = (
            ", ".join(f"{count} {reason}" for reason, count in sorted(self.stats.dropped.items()))
            or "none"
        )
        return f"{self.delivered}/{len(self.expected)} delivered once; dropped: {dropped}"


def tally(destination: Destination, recorder: RecordingProvider) -> Tally:
    """Read what `destination`'s fake accepted and what `recorder` was given (call after
    flushing or settling)."""
    if not wait_until(lambda: stats_of(RECORDER).queued == 0, 5.0):
        raise AssertionError("the recording provider did not catch up")
    expected = frozenset(event.event_id for event in list(recorder.events))
    return Tally(
        provider=destination.provider,
        expected=expected,
        arrived=tuple(destination.event_ids()),
        absorbed=vendor_duplicates(destination.fake),
        stats=stats_of(destination.provider),
    )


def assert_exactly_once(result: Tally, allowed_drops: Collection[str] = ()) -> None:
    """Every tracked event reached the destination exactly once, or was counted as dropped under
    one of `allowed_drops`; nothing else arrived; the engine's counters agree; nothing is lost."""
    stats = result.stats
    assert result.expected, "nothing was tracked"
    assert not result.unexpected, f"{len(result.unexpected)} ids arrived that were never tracked"
    assert result.repeats == 0, f"{result.repeats} events arrived more than once"
    assert stats.accepted == len(result.expected), (stats.accepted, len(result.expected))
    assert stats.delivered == result.delivered, (stats.delivered, result.delivered)
    unexpected_reasons = set(stats.dropped) - set(allowed_drops)
    assert not unexpected_reasons, f"dropped under {dict(stats.dropped)!r}"
    assert stats.queued == 0, stats
    assert result.lost == 0, f"{result.lost} events lost: {result.summary()}"


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
    "ALL_PROVIDERS",
    "BASE_SETTINGS",
    "RECORDER",
    "ProviderSwitch",
    "QueueWatch",
    "ReliabilityReport",
    "ReportRow",
    "RestartableReceiver",
    "Tally",
    "assert_exactly_once",
    "settle",
    "slow_responder",
    "stats_of",
    "tally",
    "timed_shutdown",
    "track_burst",
    "vendor_duplicates",
    "vendor_error",
    "wait_until",
    "wire_count",
]
