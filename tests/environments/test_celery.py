"""Celery workers (issue #13): installing tracking-core and setting a provider's variable is all
a Celery application does; nothing is lost when its workers recycle or stop.

Each scenario runs a real worker (``celery worker`` in a subprocess) consuming tasks this
(pytest) process sent through Celery's own client, by default over Celery's filesystem
transport (the broker is a directory of message files: no server to run), and over Redis when
a ``redis-server`` is installed (started by the test, on a Unix socket). Each task tracks events
tagged with its name and a sequence number, without flushing; PostHog's fake on loopback counts
what arrived by the event's dedupe id. Every process that tracked writes its
`tracking_stats()` after tracking-core's exit flush (see `APP`), so what was counted as dropped
is known as well.

The prefork pool (billiard) runs tasks in children forked from the worker's main process. A
child leaves, after ``--max-tasks-per-child`` tasks or at a warm shutdown, through
``os._exit()`` straight from billiard's worker loop: neither ``atexit`` nor multiprocessing's
finalizers run there. What it tracked since its last batch was lost before tracking-core
flushed on Celery's ``worker_process_shutdown`` signal, the last thing such a child runs
(engine/life.py).
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from ..harness import (
    TAG,
    FailingAtRandom,
    Served,
    Started,
    Tally,
    assert_exactly_once,
    environment,
    served_fakes,
    stats_from_json,
    tally,
)
from .conftest import EnvironmentReport

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not hasattr(os, "fork"), reason="the prefork pool needs os.fork"),
]

#: Start-up (imports, the pool's children) and shutdown on a busy 2-core machine.
WORKER_TIMEOUT = 90.0
#: What prefork children exit with after ``--max-tasks-per-child`` tasks (billiard's
#: ``EX_RECYCLE``); one stopped by a warm shutdown exits otherwise.
EX_RECYCLE = 0x9B
#: Events each task tracks.
PER_TASK = 50
#: Nothing leaves a process before it ends, neither on the timer (default 10 s) nor as a full
#: batch (default 50): every event still waits for the exit flush.
SETTINGS = {"TRACKING_FLUSH_INTERVAL": "60", "TRACKING_BATCH_SIZE": "1000"}
DESTINATIONS = ["healthy", "503 for 30 % of requests"]

# The Celery application, written as tasks.py where the worker runs.
APP = """
import atexit, json, os, warnings

OUT = os.environ["CELERY_TEST_OUT"]
tracked = False


def dump_stats(exitcode=None):
    # What this process counted, after tracking-core's exit flush.
    if not tracked:
        return
    import tracking_core
    stats = {
        name: {"accepted": s.accepted, "delivered": s.delivered, "dropped": dict(s.dropped),
               "queued": s.queued}
        for name, s in tracking_core.tracking_stats().items()
    }
    with open(os.path.join(OUT, f"stats-{os.getpid()}.json"), "w") as f:
        json.dump({"exitcode": exitcode, "stats": stats}, f)


# Registered before tracking-core's exit flush, so it runs after it (solo and threads pools:
# tasks run in the worker's main process, which exits normally).
atexit.register(dump_stats)

# The tests run as root (as CI does): Celery's warning about that is not the point here.
warnings.filterwarnings("ignore", message="You're running the worker with superuser")

import tracking_core as tc
from celery import Celery, signals

app = Celery("tasks", broker=os.environ["CELERY_TEST_BROKER"])
app.conf.update(
    broker_transport_options=json.loads(os.environ["CELERY_TEST_TRANSPORT"]),
    broker_connection_retry_on_startup=True,
    task_ignore_result=True,
    worker_hijack_root_logger=False,
)


def on_process_shutdown(exitcode=None, **kwargs):
    dump_stats(exitcode)


@app.task
def work(tag, count):
    global tracked
    pid = os.getpid()
    for seq in range(count):
        tc.track("Task Event", {"tag": tag, "seq": seq, "pid": pid}, user_id=f"user-{tag}")
    if not tracked:
        tracked = True
        # A prefork child ends with os._exit() after this signal: connected after
        # tracking-core's first use in this process, so it runs after tracking-core's flush.
        signals.worker_process_shutdown.connect(on_process_shutdown, weak=False)
    with open(os.path.join(OUT, f"done-{tag}"), "w") as f:
        f.write(str(pid))
"""


# -- destinations and brokers --------------------------------------------------------------------


@pytest.fixture(params=DESTINATIONS)
def posthog(request: pytest.FixtureRequest) -> Iterator[Served]:
    """PostHog's fake on loopback: healthy, or answering 503 to 30 % of the requests."""
    with served_fakes(["posthog"]) as found:
        served = found["posthog"]
        if request.param != "healthy":
            served.server.responder = FailingAtRandom(served.fake)
        yield served


@pytest.fixture
def healthy_posthog() -> Iterator[Served]:
    """PostHog's fake on loopback."""
    with served_fakes(["posthog"]) as found:
        yield found["posthog"]


def destination_of(served: Served) -> str:
    """How the destination answered, for the report."""
    responder = served.server.responder
    return responder.describe() if isinstance(responder, FailingAtRandom) else "healthy"


@dataclasses.dataclass(frozen=True)
class Broker:
    """Where tasks wait: Celery's broker URL and transport options."""

    name: str
    url: str
    options: Mapping[str, str]


def filesystem_broker(tmp_path: Path) -> Broker:
    """Celery's filesystem transport, in the test's directory."""
    folder = tmp_path / "broker"
    folder.mkdir()
    options = {"data_folder_in": str(folder), "data_folder_out": str(folder)}
    options |= {"control_folder": str(tmp_path / "control")}
    return Broker("filesystem", "filesystem://localhost//", options)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    """A ``redis-server`` of the test's own, on a Unix socket (no port to pick), where one is
    installed (with the redis client kombu's Redis transport needs); else Celery's filesystem
    transport."""
    server = shutil.which("redis-server")
    if server is None or importlib.util.find_spec("redis") is None:
        yield filesystem_broker(tmp_path)
        return
    socket = tmp_path / "redis.sock"
    command = [server, "--port", "0", "--unixsocket", str(socket), "--save", ""]
    command += ["--appendonly", "no", "--dir", str(tmp_path)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while not socket.exists():
            assert process.poll() is None and time.monotonic() < deadline, "redis-server failed"
            time.sleep(0.02)
        yield Broker("Redis", f"redis+socket://{socket}", {})
    finally:
        process.kill()
        process.wait()


def send_tasks(broker: Broker, tasks: Mapping[str, int]) -> None:
    """Send ``tasks.work(tag, count)`` for each tag, through Celery's client."""
    celery: Any = importlib.import_module("celery")
    client = celery.Celery("client", broker=broker.url)
    client.conf.broker_transport_options = dict(broker.options)
    with client.connection_for_write() as connection:
        for tag, count in tasks.items():
            client.send_task("tasks.work", args=(tag, count), connection=connection)


# -- the worker ----------------------------------------------------------------------------------


@dataclasses.dataclass
class WorkerRun:
    """What one worker run left: its output, what each process that tracked recorded (by pid)
    and which process ran each task."""

    output: str
    records: dict[int, dict[str, Any]]
    ran_in: dict[str, int]

    def pids_where(self, exited: Callable[[Any], bool]) -> set[int]:
        """The processes whose exit code satisfies `exited`."""
        return {pid for pid, record in self.records.items() if exited(record["exitcode"])}

    def tally(self, served: Served, pids: set[int] | None = None) -> Tally:
        """What the fake accepted of the events of the tasks run in `pids` (all by default),
        with those processes' counters."""
        chosen = set(self.records) if pids is None else pids
        tags = {tag for tag, pid in self.ran_in.items() if pid in chosen}
        stats = [self.records[pid]["stats"]["posthog"] for pid in chosen]
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
        wanted = {(tag, seq) for tag in tags for seq in range(PER_TASK)}
        return tally(served, wanted, key=TAG, stats=counters)


def run_worker(
    served: Served,
    tmp_path: Path,
    broker: Broker,
    options: list[str],
    count: int,
    *,
    recycled_first: bool = False,
) -> WorkerRun:
    """Send `count` tasks, run a worker with `options` until every task ran (and, with
    `recycled_first`, until every process that ran one has ended and recorded its counters),
    stop it with SIGTERM (a warm shutdown), and return what it left."""
    out = tmp_path / "out"
    out.mkdir()
    (tmp_path / "tasks.py").write_text(APP, encoding="utf-8")
    tasks = {f"task{n}": PER_TASK for n in range(count)}
    send_tasks(broker, tasks)
    env = environment(
        [served],
        SETTINGS,
        CELERY_TEST_OUT=str(out),
        CELERY_TEST_BROKER=broker.url,
        CELERY_TEST_TRANSPORT=json.dumps(dict(broker.options)),
    )
    command = [sys.executable, "-m", "celery", "-A", "tasks", "worker", "-n", "test@localhost"]
    command += ["--loglevel", "WARNING", "--without-heartbeat", "--without-mingle"]
    command += ["--without-gossip", *options]

    def ran_in() -> dict[str, int]:
        return {tag: int((out / f"done-{tag}").read_text() or 0) for tag in tasks}

    def ready() -> bool:
        if not all((out / f"done-{tag}").exists() for tag in tasks):
            return False
        return not recycled_first or all(
            (out / f"stats-{pid}.json").exists() for pid in ran_in().values()
        )

    with Started(command, cwd=tmp_path, env=env) as worker:
        worker.wait(ready, WORKER_TIMEOUT, "ran every task")
        code, _ = worker.stop(signal.SIGTERM, WORKER_TIMEOUT)
        output = worker.output
    assert code == 0, output
    records = {
        int(path.stem.split("-")[1]): json.loads(path.read_text(encoding="utf-8"))
        for path in out.glob("stats-*.json")
    }
    run = WorkerRun(output, records, ran_in())
    assert set(run.ran_in.values()) == set(records), (run.ran_in, records, output)
    return run


def assert_delivered_or_counted(run: WorkerRun, served: Served) -> Tally:
    """Every tracked event arrived once or was counted as dropped (and the drop logged); the
    output shows no traceback, no warning and no error."""
    result = assert_exactly_once(run.tally(served), ("retries_exhausted", "shutdown"))
    lines = run.output.splitlines()
    for line in lines:
        if "tracking:" in line:  # tracking-core's account of what it dropped
            assert result.dropped and "dropped" in line, line
            continue
        assert "Traceback" not in line and not re.search(r"\w+Warning\b", line), run.output
        assert not re.search(r"\b(ERROR|CRITICAL)\b", line), run.output
    if result.dropped:
        assert any("tracking:" in line and "dropped" in line for line in lines), run.output
    return result


def report(
    environment_report: EnvironmentReport, part: Tally, setup: str, stop: str, destination: str
) -> None:
    environment_report.add(
        "celery",
        setup=setup,
        stop=stop,
        destination=destination,
        tracked=len(part.expected),
        delivered=part.delivered,
        counted=part.dropped,
    )


# -- prefork -------------------------------------------------------------------------------------


def test_prefork_children_recycled_by_max_tasks_per_child_deliver_what_they_tracked(
    posthog: Served, tmp_path: Path, broker: Broker, environment_report: EnvironmentReport
) -> None:
    # One process at a time, recycled after 2 tasks: 4 tasks run in 2 children that each end
    # on their own (SIGTERM comes once both have).
    run = run_worker(
        posthog,
        tmp_path,
        broker,
        ["--pool", "prefork", "--concurrency", "1", "--max-tasks-per-child", "2"],
        4,
        recycled_first=True,
    )
    assert run.pids_where(lambda code: code == EX_RECYCLE) == set(run.records)
    assert len(run.records) == 2, run.records
    result = assert_delivered_or_counted(run, posthog)
    report(
        environment_report,
        result,
        f"prefork pool, 1 process, --max-tasks-per-child 2; 4 tasks x {PER_TASK} events; "
        f"{broker.name} broker",
        "each child recycled after 2 tasks",
        destination_of(posthog),
    )


def test_prefork_children_deliver_what_they_tracked_at_a_warm_shutdown(
    posthog: Served, tmp_path: Path, broker: Broker, environment_report: EnvironmentReport
) -> None:
    # Each child holds the events of its tasks when SIGTERM comes.
    run = run_worker(posthog, tmp_path, broker, ["--pool", "prefork", "--concurrency", "2"], 4)
    assert not run.pids_where(lambda code: code == EX_RECYCLE)
    result = assert_delivered_or_counted(run, posthog)
    report(
        environment_report,
        result,
        f"prefork pool, 2 processes; 4 tasks x {PER_TASK} events; {broker.name} broker",
        "SIGTERM to the worker (warm shutdown)",
        destination_of(posthog),
    )


# -- solo and threads ----------------------------------------------------------------------------


@pytest.mark.parametrize("pool", ["solo", "threads"])
def test_solo_and_threads_pools_deliver_at_a_warm_shutdown(
    healthy_posthog: Served,
    tmp_path: Path,
    broker: Broker,
    environment_report: EnvironmentReport,
    pool: str,
) -> None:
    # Tasks run in the worker's main process, which leaves through a normal interpreter exit.
    run = run_worker(healthy_posthog, tmp_path, broker, ["--pool", pool, "--concurrency", "2"], 4)
    assert len(run.records) == 1, run.records
    result = assert_delivered_or_counted(run, healthy_posthog)
    report(
        environment_report,
        result,
        f"{pool} pool{', 2 threads' if pool == 'threads' else ''}; 4 tasks x {PER_TASK} events; "
        f"{broker.name} broker",
        "SIGTERM to the worker (warm shutdown)",
        "healthy",
    )
