"""What every ``run_*.py`` shares: the measurements, each run inside one fresh process.

A runner defines a `Client` (how to configure one analytics client against the receiver, call
its ``track``, flush it and shut it down) and calls `main`. Each invocation measures one mode
and prints one JSON line on standard output:

- ``caller``: N back-to-back ``track()`` calls, each timed (p50/p99/p99.9/max in µs), then flush
  and shutdown; ``dropped`` = events the receiver never got.
- ``e2e``: wall time and this process's CPU (all threads) from the first of N calls until flush
  returned and the receiver confirmed every event; peak RSS.
- ``asyncio``: a 1 ms ticker's worst lateness while a coroutine tracks N events (yielding to the
  loop after each call) and then awaits the flush in a worker thread.
- ``asyncio100``: the same, yielding once per 100 calls.
- ``stalled``: against a receiver that accepts and never answers: the slowest ``track()``, how
  long ``flush(timeout)`` and ``shutdown()`` take to return (each capped: a call still blocked at
  the cap is reported as ``null`` and left behind).
- ``flaky``: like ``e2e``, against a destination that answers after 2 ms (``--answers
  healthy``) or that also fails 30 % of the requests with 503 (``--answers flaky``): events/s
  until every event was confirmed or the client's flush returned and the counts stopped moving
  (or ``--flaky-cap`` passed); then the destination recovers, the client is flushed and shut
  down, and what never arrived is *lost*.
- ``import``: ``python -X importtime`` of importing the client, plus configuring it, in fresh
  interpreters (median of several).

Only the standard library is imported here, so a runner's own import cost stays out of the
numbers of the client it measures (``import`` mode measures in separate interpreters anyway).
``python common.py TICKS`` runs the asyncio modes' ticker alone, with no client: this machine's
own lateness (the driver prints it beside the asyncio targets).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

__all__ = [
    "TRACKING_CORE_DISTRIBUTIONS",
    "Client",
    "Setup",
    "TrackCall",
    "main",
    "percentile",
    "sdk",
]

#: ``track(name, properties, user_id)``: one call of the client's public API.
TrackCall = Callable[[str, dict[str, Any], str], None]

EVENT_NAME = "Purchase"
#: The users the events are spread over (ids of at least 5 characters: Amplitude's minimum).
USERS = [f"user-{i:05d}" for i in range(1000)]
MODES = ("caller", "e2e", "asyncio", "asyncio100", "stalled", "flaky", "import")
#: tracking-core's distributions (its runner reports their versions, the driver too).
TRACKING_CORE_DISTRIBUTIONS = (
    "tracking-core",
    "tracking-posthog",
    "tracking-mixpanel",
    "tracking-amplitude",
    "tracking-webhook",
    "httpx",
)


def properties(i: int) -> dict[str, Any]:
    """The properties of event `i`: a fresh dict per call, as an application would pass."""
    return {"plan": "pro", "amount": 42, "path": "/checkout", "seq": i}


class Setup:
    """What `Client.setup` gives back: the track call and how to flush and shut down.

    Attributes:
        track: calls the client's public tracking method once.
        flush: asks the client to deliver what it holds, waiting at most `timeout` seconds
            where the client's API has a timeout (it returns True/False when the client says
            whether it finished, None when it does not say).
        shutdown: the client's own shutdown (final flush and stop).
        shutdown_budget: the shutdown's time budget as the client documents it (text).
    """

    def __init__(
        self,
        track: TrackCall,
        flush: Callable[[float], bool | None],
        shutdown: Callable[[], object],
        shutdown_budget: str = "none",
    ) -> None:
        self.track = track
        self.flush = flush
        self.shutdown = shutdown
        self.shutdown_budget = shutdown_budget


class Client:
    """One benchmarked client. Subclasses set the attributes and implement `setup`."""

    #: The label in the tables.
    label = "?"
    #: The distributions whose versions are reported.
    distributions: tuple[str, ...] = ()
    #: The receiver's vendor keys this client delivers to (empty: delivers nowhere).
    vendors: tuple[str, ...] = ()
    #: The modes this client takes part in.
    modes: tuple[str, ...] = MODES
    #: Whether ``flush`` takes a timeout (otherwise it is only capped by the runner).
    flush_has_timeout = True
    #: For ``import`` mode: the import statement, and the code that creates the client
    #: (``{url}`` is replaced by the receiver's URL, quoted).
    import_statement = ""
    configure_template = ""

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """Client-specific command-line options."""

    def configure(self, args: argparse.Namespace) -> None:
        """Read the client-specific options (before anything else runs)."""

    def environment(self, url: str, mode: str) -> dict[str, str]:
        """Environment variables the client is configured with (set before `setup`)."""
        return {}

    def setup(self, url: str, mode: str, events: int) -> Setup:
        """Import and configure the client, pointed at `url`."""
        raise NotImplementedError

    def import_code(self, url: str) -> tuple[str, str]:
        """Python source of (importing the client, configuring it) for ``import`` mode."""
        return self.import_statement, self.configure_template.format(url=repr(url))


# -- helpers ----------------------------------------------------------------------------------


def sdk(module: str) -> Any:
    """Import a vendor SDK (typed as Any: the SDKs are installed only in the benchmark venv)."""
    import importlib

    return importlib.import_module(module)


def percentile(sorted_samples: Sequence[float], q: float) -> float:
    """The `q` quantile (0..1) of already sorted samples (nearest rank, as bench_track.py)."""
    if not sorted_samples:
        return float("nan")
    return sorted_samples[min(len(sorted_samples) - 1, int(len(sorted_samples) * q))]


def receiver_counts(url: str, command: str = "count") -> dict[str, Any]:
    """The receiver's counts (``count``), or its answer to ``reset`` or ``recover``."""
    with urllib.request.urlopen(f"{url}/__{command}", timeout=10) as answer:
        counts: dict[str, Any] = json.load(answer)
    return counts


def reset_receiver(url: str) -> None:
    receiver_counts(url, "reset")


def unique_counts(url: str, vendors: Sequence[str]) -> dict[str, int]:
    seen = receiver_counts(url)["vendors"]
    return {vendor: int(seen.get(vendor, {}).get("unique", 0)) for vendor in vendors}


class Confirmed(NamedTuple):
    """What `wait_confirmed` saw: whether every vendor got every event, the distinct events per
    vendor, and when (``time.perf_counter()``) it last looked and the counts last changed."""

    all: bool
    counts: dict[str, int]
    at: float
    changed_at: float


def wait_confirmed(
    url: str, vendors: Sequence[str], expected: int, timeout: float, settle: float = 1.0
) -> Confirmed:
    """Poll the receiver until every vendor has `expected` distinct events, or until `timeout`
    passes, or (when some are missing) until the counts stopped moving for `settle` seconds."""
    deadline = time.perf_counter() + timeout
    last: dict[str, int] = {}
    last_change = time.perf_counter()
    while True:
        counts = unique_counts(url, vendors)
        now = time.perf_counter()
        if counts != last:
            last, last_change = counts, now
        done = all(counts[v] >= expected for v in vendors)
        if done or now >= deadline or now - last_change >= settle:
            return Confirmed(done, counts, now, last_change)
        time.sleep(0.01)


def lost(expected: int, counts: dict[str, int]) -> int:
    """Events some destination never got (summed over the destinations)."""
    return sum(max(0, expected - count) for count in counts.values())


def capped(function: Callable[[], object], cap: float) -> tuple[float | None, object]:
    """Run `function` in a daemon thread; (seconds it took, its result), or (None, None) when it
    has not returned within `cap` seconds (the thread is left behind, still blocked)."""
    box: dict[str, object] = {}

    def target() -> None:
        start = time.perf_counter()
        try:
            box["value"] = function()
        except BaseException as exc:  # reported, not raised: the measurement goes on
            box["value"] = f"raised {type(exc).__name__}: {exc}"
        box["seconds"] = time.perf_counter() - start

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(cap)
    if thread.is_alive():
        return None, None
    seconds = box["seconds"]
    assert isinstance(seconds, float)
    return seconds, box.get("value")


class GcWatch:
    """Records the cyclic garbage collector's pauses (in any thread) while it is entered: the
    collecting thread's CPU time from its start to its end."""

    def __init__(self) -> None:
        self.pauses: list[float] = []
        self._started = 0.0

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        # CPU time of the collecting thread, not wall time: a callback runs Python code, where
        # the thread may hand the GIL to others, and their turn is not the collector's pause.
        if phase == "start":
            self._started = time.thread_time()
        else:
            self.pauses.append(time.thread_time() - self._started)

    def __enter__(self) -> GcWatch:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._callback)

    def summary(self) -> dict[str, Any]:
        return {
            "gc_collections": len(self.pauses),
            "gc_max_ms": max(self.pauses, default=0.0) * 1e3,
        }


def requests(counts: dict[str, Any], key: str = "requests") -> int:
    """Requests the receiver got (or, with ``key="failed"``, answered 503), all vendors."""
    return sum(int(vendor.get(key, 0)) for vendor in counts["vendors"].values())


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def warm_up(setup: Setup, client: Client, url: str) -> None:
    """One event delivered end to end, so threads and connections exist before measuring."""
    setup.track(EVENT_NAME, properties(-1), USERS[0])
    capped(lambda: setup.flush(30.0), 60.0)
    if client.vendors:
        wait_confirmed(url, client.vendors, 1, timeout=30.0)
    reset_receiver(url)


# -- the modes --------------------------------------------------------------------------------


def run_caller(client: Client, args: argparse.Namespace) -> dict[str, Any]:
    setup = client.setup(args.destination, args.mode, args.events)
    warm_up(setup, client, args.url)
    n = args.events
    props = [properties(i) for i in range(n)]
    users = [USERS[i % len(USERS)] for i in range(n)]
    track = setup.track
    clock = time.perf_counter
    samples = [0.0] * n
    gc.collect()
    with GcWatch() as watch:
        for i in range(n):
            start = clock()
            track(EVENT_NAME, props[i], users[i])
            samples[i] = clock() - start
    flush_s, _ = capped(lambda: setup.flush(120.0), 120.0)
    shutdown_s, _ = capped(setup.shutdown, 120.0)
    result: dict[str, Any] = {}
    if client.vendors:
        seen = wait_confirmed(args.url, client.vendors, n, timeout=60.0)
        result["confirmed"] = seen.all
        result["received"] = seen.counts
        result["dropped"] = lost(n, seen.counts)
    result.update(watch.summary())
    result["max_index"] = max(range(n), key=samples.__getitem__)
    samples.sort()
    result.update(
        {
            "p50_us": percentile(samples, 0.50) * 1e6,
            "p99_us": percentile(samples, 0.99) * 1e6,
            "p999_us": percentile(samples, 0.999) * 1e6,
            "max_us": samples[-1] * 1e6,
            "mean_us": statistics.fmean(samples) * 1e6,
            "flush_s": flush_s,
            "shutdown_s": shutdown_s,
        }
    )
    return result


def run_e2e(client: Client, args: argparse.Namespace) -> dict[str, Any]:
    setup = client.setup(args.destination, args.mode, args.events)
    warm_up(setup, client, args.url)
    n = args.events
    track = setup.track
    receiver_before = receiver_counts(args.url)
    gc.collect()
    cpu0, t0 = time.process_time(), time.perf_counter()
    for i in range(n):
        track(EVENT_NAME, properties(i), USERS[i % len(USERS)])
    flushed_s, flushed = capped(lambda: setup.flush(300.0), 300.0)
    seen = wait_confirmed(args.url, client.vendors, n, timeout=120.0)
    cpu1 = time.process_time()
    wall = seen.at - t0
    receiver_after = receiver_counts(args.url)
    capped(setup.shutdown, 60.0)
    return {
        "events_per_s": n / wall,
        "cpu_per_10k": (cpu1 - cpu0) / n * 10_000,
        "cpu_s": cpu1 - cpu0,
        "wall_s": wall,
        "flush_returned": flushed_s is not None,
        "flush_result": flushed,
        "confirmed": seen.all,
        "received": seen.counts,
        "requests": requests(receiver_after),
        "receiver_cpu_s": receiver_after["cpu"] - receiver_before["cpu"],
        "peak_rss_mib": peak_rss_mib(),
    }


async def ticker(lateness: list[float], done: Callable[[], bool]) -> None:
    """The asyncio modes' ticker: sleeps 1 ms until `done()`, appending to `lateness` how much
    later than 1 ms each sleep ended."""
    import asyncio

    clock = time.perf_counter
    while not done():
        start = clock()
        await asyncio.sleep(0.001)
        lateness.append(clock() - start - 0.001)


def ticker_alone(ticks: int) -> dict[str, float]:
    """`ticker` for `ticks` ticks with nothing beside it: its worst and p99 lateness (ms)."""
    import asyncio

    lateness: list[float] = []
    asyncio.run(ticker(lateness, lambda: len(lateness) >= ticks))
    lateness.sort()
    return {"worst_ms": lateness[-1] * 1e3, "p99_ms": percentile(lateness, 0.99) * 1e3}


def run_asyncio(client: Client, args: argparse.Namespace) -> dict[str, Any]:
    import asyncio

    setup = client.setup(args.destination, args.mode, args.events)
    warm_up(setup, client, args.url)
    n = args.events
    every = 100 if args.mode == "asyncio100" else 1  # calls between two yields to the loop
    track = setup.track
    lateness: list[float] = []

    async def scenario() -> tuple[bool, float]:
        stop = asyncio.Event()
        tick = asyncio.create_task(ticker(lateness, stop.is_set))
        await asyncio.sleep(0.05)  # the ticker runs before the first event...
        lateness.clear()  # ...and only what happens from the first event on counts
        watch.pauses.clear()
        t0 = time.perf_counter()
        for i in range(n):
            track(EVENT_NAME, properties(i), USERS[i % len(USERS)])
            if (i + 1) % every == 0:  # as `every` events per handler: the loop runs in between
                await asyncio.sleep(0)
        await asyncio.to_thread(capped, lambda: setup.flush(120.0), 120.0)
        confirmed = True
        if client.vendors:
            seen = await asyncio.to_thread(wait_confirmed, args.url, client.vendors, n, 60.0)
            confirmed = seen.all
        wall = time.perf_counter() - t0
        stop.set()
        await tick
        return confirmed, wall

    with GcWatch() as watch:
        confirmed, wall = asyncio.run(scenario())
    capped(setup.shutdown, 60.0)
    lateness.sort()
    return {
        "worst_ms": lateness[-1] * 1e3 if lateness else float("nan"),
        "p99_ms": percentile(lateness, 0.99) * 1e3,
        "p50_ms": percentile(lateness, 0.50) * 1e3,
        "ticks": len(lateness),
        "wall_s": wall,
        "confirmed": confirmed,
    } | watch.summary()


def run_stalled(client: Client, args: argparse.Namespace) -> dict[str, Any]:
    setup = client.setup(args.destination, args.mode, args.events)
    n = args.events
    cap = args.cap
    samples: list[float] = []
    props = [properties(i) for i in range(n)]
    users = [USERS[i % len(USERS)] for i in range(n)]

    def burst() -> None:
        track = setup.track
        clock = time.perf_counter
        for i in range(n):
            start = clock()
            track(EVENT_NAME, props[i], users[i])
            samples.append(clock() - start)

    started = time.perf_counter()
    with GcWatch() as watch:
        track_s, _ = capped(burst, cap)
    if track_s is None:  # a call is still blocked: it has lasted since it started
        blocked = time.perf_counter() - started - sum(samples)
        max_track = max([*samples, blocked])
    else:
        max_track = max(samples) if samples else float("nan")
    flush_s, flush_result = capped(lambda: setup.flush(args.flush_timeout), cap)
    shutdown_s, _ = capped(setup.shutdown, cap)
    return {
        "max_track_ms": max_track * 1e3,
        "max_index": max(range(len(samples)), key=samples.__getitem__) if samples else None,
        "track_blocked": track_s is None,
        **watch.summary(),
        "calls_done": len(samples),
        "flush_s": flush_s,
        "flush_result": flush_result if isinstance(flush_result, (bool, type(None))) else None,
        "flush_timeout": args.flush_timeout if client.flush_has_timeout else None,
        "shutdown_s": shutdown_s,
        "shutdown_budget": setup.shutdown_budget,
        "cap_s": cap,
    }


def run_flaky(client: Client, args: argparse.Namespace) -> dict[str, Any]:
    setup = client.setup(args.destination, args.mode, args.events)
    warm_up(setup, client, args.url)
    n = args.events
    track = setup.track
    calls = {"made": 0, "raised": 0}
    stop = threading.Event()  # set at the cap: the calls not made by then are not made

    def burst_then_flush() -> None:
        for i in range(n):
            if stop.is_set():
                break
            try:
                track(EVENT_NAME, properties(i), USERS[i % len(USERS)])
            except Exception:  # a client that raises into its caller when sending fails
                calls["raised"] += 1
            calls["made"] += 1
        try:  # given as long as the run may wait for it (the cap, then the recovery)
            setup.flush(args.flaky_cap + args.cap)
        except Exception:  # the same, from flush(); what it holds is sent again at shutdown
            calls["raised"] += 1

    receiver_before = receiver_counts(args.url)
    gc.collect()
    cpu0, t0 = time.process_time(), time.perf_counter()
    work = threading.Thread(target=burst_then_flush, daemon=True)
    work.start()
    work.join(args.flaky_cap)
    capped_at = args.flaky_cap if work.is_alive() else None
    # Until every event is confirmed, or (the flush having returned) the counts stop moving;
    # this thread's CPU (polling the receiver) is not the client's.
    polling0 = time.thread_time()
    seen = wait_confirmed(
        args.url,
        client.vendors,
        n,
        timeout=0.0 if capped_at else args.flaky_cap,
        settle=args.flaky_settle,
    )
    cpu1 = time.process_time() - (time.thread_time() - polling0)
    made_by_then = max(1, calls["made"])
    wall = (seen.at if seen.all or capped_at else seen.changed_at) - t0
    delivered = sum(seen.counts.values()) / len(client.vendors)
    # The destination recovers: whatever the client still holds may now arrive.
    stop.set()
    receiver_counts(args.url, "recover")
    work.join(args.cap)
    shutdown_s, _ = capped(setup.shutdown, args.cap)
    made = calls["made"]
    final = wait_confirmed(args.url, client.vendors, made, timeout=args.cap, settle=1.0)
    receiver_after = receiver_counts(args.url)
    return {
        "events_per_s": delivered / wall,
        "cpu_per_10k": (cpu1 - cpu0) / made_by_then * 10_000,
        "wall_s": wall,
        "capped_at_s": capped_at,
        "calls_made": made,
        "calls_raised": calls["raised"],
        "confirmed": seen.all,
        "delivered": delivered,
        "lost": lost(made, final.counts),
        "flush_returned_after_recovery": not work.is_alive(),
        "shutdown_s": shutdown_s,
        "requests": requests(receiver_after) - requests(receiver_before),
        "failed_requests": requests(receiver_after, "failed") - requests(receiver_before, "failed"),
        "answers": args.answers,
    }


_IMPORT_SCRIPT = """
import sys, time
t0 = time.perf_counter()
sys.stderr.write("@@import\\n")
{import_code}
t1 = time.perf_counter()
sys.stderr.write("@@configure\\n")
{configure_code}
t2 = time.perf_counter()
sys.stderr.write("@@end\\n")
sys.stdout.write("%f %f\\n" % (t1 - t0, t2 - t1))
"""


def _importtime_ms(stderr: str) -> dict[str, float]:
    """Cumulative ``-X importtime`` ms of the top-level imports in each marked section."""
    sums: dict[str, float] = {}
    section = None
    for line in stderr.splitlines():
        if line.startswith("@@"):
            section = line[2:].strip()
            sums.setdefault(section, 0.0)
            continue
        if section is None or not line.startswith("import time:"):
            continue
        parts = line.split("|")
        if len(parts) != 3 or not parts[1].strip().isdigit():
            continue  # the header line
        name = parts[2]
        depth = (len(name) - len(name.lstrip(" ")) - 1) // 2
        if depth == 0:
            sums[section] += int(parts[1]) / 1000
    return sums


def run_import(client: Client, args: argparse.Namespace) -> dict[str, Any]:
    import_code, configure_code = client.import_code(args.url)
    script = _IMPORT_SCRIPT.format(import_code=import_code, configure_code=configure_code)
    env = {**os.environ, **client.environment(args.url, "import")}
    # The first run compiles the .pyc files (dropped), as pip does when it installs a package:
    # with PYTHONDONTWRITEBYTECODE set (some shells and containers set it) an editable install
    # would be compiled again on every run and the figure would be the compiler's.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    runs: list[dict[str, float]] = []
    for attempt in range(args.import_repeat + 1):
        done = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", script],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if done.returncode != 0:
            raise RuntimeError(f"import run failed: {done.stderr[-2000:]}")
        if attempt == 0:
            continue
        import_wall, configure_wall = (float(x) for x in done.stdout.split())
        sums = _importtime_ms(done.stderr)
        runs.append(
            {
                "import_ms": sums.get("import", 0.0),
                "import_wall_ms": import_wall * 1e3,
                "configure_ms": configure_wall * 1e3,
                "configure_imports_ms": sums.get("configure", 0.0),
                "total_ms": (import_wall + configure_wall) * 1e3,
            }
        )
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]} | {
        "runs": len(runs)
    }


# -- entry point ------------------------------------------------------------------------------


def versions(distributions: Sequence[str]) -> dict[str, str]:
    from importlib import metadata

    found = {}
    for name in distributions:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def main(client: Client, argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=f"Benchmark runner: {client.label}")
    parser.add_argument("--mode", choices=MODES, required=True)
    parser.add_argument("--url", required=True, help="the receiver's base URL")
    parser.add_argument("--stall-url", help="the stalling receiver's base URL (stalled mode)")
    parser.add_argument("--slow-url", help="the receiver's 2 ms port (flaky mode, healthy)")
    parser.add_argument("--flaky-url", help="the receiver's failing port (flaky mode)")
    parser.add_argument("--answers", choices=("healthy", "flaky"), default="flaky")
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--cap", type=float, default=30.0, help="longest wait for a blocked call")
    parser.add_argument("--flaky-cap", type=float, default=60.0, help="longest flaky run")
    parser.add_argument(
        "--flaky-settle",
        type=float,
        default=12.0,
        help="flaky mode: how long the counts must stand still before it ends (a client may "
        "retry at its next periodic flush, amplitude's after 10 s)",
    )
    parser.add_argument("--flush-timeout", type=float, default=5.0)
    parser.add_argument("--import-repeat", type=int, default=5)
    client.add_arguments(parser)
    args = parser.parse_args(argv)
    client.configure(args)
    result: dict[str, Any] = {"client": client.label, "mode": args.mode}
    if args.mode not in client.modes:
        result["skipped"] = True
    else:
        flaky_url = args.slow_url if args.answers == "healthy" else args.flaky_url
        args.destination = {"stalled": args.stall_url, "flaky": flaky_url}.get(args.mode, args.url)
        if args.destination is None:
            parser.error(f"{args.mode} mode needs the receiver's URL for it")
        if args.mode != "import":
            os.environ.update(client.environment(args.destination, args.mode))
        runner = {
            "caller": run_caller,
            "e2e": run_e2e,
            "asyncio": run_asyncio,
            "asyncio100": run_asyncio,
            "stalled": run_stalled,
            "flaky": run_flaky,
            "import": run_import,
        }[args.mode]
        result.update(runner(client, args))
        result["events"] = args.events
        result["versions"] = versions(client.distributions)
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    sys.stderr.flush()
    # Some clients block interpreter exit (joins at exit, stuck threads after a stall): the
    # measurement is done, so leave now.
    os._exit(0)


if __name__ == "__main__":
    print(json.dumps(ticker_alone(int(sys.argv[1]))))
