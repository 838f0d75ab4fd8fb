"""multiprocessing (issue #13): ``multiprocessing.Pool`` and ``ProcessPoolExecutor`` workers
that track, under each start method (fork, spawn, forkserver), lose nothing when the pool is
closed and joined or shut down normally.

Each scenario runs `APP` in a fresh interpreter against PostHog's fake on loopback (healthy, or
answering 503 to 30 % of the requests). The parent tracks a few events first (a forked worker
then inherits a started engine), runs tasks on a ``Pool`` (recycled after 2 tasks, closed and
joined) and on a ``ProcessPoolExecutor`` (shut down by its ``with`` block), and ends. No task
flushes: every worker's events wait for its exit flush. Each process writes its
`tracking_stats()` after that flush (a worker from a multiprocessing finalizer that runs after
tracking-core's, the parent from an exit handler), so what was counted as dropped is known too.
"""

from __future__ import annotations

import json
import multiprocessing
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from ..harness import (
    TAG,
    FailingAtRandom,
    Served,
    Tally,
    assert_exactly_once,
    environment,
    run_python,
    served_fakes,
    stats_from_json,
    tally,
)
from .conftest import EnvironmentReport

pytestmark = pytest.mark.slow

METHODS = [
    method
    for method in ("fork", "spawn", "forkserver")
    if method in multiprocessing.get_all_start_methods()
]
DESTINATIONS = ["healthy", "503 for 30 % of requests"]
#: Tasks per pool, events per task, events the parent tracks first.
TASKS, PER_TASK, PARENT = 4, 50, 20
#: Nothing leaves a process before it ends: every event waits for the exit flush.
SETTINGS = {
    "TRACKING_FLUSH_INTERVAL": "60",
    "TRACKING_BATCH_SIZE": "1000",
    "TRACKING_SHUTDOWN_TIMEOUT": "3",
}

APP = """
import atexit, concurrent.futures, json, multiprocessing, multiprocessing.util, os, sys

OUT = os.getcwd()
tracked = False


def dump_stats():
    # What this process counted, after tracking-core's exit flush.
    import tracking_core
    stats = {
        name: {"accepted": s.accepted, "delivered": s.delivered, "dropped": dict(s.dropped),
               "queued": s.queued}
        for name, s in tracking_core.tracking_stats().items()
    }
    with open(os.path.join(OUT, f"stats-{os.getpid()}.json"), "w") as f:
        json.dump(stats, f)


import tracking_core as tc


def task(tag, count):
    global tracked
    if not tracked:
        tracked = True
        # A worker ends with os._exit() after multiprocessing's finalizers: tracking-core's
        # flush is one (priority 0), this one runs after it.
        multiprocessing.util.Finalize(None, dump_stats, exitpriority=-1)
    for seq in range(count):
        tc.track("Worker Event", {"tag": tag, "seq": seq}, user_id=f"user-{tag}")
    return os.getpid()  # no flush: the worker's exit flush has them


if __name__ == "__main__":
    atexit.register(dump_stats)  # registered before tracking-core's first use: runs after it
    method, tasks, per_task, parent = sys.argv[1], *map(int, sys.argv[2:5])
    context = multiprocessing.get_context(method)
    for seq in range(parent):
        tc.track("Worker Event", {"tag": "parent", "seq": seq}, user_id="user-parent")
    pids = {}
    pool = context.Pool(2, maxtasksperchild=2)
    pids["pool"] = pool.starmap(task, [(f"pool{n}", per_task) for n in range(tasks)], 1)
    pool.close()
    pool.join()
    with concurrent.futures.ProcessPoolExecutor(2, mp_context=context) as executor:
        futures = [executor.submit(task, f"executor{n}", per_task) for n in range(tasks)]
        pids["executor"] = [future.result() for future in futures]
    print("pids", json.dumps(pids), flush=True)
"""


@pytest.fixture(params=DESTINATIONS)
def posthog(request: pytest.FixtureRequest) -> Iterator[Served]:
    """PostHog's fake on loopback, healthy or failing 30 % of the requests."""
    with served_fakes(["posthog"]) as found:
        served = found["posthog"]
        if request.param != DESTINATIONS[0]:
            served.server.responder = FailingAtRandom(served.fake)
        yield served


def part(
    served: Served, records: Mapping[int, Mapping[str, Any]], pids: set[int], tags: set[str]
) -> Tally:
    """What the fake accepted of the events tagged `tags`, with the counters of `pids`."""
    stats = [records[pid]["posthog"] for pid in pids]
    dropped: dict[str, int] = {}
    for one in stats:
        for reason, count in one["dropped"].items():
            dropped[reason] = dropped.get(reason, 0) + count
    counters = stats_from_json(
        {
            "accepted": sum(one["accepted"] for one in stats),
            "delivered": sum(one["delivered"] for one in stats),
            "queued": sum(one["queued"] for one in stats),
            "dropped": dropped,
        }
    )
    per_tag = {tag: PARENT if tag == "parent" else PER_TASK for tag in tags}
    wanted = {(tag, seq) for tag, count in per_tag.items() for seq in range(count)}
    return tally(served, wanted, key=TAG, stats=counters)


@pytest.mark.parametrize("method", METHODS)
def test_pool_and_executor_workers_deliver_what_they_tracked(
    posthog: Served,
    tmp_path: Path,
    environment_report: EnvironmentReport,
    method: str,
) -> None:
    served = posthog
    responder = served.server.responder
    failing = responder if isinstance(responder, FailingAtRandom) else None
    result = run_python(
        APP,
        method,
        *map(str, (TASKS, PER_TASK, PARENT)),
        cwd=tmp_path,
        name="app.py",
        env=environment([served], SETTINGS),
        timeout=120,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    pids: dict[str, list[int]] = json.loads(result.stdout.split("pids", 1)[1])
    records = {
        int(path.stem.split("-")[1]): json.loads(path.read_text(encoding="utf-8"))
        for path in tmp_path.glob("stats-*.json")
    }
    workers = {name: set(found) for name, found in pids.items()}
    parent = set(records) - workers["pool"] - workers["executor"]
    assert len(parent) == 1 and not workers["pool"] & workers["executor"], (pids, records)
    assert workers["pool"] | workers["executor"] <= set(records), (pids, records)

    everything = part(
        served,
        records,
        set(records),
        {"parent", *(f"{kind}{n}" for kind in ("pool", "executor") for n in range(TASKS))},
    )
    allowed = ("retries_exhausted", "shutdown")
    counted = assert_exactly_once(everything, allowed).dropped
    for line in output.splitlines():
        if line.startswith("tracking:"):  # tracking-core's account of what it dropped
            assert counted and "dropped" in line, line
            continue
        assert "Traceback" not in line and not re.search(r"\w+Warning\b", line), output
    if counted:
        assert re.search(r"^tracking:.* dropped", output, re.MULTILINE), output

    setups = {
        "pool": f"Pool(2, maxtasksperchild=2), close() + join(); {TASKS} tasks x {PER_TASK} events",
        "executor": f"ProcessPoolExecutor(2), shut down by `with`; {TASKS} tasks x "
        f"{PER_TASK} events",
    }
    for kind, setup in setups.items():
        tags = {f"{kind}{n}" for n in range(TASKS)}
        row = part(served, records, workers[kind], tags)
        environment_report.add(
            "multiprocessing",
            setup=f"{method}: {setup}",
            stop="workers end normally (no flush in the tasks)",
            destination="healthy" if failing is None else failing.describe(),
            tracked=len(row.expected),
            delivered=row.delivered,
            counted=row.dropped,
        )
