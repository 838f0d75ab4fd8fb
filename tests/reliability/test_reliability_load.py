"""Load: threads and asyncio tasks tracking at once into every provider that ships a fake.

The strict vendor fakes run on loopback in this (pytest) process and validate every request in
Python; the client (the application calling ``track()``) runs in a subprocess so that both sides
get a core. Afterwards every event is accounted for, per provider, from ``tracking_stats()``
(``delivered + sum(dropped) == accepted``) and from what the fakes accepted (one id per delivered
event, no duplicates, exactly the events that were tracked).
"""

from __future__ import annotations

import collections
import json
from collections.abc import Mapping
from typing import Any

import pytest

from ..harness import (
    Served,
    assert_exactly_once,
    environment,
    run_python,
    stats_from_json,
    tally,
)
from .conftest import PROVIDERS, ReliabilityReport

THREADS = 8
PER_THREAD = 25_000
TASKS = 20
PER_TASK = 1_000
TOTAL = THREADS * PER_THREAD + TASKS * PER_TASK
#: Events per request asked for; each provider caps it at its vendor's limit.
BATCH_SIZE = 500
#: The client's budget for the whole run (tracking and delivery), in seconds.
CLIENT_TIMEOUT = 240.0

# The application: THREADS threads and TASKS asyncio tasks (in one loop, on the main thread)
# track at once; a ticker task measures how late the loop wakes it (every 1 ms asked) while the
# load runs and while `aflush_tracking` waits; a sampler thread watches the queue bound.
# Prints one JSON line.
CLIENT = r"""
import asyncio, json, sys, threading, time
import tracking_core as tc

threads_n, per_thread, tasks_n, per_task, max_queue = map(int, sys.argv[1:6])
providers = tc.list_tracking_providers()  # discovery done before the clock starts
barrier = threading.Barrier(threads_n + 1)
slowest = [0.0] * threads_n
sampling = threading.Event()
peak_queued = {}

def sampler():
    while not sampling.wait(0.005):
        for name, s in tc.tracking_stats().items():
            if s.queued > peak_queued.get(name, 0):
                peak_queued[name] = s.queued

def producer(n):
    track, clock = tc.track, time.perf_counter
    src, user, worst = f"t{n}", f"thread-user-{n}", 0.0
    barrier.wait()
    for i in range(per_thread):
        started = clock()
        track("Load Thread", {"src": src, "seq": i}, user_id=user)
        spent = clock() - started
        if spent > worst:
            worst = spent
    slowest[n] = worst

async def application(threads):
    loop = asyncio.get_running_loop()
    worst = {"load": 0.0, "flush": 0.0}
    phase = "load"
    stop = False
    ticks = 0

    async def ticker():
        nonlocal ticks
        while not stop:
            asked = loop.time()
            await asyncio.sleep(0.001)
            late = loop.time() - asked - 0.001
            ticks += 1
            if late > worst[phase]:
                worst[phase] = late

    async def task(n):
        src, user = f"a{n}", f"task-user-{n}"
        for i in range(per_task):
            tc.track("Load Task", {"src": src, "seq": i}, user_id=user)
            await asyncio.sleep(0)

    tick = asyncio.create_task(ticker())
    await asyncio.sleep(0.005)
    await asyncio.gather(*(task(n) for n in range(tasks_n)))
    for thread in threads:
        await asyncio.to_thread(thread.join)
    tracked_s = time.perf_counter() - START
    phase = "flush"
    flushed = await tc.aflush_tracking(180)
    total_s = time.perf_counter() - START
    stop = True
    await tick
    return {"tracked_s": tracked_s, "total_s": total_s, "flushed": flushed, "ticks": ticks,
            "stall_load": worst["load"], "stall_flush": worst["flush"]}

watch = threading.Thread(target=sampler, daemon=True)
watch.start()
threads = [threading.Thread(target=producer, args=(n,)) for n in range(threads_n)]
for thread in threads:
    thread.start()
barrier.wait()
START = time.perf_counter()
result = asyncio.run(application(threads))
sampling.set()
watch.join()
result["providers"] = providers
result["slowest_track"] = max(slowest)
result["peak_queued"] = peak_queued
result["stats"] = {
    name: {"accepted": s.accepted, "delivered": s.delivered, "dropped": dict(s.dropped),
           "queued": s.queued, "batches": s.batches, "retried": s.retried}
    for name, s in tc.tracking_stats().items()
}
print(json.dumps(result))
"""


@pytest.fixture
def fakes(destinations: dict[str, Served]) -> list[Served]:
    """Every installed fake, served on loopback (conftest's `destinations`)."""
    return list(destinations.values())


def run_client(destinations: list[Served], max_queue: int) -> dict[str, Any]:
    args = [str(n) for n in (THREADS, PER_THREAD, TASKS, PER_TASK, max_queue)]
    variables = {"TRACKING_BATCH_SIZE": str(BATCH_SIZE), "TRACKING_MAX_QUEUE": str(max_queue)}
    result = run_python(
        CLIENT, *args, env=environment(destinations, **variables), timeout=CLIENT_TIMEOUT
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines, f"the client printed nothing; stderr: {result.stderr}"
    outcome: dict[str, Any] = json.loads(lines[-1])
    return outcome


def expected_tags() -> set[tuple[str, int]]:
    """Every (source, sequence number) pair the client tracks."""
    tags = {(f"t{n}", i) for n in range(THREADS) for i in range(PER_THREAD)}
    tags |= {(f"a{n}", i) for n in range(TASKS) for i in range(PER_TASK)}
    assert len(tags) == TOTAL
    return tags


def check_accounting(
    destinations: list[Served], outcome: Mapping[str, Any], max_queue: int
) -> dict[str, int]:
    """Assert every event is accounted for at every provider: delivered exactly once (by its
    (source, sequence number) and its id) or counted as dropped for the queue bound, which
    held. Returns the events lost per provider (all 0)."""
    assert outcome["flushed"] is True
    assert sorted(outcome["providers"]) == sorted(PROVIDERS)
    expected = expected_tags()
    lost: dict[str, int] = {}
    for destination in destinations:
        name = destination.provider
        stats = stats_from_json(outcome["stats"][name])
        result = tally(destination, expected, key=("src", "seq"), stats=stats)
        # The only reason to drop to a healthy destination is the queue bound.
        assert_exactly_once(result, allowed_drops={"queue_full"})
        # The bound held: never more than TRACKING_MAX_QUEUE events waiting at a provider.
        assert outcome["peak_queued"].get(name, 0) <= max_queue, (name, outcome["peak_queued"])
        lost[name] = result.lost
    return lost


def describe(outcome: Mapping[str, Any]) -> str:
    """The figures of one run, for the report and the test log."""
    stats = outcome["stats"]
    delivered = sum(s["delivered"] for s in stats.values())
    dropped = collections.Counter[str]()
    for s in stats.values():
        dropped.update(s["dropped"])
    requests = sum(s["batches"] for s in stats.values())
    drops = ", ".join(f"{count:,} {reason}" for reason, count in sorted(dropped.items()))
    return (
        f"{delivered:,} deliveries in {requests:,} requests, each event id once at each fake"
        f"{'; dropped and counted: ' + drops if drops else ', nothing dropped'}; "
        f"track() {TOTAL / outcome['tracked_s']:,.0f} calls/s (slowest call "
        f"{outcome['slowest_track'] * 1000:.0f} ms); delivery {delivered / outcome['total_s']:,.0f}"
        f" events/s to the {len(stats)} validating fakes ({outcome['total_s']:.1f} s to flush); "
        f"asyncio loop worst lateness {outcome['stall_load'] * 1000:.0f} ms under load, "
        f"{outcome['stall_flush'] * 1000:.0f} ms while aflush_tracking waited"
    )


def check_responsiveness(outcome: Mapping[str, Any]) -> None:
    """Loose bounds only (a busy CI machine): figures are reported, speed belongs to benchmarks."""
    assert outcome["ticks"] > 10  # the ticker ran through the load and the flush
    assert outcome["stall_load"] < 1.0, outcome
    assert outcome["stall_flush"] < 1.0, outcome
    assert outcome["slowest_track"] < 1.0, outcome
    assert outcome["tracked_s"] < 60.0, outcome


@pytest.mark.slow
def test_threads_and_asyncio_tasks_into_every_provider_every_event_delivered_once(
    fakes: list[Served], reliability_report: ReliabilityReport
) -> None:
    # A queue bound above the whole burst: nothing may be dropped, everything arrives once.
    max_queue = TOTAL + 30_000
    outcome = run_client(fakes, max_queue)
    lost = check_accounting(fakes, outcome, max_queue)
    for name in PROVIDERS:
        assert outcome["stats"][name]["dropped"] == {}, (name, outcome["stats"][name])
        assert outcome["stats"][name]["delivered"] == TOTAL
    check_responsiveness(outcome)
    happened = describe(outcome)
    print(happened)
    reliability_report.add(
        f"load: threads and asyncio tasks, {len(PROVIDERS)} providers at once",
        f"{TOTAL:,} track() calls ({THREADS} threads x {PER_THREAD:,} + {TASKS} asyncio tasks x "
        f"{PER_TASK:,}, one loop) x {len(PROVIDERS)} providers; TRACKING_BATCH_SIZE={BATCH_SIZE}, "
        f"TRACKING_MAX_QUEUE={max_queue:,}",
        happened,
        sum(lost.values()),
    )


@pytest.mark.slow
def test_a_burst_above_the_default_queue_bound_is_dropped_and_counted_never_lost(
    fakes: list[Served], reliability_report: ReliabilityReport
) -> None:
    # The default TRACKING_MAX_QUEUE (100,000) against the same 220,000-call burst, which the
    # callers produce far faster than the fakes validate: what does not fit is counted as
    # queue_full, the rest arrives once; nothing disappears.
    max_queue = 100_000
    outcome = run_client(fakes, max_queue)
    lost = check_accounting(fakes, outcome, max_queue)
    for name in PROVIDERS:
        stats = outcome["stats"][name]
        assert stats["delivered"] >= min(max_queue, TOTAL) // 2, (name, stats)
    check_responsiveness(outcome)
    happened = describe(outcome)
    print(happened)
    reliability_report.add(
        "load: burst above the default queue bound",
        f"{TOTAL:,} track() calls in {outcome['tracked_s']:.1f} s ({THREADS} threads + {TASKS} "
        f"asyncio tasks) x {len(PROVIDERS)} providers; TRACKING_MAX_QUEUE={max_queue:,} "
        "(the default)",
        happened,
        sum(lost.values()),
    )


# Holds plugin discovery (which the dispatcher runs before it hands out anything) so that a
# burst fills the intake deterministically; only the intake's bound can drop here.
SILENT_INTAKE = r"""
import logging, threading
import tracking_core as tc
from tracking_core.registry import runtime

logging.basicConfig(level=logging.WARNING)
engine = runtime().engine
gate = threading.Event()
discover = engine.dispatcher._discover

def slow_discovery():
    gate.wait(10)
    discover()

engine.dispatcher._discover = slow_discovery

class Fast:
    name = "fast"
    def track(self, event):
        pass

tc.register_tracking_provider(Fast())
for i in range(100):
    tc.track("burst")
gate.set()
assert tc.flush_tracking(10)
stats = tc.tracking_stats()["fast"]
print(stats.accepted, stats.delivered, stats.dropped.get("queue_full", 0))
"""


def test_calls_dropped_at_a_full_intake_are_counted_and_logged() -> None:
    env = environment(TRACKING_DISABLED="1", TRACKING_MAX_QUEUE="5")
    result = run_python(SILENT_INTAKE, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    accepted, delivered, queue_full = map(int, result.stdout.split())
    # Counted: the intake held 5 calls while discovery ran; the other 95 were dropped.
    assert (accepted, delivered, queue_full) == (100, 5, 95)
    # Logged: a warning naming the bound, as the lanes do when they drop for it.
    assert "TRACKING_MAX_QUEUE" in result.stderr, result.stderr
