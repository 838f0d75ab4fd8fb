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
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tracking_core.demo import DEMO_KEYS, Destination
from tracking_core.receivers import ReceivedRequest, Reply

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


def _wait_for_port(port: int, process: subprocess.Popen[str], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the server exited early ({process.returncode})")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise AssertionError(f"nothing listens on port {port} after {timeout}s")


def _environment(destinations: dict[str, Destination], app_dir: Path) -> dict[str, str]:
    vendor = ("TRACKING_", "POSTHOG_", "MIXPANEL_", "AMPLITUDE_")
    env = {name: value for name, value in os.environ.items() if not name.startswith(vendor)}
    env.update(DEMO_KEYS)
    env.update(
        TRACKING_PROVIDERS=",".join(PROVIDERS),
        TRACKING_FLUSH_INTERVAL="60",
        TRACKING_SHUTDOWN_TIMEOUT=str(BUDGET),
        TRACKING_RETRY_BACKOFF="0.05",
        TRACKING_RETRY_BACKOFF_MAX="0.2",
        PYTHONPATH=os.pathsep.join(filter(None, [str(app_dir), os.environ.get("PYTHONPATH")])),
        PYTHONUNBUFFERED="1",
    )
    for name in PROVIDERS:
        destination = destinations[name]
        env.update(destination.environment(destination.server.url))
    return env


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


def _run(server: Server, port: int, tmp_path: Path, env: dict[str, str], requests: int) -> Run:
    (tmp_path / "app.py").write_text(APP)
    (tmp_path / "script.py").write_text(textwrap.dedent(SCRIPT))
    log = (tmp_path / "server.log").open("w+")
    process = subprocess.Popen(
        server.command,
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    tracked = 0
    try:
        if server.command[-1] == "script.py":
            deadline = time.monotonic() + 30
            while "ready" not in (tmp_path / "server.log").read_text():
                assert process.poll() is None, (tmp_path / "server.log").read_text()
                assert time.monotonic() < deadline, "the script did not start"
                time.sleep(0.05)
            tracked = 300
        else:
            _wait_for_port(port, process)
            for number in range(requests):
                answer = json.loads(_get(port, f"/?n={PER_REQUEST}&tag=r{number}"))
                tracked += int(answer["tracked"])
        signalled = time.monotonic()
        process.send_signal(server.stop)
        returncode = process.wait(timeout=BUDGET + MARGIN)
        took = time.monotonic() - signalled
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.seek(0)
        output = log.read()
        log.close()
    return Run(tracked, returncode, output, took)


def _arrived(destination: Destination) -> collections.Counter[tuple[str, int]]:
    counts: collections.Counter[tuple[str, int]] = collections.Counter()
    for event in list(destination.fake.events):
        props = event[destination.props_key]
        counts[(str(props["tag"]), int(props["seq"]))] += 1
    return counts


def _expected(run: Run, requests: int) -> collections.Counter[tuple[str, int]]:
    if run.tracked == 300 and requests == 0:
        return collections.Counter(("script", seq) for seq in range(300))
    return collections.Counter(
        (f"r{n}", seq) for n in range(requests) for seq in range(PER_REQUEST)
    )


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
def _slow_answers(destinations: dict[str, Destination], *, dead: str = "") -> Iterator[None]:
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


@pytest.mark.parametrize("key", list(_servers(0)))
def test_a_stopped_server_delivers_what_was_pending(
    key: str,
    destinations: dict[str, Destination],
    app_dir: Path,
    reliability_report: ReliabilityReport,
) -> None:
    port = _free_port()
    server = _servers(port)[key]
    requests = _requests_for(key)
    with _slow_answers(destinations):
        run = _run(server, port, app_dir, _environment(destinations, app_dir), requests)
    _assert_no_traceback(run, server)
    assert run.took < BUDGET + MARGIN
    wanted = _expected(run, requests)
    for name in PROVIDERS:
        assert destinations[name].fake.events, f"{name}: nothing arrived\n{run.output}"
        got = _arrived(destinations[name])
        missing = sorted(set(wanted) - set(got))
        twice = sorted(k for k, count in got.items() if count > 1)
        assert not missing, f"{name}: {len(missing)} of {run.tracked} missing; {run.output}"
        assert not twice, f"{name}: delivered twice: {twice[:5]}"
        assert set(got) == set(wanted)
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
    destinations: dict[str, Destination],
    app_dir: Path,
    reliability_report: ReliabilityReport,
) -> None:
    port = _free_port()
    server = _servers(port)[key]
    requests = _requests_for(key)
    with _slow_answers(destinations, dead="posthog"):
        run = _run(server, port, app_dir, _environment(destinations, app_dir), requests)
    _assert_no_traceback(run, server)
    assert run.took < BUDGET + MARGIN
    # The healthy provider got everything.
    wanted = _expected(run, requests)
    assert set(_arrived(destinations["webhook"])) == set(wanted)
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
