"""gunicorn (issue #13): sync, gthread and gevent workers, with and without ``--preload``, worker
recycling, and every way gunicorn is stopped or reloaded. The application only imports
tracking-core and calls `track()`; PostHog is enabled by its variables.

Each scenario runs real gunicorn in a subprocess (two workers) with PostHog pointed at its
strict fake on loopback, makes requests whose handlers track 95 events each, and stops it while
every event is still waiting (see tests/reliability/test_reliability_servers.py, whose runner and
accounting this reuses). Events are counted at the fake by their dedupe id.

- SIGTERM (graceful stop), SIGINT and SIGQUIT (quick stop): each worker leaves through
  ``sys.exit()`` and its exit flush runs within the budget, so nothing is lost while the
  destination is healthy.
- SIGHUP (reload): new workers replace the old ones, which stop gracefully; what the old ones
  tracked is delivered by them. Then more requests, then SIGTERM.
- ``--max-requests 2``: workers are recycled during the run; each leaves through ``sys.exit()``.
- Against a destination answering 503 to 30 % of the requests at random, what each process
  could not deliver within its budget is counted in its exit log line.
- Under ``--preload -k gevent``, the first request that tracks completes (it used to hang: see
  docs/design.md, "Fork, and green threads"), also when the master used tracking before forking.
"""

from __future__ import annotations

import dataclasses
import re
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..harness import Served, served_fakes
from ..reliability.test_reliability_servers import (
    BUDGET,
    DOWN,
    FIRST_HELD,
    FLAKY,
    HEALTHY,
    MARGIN,
    Accounting,
    ServerRun,
    account,
    answering,
    assert_clean,
    free_port,
    server_environment,
)
from .conftest import EnvironmentReport

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="POSIX signals"),
]

#: The worker classes, as gunicorn's options.
WORKERS: dict[str, tuple[str, ...]] = {
    "sync": (),
    "gthread": ("-k", "gthread", "--threads", "4"),
    "gevent": ("-k", "gevent"),
}
#: Requests made before each signal (and before a reload): with ``--max-requests 2`` and two
#: workers, one of them serves two and is recycled.
REQUESTS = 3

_DESTINATION_IDS = {HEALTHY: "healthy", FLAKY: "flaky", DOWN: "down", FIRST_HELD: "first-held"}
_STOP_NAMES = {
    signal.SIGTERM: "SIGTERM",
    signal.SIGINT: "SIGINT",
    signal.SIGQUIT: "SIGQUIT (quick shutdown)",
    signal.SIGHUP: "SIGHUP (reload)",
}


@dataclasses.dataclass(frozen=True)
class Scenario:
    """One gunicorn run: its setup, the signals sent (all but the last with requests after
    them), and what the destination does."""

    worker: str
    preload: bool
    stops: tuple[signal.Signals, ...]
    destination: str = HEALTHY
    recycle: bool = False
    #: "": no; "yes": the application tracks one event when imported; "held": and waits until
    #: the first attempt to send it failed (its retry is then held when the master forks).
    tracks_at_import: str = ""

    @property
    def id(self) -> str:
        parts = [self.worker, "preload" if self.preload else "", "recycle" if self.recycle else ""]
        parts += [f"at-import-{self.tracks_at_import}" if self.tracks_at_import else ""]
        parts += ["-".join(how.name.removeprefix("SIG").lower() for how in self.stops)]
        parts += [_DESTINATION_IDS[self.destination]]
        return "-".join(part for part in parts if part)

    @property
    def setup(self) -> str:
        text = f"{self.worker} workers (2)"
        if self.worker == "gthread":
            text = "gthread workers (2 x 4 threads)"
        text += ", --preload" if self.preload else ""
        text += ", --max-requests 2" if self.recycle else ""
        if self.tracks_at_import:
            text += ", track() at import (in the master)"
        if self.tracks_at_import == "held":
            text += ", its retry held when the workers fork"
        return text

    @property
    def stop(self) -> str:
        return ", then ".join(_STOP_NAMES[how] for how in self.stops)

    def command(self, port: int) -> list[str]:
        command = [sys.executable, "-m", "gunicorn", "-b", f"127.0.0.1:{port}", "-w", "2"]
        command += ["--graceful-timeout", "20", *WORKERS[self.worker]]
        command += ["--preload"] if self.preload else []
        command += ["--max-requests", "2", "--max-requests-jitter", "0"] if self.recycle else []
        return [*command, "app:wsgi"]


_STOPS = [
    (signal.SIGTERM,),
    (signal.SIGINT,),
    (signal.SIGQUIT,),
    (signal.SIGHUP, signal.SIGTERM),
]


def _matrix() -> list[Scenario]:
    healthy = [
        Scenario(worker, preload, stops, recycle=stops[0] == signal.SIGHUP)
        for worker in WORKERS
        for preload in (False, True)
        for stops in _STOPS
    ]
    # Against the flaky destination: each signal once per worker class, half with --preload.
    flaky = [
        Scenario(
            worker,
            stops[-1] == signal.SIGTERM,
            stops,
            FLAKY,
            recycle=stops[0] == signal.SIGHUP,
        )
        for worker in WORKERS
        for stops in _STOPS
    ]
    # A destination that takes nothing: what each worker held is counted at its exit.
    down = [
        Scenario("gevent", True, (signal.SIGTERM,), DOWN),
        Scenario("sync", False, (signal.SIGQUIT,), DOWN),
    ]
    # Tracking used in the master before it forks its workers.
    master = [
        Scenario(worker, True, (signal.SIGTERM,), tracks_at_import="yes")
        for worker in ("sync", "gevent")
    ]
    # ... and holding a retry when it forks: the workers must not send it again.
    master += [Scenario("sync", True, (signal.SIGTERM,), FIRST_HELD, tracks_at_import="held")]
    return healthy + flaky + down + master


SCENARIOS = _matrix()

_BOOTED = re.compile(r"Booting worker with pid: (\d+)")
_EXITED = re.compile(r"Worker exiting \(pid: (\d+)\)")
_READY = re.compile(r"worker ready (\d+)")
_RECYCLING = re.compile(r"\[(\d+)\] \[INFO\] Autorestarting worker")
_DONE = re.compile(r"request done \d+")

#: gunicorn reads ``gunicorn.conf.py`` where it starts. A worker signalled before it has set its
#: own handlers takes the signal for its master's (inherited, it queues it and nothing reads
#: it): it goes on serving until the master kills it at the graceful timeout. So the test
#: signals only when every worker has said it is ready, and when every request has been handled
#: to its end: the client has its answer before the worker has written its access log, and a
#: quick stop (SIGINT, SIGQUIT) landing then cuts that request with a traceback of gunicorn's.
CONFIG = """
def post_worker_init(worker):
    print(f"worker ready {worker.pid}", flush=True)

def post_request(worker, req, environ, resp):
    print(f"request done {worker.pid}", flush=True)
"""


def live_workers(output: str) -> set[int]:
    """The workers booted and not yet exited, by gunicorn's log."""
    return {int(pid) for pid in _BOOTED.findall(output)} - {
        int(pid) for pid in _EXITED.findall(output)
    }


def wait_ready(run: ServerRun, workers: int = 2) -> set[int]:
    """Wait until `workers` workers run, none of them about to be recycled, and each has set
    its signal handlers, and every request answered so far has been handled to its end; their
    pids."""

    def ready() -> bool:
        output = run.output
        if len(_DONE.findall(output)) < len(run.answers):
            return False
        live = live_workers(output) - {int(pid) for pid in _RECYCLING.findall(output)}
        return len(live) == workers and live <= {int(pid) for pid in _READY.findall(output)}

    run.started.wait(ready, 60, f"{workers} workers ready")
    return live_workers(run.output)


@pytest.fixture
def posthog() -> Iterator[Served]:
    with served_fakes(["posthog"]) as found:
        yield found["posthog"]


def run_scenario(
    scenario: Scenario, served: Served, tmp_path: Path
) -> tuple[ServerRun, Accounting]:
    """Run `scenario` to the server's exit; check its output and what arrived."""
    port = free_port()
    variables = {"APP_TRACKS_AT_IMPORT": scenario.tracks_at_import or None}
    if scenario.tracks_at_import == "held":
        variables["TRACKING_FLUSH_INTERVAL"] = "0.05"  # the master's event leaves at once
    env = server_environment(served, tmp_path, **variables)
    (tmp_path / "gunicorn.conf.py").write_text(CONFIG, encoding="utf-8")
    with (
        answering(served, scenario.destination),
        ServerRun(scenario.command(port), tmp_path, env) as run,
    ):
        run.wait_listening(port)
        for phase, how in enumerate(scenario.stops):
            for number in range(REQUESTS):
                run.request(port, f"p{phase}r{number}")
            wait_ready(run)
            if how == signal.SIGHUP:
                _reload(run)
            else:
                run.stop(how)
    assert_clean(run.output)
    assert run.took < BUDGET + MARGIN
    # gunicorn's master leaves with 0 after each of these signals.
    assert run.returncode == 0, (run.returncode, run.output)
    if scenario.recycle:
        assert "Autorestarting worker" in run.output, run.output
    accounting = account(run, served, healthy=scenario.destination in (HEALTHY, FIRST_HELD))
    return run, accounting


def _reload(run: ServerRun) -> None:
    """SIGHUP, then wait until every worker running before it has exited and two new ones
    run."""
    old = live_workers(run.output)
    run.started.process.send_signal(signal.SIGHUP)

    def replaced() -> bool:
        live = live_workers(run.output)
        return len(live) == 2 and not live & old

    run.started.wait(replaced, 60, "workers replaced after SIGHUP")


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[scenario.id for scenario in SCENARIOS])
def test_gunicorn(
    scenario: Scenario, posthog: Served, tmp_path: Path, environment_report: EnvironmentReport
) -> None:
    run, accounting = run_scenario(scenario, posthog, tmp_path)
    if signal.SIGHUP in scenario.stops:
        # The requests after the reload were served by new workers.
        first = {answer.pid for answer in run.answers if answer.tag.startswith("p0")}
        later = {answer.pid for answer in run.answers if answer.tag.startswith("p1")}
        assert not first & later, (first, later)
    if scenario.destination == DOWN:
        assert accounting.delivered == 0
        assert accounting.counted == accounting.tracked
    environment_report.add(
        "gunicorn",
        setup=scenario.setup,
        stop=scenario.stop,
        destination=scenario.destination,
        tracked=accounting.tracked,
        delivered=accounting.delivered,
        counted=accounting.counted,
    )
    assert accounting.lost == 0
