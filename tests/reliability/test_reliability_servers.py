"""Stopping real servers and scripts the ordinary ways, with events still pending.

This module holds what every server scenario shares (the application, the runner, the accounting
of what arrived and what was counted) and the plain-script scenarios. The servers' own matrices
use it: tests/environments/test_gunicorn.py (sync, gthread and gevent workers, ``--preload``,
worker recycling, SIGTERM, SIGINT, SIGHUP and SIGQUIT) and tests/environments/test_uvicorn.py
(one worker and ``--workers 2``, SIGTERM and SIGINT).

Each scenario runs the server (or script) in a subprocess with a provider pointed at its strict
fake (served on loopback by this pytest process), makes requests whose handlers call `track()`,
then stops it with a signal while the events are still queued (a 60 s flush interval and
batches larger than anything tracked: nothing leaves before the exit flush). Then:

- with a healthy destination, every event arrived exactly once at the fake, by dedupe id;
- with a failing one, what could not be delivered within the shutdown budget is counted: each
  process's exit log line (tagged with its pid by the application's log handler) covers every
  event that process tracked and that did not arrive;
- the server's output holds no traceback and no warning.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import http.client
import json
import os
import re
import signal
import socket
import sys
import textwrap
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from tracking_core.receivers import ReceivedRequest, Reply, Responder

from ..harness import (
    TAG,
    FailingAtRandom,
    Served,
    Started,
    assert_exactly_once,
    environment,
    served_fakes,
    tally,
)
from .conftest import ReliabilityReport, slow_responder

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="POSIX signals"),
]

PROVIDERS = ("posthog", "webhook")
#: The exit budget the scenarios use (TRACKING_SHUTDOWN_TIMEOUT).
BUDGET = 3.0
#: Events each request tracks.
PER_REQUEST = 95
#: How late the fakes answer, so that requests are still in flight at the signal.
ANSWER_DELAY = 0.1
#: Start-up, requests and exit on a busy 2-core machine, on top of the budget.
MARGIN = 40.0
#: How long one request may take: a worker that hangs fails the test with this (gunicorn's
#: own worker timeout is 30 s).
REQUEST_TIMEOUT = 20.0

#: What the destinations do in a scenario.
HEALTHY = "healthy"
FLAKY = "503 for 30 % of requests, at random"
DOWN = "503 for every request"
#: The first request is refused for a while (the retry is held), then every one is accepted.
FIRST_HELD = "the first request 503 with Retry-After: 3, then healthy"

APP = """
import json, logging, os, sys, urllib.parse
import tracking_core as tc

# The library's lines carry the pid of the process that wrote them (the test accounts for each
# process's exit line); nothing else about logging is set up.
_handler = logging.StreamHandler(sys.stderr)
_handler.setFormatter(logging.Formatter("[tracking %(process)d] %(levelname)s %(message)s"))
_logger = logging.getLogger("tracking_core")
_logger.addHandler(_handler)
_logger.propagate = False

if os.environ.get("APP_TRACKS_AT_IMPORT"):
    # Tracking used where the application is imported: with --preload, gunicorn's master.
    tc.track("Server Event", {"tag": "import", "seq": os.getpid(), "pid": os.getpid()},
             user_id="user-import")
    print(f"tracked at import by {os.getpid()}", flush=True)
    if os.environ["APP_TRACKS_AT_IMPORT"] == "held":
        # Go on once the first attempt has failed: its retry is held when the master forks.
        import time
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if any(stats.failed for stats in tc.tracking_stats().values()):
                break
            time.sleep(0.02)


def _track(query):
    params = dict(urllib.parse.parse_qsl(query))
    count, tag = int(params.get("n", "0")), params.get("tag", "none")
    pid = os.getpid()
    for seq in range(count):
        tc.track("Server Event", {"tag": tag, "seq": seq, "pid": pid}, user_id=f"user-{seq % 7}")
    return json.dumps({"tracked": count, "pid": pid}).encode()


async def asgi(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = _track(scope.get("query_string", b"").decode())
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


def wsgi(environ, start_response):
    body = _track(environ.get("QUERY_STRING", ""))
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body]
"""

SCRIPT = """
import os, sys, time
sys.path.insert(0, os.getcwd())
from app import _track
print(_track("n=300&tag=script").decode(), flush=True)
print("ready", flush=True)
time.sleep(120)
"""


# -- network helpers --------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get(port: int, path: str, timeout: float = REQUEST_TIMEOUT) -> bytes:
    """GET `path`; the body of a 200 answer, else AssertionError (a timeout included).

    The connection is not kept alive: a kept-alive connection that the client closes is an
    event for the server's main loop, and gunicorn's gthread worker can deadlock in its own
    SIGQUIT handler when that signal lands while its loop hands such an event to its thread
    pool (docs/environments/gunicorn.md)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    began = time.monotonic()
    try:
        connection.request("GET", path, headers={"Connection": "close"})
        response = connection.getresponse()
        body = response.read()
    except OSError as exc:  # a timeout included: the worker hung
        took = time.monotonic() - began
        raise AssertionError(f"GET {path}: no answer after {took:.1f}s ({exc!r})") from exc
    finally:
        connection.close()
    if response.status != 200:
        raise AssertionError(f"GET {path}: HTTP {response.status}: {body[:200]!r}")
    return body


def listening(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
        return True
    return False


# -- destinations -----------------------------------------------------------------------------


def _dead(request: ReceivedRequest) -> Reply:
    return Reply(503, {"error": "down for maintenance"})


def _first_held(fake: Responder) -> Responder:
    """`fake`, but the first request is answered 503 with ``Retry-After: 3``."""
    first = threading.Event()

    def respond(request: ReceivedRequest) -> Reply:
        if not first.is_set():
            first.set()
            return Reply(503, {"error": "busy"}, headers={"Retry-After": "3"})
        return fake(request)

    return respond


def responder_for(served: Served, destination: str, seed: int = 13) -> Responder:
    """What `served`'s server answers with when the destination is `destination`, each answer
    `ANSWER_DELAY` late."""
    if destination == HEALTHY:
        inner: Responder = served.fake
    elif destination == FLAKY:
        inner = FailingAtRandom(served.fake, 0.3, seed)
    elif destination == DOWN:
        inner = _dead
    elif destination == FIRST_HELD:
        inner = _first_held(served.fake)
    else:  # pragma: no cover
        raise ValueError(destination)
    return slow_responder(inner, ANSWER_DELAY)


@contextlib.contextmanager
def answering(served: Served, destination: str) -> Iterator[None]:
    """`served` answers as `destination` says (see `responder_for`) inside the block."""
    saved = served.server.responder
    served.server.responder = responder_for(served, destination)
    try:
        yield
    finally:
        served.server.responder = saved


# -- the process's output ---------------------------------------------------------------------

EXIT_LINE = re.compile(
    r"(?P<name>[a-z0-9_]+): (?P<accepted>\d+) accepted, (?P<delivered>\d+) delivered, "
    r"(?P<dropped>\d+) dropped(?: \((?P<reasons>[^)]*)\))?, (?P<in_flight>\d+) in flight"
)
_FIGURES = ("accepted", "delivered", "dropped", "in_flight")
_PID = re.compile(r"\[tracking (?P<pid>\d+)\]")


def exit_figures(output: str, provider: str) -> dict[str, int]:
    """The exit log's figures for `provider`, summed over every process that logged one."""
    totals = collections.Counter[str]()
    for figures in exit_figures_by_pid(output, provider).values():
        totals.update(figures)
    return dict(totals)


def exit_figures_by_pid(output: str, provider: str) -> dict[int, dict[str, int]]:
    """The exit log's figures for `provider`, by the pid of the process that logged them (0
    when the line carries none); several lines of one process are summed."""
    found: dict[int, collections.Counter[str]] = {}
    for line in output.splitlines():
        if "tracking: shutdown" not in line:
            continue
        tagged = _PID.search(line)
        pid = int(tagged["pid"]) if tagged else 0
        for match in EXIT_LINE.finditer(line):
            if match["name"] == provider:
                found.setdefault(pid, collections.Counter()).update(
                    {key: int(match[key]) for key in _FIGURES}
                )
    return {pid: dict(figures) for pid, figures in found.items()}


#: What a server's output may not hold: a traceback, a warning of Python's or a library's
#: (``...Warning``), a warning or error line of gunicorn's own.
_NOT_CLEAN = re.compile(r"Traceback|Warning|\] \[(?:WARNING|ERROR|CRITICAL)\]")


def assert_clean(output: str) -> None:
    """No traceback, no warning, no error line of the server's in `output`."""
    bad = [line for line in output.splitlines() if _NOT_CLEAN.search(line)]
    assert not bad, "\n".join(bad[:10]) + f"\n--- whole output:\n{output}"


# -- a server run -----------------------------------------------------------------------------


@dataclasses.dataclass
class Answer:
    """One request's answer: the events its handler tracked, and in which process."""

    tag: str
    pid: int
    tracked: int


class ServerRun:
    """A server started in `cwd` (``app.py`` written there) with `env`, driven by requests.

    Use as a context manager (the process group is killed if still running at the end).
    """

    def __init__(self, command: Sequence[str], cwd: Path, env: dict[str, str | None]) -> None:
        (cwd / "app.py").write_text(textwrap.dedent(APP), encoding="utf-8")
        (cwd / "script.py").write_text(textwrap.dedent(SCRIPT), encoding="utf-8")
        self.started = Started(command, cwd=cwd, env=env)
        self.answers: list[Answer] = []
        self.returncode: int | None = None
        self.took = 0.0

    def __enter__(self) -> ServerRun:
        return self

    def __exit__(self, *exc: object) -> None:
        self.started.__exit__(*exc)

    @property
    def output(self) -> str:
        return self.started.output

    def wait_listening(self, port: int, timeout: float = 60.0) -> None:
        self.started.wait(lambda: listening(port), timeout, f"listening on port {port}")

    def request(self, port: int, tag: str, count: int = PER_REQUEST) -> Answer:
        """One request tracking `count` events tagged `tag`."""
        answer = json.loads(get(port, f"/?n={count}&tag={tag}"))
        result = Answer(tag, int(answer["pid"]), int(answer["tracked"]))
        self.answers.append(result)
        return result

    def stop(self, how: signal.Signals) -> None:
        """Send `how` and wait for the exit (at most the budget plus a margin)."""
        self.returncode, self.took = self.started.stop(how, BUDGET + MARGIN)

    def tracked_at_import(self) -> list[int]:
        """The pids of the processes that tracked an event when importing the application."""
        prefix = "tracked at import by "
        return [
            int(line[len(prefix) :]) for line in self.output.splitlines() if line.startswith(prefix)
        ]


def server_environment(
    served: Served, app_dir: Path, **variables: str | None
) -> dict[str, str | None]:
    """The variables for a run against `served`: nothing leaves before the exit flush (a 60 s
    interval, batches of 1,000), the exit budget is `BUDGET`, quick retries."""
    return environment(
        [served],
        {
            "TRACKING_FLUSH_INTERVAL": "60",
            "TRACKING_BATCH_SIZE": "1000",
            "TRACKING_SHUTDOWN_TIMEOUT": str(BUDGET),
        },
        TRACKING_RETRY_BACKOFF="0.05",
        TRACKING_RETRY_BACKOFF_MAX="0.2",
        PYTHONPATH=os.pathsep.join(filter(None, [str(app_dir), os.environ.get("PYTHONPATH")])),
        PYTHONUNBUFFERED="1",
        **variables,
    )


@dataclasses.dataclass(frozen=True)
class Accounting:
    """What became of the events a run tracked, at one destination.

    Attributes:
        tracked: events tracked (by the requests' handlers, and at import).
        delivered: distinct tracked events the fake accepted (by dedupe id).
        counted: tracked events that did not arrive and that the exit log of the process that
            tracked them counts (as dropped, or in flight with an unknown outcome).
        uncovered: by pid, events that neither arrived nor were counted (must be empty).
    """

    tracked: int
    delivered: int
    counted: int
    uncovered: dict[int, int]

    @property
    def lost(self) -> int:
        return self.tracked - self.delivered - self.counted


def account(run: ServerRun, served: Served, *, healthy: bool) -> Accounting:
    """Check what `served`'s fake accepted against what `run` tracked and what each process's
    exit line counted; returns the figures. With a `healthy` destination everything must have
    arrived, else nothing but what the exit lines count may be missing."""
    expected: dict[tuple[str, int], int] = {}
    for answer in run.answers:
        expected.update({(answer.tag, seq): answer.pid for seq in range(answer.tracked)})
    expected.update({("import", pid): pid for pid in run.tracked_at_import()})
    result = tally(served, expected, key=TAG)
    assert not result.unexpected, sorted(map(str, result.unexpected))[:5]
    assert result.repeats == 0, f"{result.repeats} events arrived more than once"
    assert len(set(result.ids)) == len(result.ids), "an event id arrived twice"
    assert not result.problems, result.problems[:5]
    arrived = set(result.arrived)
    tracked_by = collections.Counter(expected.values())
    missing_by = collections.Counter(pid for key, pid in expected.items() if key not in arrived)
    figures = exit_figures_by_pid(run.output, served.provider)
    if healthy:
        assert not missing_by, f"not delivered, by pid: {dict(missing_by)}\n{run.output}"
        assert not figures, f"exit lines on a healthy destination: {figures}\n{run.output}"
    counted = 0
    uncovered: dict[int, int] = {}
    for pid, missing in missing_by.items():
        logged = figures.get(pid)
        if logged is None:
            uncovered[pid] = missing
            continue
        # The process's own figures: what it accepted is what it tracked.
        assert logged["accepted"] == tracked_by[pid], (pid, logged, tracked_by[pid])
        covered = min(missing, logged["dropped"] + logged["in_flight"])
        counted += covered
        if covered < missing:
            uncovered[pid] = missing - covered
    assert not uncovered, f"neither delivered nor counted, by pid: {uncovered}\n{run.output}"
    return Accounting(len(expected), result.delivered, counted, uncovered)


# -- plain scripts ------------------------------------------------------------------------------


@pytest.fixture
def posthog_and_webhook() -> Iterator[dict[str, Served]]:
    with served_fakes(list(PROVIDERS)) as found:
        yield found


def _run_script(
    how: signal.Signals, destinations: dict[str, Served], tmp_path: Path, dead: str = ""
) -> ServerRun:
    env = environment(
        [destinations[name] for name in PROVIDERS],
        {"TRACKING_FLUSH_INTERVAL": "60", "TRACKING_SHUTDOWN_TIMEOUT": str(BUDGET)},
        TRACKING_RETRY_BACKOFF="0.05",
        TRACKING_RETRY_BACKOFF_MAX="0.2",
        PYTHONUNBUFFERED="1",
    )
    with contextlib.ExitStack() as stack:
        for name in PROVIDERS:
            destination = DOWN if name == dead else HEALTHY
            stack.enter_context(answering(destinations[name], destination))
        run = stack.enter_context(ServerRun([sys.executable, "script.py"], tmp_path, env))
        run.started.wait_for_line("ready", 30)
        run.answers.append(Answer("script", 0, 300))
        run.stop(how)
    output = run.output
    if how == signal.SIGINT:
        # Python's default: KeyboardInterrupt, with its traceback, then the exit flush.
        assert "KeyboardInterrupt" in output, output
        output = output[: output.find("Traceback")]
    assert_clean(output)
    assert run.took < BUDGET + MARGIN
    return run


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGINT], ids=["term", "int"])
def test_a_stopped_script_delivers_what_was_pending(
    how: signal.Signals,
    posthog_and_webhook: dict[str, Served],
    tmp_path: Path,
    reliability_report: ReliabilityReport,
) -> None:
    run = _run_script(how, posthog_and_webhook, tmp_path)
    wanted = {("script", seq) for seq in range(300)}
    for name in PROVIDERS:
        assert_exactly_once(tally(posthog_and_webhook[name], wanted, key=TAG))
    if how == signal.SIGTERM:
        # The default action is kept: the script still ends as killed by SIGTERM.
        assert run.returncode == -signal.SIGTERM, run.returncode
    reliability_report.add(
        f"stop: plain script, {how.name}, healthy destinations",
        f"300 events x {len(PROVIDERS)} providers pending at the signal "
        f"(TRACKING_FLUSH_INTERVAL=60)",
        f"every event delivered once at each fake; exit {run.took:.1f}s after the signal "
        f"(status {run.returncode})",
        0,
    )


def test_what_a_dead_destination_could_not_take_is_counted_and_logged_at_exit(
    posthog_and_webhook: dict[str, Served],
    tmp_path: Path,
    reliability_report: ReliabilityReport,
) -> None:
    run = _run_script(signal.SIGTERM, posthog_and_webhook, tmp_path, dead="posthog")
    wanted = {("script", seq) for seq in range(300)}
    # The healthy provider got everything.
    assert_exactly_once(tally(posthog_and_webhook["webhook"], wanted, key=TAG))
    # The dead one: every event the process accepted is in the exit log, exactly.
    figures = exit_figures(run.output, "posthog")
    assert figures, f"no exit log line for posthog:\n{run.output}"
    assert figures["accepted"] == 300, figures
    assert figures["delivered"] == 0, figures
    assert figures["dropped"] + figures["in_flight"] == 300, figures
    reliability_report.add(
        "stop: plain script, SIGTERM, PostHog answering 503 to everything",
        f"300 events x {len(PROVIDERS)} providers pending at the signal; "
        f"shutdown budget {BUDGET:g} s",
        f"webhook: every event delivered once; posthog: the exit log accounts for all 300 "
        f"({figures['dropped']} dropped, {figures['in_flight']} in flight); "
        f"exit {run.took:.1f}s after the signal",
        0,
    )
