"""The harness the reliability suite and the process tests share.

- Destinations: `served_fakes(names)` serves the fake of every installed plugin that ships one
  (``tracking_core.discovery.installed_fakes``), each by a `RestartableReceiver` on 127.0.0.1.
  Nothing here imports a provider module or reads a vendor's field: a fake says what an
  accepted event's id and properties are (``fake.event_id``, ``fake.properties_of``).
- One environment builder: `environment(destinations, settings, **variables)` gives the
  variables (None removes one) that enable exactly those providers against their fakes. In
  process, hand them to ``configure_tracking(monkeypatch, ...)`` (or ``tracking_env``); for a
  subprocess, `subprocess_environment` applies them to a copy of ``os.environ``.
- One subprocess runner: `run_python` (run a script to its end) and `Started` (start a
  command, wait for it to be ready, stop it with a signal).
- One exactly-once check: `tally` reads what a fake accepted, by event id or by a
  ``(tag, seq)`` pair of properties, and `assert_exactly_once` checks it against what was
  tracked and what the engine counted.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Collection, Hashable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import tracking_core as tc
from tracking_core.discovery import discover, installed_fakes
from tracking_core.fakes import FakeDestination, VendorFake
from tracking_core.receivers import LoopbackReceiver, ReceivedRequest, Reply, Responder
from tracking_core.testing import FAST_DELIVERY

__all__ = [
    "BUILTIN_PROVIDERS",
    "RestartableReceiver",
    "Served",
    "Started",
    "Tally",
    "assert_exactly_once",
    "credentials",
    "declared_settings",
    "environment",
    "run_python",
    "served_fakes",
    "stats_from_json",
    "subprocess_environment",
    "tally",
]

#: The providers this repository ships (tests of their own settings and answers name them).
BUILTIN_PROVIDERS: tuple[str, ...] = ("posthog", "mixpanel", "amplitude", "webhook")


# -- destinations ---------------------------------------------------------------------------


class RestartableReceiver(LoopbackReceiver):
    """A `LoopbackReceiver` (which comes back on the same port when started again after
    `stop`). While stopped, connections to its `url` are refused (nothing listens on the port).
    Stop it before the provider opens a connection: a keep-alive connection accepted earlier is
    still served by its handler thread."""


class Served:
    """A provider's fake (its `FakeDestination`) and the receiver serving it.

    Attributes:
        provider: the provider (and entry-point) name.
        fake: the vendor fake, the server's responder until a test replaces it.
        server: the `RestartableReceiver` (started by `served_fakes`).
    """

    def __init__(self, destination: FakeDestination) -> None:
        self.provider = destination.provider
        self.fake: VendorFake = destination.fake
        self.server = RestartableReceiver(destination.fake)
        self._variables = destination.environment

    def __repr__(self) -> str:
        return f"<Served {self.provider} {self.fake!r}>"

    def variables(self) -> dict[str, str]:
        """The variables that enable the provider against the fake where it is served."""
        return self._variables(self.server.url)


@contextlib.contextmanager
def served_fakes(names: Sequence[str] | None = None) -> Iterator[dict[str, Served]]:
    """The installed fakes (those of `names` only, in that order, when given), each served on
    127.0.0.1, keyed by provider name; stopped on exit."""
    found = {
        destination.provider: Served(destination)
        for destination in installed_fakes(names)
        if destination.fake.served  # a file destination has no server to script faults on
    }
    missing = sorted(set(names or ()) - set(found))
    if missing:
        raise LookupError(f"no installed plugin ships a fake for {missing!r}")
    for served in found.values():
        served.server.start()
    try:
        yield found
    finally:
        for served in found.values():
            served.server.stop()


@functools.cache
def declared_settings() -> dict[str, tuple[Any, ...]]:
    """Each installed plugin's declared variables (``ProviderSetting``), by entry-point name,
    read through discovery as ``tracking providers`` reads them."""
    return {report.name: report.settings for report in discover(lambda provider: None, {})}


def credentials(names: Sequence[str] | None = None) -> dict[str, str]:
    """The credentials the installed fakes (those of `names`) expect: the variables of each
    destination that its plugin declares secret, but for the ones holding the fake's URL."""
    somewhere = "http://fake.invalid:9"
    found: dict[str, str] = {}
    for destination in installed_fakes(names):
        declared = declared_settings().get(destination.provider, ())
        secret = {setting.name for setting in declared if setting.secret}
        found.update(
            (name, value)
            for name, value in destination.environment(somewhere).items()
            if name in secret and somewhere not in value
        )
    return found


# -- the environment ------------------------------------------------------------------------


def _configures_tracking(name: str) -> bool:
    declared = {s.name for settings in declared_settings().values() for s in settings}
    return name.startswith("TRACKING_") or name.removesuffix("_FILE") in declared


def environment(
    destinations: Iterable[Served] = (),
    settings: Mapping[str, str | None] = FAST_DELIVERY,
    /,
    **variables: str | None,
) -> dict[str, str | None]:
    """The variables (None: removed) for a run against `destinations`.

    Every variable that configures tracking (``TRACKING_*``, and the variables the installed
    plugins declare, with their ``_FILE`` forms) is removed, then come `settings` (engine
    settings), ``TRACKING_PROVIDERS`` naming exactly the destinations' providers (when there
    are any), each destination's variables, and `variables`.
    """
    env: dict[str, str | None] = {name: None for name in os.environ if _configures_tracking(name)}
    env.update(settings)
    chosen = list(destinations)
    if chosen:
        env["TRACKING_PROVIDERS"] = ",".join(served.provider for served in chosen)
    for served in chosen:
        env.update(served.variables())
    env.update(variables)
    return env


def subprocess_environment(env: Mapping[str, str | None]) -> dict[str, str]:
    """``os.environ`` with `env` applied (None removes a variable), for a subprocess."""
    full = {name: value for name, value in os.environ.items() if name not in env}
    full.update((name, value) for name, value in env.items() if value is not None)
    return full


# -- subprocesses ---------------------------------------------------------------------------


def run_python(
    script: str,
    *args: str,
    cwd: Path | None = None,
    env: Mapping[str, str | None] | None = None,
    name: str = "script.py",
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """Run `script` (dedented) in a fresh interpreter with `args` and wait for it to end.

    With `cwd` the script is written there as `name` and run from there (a multiprocessing
    child can then import its main module); else it is passed with ``-c``. `env` is applied
    to this environment (see `subprocess_environment`; default: `environment()`).
    """
    code = textwrap.dedent(script)
    if cwd is None:
        command = [sys.executable, "-c", code, *args]
    else:
        (cwd / name).write_text(code, encoding="utf-8")
        command = [sys.executable, str(cwd / name), *args]
    return subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=subprocess_environment(environment() if env is None else env),
    )


class Started:
    """A command started in its own session, its output (stdout and stderr) going to a file.

    Use it as a context manager: on exit, a process still running is killed with its whole
    process group. `stop` sends a signal and waits for the exit.
    """

    def __init__(self, command: Sequence[str], *, cwd: Path, env: Mapping[str, str | None]) -> None:
        self.log = cwd / f"output-{time.monotonic_ns()}.log"
        self._file = self.log.open("w+", encoding="utf-8")
        self.process = subprocess.Popen(
            list(command),
            cwd=cwd,
            env=subprocess_environment(env),
            stdout=self._file,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )

    def __enter__(self) -> Started:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self._file.close()

    @property
    def output(self) -> str:
        """What the process printed so far."""
        return self.log.read_text(encoding="utf-8", errors="replace")

    def wait(self, ready: Callable[[], bool], timeout: float, what: str) -> None:
        """Poll `ready` until true; AssertionError (saying `what` and the output) when the
        process ends first or `timeout` seconds pass."""
        deadline = time.monotonic() + timeout
        while not ready():
            if self.process.poll() is not None:
                raise AssertionError(f"exited ({self.process.returncode}) before {what}")
            if time.monotonic() > deadline:
                raise AssertionError(f"not {what} after {timeout}s:\n{self.output}")
            time.sleep(0.05)

    def wait_for_line(self, start: str, timeout: float = 60) -> str:
        """The first output line starting with `start`, once printed."""

        def line() -> str | None:
            return next((x for x in self.output.splitlines() if x.startswith(start)), None)

        self.wait(lambda: line() is not None, timeout, f"printed {start!r}")
        return line() or ""

    def stop(self, how: signal.Signals, timeout: float) -> tuple[int, float]:
        """Send `how`, wait at most `timeout` seconds; the exit code and the seconds it took."""
        signalled = time.monotonic()
        self.process.send_signal(how)
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise AssertionError(
                f"still running {timeout:.0f} s after {how.name}; its output:\n{self.output}"
            ) from None
        return code, time.monotonic() - signalled


# -- what arrived ---------------------------------------------------------------------------

#: The properties that tag an event tracked by a subprocess: who tracked it, and its number.
TAG = ("tag", "seq")


def stats_from_json(data: Mapping[str, Any]) -> tc.ProviderStats:
    """A `ProviderStats` from the fields a subprocess printed (others are 0)."""
    fields = {field.name for field in dataclasses.fields(tc.ProviderStats)}
    given = {name: value for name, value in data.items() if name in fields}
    return tc.ProviderStats(**{"failed": 0, "retried": 0, "batches": 0, **given})


@dataclasses.dataclass(frozen=True)
class Tally:
    """What one destination accepted, against what was tracked and what the engine counted.

    Attributes:
        provider: the provider name.
        expected: what was tracked: event ids, or ``(tag, seq)`` pairs.
        arrived: the same of each event the fake accepted, in arrival order, repeats included.
        ids: the event id of each of those events.
        absorbed: repeats a deduplicating fake received and did not record.
        stats: the provider's counters, when known.
        problems: the fake's refusals and the receiver's errors.
    """

    provider: str
    expected: frozenset[Hashable]
    arrived: tuple[Hashable, ...]
    ids: tuple[str, ...]
    absorbed: int
    stats: tc.ProviderStats | None
    problems: tuple[str, ...]

    @property
    def delivered(self) -> int:
        """Distinct tracked events the fake accepted."""
        return len(set(self.arrived) & self.expected)

    @property
    def counters(self) -> tc.ProviderStats:
        """`stats`, which the caller knows were given."""
        assert self.stats is not None, f"{self.provider}: no counters were read"
        return self.stats

    @property
    def dropped(self) -> int:
        return sum(self.stats.dropped.values()) if self.stats is not None else 0

    @property
    def repeats(self) -> int:
        """Events the destination received more than once (recorded or absorbed)."""
        return len(self.arrived) - len(set(self.arrived)) + self.absorbed

    @property
    def unexpected(self) -> frozenset[Hashable]:
        """What the fake accepted that was never tracked."""
        return frozenset(self.arrived) - self.expected

    @property
    def lost(self) -> int:
        """Tracked events neither delivered nor counted as dropped (must be 0)."""
        return len(self.expected) - self.delivered - self.dropped

    def summary(self) -> str:
        """``"200/200 delivered once; dropped: none"`` and the like, for the report."""
        dropped = self.stats.dropped.items() if self.stats is not None else ()
        reasons = ", ".join(f"{count} {reason}" for reason, count in sorted(dropped)) or "none"
        return f"{self.delivered}/{len(self.expected)} delivered once; dropped: {reasons}"


def tally(
    served: Served,
    expected: Iterable[Hashable],
    *,
    key: tuple[str, str] | None = None,
    stats: tc.ProviderStats | None = None,
) -> Tally:
    """Read what `served`'s fake accepted (call after flushing): each event by its id, or with
    `key` (two property names, e.g. `TAG`) by the pair of those properties, read through
    ``fake.properties_of`` (events without the first are left out)."""
    fake = served.fake
    events = list(fake.events)
    refusals = [f"refused {r.status}: {r.message}" for r in list(fake.rejections)]
    arrived: list[Hashable] = []
    ids: list[str] = []
    for event in events:
        if key is None:
            arrived.append(fake.event_id(event))
        else:
            properties = fake.properties_of(event)
            if key[0] not in properties:
                continue
            arrived.append((str(properties[key[0]]), int(properties[key[1]])))
        ids.append(fake.event_id(event))
    return Tally(
        provider=served.provider,
        expected=frozenset(expected),
        arrived=tuple(arrived),
        ids=tuple(ids),
        absorbed=len(fake.duplicates),
        stats=stats,
        problems=(*refusals, *map(repr, served.server.errors)),
    )


def assert_exactly_once(result: Tally, allowed_drops: Collection[str] = ()) -> Tally:
    """Every tracked event reached the destination exactly once, or was counted as dropped under
    one of `allowed_drops`; nothing else arrived, no event id twice, nothing refused; the
    engine's counters (when known) agree; nothing is lost. Returns `result`."""
    name = result.provider
    assert result.expected, f"{name}: nothing was tracked"
    strangers = sorted(map(str, result.unexpected))
    assert not strangers, f"{name}: {len(strangers)} arrived never tracked: {strangers[:5]}"
    assert result.repeats == 0, f"{name}: {result.repeats} events arrived more than once"
    assert len(set(result.ids)) == len(result.ids), f"{name}: an event id arrived twice"
    assert not result.problems, (name, result.problems[:5])
    stats = result.stats
    if stats is not None:
        assert stats.accepted == len(result.expected), (name, stats, len(result.expected))
        assert stats.delivered == result.delivered, (name, stats, result.delivered)
        reasons = set(stats.dropped) - set(allowed_drops)
        assert not reasons, f"{name}: dropped under {dict(stats.dropped)!r}"
        assert stats.queued == 0, (name, stats)
    assert result.lost == 0, f"{name}: {result.lost} events lost: {result.summary()}"
    return result


class FailingAtRandom:
    """A responder: `fake`'s answers, but 503 (the request not looked at) for `rate` of the
    requests, chosen at random; it counts both."""

    def __init__(self, fake: Responder, rate: float = 0.3, seed: int = 13) -> None:
        self._fake, self._rate, self._chance = fake, rate, random.Random(seed)
        self._lock = threading.Lock()
        self.requests = self.failed = 0

    def __call__(self, request: ReceivedRequest) -> Reply:
        with self._lock:
            self.requests += 1
            fail = self._chance.random() < self._rate
            self.failed += fail
        return Reply(503, {"error": "unavailable"}) if fail else self._fake(request)

    def describe(self) -> str:
        """What the destination did, for the report."""
        return f"503 for {self._rate * 100:.0f} % of requests ({self.failed} of {self.requests})"
