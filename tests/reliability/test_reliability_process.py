"""Process life under real conditions: exit, preforking, multiprocessing, SIGTERM.

Every scenario runs an application in a subprocess with every provider that ships a fake pointed
at its strict vendor fake, served on loopback by this (pytest) process. Each event carries a tag
(who tracked it), a sequence number and the pid of the process that tracked it, so the fakes
show that every event arrived exactly once, and a file-writing provider shows which process
delivered it. Each process also writes its `tracking_stats()` after its exit flush, through an
exit handler registered before tracking-core's own (so it runs after it).
"""

from __future__ import annotations

import collections
import json
import os
import re
import signal
import sys
import textwrap
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from tracking_core.receivers import ReceivedRequest, Reply

from ..harness import (
    TAG,
    Served,
    Started,
    assert_exactly_once,
    environment,
    run_python,
    tally,
)
from .conftest import PROVIDERS, ReliabilityReport

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
#: The default exit budget (TRACKING_SHUTDOWN_TIMEOUT) the exits below must stay within.
SHUTDOWN_BUDGET = 5.0
#: Interpreter start-up and imports on a busy machine, on top of any budget.
STARTUP_MARGIN = 15.0

# Written before each scenario's own code. OUT is a directory for what the processes record.
PRELUDE = """
import atexit, json, os, signal, sys, threading, time

OUT = os.environ["RELIABILITY_OUT"]
PROVIDERS = os.environ["TRACKING_PROVIDERS"].split(",")


def dump_stats():
    import tracking_core
    stats = {
        name: {"accepted": s.accepted, "delivered": s.delivered, "dropped": dict(s.dropped),
               "queued": s.queued}
        for name, s in tracking_core.tracking_stats().items()
    }
    with open(os.path.join(OUT, f"stats-{os.getpid()}.json"), "w") as f:
        json.dump(stats, f)


# Registered before tracking-core registers its exit flush, so it runs after it.
atexit.register(dump_stats)

import tracking_core as tc


def dump_stats_at_multiprocessing_exit():
    # A multiprocessing child ends with os._exit() (no atexit) after running its finalizers;
    # tracking-core's flush is one (priority 0), this one runs after it.
    import multiprocessing.util
    multiprocessing.util.Finalize(None, dump_stats, exitpriority=-1)


class FileProvider:
    # Records which process delivered each event, and which one tracked it.
    name = "file"

    def track(self, event):
        p = event.properties
        with open(os.path.join(OUT, "delivered-by.txt"), "a") as f:
            f.write(f"{os.getpid()} {p['pid']} {p['tag']} {p['seq']} {event.event_id}\\n")


def track_tagged(tag, count):
    pid = os.getpid()
    for i in range(count):
        tc.track("Process Event", {"tag": tag, "seq": i, "pid": pid}, user_id=f"user-{tag}")


def pending(tracked):
    # Of `tracked` events, how many are not yet delivered or dropped, over the providers.
    tc.list_tracking_providers()  # waits for discovery
    stats = tc.tracking_stats()
    left = 0
    for name in PROVIDERS:
        s = stats.get(name)
        left += tracked - (s.delivered + sum(s.dropped.values()) if s else 0)
    return left


def wait_until_accepted(count, timeout=20.0):
    # Until every provider has taken `count` events from the intake (none delivered yet).
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stats = tc.tracking_stats()
        if all(name in stats and stats[name].accepted >= count for name in PROVIDERS):
            return
        time.sleep(0.01)
    raise SystemExit(f"events not accepted in time: {stats}")
"""


@pytest.fixture
def fakes(destinations: dict[str, Served]) -> list[Served]:
    """Every installed fake, served on loopback (conftest's `destinations`)."""
    return list(destinations.values())


def delay_answers_to(destinations: list[Served], tag: str, seconds: float) -> None:
    """Make each fake answer the first request carrying events tagged `tag` only after
    `seconds`, so that the process sending them still has them in flight when it forks (only
    the first: a vendor that takes few events per request, GA4's 25, would otherwise need
    many such seconds)."""
    marker = json.dumps({"tag": tag}, separators=(",", ":"))[1:-1].encode()
    for destination in destinations:
        fake = destination.fake
        delayed: list[bool] = []

        def slow(
            request: ReceivedRequest, fake: Any = fake, delayed: list[bool] = delayed
        ) -> Reply:
            if marker in request.body and not delayed:
                delayed.append(True)
                time.sleep(seconds)
            answer: Reply = fake(request)
            return answer

        destination.server.responder = slow


def run_app(
    destinations: list[Served], tmp_path: Path, body: str, **variables: str
) -> tuple[Any, float]:
    """Run `body` after the prelude; returns the result and how long the process took."""
    env = environment(destinations, RELIABILITY_OUT=str(tmp_path), **variables)
    started = time.monotonic()
    result = run_python(PRELUDE + textwrap.dedent(body), cwd=tmp_path, name="app.py", env=env)
    return result, time.monotonic() - started


def expected(tags: Mapping[str, int]) -> set[tuple[str, int]]:
    return {(tag, seq) for tag, count in tags.items() for seq in range(count)}


def assert_delivered_once(destinations: list[Served], tags: Mapping[str, int]) -> tuple[int, int]:
    """Assert each fake accepted every tagged event exactly once (by its tag and sequence
    number, and by its id) and nothing else; returns the events each fake accepted and the
    events lost over all of them."""
    wanted = expected(tags)
    results = [assert_exactly_once(tally(d, wanted, key=TAG)) for d in destinations]
    return len(wanted), sum(result.lost for result in results)


def count_arrived(destinations: list[Served], tag: str) -> dict[str, int]:
    """How many events with `tag` each fake accepted (distinct sequence numbers)."""
    found = {d.provider: tally(d, (), key=TAG).arrived for d in destinations}
    return {
        name: len({key for key in keys if isinstance(key, tuple) and key[0] == tag})
        for name, keys in found.items()
    }


def read_stats(tmp_path: Path) -> dict[int, dict[str, dict[str, Any]]]:
    """The stats each process wrote after its exit flush, by pid."""
    return {
        int(path.stem.split("-")[1]): json.loads(path.read_text())
        for path in tmp_path.glob("stats-*.json")
    }


def assert_process_accounts(stats: Mapping[str, Mapping[str, Any]], count: int) -> None:
    """Every provider of one process accepted `count` events and delivered them all."""
    assert sorted(stats) == sorted([*PROVIDERS, "file"]) or sorted(stats) == sorted(PROVIDERS)
    for name, s in stats.items():
        assert s["accepted"] == count, (name, s)
        assert s["delivered"] == count, (name, s)
        assert s["dropped"] == {} and s["queued"] == 0, (name, s)


def delivered_by(tmp_path: Path) -> list[tuple[int, int, str, int, str]]:
    """The file provider's lines: (delivering pid, tracking pid, tag, seq, event id)."""
    path = tmp_path / "delivered-by.txt"
    rows = []
    for line in path.read_text().splitlines() if path.exists() else []:
        delivering, tracking, tag, seq, event_id = line.split()
        rows.append((int(delivering), int(tracking), tag, int(seq), event_id))
    return rows


def assert_each_process_delivered_its_own(tmp_path: Path, tags: Mapping[str, int]) -> set[int]:
    """The file provider saw each tagged event once, delivered by the process that tracked it;
    returns the pids that delivered."""
    rows = delivered_by(tmp_path)
    assert collections.Counter((tag, seq) for _, _, tag, seq, _ in rows) == collections.Counter(
        expected(tags)
    )
    assert len({row[4] for row in rows}) == len(rows)  # no event id twice
    strays = [row for row in rows if row[0] != row[1]]
    assert not strays, f"delivered by another process than the one that tracked: {strays[:5]}"
    return {row[0] for row in rows}


# -- exit ---------------------------------------------------------------------------------------


def test_exit_with_pending_events_delivers_them_all_without_a_flush(
    fakes: list[Served], tmp_path: Path, reliability_report: ReliabilityReport
) -> None:
    count = 2_000
    result, elapsed = run_app(
        fakes,
        tmp_path,
        f"""
        track_tagged("exit", {count})
        wait_until_accepted({count})
        print("pending", pending({count}))
        # no flush: the exit handler must deliver them
        """,
        # Nothing is sent before exit: the batch never fills and the timer is far away.
        TRACKING_BATCH_SIZE="5000",
        TRACKING_FLUSH_INTERVAL="60",
    )
    assert result.returncode == 0, result.stderr
    pending_at_exit = int(result.stdout.split()[1])
    assert pending_at_exit == len(PROVIDERS) * count  # all still waiting when the script ended
    _, lost = assert_delivered_once(fakes, {"exit": count})
    stats = read_stats(tmp_path)
    assert len(stats) == 1
    assert_process_accounts(next(iter(stats.values())), count)
    assert elapsed < SHUTDOWN_BUDGET + STARTUP_MARGIN
    assert lost == 0
    reliability_report.add(
        "process: interpreter exit with events pending",
        f"{count:,} events x 4 providers waiting at exit (no flush_tracking call)",
        f"the exit handler delivered all {pending_at_exit:,}, each once; the process took "
        f"{elapsed:.1f} s including start-up",
        lost,
    )


# -- preforking (gunicorn style) ----------------------------------------------------------------


def test_prefork_parent_and_workers_each_deliver_only_their_own(
    fakes: list[Served], tmp_path: Path, reliability_report: ReliabilityReport
) -> None:
    # The fakes answer the parent's request late, so the parent is mid-request, with events
    # waiting, when it forks its workers.
    delay_answers_to(fakes, "parent", 1.0)
    workers, per_worker, parent_before, parent_after = 3, 300, 400, 50
    result, _ = run_app(
        fakes,
        tmp_path,
        f"""
        tc.register_tracking_provider(FileProvider())
        # A first request before forking, as a started application has made: forking during
        # the very first one is another matter (see the xfail test below).
        track_tagged("warmup", 1)
        assert tc.flush_tracking(20)
        track_tagged("parent", {parent_before})
        time.sleep(0.2)
        print("pending-at-fork", pending(1 + {parent_before}), flush=True)
        children = []
        for n in range({workers}):
            pid = os.fork()
            if pid == 0:
                # a worker: serve, then exit the way gunicorn's workers do (sys.exit)
                track_tagged(f"worker{{n}}", {per_worker})
                sys.exit(0)
            children.append(pid)
        track_tagged("parent-after", {parent_after})
        codes = [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in children]
        print("children", *children, "codes", *codes)
        """,
        TRACKING_BATCH_SIZE="500",
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    pending_at_fork = int(lines[0].split()[1])
    assert pending_at_fork > 0, result.stdout  # the parent had undelivered events at fork
    words = lines[-1].split()
    children = [int(w) for w in words[1 : 1 + workers]]
    assert words[-workers:] == ["0"] * workers, result.stdout
    tags = {"warmup": 1, "parent": parent_before, "parent-after": parent_after}
    tags |= {f"worker{n}": per_worker for n in range(workers)}
    total, lost = assert_delivered_once(fakes, tags)
    deliverers = assert_each_process_delivered_its_own(tmp_path, tags)
    stats = read_stats(tmp_path)
    assert set(children) <= set(stats) and len(stats) == workers + 1
    parent = next(pid for pid in stats if pid not in children)
    assert deliverers == {parent, *children}
    assert_process_accounts(stats[parent], 1 + parent_before + parent_after)
    for child in children:
        assert_process_accounts(stats[child], per_worker)  # none of the parent's pending
    assert lost == 0
    reliability_report.add(
        "process: preforking with os.fork (gunicorn style)",
        f"parent: {parent_before} events pending at fork (first request in flight), then "
        f"{parent_after}; {workers} forked workers x {per_worker}, ending with sys.exit; "
        "4 providers + a file provider",
        f"{total:,} events at each fake, each once; every event delivered by the process that "
        f"tracked it ({pending_at_fork:,} parent deliveries were pending at fork)",
        lost,
    )


SLOW_HTTPX_IMPORT = """
import importlib.abc, importlib.machinery

importing = threading.Event()


class SlowHttpxImport(importlib.abc.MetaPathFinder):
    # Stretches the `import httpx` a provider's worker does before its first request, so that
    # the fork below lands inside it (as it may, by chance, in any application).
    def find_spec(self, name, path, target=None):
        if name != "httpx":
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        real = spec.loader

        class Loader(importlib.abc.Loader):
            def create_module(self, spec):
                return real.create_module(spec)

            def exec_module(self, module):
                importing.set()
                time.sleep(2.0)
                real.exec_module(module)

        spec.loader = Loader()
        return spec


sys.meta_path.insert(0, SlowHttpxImport())
assert "httpx" not in sys.modules
track_tagged("parent", 50)
assert importing.wait(20), "no worker imported httpx"
pid = os.fork()
if pid == 0:
    track_tagged("child", 20)
    print("child-flushed", tc.flush_tracking(3), flush=True)
    os._exit(0)
os.waitpid(pid, 0)
print("parent-flushed", tc.flush_tracking(10))
"""


def test_forking_while_a_worker_imports_httpx_leaves_the_child_able_to_deliver(
    fakes: list[Served], tmp_path: Path
) -> None:
    result, _ = run_app(fakes, tmp_path, SLOW_HTTPX_IMPORT)
    assert result.returncode == 0, result.stderr
    assert count_arrived(fakes, "parent") == dict.fromkeys(PROVIDERS, 50)
    assert "child-flushed True" in result.stdout, (result.stdout, result.stderr)
    assert count_arrived(fakes, "child") == dict.fromkeys(PROVIDERS, 20)


# -- multiprocessing (fork start method) --------------------------------------------------------


def test_multiprocessing_fork_process_children_deliver_at_exit(
    fakes: list[Served], tmp_path: Path, reliability_report: ReliabilityReport
) -> None:
    # The fakes answer the parent's request late, so its events are still pending (in flight)
    # when the children are forked.
    delay_answers_to(fakes, "parent", 0.5)
    children, per_child, parent_count = 3, 300, 200
    result, _ = run_app(
        fakes,
        tmp_path,
        f"""
        import multiprocessing

        def child(n):
            dump_stats_at_multiprocessing_exit()
            track_tagged(f"child{{n}}", {per_child})  # no flush: the process ends with it

        if __name__ == "__main__":
            tc.register_tracking_provider(FileProvider())
            track_tagged("warmup", 1)  # a first request before forking (see the xfail test)
            assert tc.flush_tracking(20)
            track_tagged("parent", {parent_count})  # pending when the children are forked
            print("pending-at-fork", pending(1 + {parent_count}))
            ctx = multiprocessing.get_context("fork")
            procs = [ctx.Process(target=child, args=(n,)) for n in range({children})]
            for p in procs:
                p.start()
            for p in procs:
                p.join(60)
            print("parent", os.getpid(), "exitcodes", *[p.exitcode for p in procs])
        """,
        TRACKING_BATCH_SIZE="500",
    )
    assert result.returncode == 0, result.stderr
    words = result.stdout.split()
    pending_at_fork = int(words[1])
    assert pending_at_fork > 0, result.stdout
    assert words[4:] == ["exitcodes"] + ["0"] * children, result.stdout
    parent = int(words[3])
    tags = {"warmup": 1, "parent": parent_count}
    tags |= {f"child{n}": per_child for n in range(children)}
    total, lost = assert_delivered_once(fakes, tags)
    deliverers = assert_each_process_delivered_its_own(tmp_path, tags)
    stats = read_stats(tmp_path)
    assert set(stats) == deliverers and len(stats) == children + 1
    for pid, per_process in stats.items():
        assert_process_accounts(per_process, 1 + parent_count if pid == parent else per_child)
    assert lost == 0
    reliability_report.add(
        "process: multiprocessing Process children (fork)",
        f"parent: {parent_count} events tracked just before forking ({pending_at_fork:,} "
        f"deliveries pending); {children} Process children x "
        f"{per_child}, no flush_tracking call",
        f"{total:,} events at each fake, each once, each delivered by the process that tracked "
        "it (the children flush from multiprocessing's exit finalizers)",
        lost,
    )


def test_multiprocessing_fork_pool_close_and_join_delivers_every_task_event(
    fakes: list[Served], tmp_path: Path, reliability_report: ReliabilityReport
) -> None:
    tasks, per_task, processes = 8, 150, 3
    result, _ = run_app(
        fakes,
        tmp_path,
        f"""
        import multiprocessing

        registered = False

        def task(n):
            global registered
            if not registered:
                registered = True
                dump_stats_at_multiprocessing_exit()
            track_tagged(f"task{{n}}", {per_task})  # no flush in the task
            return os.getpid()

        if __name__ == "__main__":
            tc.register_tracking_provider(FileProvider())
            pool = multiprocessing.get_context("fork").Pool({processes})
            pids = pool.map(task, range({tasks}), chunksize=1)
            pool.close()  # not the context manager: its exit terminates the workers
            pool.join()
            print("workers", *sorted(set(pids)))
        """,
    )
    assert result.returncode == 0, result.stderr
    workers = {int(w) for w in result.stdout.split()[1:]}
    assert 1 <= len(workers) <= processes
    tags = {f"task{n}": per_task for n in range(tasks)}
    total, lost = assert_delivered_once(fakes, tags)
    assert assert_each_process_delivered_its_own(tmp_path, tags) == workers
    stats = read_stats(tmp_path)
    assert workers <= set(stats)
    assert sum(stats[pid]["posthog"]["delivered"] for pid in workers) == total
    for pid in workers:
        for name, s in stats[pid].items():
            assert s["delivered"] == s["accepted"] and s["dropped"] == {}, (pid, name, s)
    assert lost == 0
    reliability_report.add(
        "process: multiprocessing Pool (fork), close() then join()",
        f"{tasks} tasks x {per_task} events on {processes} pool workers, no flush in the tasks",
        f"{total:,} events at each fake, each once, each delivered by the worker that tracked "
        "it, at the workers' exit",
        lost,
    )


@pytest.mark.parametrize("flush_in_task", [False, True], ids=["no-flush", "flush-in-task"])
def test_a_pool_terminated_by_its_context_manager_still_delivers_what_tasks_tracked(
    fakes: list[Served],
    tmp_path: Path,
    reliability_report: ReliabilityReport,
    flush_in_task: bool,
) -> None:
    # `with Pool() as pool:` calls terminate() on exit: the workers get SIGTERM, whose default
    # action runs no exit handler. tracking-core's SIGTERM handler (inherited by the forked
    # workers) flushes within the budget first, so nothing is lost either way.
    tasks, per_task = 4, 100
    result, _ = run_app(
        fakes,
        tmp_path,
        f"""
        import multiprocessing

        def task(n):
            track_tagged(f"task{{n}}", {per_task})
            return tc.flush_tracking(20) if {flush_in_task} else None

        if __name__ == "__main__":
            with multiprocessing.get_context("fork").Pool(2) as pool:
                flushed = pool.map(task, range({tasks}), chunksize=1)
            print("flushed", *flushed)
        """,
        # Nothing leaves a worker on its own before the pool is terminated.
        TRACKING_BATCH_SIZE="5000",
        TRACKING_FLUSH_INTERVAL="60",
    )
    assert result.returncode == 0, result.stderr
    tags = {f"task{n}": per_task for n in range(tasks)}
    expected_flushed = ["True"] * tasks if flush_in_task else ["None"] * tasks
    assert result.stdout.split() == ["flushed", *expected_flushed], result.stdout
    _, lost = assert_delivered_once(fakes, tags)
    assert lost == 0
    reliability_report.add(
        "process: multiprocessing Pool as a context manager (terminate()), "
        + ("flush_tracking() in the task" if flush_in_task else "no flush in the task"),
        f"{tasks} tasks x {per_task} events x 4 providers; TRACKING_FLUSH_INTERVAL=60",
        "every event delivered once: the task flushed before returning"
        if flush_in_task
        else "every event delivered once: terminate()'s SIGTERM reached tracking-core's "
        "handler, which flushed within the budget before the worker ended",
        lost,
    )


CHILD_FIRST_USE = """
import multiprocessing, os, sys


def child(tag, count):
    import tracking_core as tc  # first used in the child: the parent never imported it

    pid = os.getpid()
    for i in range(count):
        tc.track("Process Event", {"tag": tag, "seq": i, "pid": pid}, user_id=f"user-{tag}")


if __name__ == "__main__":
    ctx = multiprocessing.get_context(sys.argv[1])
    proc = ctx.Process(target=child, args=(sys.argv[1], int(sys.argv[2])))
    proc.start()
    proc.join(60)
    print("exitcode", proc.exitcode)
"""


@pytest.mark.parametrize(
    "method",
    [
        "fork",
        pytest.param(
            "forkserver",
            marks=pytest.mark.skipif(
                "forkserver" not in __import__("multiprocessing").get_all_start_methods(),
                reason="no forkserver here",
            ),
        ),
    ],
)
def test_a_multiprocessing_child_that_first_uses_tracking_delivers_at_exit(
    fakes: list[Served], tmp_path: Path, method: str
) -> None:
    # "forkserver" is the default start method on Linux from Python 3.14: its children never
    # inherit the parent's engine. With "fork" the same happens when the parent did not import
    # tracking_core before forking.
    count = 100
    env = environment(fakes, RELIABILITY_OUT=str(tmp_path))
    result = run_python(CHILD_FIRST_USE, method, str(count), cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["exitcode", "0"], result.stdout
    assert count_arrived(fakes, method) == dict.fromkeys(PROVIDERS, count)


# -- SIGTERM ------------------------------------------------------------------------------------

SIGTERM_APP = """
if {handler}:
    # What gunicorn and uvicorn install: SIGTERM becomes a normal exit.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
track_tagged("sigterm", {count})
wait_until_accepted({count})
# One write for the whole line: print() writes the text and the newline apart, and a log line
# of the library's (stderr, the same pipe) can land between them.
sys.stdout.write("ready %d\\n" % pending({count}))
sys.stdout.flush()
time.sleep(120)
"""


def start_and_terminate(
    destinations: list[Served], tmp_path: Path, handler: bool, count: int
) -> tuple[int, int, float]:
    """Start the app, wait until its events are pending, send SIGTERM; returns the exit code,
    the events pending at the signal and the seconds from signal to exit."""
    script = PRELUDE + SIGTERM_APP.format(handler=handler, count=count)
    (tmp_path / "app.py").write_text(script, encoding="utf-8")
    env = environment(
        destinations,
        RELIABILITY_OUT=str(tmp_path),
        TRACKING_BATCH_SIZE="5000",
        TRACKING_FLUSH_INTERVAL="60",
    )
    with Started([sys.executable, "app.py"], cwd=tmp_path, env=env) as app:
        ready = re.compile(r"^ready (\d+)$", re.MULTILINE)
        app.wait(lambda: ready.search(app.output) is not None, 60, "printed 'ready N'")
        match = ready.search(app.output)
        assert match is not None
        code, took = app.stop(signal.SIGTERM, 60)
        assert code in (0, -signal.SIGTERM), app.output
    return code, int(match[1]), took


def test_sigterm_with_the_default_action_flushes_then_ends_the_process_as_before(
    fakes: list[Served], tmp_path: Path, reliability_report: ReliabilityReport
) -> None:
    count = 500
    code, pending_at_signal, took = start_and_terminate(fakes, tmp_path, False, count)
    assert code == -signal.SIGTERM  # still killed by the signal: the default action is kept
    assert pending_at_signal == len(PROVIDERS) * count
    _, lost = assert_delivered_once(fakes, {"sigterm": count})
    assert read_stats(tmp_path) == {}  # no exit handler ran: only the flush did
    assert took < SHUTDOWN_BUDGET + 10
    assert lost == 0
    reliability_report.add(
        "process: SIGTERM with Python's default action",
        f"{count} events x 4 providers pending at the signal",
        f"tracking-core's SIGTERM handler delivered all {pending_at_signal:,}, each once, "
        f"then ended the process as killed by SIGTERM (exit code -15), {took:.2f} s after "
        "the signal",
        lost,
    )


def test_sigterm_with_a_sys_exit_handler_runs_the_exit_flush(
    fakes: list[Served], tmp_path: Path, reliability_report: ReliabilityReport
) -> None:
    count = 500
    code, pending_at_signal, took = start_and_terminate(fakes, tmp_path, True, count)
    assert code == 0
    assert pending_at_signal == len(PROVIDERS) * count
    _, lost = assert_delivered_once(fakes, {"sigterm": count})
    stats = read_stats(tmp_path)
    assert len(stats) == 1
    assert_process_accounts(next(iter(stats.values())), count)
    assert took < SHUTDOWN_BUDGET + 10  # the exit flush stays within its budget
    assert lost == 0
    reliability_report.add(
        "process: SIGTERM with a handler calling sys.exit()",
        f"{count} events x 4 providers pending at the signal",
        f"the exit flush delivered all {pending_at_signal:,}, each once; exit {took:.2f} s "
        "after the signal",
        lost,
    )
