"""uvicorn (issue #13): one worker and ``--workers 2``, stopped by SIGTERM and SIGINT. The
application only imports tracking-core and calls `track()`; PostHog is enabled by its variables.

Each scenario runs real uvicorn in a subprocess with PostHog pointed at its strict fake on
loopback, makes requests whose handlers track 95 events each, and stops it while every event is
still waiting (see tests/reliability/test_reliability_servers.py, whose runner and accounting
this reuses). Events are counted at the fake by their dedupe id.

- SIGTERM: uvicorn shuts down gracefully, then re-raises SIGTERM with the default action (which
  skips exit handlers); tracking-core holds it until its exit flush has run.
- SIGINT: uvicorn shuts down gracefully and re-raises SIGINT: ``KeyboardInterrupt``, then the
  exit flush.
- With ``--workers 2``, the supervisor stops its workers (spawned processes), each flushing what
  it tracked.
- Against a destination answering 503 to 30 % of the requests at random (or to all of them),
  what each process could not deliver within its budget is counted in its exit log line.
"""

from __future__ import annotations

import dataclasses
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..harness import Served, served_fakes
from ..reliability.test_reliability_servers import (
    BUDGET,
    DOWN,
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

#: Requests made before the signal.
REQUESTS = 4
#: What uvicorn's process ends with, by workers and signal. One worker: the server re-raises the
#: signal once its graceful shutdown is over (SIGTERM with its default action: killed by it;
#: SIGINT: KeyboardInterrupt, handled). Several: the supervisor waits for its workers and
#: returns.
EXIT_STATUS = {
    (1, signal.SIGTERM): -signal.SIGTERM,
    (1, signal.SIGINT): 0,
    (2, signal.SIGTERM): 0,
    (2, signal.SIGINT): 0,
}


@dataclasses.dataclass(frozen=True)
class Scenario:
    """One uvicorn run."""

    workers: int
    stop: signal.Signals
    destination: str = HEALTHY

    @property
    def id(self) -> str:
        what = {HEALTHY: "healthy", FLAKY: "flaky", DOWN: "down"}[self.destination]
        return f"{self.workers}-{self.stop.name.removeprefix('SIG').lower()}-{what}"

    @property
    def setup(self) -> str:
        return "1 worker" if self.workers == 1 else f"--workers {self.workers}"

    def command(self, port: int) -> list[str]:
        command = [sys.executable, "-m", "uvicorn", "app:asgi", "--port", str(port)]
        command += ["--no-access-log"]
        return command + (["--workers", str(self.workers)] if self.workers > 1 else [])


SCENARIOS = [
    *(
        Scenario(workers, stop, destination)
        for workers in (1, 2)
        for stop in (signal.SIGTERM, signal.SIGINT)
        for destination in (HEALTHY, FLAKY)
    ),
    Scenario(2, signal.SIGTERM, DOWN),
]


@pytest.fixture
def posthog() -> Iterator[Served]:
    with served_fakes(["posthog"]) as found:
        yield found["posthog"]


def run_scenario(
    scenario: Scenario, served: Served, tmp_path: Path
) -> tuple[ServerRun, Accounting]:
    """Run `scenario` to uvicorn's exit; check its output and what arrived."""
    port = free_port()
    env = server_environment(served, tmp_path)
    with (
        answering(served, scenario.destination),
        ServerRun(scenario.command(port), tmp_path, env) as run,
    ):
        run.wait_listening(port)
        # Every worker has started its application (signals before that are uvicorn's own
        # start-up business).
        run.started.wait(
            lambda: run.output.count("Application startup complete") >= scenario.workers,
            60,
            "every worker started",
        )
        for number in range(REQUESTS):
            run.request(port, f"r{number}")
        run.stop(scenario.stop)
    assert_clean(run.output)
    assert run.took < BUDGET + MARGIN
    expected = EXIT_STATUS[scenario.workers, scenario.stop]
    assert run.returncode == expected, (run.returncode, run.output)
    accounting = account(run, served, healthy=scenario.destination == HEALTHY)
    return run, accounting


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[scenario.id for scenario in SCENARIOS])
def test_uvicorn(
    scenario: Scenario, posthog: Served, tmp_path: Path, environment_report: EnvironmentReport
) -> None:
    run, accounting = run_scenario(scenario, posthog, tmp_path)
    if scenario.workers > 1:
        assert len({answer.pid for answer in run.answers}) >= 1
    if scenario.destination == DOWN:
        assert accounting.delivered == 0
        assert accounting.counted == accounting.tracked
    environment_report.add(
        "uvicorn",
        setup=scenario.setup,
        stop=scenario.stop.name,
        destination=scenario.destination,
        tracked=accounting.tracked,
        delivered=accounting.delivered,
        counted=accounting.counted,
    )
    assert accounting.lost == 0
