"""Green threads (issue #13): gevent and eventlet, monkey-patched before or after
``import tracking_core``: delivery works, ``flush_tracking(timeout)`` returns within its timeout
without holding up the other green threads, and the exit flush stays within its budget.

Each scenario runs `APP` in a fresh interpreter against PostHog's fake on loopback (healthy,
answering 503 to 30 % of the requests, or accepting requests and never answering). The
application patches, spawns green threads that track, calls ``flush_tracking`` while another
green thread ticks every 10 ms, tracks a few more events and ends (no flush: the exit flush has
them). It prints what the flush returned and how long it took, and, from an exit handler that
runs after tracking-core's, its `tracking_stats()`.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tracking_core.receivers import Reply

from ..harness import (
    TAG,
    FailingAtRandom,
    Served,
    assert_exactly_once,
    environment,
    run_python,
    served_fakes,
    stats_from_json,
    tally,
)
from .conftest import EnvironmentReport

pytestmark = pytest.mark.slow

LIBRARIES = ["gevent", "eventlet"]
ORDERS = ["before", "after"]
DESTINATIONS = ["healthy", "503 for 30 % of requests", "hung (never answers)"]
#: Each library patched before and after the import, against a healthy and a hung
#: destination; the failing one once per library.
CASES = [
    (library, order, destination)
    for library in LIBRARIES
    for order in ORDERS
    for destination in DESTINATIONS
    if destination != DESTINATIONS[1] or order == "after"
]
CASE_IDS = [f"{lib}-patched-{order}-import-{dest.split()[0]}" for lib, order, dest in CASES]
#: Green threads, and events each tracks before the flush; events tracked after it.
THREADS, PER_THREAD, AFTER = 8, 25, 50
#: What ``flush_tracking`` is given: a hung destination holds it this long.
FLUSH_TIMEOUT = {"hung (never answers)": 1.0}
DEFAULT_FLUSH_TIMEOUT = 15.0
#: The exit flush's budget (TRACKING_SHUTDOWN_TIMEOUT).
SHUTDOWN_BUDGET = 1.0
#: Nothing leaves on its own: the flush and the exit flush do the work.
SETTINGS = {
    "TRACKING_FLUSH_INTERVAL": "60",
    "TRACKING_BATCH_SIZE": "1000",
    "TRACKING_SHUTDOWN_TIMEOUT": str(SHUTDOWN_BUDGET),
}
#: How late a bounded wait may return on a busy 2-core machine.
MARGIN = 1.0

APP = """
import atexit, json, sys, time, warnings

LIBRARY, ORDER, FLUSH_TIMEOUT = sys.argv[1], sys.argv[2], float(sys.argv[3])
THREADS, PER_THREAD, AFTER = (int(value) for value in sys.argv[4:7])
# eventlet warns that it is deprecated when imported: its own notice, not this test's subject.
warnings.filterwarnings("ignore", message=r"\\s*Eventlet is deprecated")


def dump_stats():
    import tracking_core
    stats = {
        name: {"accepted": s.accepted, "delivered": s.delivered, "dropped": dict(s.dropped),
               "queued": s.queued}
        for name, s in tracking_core.tracking_stats().items()
    }
    print("stats", json.dumps(stats), "exited-at", time.time(), flush=True)


atexit.register(dump_stats)  # before tracking-core's exit flush: runs after it


def patch():
    if LIBRARY == "gevent":
        from gevent import monkey
        monkey.patch_all()
    else:
        import eventlet
        eventlet.monkey_patch()


if ORDER == "before":
    patch()
import tracking_core as tc
if ORDER == "after":
    patch()

if LIBRARY == "gevent":
    import gevent
    spawn, version = gevent.spawn, gevent.__version__

    def wait_all(threads):
        gevent.joinall(threads)
else:
    import eventlet
    spawn, version = eventlet.spawn, eventlet.__version__

    def wait_all(threads):
        for thread in threads:
            thread.wait()


def track(tag, count):
    for seq in range(count):
        tc.track("Green Event", {"tag": tag, "seq": seq}, user_id=f"user-{tag}")
        time.sleep(0)  # patched: lets the other green threads run


wait_all([spawn(track, f"green{n}", PER_THREAD) for n in range(THREADS)])
ticks = [0]


def tick():
    while True:
        ticks[0] += 1
        time.sleep(0.01)


ticker = spawn(tick)
began = time.monotonic()
flushed = tc.flush_tracking(FLUSH_TIMEOUT)
took = time.monotonic() - began
print("flush", json.dumps({"ok": flushed, "took": took, "ticks": ticks[0], "version": version}))
track("exit", AFTER)  # left for the exit flush
print("exiting-at", time.time(), flush=True)
"""


@pytest.fixture
def posthog() -> Iterator[Served]:
    """PostHog's fake, served on loopback."""
    with served_fakes(["posthog"]) as found:
        yield found["posthog"]


def line_after(output: str, word: str) -> list[str]:
    """The words after `word` on the output line that starts with it."""
    line = next((x for x in output.splitlines() if x.startswith(word + " ")), None)
    assert line is not None, f"no {word!r} line in:\n{output}"
    return line.split()[1:]


@pytest.mark.parametrize(("library", "order", "destination"), CASES, ids=CASE_IDS)
def test_green_threads_deliver_flush_within_the_timeout_and_exit_within_the_budget(
    posthog: Served,
    tmp_path: Path,
    environment_report: EnvironmentReport,
    library: str,
    order: str,
    destination: str,
) -> None:
    served, hung = posthog, destination == DESTINATIONS[2]
    failing = FailingAtRandom(served.fake)
    if destination == DESTINATIONS[1]:
        served.server.responder = failing
    elif hung:
        served.server.responder = lambda request: Reply(action="hang")
    flush_timeout = FLUSH_TIMEOUT.get(destination, DEFAULT_FLUSH_TIMEOUT)
    counts = [str(n) for n in (THREADS, PER_THREAD, AFTER)]
    result = run_python(
        APP,
        library,
        order,
        str(flush_timeout),
        *counts,
        cwd=tmp_path,
        env=environment([served], SETTINGS),
        timeout=120,
    )
    ended = time.time()
    output = result.stdout + result.stderr
    assert result.returncode == 0, output

    flush: dict[str, Any] = json.loads(" ".join(line_after(result.stdout, "flush")))
    assert flush["took"] <= flush_timeout + MARGIN, flush  # returned within its timeout
    if hung:
        assert flush["ok"] is False, flush
        # The wait let the other green threads run: the ticker ticked through it.
        assert flush["ticks"] >= 10, flush
    else:
        assert flush["ok"] is True, flush
    exiting = float(line_after(result.stdout, "exiting-at")[0])
    assert ended - exiting <= SHUTDOWN_BUDGET + MARGIN + 1.0, output  # + interpreter teardown

    stats_words = line_after(result.stdout, "stats")
    stats = stats_from_json(json.loads(" ".join(stats_words[:-2]))["posthog"])
    wanted = {(f"green{n}", seq) for n in range(THREADS) for seq in range(PER_THREAD)}
    wanted |= {("exit", seq) for seq in range(AFTER)}
    arrived = tally(served, wanted, key=TAG)
    in_flight = stats.queued  # at exit: sent to a destination that never answered
    if hung:
        assert arrived.delivered == 0 and stats.delivered == 0, stats
        assert stats.accepted == len(wanted), stats
        assert sum(stats.dropped.values()) + in_flight == len(wanted), stats
        assert set(stats.dropped) <= {"shutdown"}, stats
        # ... and said so, with the figures.
        assert re.search(rf"{len(wanted)} accepted, 0 delivered, \d+ dropped", output), output
        assert not in_flight or f"{in_flight} in flight (outcome unknown)" in output, output
    else:
        assert_exactly_once(
            tally(served, wanted, key=TAG, stats=stats), ("retries_exhausted", "shutdown")
        )
    for line in output.splitlines():
        if line.startswith("tracking:"):
            assert hung or "dropped" in line, line
            continue
        assert "Traceback" not in line and not re.search(r"\w+Warning\b", line), output

    environment_report.add(
        "green-threads",
        setup=f"{library} {flush['version']}, monkey-patched {order} `import tracking_core`; "
        f"{THREADS} green threads x {PER_THREAD} events, flush_tracking({flush_timeout:g}), "
        f"then {AFTER} events",
        stop=f"flush returned {flush['ok']} after {flush['took']:.2f} s; interpreter exit "
        f"(budget {SHUTDOWN_BUDGET:g} s)"
        + (f", {in_flight} events in flight (outcome unknown)" if in_flight else ""),
        destination=failing.describe() if destination == DESTINATIONS[1] else destination,
        tracked=len(wanted),
        delivered=arrived.delivered,
        counted=sum(stats.dropped.values()),
    )
