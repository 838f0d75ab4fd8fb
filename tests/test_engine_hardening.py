"""What the first outside review broke in the engine: dead workers, leaked threads, fork during
discovery, the exit log, stats before discovery (issue #10, items 7-11)."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

import tracking_core as tc
from tracking_core.http import HttpProvider, HttpRequest, WireItem
from tracking_core.receivers import LoopbackReceiver, ReceivedRequest, Reply
from tracking_core.testing import RecordingProvider, configure_tracking, reset_tracking

from .harness import Started, environment, run_python

BASE_EXCEPTIONS: list[type[BaseException]] = [
    SystemExit,
    GeneratorExit,
    KeyboardInterrupt,
    asyncio.CancelledError,
]


@pytest.fixture(autouse=True)
def _clean(clean_tracking: None) -> Iterator[None]:
    yield


class Raising(RecordingProvider):
    """Raises `error` for the first event, then records like a `RecordingProvider`."""

    def __init__(self, error: type[BaseException], *, in_async: bool = False) -> None:
        super().__init__("raising")
        self.error = error
        self.raised = False
        if in_async:
            self.track = self._track_async  # type: ignore[method-assign,assignment]

    def track(self, event: tc.TrackingEvent) -> None:
        if not self.raised:
            self.raised = True
            raise self.error("from the provider")
        super().track(event)

    async def _track_async(self, event: tc.TrackingEvent) -> None:
        if not self.raised:
            self.raised = True
            raise self.error("from the provider")
        super().track(event)


@pytest.mark.parametrize("in_async", [False, True], ids=["plain", "async"])
@pytest.mark.parametrize("error", BASE_EXCEPTIONS, ids=lambda e: e.__name__)
def test_a_plain_provider_raising_a_base_exception_does_not_kill_its_lane(
    error: type[BaseException], in_async: bool
) -> None:
    provider = Raising(error, in_async=in_async)
    tc.register_tracking_provider(provider)
    for i in range(5):
        tc.track("Event", {"i": i})
    began = time.monotonic()
    assert tc.flush_tracking(10)
    assert time.monotonic() - began < 5  # not the full timeout: the worker is alive
    stats = tc.tracking_stats()["raising"]
    assert stats.dropped == {"provider_error": 1}
    assert stats.delivered == 4
    assert stats.last_error is None  # the latest call succeeded
    tc.track("After")
    assert tc.flush_tracking(10)
    assert provider.names()[-1] == "After"


class _Batcher(HttpProvider):
    """A batching provider whose wire mapping raises `error` for the event named "bad"."""

    name = "batcher"

    def __init__(self, url: str, error: type[BaseException], limit_error: bool = False) -> None:
        self.url = url
        self.error = error
        self.limit_error = limit_error

    def batch_limit(self) -> int:
        if self.limit_error:
            raise self.error("batch_limit")
        return 50

    def encode(self, item: tc.TrackingEvent | tc.TrackingIdentify) -> WireItem:
        if isinstance(item, tc.TrackingEvent) and item.name == "bad":
            raise self.error("encode")
        return WireItem({"id": item.event_id})

    def build_request(self, route: str, items: Sequence[bytes], batch_id: str) -> HttpRequest:
        return HttpRequest(self.url, b"[" + b",".join(items) + b"]")


@pytest.mark.parametrize("error", BASE_EXCEPTIONS, ids=lambda e: e.__name__)
def test_a_batching_provider_raising_a_base_exception_does_not_kill_its_lane(
    error: type[BaseException], loopback_receiver: LoopbackReceiver
) -> None:
    tc.register_tracking_provider(_Batcher(loopback_receiver.url, error))
    tc.track("good")
    tc.track("bad")
    tc.track("good")
    assert tc.flush_tracking(10)
    first = tc.tracking_stats()["batcher"]
    # The batch the provider blew up on is dropped, and counted exactly once.
    assert first.accepted == first.delivered + sum(first.dropped.values()) == 3
    assert first.dropped.get("provider_error", 0) >= 1
    tc.track("good")
    assert tc.flush_tracking(10)
    assert tc.tracking_stats()["batcher"].delivered == first.delivered + 1


@pytest.mark.parametrize("error", [ValueError, SystemExit], ids=lambda e: e.__name__)
def test_a_raising_batch_limit_falls_back_to_the_batch_size(
    error: type[BaseException], loopback_receiver: LoopbackReceiver
) -> None:
    tc.register_tracking_provider(_Batcher(loopback_receiver.url, error, limit_error=True))
    for _ in range(3):
        tc.track("good")
    began = time.monotonic()
    assert tc.flush_tracking(10)
    assert time.monotonic() - began < 5
    assert tc.tracking_stats()["batcher"].delivered == 3


def _tracking_threads(prefix: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(prefix) and t.is_alive()]


def test_register_unregister_churn_leaks_no_worker() -> None:
    # Events accepted before an unregister but dispatched after it used to land behind the
    # retired lane's stop marker, and its worker then waited for more forever (113 of 300
    # workers still alive 2 s after shutdown_tracking() before the fix).
    stop = threading.Event()

    def produce() -> None:
        while not stop.is_set():
            for _ in range(20):
                tc.track("churn")
            time.sleep(0.0002)

    producers = [threading.Thread(target=produce) for _ in range(2)]
    for producer in producers:
        producer.start()
    try:
        for _ in range(300):
            tc.register_tracking_provider(RecordingProvider("churn"))
            tc.unregister_tracking_provider("churn")
    finally:
        stop.set()
        for producer in producers:
            producer.join()
    tc.register_tracking_provider(RecordingProvider("churn"))
    tc.track("last")
    assert tc.shutdown_tracking(5)
    deadline = time.monotonic() + 5
    while _tracking_threads("tracking-churn") and time.monotonic() < deadline:
        time.sleep(0.02)
    assert _tracking_threads("tracking-churn") == []
    stats = tc.tracking_stats()["churn"]
    assert stats.accepted == stats.delivered + sum(stats.dropped.values())
    assert stats.queued == 0


def test_a_replaced_provider_still_delivers_what_it_was_handed_then_its_worker_ends() -> None:
    old = RecordingProvider("same")
    tc.register_tracking_provider(old)
    for i in range(20):
        tc.track("before", {"i": i})
    assert tc.flush_tracking(5)
    tc.register_tracking_provider(RecordingProvider("same"))
    tc.track("after")
    assert tc.flush_tracking(5)
    assert old.names() == ["before"] * 20
    deadline = time.monotonic() + 5
    while len(_tracking_threads("tracking-same")) > 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(_tracking_threads("tracking-same")) == 1


def test_stats_list_the_discovered_providers_right_after_the_first_track(
    monkeypatch: pytest.MonkeyPatch, loopback_receiver: LoopbackReceiver
) -> None:
    configure_tracking(
        monkeypatch,
        {
            "TRACKING_WEBHOOK_URL": loopback_receiver.url + "/hook",
            "TRACKING_WEBHOOK_SECRET": None,
            "TRACKING_WEBHOOK_AUTH": None,
            "TRACKING_PROVIDERS": "webhook",
        },
        discover=True,
    )
    tc.track("first")
    stats = tc.tracking_stats()  # discovery is still running here without the wait
    assert list(stats) == ["webhook"]
    assert stats["webhook"].accepted in (0, 1)
    assert tc.flush_tracking(10)
    assert tc.tracking_stats()["webhook"].delivered == 1
    reset_tracking()


# -- in subprocesses --------------------------------------------------------------------------


def _run(script: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return run_python(script, cwd=tmp_path, env=environment((), {}, **env))


#: A script's start: a batching provider posting each batch's event ids to `url`.
SENDER = """
import sys, time
import tracking_core as tc
from tracking_core.http import HttpProvider, HttpRequest, WireItem

class Sender(HttpProvider):
    name = "sender"
    max_events = 50  # a request carries 50 events at most, however many wait
    def encode(self, item):
        return WireItem({{"id": item.event_id}})
    def build_request(self, route, items, batch_id):
        return HttpRequest({url!r}, b"[" + b",".join(items) + b"]")

tc.register_tracking_provider(Sender())
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.parametrize("delay", [0.0, 0.002, 0.005, 0.01, 0.02, 0.03])
def test_forking_right_after_the_first_track_prints_no_lock_traceback(
    tmp_path: Path, delay: float
) -> None:
    # Discovery imports the provider packages (and with them tracking_core.http) on the
    # dispatcher thread while the main thread forks: at these delays the fork lands during
    # discovery. Before the fix: two "release unlocked lock" tracebacks in every run.
    result = _run(
        f"""
        import os, time
        import tracking_core as tc
        tc.track("first")
        time.sleep({delay})
        pid = os.fork()
        if pid == 0:
            tc.track("child")
            tc.flush_tracking(2)
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        print("child", os.waitstatus_to_exitcode(status))
        """,
        tmp_path,
        TRACKING_WEBHOOK_URL="http://127.0.0.1:9/hook",
        POSTHOG_API_KEY="phc_test",
        POSTHOG_HOST="http://127.0.0.1:9",
        TRACKING_SHUTDOWN_TIMEOUT="0.2",
        TRACKING_MAX_ATTEMPTS="1",
    )
    assert "Traceback" not in result.stderr, result.stderr
    assert "release unlocked lock" not in result.stderr
    assert result.stdout.split() == ["child", "0"], result.stdout


def _in_flight_server() -> LoopbackReceiver:
    """A receiver that takes each request and answers it only after 10 s."""

    def slow(request: ReceivedRequest) -> Reply:
        return Reply(200, b"ok", delay=10.0)

    return LoopbackReceiver(slow)


def test_the_exit_log_says_exactly_what_arrived_what_was_dropped_and_what_is_in_flight(
    tmp_path: Path,
) -> None:
    # One batch of 50 is in the air when the 1 s budget runs out (the server got it, and
    # would have answered 200 later), 30 more wait behind it. Before the fix, the log called
    # all 80 "not delivered", or "none waiting (a provider is still busy)".
    with _in_flight_server() as server:
        script = (
            SENDER.format(url=server.url + "/in") + "for i in range(80):\n    tc.track('Event')\n"
        )
        result = _run(script, tmp_path, TRACKING_SHUTDOWN_TIMEOUT="1", TRACKING_FLUSH_INTERVAL="60")
        arrived = len(server.requests)
    assert result.returncode == 0, result.stderr
    assert arrived == 1  # the batch in flight did reach the destination
    line = next((text for text in result.stderr.splitlines() if "tracking: shutdown" in text), "")
    assert "ran out of its 1.0s budget" in line, result.stderr
    assert (
        "sender: 80 accepted, 0 delivered, 30 dropped (shutdown 30), "
        "50 in flight (outcome unknown)" in line
    ), line
    assert "none waiting" not in result.stderr


@pytest.mark.parametrize(
    ("handle_signals", "delivered"), [(None, 30), ("0", 0)], ids=["default", "handle-signals-off"]
)
def test_sigterm_to_a_plain_script_flushes_then_ends_as_killed_by_sigterm(
    tmp_path: Path, handle_signals: str | None, delivered: int
) -> None:
    # By default tracking-core's handler flushes, then ends the process the way the default
    # action would; with TRACKING_HANDLE_SIGNALS=0 Python's default action ends it at once.
    received: list[str] = []

    def record(request: ReceivedRequest) -> Reply:
        received.extend(re.findall(r'"id":"([^"]+)"', request.body.decode()))
        return Reply(200)

    with LoopbackReceiver(record) as server:
        script = SENDER.format(url=server.url + "/in")
        script += "for i in range(30):\n    tc.track('Event')\nprint('ready', flush=True)\n"
        (tmp_path / "script.py").write_text(script + "time.sleep(60)\n")
        env = environment(
            (), {}, TRACKING_FLUSH_INTERVAL="60", TRACKING_HANDLE_SIGNALS=handle_signals
        )
        with Started([sys.executable, "script.py"], cwd=tmp_path, env=env) as started:
            started.wait_for_line("ready")
            status, _ = started.stop(signal.SIGTERM, 30)
        time.sleep(0.2)
    assert status == -signal.SIGTERM  # the default action, kept
    assert len(received) == len(set(received)) == delivered


def test_lossy_conversions_are_counted_per_provider(loopback_receiver: LoopbackReceiver) -> None:
    class Opaque:
        @property  # type: ignore[misc]
        def __class__(self) -> type:
            raise RuntimeError("no class")

    tc.register_tracking_provider(_Batcher(loopback_receiver.url, ValueError))

    class Converting(RecordingProvider):
        def track(self, event: tc.TrackingEvent) -> None:
            tc.json_safe(event.properties)
            super().track(event)

    tc.register_tracking_provider(Converting("converting"))
    properties: dict[Any, Any] = {1: "one", "1": "uno", "bad": Opaque()}
    tc.track("Event", properties)
    assert tc.flush_tracking(10)
    stats = tc.tracking_stats()
    # The batcher's wire mapping does not convert properties: nothing to count there.
    assert stats["batcher"].conversions == {}
    assert stats["converting"].conversions == {"key_collision": 1, "unconvertible": 1}
