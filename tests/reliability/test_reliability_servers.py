"""Stopping real servers and scripts the ordinary ways, with events still pending.

Each scenario runs a real server (uvicorn, gunicorn with sync or gevent workers) or a plain
script in a subprocess, with two built-in providers pointed at their strict fakes (served on
loopback by this pytest process), makes requests whose handlers call `track()`, and then stops
it with a signal while the events are still queued (a 60 s flush interval). Then:

- with healthy destinations, every event arrived exactly once at each fake;
- with one destination answering 503 to everything, what could not be delivered within the
  shutdown budget is counted and logged: the exit log's figures for that provider account for
  every event the process tracked (delivered + dropped + in flight == accepted), and the
  healthy provider still got everything.
"""

from __future__ import annotations

import collections
import contextlib
import http.client
import json
import os
import re
import signal
import socket
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tracking_core.receivers import ReceivedRequest, Reply

from ..harness import TAG, Served, Started, assert_exactly_once, environment, tally
from .conftest import ReliabilityReport, slow_responder

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="POSIX signals"),
]

PROVIDERS = ("posthog", "webhook")
#: The exit budget the scenarios use (TRACKING_SHUTDOWN_TIMEOUT).
BUDGET = 3.0
#: Events each request tracks: not a multiple of the batch size (50), so some always wait.
PER_REQUEST = 95
#: How late the fakes answer, so that batches are still queued or in flight at the signal.
ANSWER_DELAY = 0.1
#: Start-up, requests and exit on a busy 2-core machine, on top of the budget.
MARGIN = 40.0

APP = """
import json, os, urllib.parse
import tracking_core as tc


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


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(port: int, path: str, timeout: float = 10.0) -> bytes:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        body = response.read()
        if response.status != 200:
            raise AssertionError(f"GET {path}: HTTP {response.status}: {body[:200]!r}")
        return body
    finally:
        connection.close()


def _listening(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
        return True
    return False


def _environment(destinations: dict[str, Served], app_dir: Path) -> dict[str, str | None]:
    return environment(
        [destinations[name] for name in PROVIDERS],
        {"TRACKING_FLUSH_INTERVAL": "60", "TRACKING_SHUTDOWN_TIMEOUT": str(BUDGET)},
        TRACKING_RETRY_BACKOFF="0.05",
        TRACKING_RETRY_BACKOFF_MAX="0.2",
        PYTHONPATH=os.pathsep.join(filter(None, [str(app_dir), os.environ.get("PYTHONPATH")])),
        PYTHONUNBUFFERED="1",
    )


class Server:
    """One server or script run: its command, how it is stopped, and what it printed."""

    def __init__(self, label: str, command: list[str], stop: signal.Signals) -> None:
        self.label = label
        self.command = command
        self.stop = stop


def _servers(port: int) -> dict[str, Server]:
    python = sys.executable
    uvicorn = [python, "-m", "uvicorn", "app:asgi", "--port", str(port), "--no-access-log"]
    gunicorn = [python, "-m", "gunicorn", "-b", f"127.0.0.1:{port}", "--graceful-timeout", "20"]
    return {
        "uvicorn-1-term": Server("uvicorn, 1 worker, SIGTERM", uvicorn, signal.SIGTERM),
        "uvicorn-2-term": Server(
            "uvicorn --workers 2, SIGTERM", [*uvicorn, "--workers", "2"], signal.SIGTERM
        ),
        "uvicorn-1-int": Server("uvicorn, 1 worker, SIGINT", uvicorn, signal.SIGINT),
        "gunicorn-sync-1-term": Server(
            "gunicorn sync, 1 worker, SIGTERM", [*gunicorn, "-w", "1", "app:wsgi"], signal.SIGTERM
        ),
        "gunicorn-sync-2-term": Server(
            "gunicorn sync, 2 workers, SIGTERM",
            [*gunicorn, "-w", "2", "app:wsgi"],
            signal.SIGTERM,
        ),
        "gunicorn-sync-preload-2-term": Server(
            "gunicorn --preload, sync, 2 workers, SIGTERM",
            [*gunicorn, "--preload", "-w", "2", "app:wsgi"],
            signal.SIGTERM,
        ),
        "gunicorn-gthread-2-term": Server(
            "gunicorn -k gthread, 2 workers x 4 threads, SIGTERM",
            [*gunicorn, "-k", "gthread", "--threads", "4", "-w", "2", "app:wsgi"],
            signal.SIGTERM,
        ),
        "gunicorn-gevent-2-term": Server(
            "gunicorn -k gevent, 2 workers, SIGTERM",
            [*gunicorn, "-k", "gevent", "-w", "2", "app:wsgi"],
            signal.SIGTERM,
        ),
        "gunicorn-gevent-preload-2-term": Server(
            "gunicorn --preload -k gevent, 2 workers, SIGTERM",
            [*gunicorn, "--preload", "-k", "gevent", "-w", "2", "app:wsgi"],
            signal.SIGTERM,
        ),
        "script-term": Server("plain script, SIGTERM", [python, "script.py"], signal.SIGTERM),
        "script-int": Server("plain script, SIGINT", [python, "script.py"], signal.SIGINT),
    }


class Run:
    """What one scenario produced."""

    def __init__(self, tracked: int, returncode: int, output: str, took: float) -> None:
        self.tracked = tracked
        self.returncode = returncode
        self.output = output
        self.took = took


def _run(
    server: Server, port: int, tmp_path: Path, env: dict[str, str | None], requests: int
) -> Run:
    (tmp_path / "app.py").write_text(APP)
    (tmp_path / "script.py").write_text(textwrap.dedent(SCRIPT))
    tracked = 0
    with Started(server.command, cwd=tmp_path, env=env) as started:
        if server.command[-1] == "script.py":
            started.wait_for_line("ready", 30)
            tracked = 300
        else:
            started.wait(lambda: _listening(port), 30, f"listening on port {port}")
            for number in range(requests):
                answer = json.loads(_get(port, f"/?n={PER_REQUEST}&tag=r{number}"))
                tracked += int(answer["tracked"])
        returncode, took = started.stop(server.stop, BUDGET + MARGIN)
    return Run(tracked, returncode, started.output, took)


def _expected(run: Run, requests: int) -> set[tuple[str, int]]:
    if run.tracked == 300 and requests == 0:
        return {("script", seq) for seq in range(300)}
    return {(f"r{n}", seq) for n in range(requests) for seq in range(PER_REQUEST)}


def _delivered_once(destination: Served, run: Run, wanted: set[tuple[str, int]]) -> None:
    assert destination.fake.events, f"{destination.provider}: nothing arrived\n{run.output}"
    assert_exactly_once(tally(destination, wanted, key=TAG))


EXIT_LINE = re.compile(
    r"(?P<name>[a-z]+): (?P<accepted>\d+) accepted, (?P<delivered>\d+) delivered, "
    r"(?P<dropped>\d+) dropped(?: \((?P<reasons>[^)]*)\))?, (?P<in_flight>\d+) in flight"
)


def exit_figures(output: str, provider: str) -> dict[str, int]:
    """The exit log's figures for `provider`, summed over every process that logged one."""
    totals = collections.Counter[str]()
    for line in output.splitlines():
        if "tracking: shutdown" not in line:
            continue
        for match in EXIT_LINE.finditer(line):
            if match["name"] == provider:
                for key in ("accepted", "delivered", "dropped", "in_flight"):
                    totals[key] += int(match[key])
    return dict(totals)


def _assert_no_traceback(run: Run, server: Server) -> None:
    """No traceback or warning in the server's output, except the KeyboardInterrupt a plain
    script stopped by SIGINT prints itself (Python's default)."""
    output = run.output
    if server.command[-1] == "script.py" and server.stop == signal.SIGINT:
        assert output.rstrip().endswith("KeyboardInterrupt"), output
        output = output[: output.find("Traceback")]
    assert "Traceback" not in output, output
    assert "Warning" not in output, output


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    return tmp_path


def _requests_for(key: str) -> int:
    return 0 if key.startswith("script") else 6


def _dead(request: ReceivedRequest) -> Reply:
    return Reply(503, {"error": "down for maintenance"})


@contextlib.contextmanager
def _slow_answers(destinations: dict[str, Served], *, dead: str = "") -> Iterator[None]:
    """Each provider's fake answers `ANSWER_DELAY` late; the `dead` one answers 503."""
    saved = {name: destinations[name].server.responder for name in PROVIDERS}
    for name in PROVIDERS:
        fake = _dead if name == dead else destinations[name].fake
        destinations[name].server.responder = slow_responder(fake, ANSWER_DELAY)
    try:
        yield
    finally:
        for name, responder in saved.items():
            destinations[name].server.responder = responder


def _stopped(
    key: str, destinations: dict[str, Served], app_dir: Path, dead: str = ""
) -> tuple[Server, Run, set[tuple[str, int]]]:
    """Run scenario `key` (the `dead` provider answering 503) to its exit, which must be
    clean and within the budget; the server, the run and the events it tracked."""
    port = _free_port()
    server = _servers(port)[key]
    requests = _requests_for(key)
    with _slow_answers(destinations, dead=dead):
        run = _run(server, port, app_dir, _environment(destinations, app_dir), requests)
    _assert_no_traceback(run, server)
    assert run.took < BUDGET + MARGIN
    return server, run, _expected(run, requests)


@pytest.mark.parametrize("key", list(_servers(0)))
def test_a_stopped_server_delivers_what_was_pending(
    key: str,
    destinations: dict[str, Served],
    app_dir: Path,
    reliability_report: ReliabilityReport,
) -> None:
    server, run, wanted = _stopped(key, destinations, app_dir)
    for name in PROVIDERS:
        _delivered_once(destinations[name], run, wanted)
    if server.command[-1] == "script.py" and server.stop == signal.SIGTERM:
        # The default action is kept: the script still ends as killed by SIGTERM.
        assert run.returncode == -signal.SIGTERM, run.returncode
    reliability_report.add(
        f"stop: {server.label}, healthy destinations",
        f"{run.tracked} events x {len(PROVIDERS)} providers pending at the signal "
        f"(TRACKING_FLUSH_INTERVAL=60)",
        f"every event delivered once at each fake; exit {run.took:.1f}s after the signal "
        f"(status {run.returncode})",
        0,
    )


@pytest.mark.parametrize("key", ["uvicorn-2-term", "gunicorn-sync-2-term", "script-term"])
def test_what_a_dead_destination_could_not_take_is_counted_and_logged_at_exit(
    key: str,
    destinations: dict[str, Served],
    app_dir: Path,
    reliability_report: ReliabilityReport,
) -> None:
    server, run, wanted = _stopped(key, destinations, app_dir, dead="posthog")
    # The healthy provider got everything.
    _delivered_once(destinations["webhook"], run, wanted)
    # The dead one: every event the processes accepted is in the exit log, exactly.
    figures = exit_figures(run.output, "posthog")
    assert figures, f"no exit log line for posthog:\n{run.output}"
    assert figures["accepted"] == run.tracked, figures
    assert figures["delivered"] == 0, figures
    assert figures["dropped"] + figures["in_flight"] == run.tracked, figures
    reliability_report.add(
        f"stop: {server.label}, PostHog answering 503 to everything",
        f"{run.tracked} events x {len(PROVIDERS)} providers pending at the signal; "
        f"shutdown budget {BUDGET:g} s",
        f"webhook: every event delivered once; posthog: the exit log accounts for all "
        f"{run.tracked} ({figures['dropped']} dropped, {figures['in_flight']} in flight); "
        f"exit {run.took:.1f}s after the signal",
        0,
    )
