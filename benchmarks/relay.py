"""tracking-redis on a real redis-server: what a producer's ``track()`` costs, and what relays
deliver to the PostHog fake.

1. Caller cost: ``track()`` per call (p50, p99, mean) with the stream provider enabled, beside
   the same with the PostHog provider enabled (its fake on loopback), each in a fresh process,
   alternated, the median of `--repeat` runs.
2. Producer: events per second from the first ``track()`` until ``flush_tracking()`` returns
   with every event in the stream.
3. Relays: the stream filled with N events, then 1 (and 2) ``tracking relay`` processes deliver
   them to the PostHog fake (served by a process of its own): events per second from the relays'
   start until every entry is acknowledged, and the relays' CPU seconds per 10,000 events (their
   own processes, read from /proc; the fake's not counted), and Redis's CPU per 10,000 events
   while producers fill the stream and while relays empty it. Checks that every event reached
   the fake.

    python benchmarks/relay.py [--events N] [--calls N] [--repeat N] [--relays 1,2]

Needs redis-server (Debian: apt-get install redis-server) and tracking-posthog installed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from tracking_posthog.fake import TEST_KEY
from tracking_redis.testing import RedisServer

#: The PostHog fake in a process of its own; ``GET /count`` says what it accepted.
FAKE = r"""
import sys
from tracking_core.receivers import LoopbackReceiver, Reply
from tracking_posthog.fake import destination
found = destination()
fake = found.fake
def respond(request):
    if request.method == "GET":
        ids = fake.event_ids()
        return Reply(200, {"unique": len(set(ids)), "total": len(ids)})
    return fake(request)
server = LoopbackReceiver(respond).start()
print(server.url, flush=True)
sys.stdin.read()
"""

#: One caller-cost run: track() timed call by call, then a flush.
CALLER = r"""
import json, sys, time
import tracking_core as tc
calls = int(sys.argv[1])
props = {"plan": "pro", "amount": 42, "path": "/checkout"}
tc.track("warm-up", props)
tc.flush_tracking(30)
times = []
clock = time.perf_counter_ns
for i in range(calls):
    t0 = clock()
    tc.track("Purchase", props, user_id=f"user-{i % 1000}")
    times.append(clock() - t0)
    if i % 1000 == 999:
        time.sleep(0.001)  # a request handler's pace: the workers get their turn
ok = tc.flush_tracking(120)
stats = {name: s.delivered for name, s in tc.tracking_stats().items()}
print(json.dumps({"ns": times, "ok": ok, "delivered": stats}))
"""


def clean_environment(**variables: str) -> dict[str, str]:
    """This environment without tracking or vendor variables, plus `variables`."""
    prefixes = ("TRACKING_", "POSTHOG_", "MIXPANEL_", "AMPLITUDE_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    env.update(variables)
    return env


def cpu_seconds(pid: int) -> float:
    """A process's user + system CPU so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def caller_cost(calls: int, env: dict[str, str]) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-c", CALLER, str(calls)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    data = json.loads(done.stdout.strip().splitlines()[-1])
    assert data["ok"], data
    ns = sorted(data["ns"])
    return {
        "p50": ns[len(ns) // 2] / 1000,
        "p99": ns[int(len(ns) * 0.99)] / 1000,
        "mean": statistics.fmean(ns) / 1000,
    }


def produce(events: int, env: dict[str, str]) -> float:
    """Fill the stream through the producer in a fresh process; its events per second."""
    script = (
        "import sys, time, tracking_core as tc\n"
        "n = int(sys.argv[1]); props = {'plan': 'pro', 'amount': 42, 'path': '/checkout'}\n"
        "t0 = time.perf_counter()\n"
        "for i in range(n): tc.track('Purchase', props, user_id=f'user-{i % 1000}')\n"
        "assert tc.flush_tracking(300)\n"
        "print(n / (time.perf_counter() - t0))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(events)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    return float(done.stdout.strip().splitlines()[-1])


def fake_count(url: str) -> dict[str, int]:
    with urllib.request.urlopen(url + "/count") as answer:
        counts: dict[str, int] = json.load(answer)
        return counts


def consumers(client: Any, stream: str) -> int:
    """Relays in the group so far (0 before the first one made it)."""
    import redis

    try:
        return len(client.xinfo_consumers(stream, "tracking-relays"))
    except redis.ResponseError:
        return 0


def relays_run(
    count: int, events: int, server: RedisServer, fake_url: str, work: Path
) -> dict[str, Any]:
    """Fill a fresh stream with `events`, run `count` relays until all are acknowledged."""
    client = server.client()
    client.flushall()
    stream = f"bench:{count}"
    produce_env = clean_environment(
        TRACKING_PROVIDERS="redis",
        TRACKING_REDIS_URL=server.url,
        TRACKING_REDIS_STREAM=stream,
        TRACKING_MAX_QUEUE=str(events + 1000),
    )
    assert server.process is not None
    redis0 = cpu_seconds(server.process.pid)
    produced = produce(events, produce_env)
    redis_producing = cpu_seconds(server.process.pid) - redis0
    before = fake_count(fake_url)
    env = clean_environment(
        TRACKING_PROVIDERS="posthog",
        TRACKING_REDIS_URL=server.url,
        TRACKING_REDIS_STREAM=stream,
        TRACKING_FLUSH_INTERVAL="0.05",
        POSTHOG_API_KEY=TEST_KEY,
        POSTHOG_HOST=fake_url,
    )
    processes = []
    for n in range(count):
        log = (work / f"relay-{count}-{n}.log").open("w")
        env_n = {**env, "TRACKING_RELAY_CONSUMER": f"bench-{n}"}
        processes.append(
            subprocess.Popen(
                [sys.executable, "-m", "tracking_core", "relay"],
                env=env_n,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
    state = f"{stream}:relay:tracking-relays"
    # The clock starts once every relay is up: a relay joins the group with its first read.
    start_deadline = time.monotonic() + 60
    while consumers(client, stream) < count:
        assert time.monotonic() < start_deadline, "relays did not start"
        time.sleep(0.01)
    t0 = time.perf_counter()
    cpu0 = sum(cpu_seconds(p.pid) for p in processes)
    redis0 = cpu_seconds(server.process.pid)
    deadline = time.monotonic() + 600
    while int(client.hget(state, "acknowledged") or 0) < events:
        assert time.monotonic() < deadline, "relays did not finish"
        time.sleep(0.005)
    wall = time.perf_counter() - t0
    used = sum(cpu_seconds(p.pid) for p in processes) - cpu0
    redis_relaying = cpu_seconds(server.process.pid) - redis0
    for process in processes:
        process.terminate()
        process.wait(timeout=30)
    after = fake_count(fake_url)
    unique = after["unique"] - before["unique"]
    return {
        "relays": count,
        "events": events,
        "produced_per_s": produced,
        "per_s": events / wall,
        "cpu_per_10k": used / events * 10_000,
        "redis_producing_per_10k": redis_producing / events * 10_000,
        "redis_relaying_per_10k": redis_relaying / events * 10_000,
        "wall": wall,
        "arrived": unique,
        "repeats": after["total"] - before["total"] - unique,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--relays", default="1,2")
    parser.add_argument("--repeat", type=int, default=3, help="caller-cost runs per provider")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        fake = subprocess.Popen(
            [sys.executable, "-c", FAKE],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=clean_environment(),
        )
        assert fake.stdout is not None
        fake_url = fake.stdout.readline().strip()
        try:
            with RedisServer(work / "redis", appendonly=True) as server:
                redis_env = clean_environment(
                    TRACKING_PROVIDERS="redis",
                    TRACKING_REDIS_URL=server.url,
                    TRACKING_MAX_QUEUE=str(args.calls + 1000),
                )
                posthog_env = clean_environment(
                    TRACKING_PROVIDERS="posthog", POSTHOG_API_KEY=TEST_KEY, POSTHOG_HOST=fake_url
                )
                runs_of: dict[str, list[dict[str, float]]] = {"redis": [], "posthog": []}
                for _ in range(args.repeat):  # alternated: the machine's noise hits both
                    runs_of["redis"].append(caller_cost(args.calls, redis_env))
                    runs_of["posthog"].append(caller_cost(args.calls, posthog_env))
                costs = {
                    name: {key: statistics.median(run[key] for run in runs) for key in runs[0]}
                    for name, runs in runs_of.items()
                }
                runs = [
                    relays_run(int(count), args.events, server, fake_url, work)
                    for count in args.relays.split(",")
                ]
        finally:
            fake.communicate("", timeout=10)
    print(f"\n### Caller cost: track(), {args.calls:,} calls, median of {args.repeat} runs\n")
    print("| provider enabled | p50 µs | p99 µs | mean µs |")
    print("|---|---|---|---|")
    for name, cost in costs.items():
        print(f"| {name} | {cost['p50']:.2f} | {cost['p99']:.2f} | {cost['mean']:.2f} |")
    print(f"\n### Relays to the PostHog fake, {args.events:,} events\n")
    print(
        "| relays | producer events/s | relay events/s | relay CPU s per 10k | wall s | "
        "Redis CPU s per 10k: producing, relaying | arrived | repeats |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for run in runs:
        print(
            f"| {run['relays']} | {run['produced_per_s']:,.0f} | {run['per_s']:,.0f} | "
            f"{run['cpu_per_10k']:.2f} | {run['wall']:.2f} | "
            f"{run['redis_producing_per_10k']:.3f}, {run['redis_relaying_per_10k']:.3f} | "
            f"{run['arrived']:,} | "
            f"{run['repeats']} |"
        )


if __name__ == "__main__":
    main()
