"""tracking-core beside the vendors' SDKs: runs every client in fresh processes, prints tables.

Starts the loopback receiver (``receiver.py``) in its own process, measures its capacity once
(``capacity.py``), then runs each client's runner (``run_*.py``) once per measurement, each
in a fresh interpreter, all against the same receiver, and prints one Markdown table per
measurement, with each client's ratio to tracking-core (1 provider). It never fails on a number:
it exits non-zero only when a runner crashed or printed nothing.

    nox -s bench_peers                       # installs the SDKs in the session's own venv
    python benchmarks/peers/driver.py        # the clients installed in this interpreter

Clients whose package is not installed in this interpreter are skipped (and said so), unless
named in ``--clients``. See docs/benchmarks.md for what each measurement does.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import importlib.util
import json
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any, NamedTuple

from common import MODES, TRACKING_CORE_DISTRIBUTIONS

HERE = Path(__file__).resolve().parent
REFERENCE = "tracking-core-1"
TRACKING_CORE = ("tracking-core-1", "tracking-core-4")


class Spec:
    """A client the driver knows: its runner, arguments, label, the modules it needs and the
    measurements it takes part in."""

    def __init__(
        self,
        key: str,
        script: str,
        label: str,
        needs: Sequence[str],
        args: Sequence[str] = (),
        modes: Sequence[str] = MODES,
    ) -> None:
        self.key = key
        self.script = script
        self.label = label
        self.needs = tuple(needs)
        self.args = tuple(args)
        self.modes = tuple(modes)

    def available(self) -> bool:
        for module in self.needs:
            try:
                if importlib.util.find_spec(module) is None:
                    return False
            except ModuleNotFoundError:  # its parent package is missing
                return False
        return True


_TC4 = ("tracking_core", "tracking_posthog", "tracking_mixpanel", "tracking_amplitude")
SPECS = {
    spec.key: spec
    for spec in (
        Spec(
            "floor",
            "run_floor.py",
            "floor: SimpleQueue.put",
            (),
            modes=("caller", "asyncio", "asyncio100", "stalled"),
        ),
        Spec(
            "floor-sender",
            "run_floor_sender.py",
            "floor sender (stdlib, no retries)",
            (),
            modes=("e2e", "asyncio", "asyncio100", "flaky"),
        ),
        Spec(
            "tracking-core-1",
            "run_tracking_core.py",
            "tracking-core, 1 provider (PostHog)",
            ("tracking_core", "tracking_posthog"),
            ("--providers", "1"),
        ),
        Spec(
            "tracking-core-4",
            "run_tracking_core.py",
            "tracking-core, 4 providers",
            (*_TC4, "tracking_webhook"),
            ("--providers", "4"),
        ),
        Spec(
            "tracking-core-1-orjson",
            "run_tracking_core.py",
            "tracking-core, 1 provider (PostHog), orjson extra",
            ("tracking_core", "tracking_posthog", "orjson"),
            ("--providers", "1", "--json", "orjson"),
            modes=("e2e",),
        ),
        Spec(
            "tracking-core-4-orjson",
            "run_tracking_core.py",
            "tracking-core, 4 providers, orjson extra",
            (*_TC4, "tracking_webhook", "orjson"),
            ("--providers", "4", "--json", "orjson"),
            modes=("e2e",),
        ),
        Spec("posthog", "run_posthog.py", "posthog", ("posthog",)),
        Spec("segment", "run_segment.py", "segment-analytics-python", ("segment.analytics",)),
        Spec(
            "mixpanel",
            "run_mixpanel.py",
            "mixpanel (BufferedConsumer)",
            ("mixpanel",),
            ("--consumer", "buffered"),
        ),
        Spec(
            "mixpanel-default",
            "run_mixpanel.py",
            "mixpanel (default Consumer)",
            ("mixpanel",),
            ("--consumer", "default"),
        ),
        Spec("amplitude", "run_amplitude.py", "amplitude-analytics", ("amplitude",)),
    )
}

DISTRIBUTIONS = (
    *TRACKING_CORE_DISTRIBUTIONS,
    "posthog",
    "segment-analytics-python",
    "mixpanel",
    "amplitude-analytics",
    "requests",
    "urllib3",
)


# -- running ----------------------------------------------------------------------------------


class Receiver:
    """The receiver process: `urls` has ``url`` (answers at once), ``stall_url`` (never
    answers), ``slow_url`` (answers after the delay) and ``flaky_url`` (after the delay, and
    503 to a random share of requests)."""

    def __init__(self, args: argparse.Namespace) -> None:
        options = ["--answer-delay", str(args.answer_delay), "--fail-rate", str(args.fail_rate)]
        self.process = subprocess.Popen(
            [sys.executable, str(HERE / "receiver.py"), *options, "--seed", str(args.seed)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError("the receiver did not start")
        self.urls: dict[str, str] = json.loads(line)
        self.url = self.urls["url"]

    def stop(self) -> None:
        try:
            self.process.communicate("", timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def log(message: str) -> None:
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


#: The driver's options every runner gets too (as ``--name value``).
PASSED_ON = ("events", "cap", "flush_timeout", "import_repeat", "flaky_cap", "flaky_settle")


def run_one(
    spec: Spec, mode: str, receiver: Receiver, args: argparse.Namespace, *extra: str
) -> dict[str, Any]:
    command = [sys.executable, str(HERE / spec.script), "--mode", mode, *extra, *spec.args]
    for name, url in receiver.urls.items():
        command += [f"--{name.replace('_', '-')}", url]
    for name in PASSED_ON:
        value = args.flaky_events if name == "events" and mode == "flaky" else getattr(args, name)
        command += [f"--{name.replace('_', '-')}", str(value)]
    if spec.script == "run_tracking_core.py" and args.shutdown_budget is not None:
        command += ["--shutdown-budget", str(args.shutdown_budget)]
    start = time.perf_counter()
    what = " ".join([spec.key, mode, *extra])
    timeout = 4 * args.cap + 2 * args.flaky_cap + args.flaky_settle + 600
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=HERE)
    except subprocess.TimeoutExpired:
        log(f"  {what}: timed out")
        return {"error": "timed out"}
    took = time.perf_counter() - start
    lines = done.stdout.strip().splitlines()
    try:
        result: dict[str, Any] = json.loads(lines[-1])
    except (IndexError, ValueError):
        tail = done.stderr.strip()[-1500:]
        log(f"  {what}: failed (exit {done.returncode})\n{tail}")
        return {"error": f"exit {done.returncode}"}
    log(f"  {what}: {took:.1f} s")
    return result


def run_flaky(spec: Spec, receiver: Receiver, args: argparse.Namespace) -> dict[str, Any]:
    """The flaky destination's run, with the same client's healthy (2 ms) run as ``healthy``."""
    healthy = run_one(spec, "flaky", receiver, args, "--answers", "healthy")
    flaky = run_one(spec, "flaky", receiver, args, "--answers", "flaky")
    for run in (healthy, flaky):
        if "error" in run or run.get("skipped"):
            return run
    return flaky | {"healthy": healthy}


#: The measurements repeated with ``--repeat``, and the figure whose median run is shown.
MEDIAN_OF = {
    "caller": "p50_us",
    "e2e": "events_per_s",
    "asyncio": "worst_ms",
    "asyncio100": "worst_ms",
}


def measure_client(
    spec: Spec, mode: str, receiver: Receiver, args: argparse.Namespace
) -> tuple[dict[str, Any], bool]:
    """One client's result in one measurement: the median run of ``--repeat`` where it applies
    (runs that failed are left out), and whether any run failed."""
    key = MEDIAN_OF.get(mode)
    if mode == "flaky":
        runs = [run_flaky(spec, receiver, args)]
    else:
        runs = [run_one(spec, mode, receiver, args) for _ in range(args.repeat if key else 1)]
    failed = any("error" in run for run in runs)
    good = sorted((run for run in runs if key in run), key=lambda run: float(run[key or ""]))
    return (good[len(good) // 2] if good else runs[-1]), failed


# -- formatting -------------------------------------------------------------------------------


def num(value: Any, digits: int = 0) -> str:
    """A number for a table: thousands separators, `digits` decimals ("n/a" when missing)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, float)):
        if digits == 0 or abs(value) >= 1000:
            return f"{value:,.0f}"
        return f"{value:,.{digits}f}"
    return str(value)


def micro(value: Any) -> str:
    if not isinstance(value, (int, float)):
        return "n/a"
    return num(value, 2 if value < 10 else 1 if value < 100 else 0)


def ratio(value: Any, reference: Any) -> str:
    if not isinstance(value, (int, float)) or not isinstance(reference, (int, float)):
        return "n/a"
    if reference == 0 or math.isnan(value) or math.isnan(reference):
        return "n/a"
    r = value / reference
    return f"{r:.2f}x" if r < 10 else f"{r:,.0f}x"


def share(value: Any, whole: Any) -> str:
    """`value` as a percentage of `whole` ("n/a" when either is missing or `whole` is 0)."""
    if not isinstance(value, (int, float)) or not isinstance(whole, (int, float)) or not whole:
        return "n/a"
    return f"{value / whole:.0%}"


def verdict(met: bool | None) -> str:
    """yes, **no** (in bold: it is what a reader looks for), or n/a."""
    return "n/a" if met is None else "yes" if met else "**no**"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def capped_seconds(value: Any, cap: float) -> str:
    if value is None:
        return f"> {cap:g} (still blocked)"
    return num(value, 2)


Result = dict[str, Any]
Results = dict[str, dict[str, Result]]  # mode -> client key -> result
#: One cell of a client's row, from its result and the reference client's result.
Cell = Callable[[Result, Result], str]


def field(key: str, digits: int = 0) -> Cell:
    """The result's `key` as a number with `digits` decimals."""
    return lambda r, ref: num(r.get(key), digits)


def versus(key: str) -> Cell:
    """The result's `key` over the reference client's (the ``x`` columns)."""
    return lambda r, ref: ratio(r.get(key), ref.get(key))


class Table(NamedTuple):
    """One measurement's table: its heading, the prose under it (a ``str.format`` template over
    the driver's options and ``n``, ``ref``, ``delay_ms`` and ``fail_pct``) and its columns."""

    mode: str
    heading: str
    about: str
    columns: Sequence[tuple[str, Cell]]


def _dropped(r: Result, ref: Result) -> str:
    return "n/a" if r.get("dropped") is None else num(r["dropped"])


CALLER = Table(
    "caller",
    "### 1. Caller cost",
    "{n} back-to-back `track()` calls in a fresh process, each timed with `perf_counter` "
    "(µs). *dropped*: events the receiver never got after flush and shutdown, with default "
    "settings (per destination, summed). *GC max*: the longest pause of Python's cyclic "
    "garbage collector (any thread; its CPU time) during the calls. x = p50 / {ref}'s.",
    [
        ("p50 µs", lambda r, ref: micro(r["p50_us"])),
        ("p99 µs", lambda r, ref: micro(r["p99_us"])),
        ("p99.9 µs", lambda r, ref: micro(r["p999_us"])),
        ("max µs", lambda r, ref: micro(r["max_us"])),
        ("dropped", _dropped),
        ("GC max ms", field("gc_max_ms", 1)),
        ("p50 x", versus("p50_us")),
    ],
)


def _receiver_busy(r: Result, ref: Result) -> str:
    return share(r.get("receiver_cpu_s"), r.get("wall_s")) if r.get("wall_s") else "n/a"


def _all_confirmed(r: Result, ref: Result) -> str:
    return verdict(bool(r.get("confirmed")))


E2E = Table(
    "e2e",
    "### 2. End to end",
    "{n} events from the first `track()` until flush returned and the receiver confirmed "
    "every one (by dedupe id); CPU: the client process, all threads; RSS: the process's "
    "peak. *receiver*: the receiver process's CPU over the same wall time, as a share of "
    "one core (near 100% it would be the bottleneck).",
    [
        ("events/s", field("events_per_s")),
        ("CPU s / 10k", field("cpu_per_10k", 3)),
        ("peak RSS MiB", field("peak_rss_mib", 1)),
        ("wall s", field("wall_s", 2)),
        ("requests", field("requests")),
        ("receiver", _receiver_busy),
        ("all confirmed", _all_confirmed),
        ("events/s x", versus("events_per_s")),
        ("CPU x", versus("cpu_per_10k")),
    ],
)


ASYNCIO_COLUMNS = [
    ("worst ms", field("worst_ms", 2)),
    ("p99 ms", field("p99_ms", 2)),
    ("p50 ms", field("p50_ms", 2)),
    ("ticks", field("ticks")),
    ("wall s", field("wall_s", 2)),
    ("GC max ms", field("gc_max_ms", 1)),
    ("worst x", versus("worst_ms")),
]
ASYNCIO_ABOUT = (
    "A 1 ms ticker (`await asyncio.sleep(0.001)`) while one coroutine tracks {n} events "
    "({shape}) and then awaits the flush in a worker thread; lateness = how much later than "
    "1 ms each tick woke up, from the first event until every event was confirmed. *GC max*: "
    "the longest garbage-collector pause (any thread; its CPU time) in that time."
)


ASYNCIO = Table(
    "asyncio",
    "### 3. Inside asyncio: a yield per event",
    ASYNCIO_ABOUT.replace("{shape}", "yielding to the loop after each"),
    ASYNCIO_COLUMNS,
)


ASYNCIO100 = Table(
    "asyncio100",
    "### 4. Inside asyncio: a yield per 100 events",
    ASYNCIO_ABOUT.replace("{shape}", "`await asyncio.sleep(0)` once per 100 calls"),
    ASYNCIO_COLUMNS,
)


def _max_track(r: Result, ref: Result) -> str:
    if r.get("track_blocked"):
        cap = float(r.get("cap_s", 0))
        return f"> {cap * 1000:,.0f} (blocked after {r['calls_done']:,} calls)"
    return f"{r['max_track_ms']:,.2f}"


def _flush_after(r: Result, ref: Result) -> str:
    timeout = r.get("flush_timeout")
    call = "flush()" if timeout is None else f"flush({timeout:g})"
    return f"{call}: {capped_seconds(r['flush_s'], float(r.get('cap_s', 0)))}"


def _shutdown_after(r: Result, ref: Result) -> str:
    return capped_seconds(r["shutdown_s"], float(r.get("cap_s", 0)))


STALLED = Table(
    "stalled",
    "### 5. Stalled receiver",
    "The receiver accepts connections and reads requests but never answers. {n} `track()` "
    "calls, then flush (with a {flush_timeout:g} s timeout where the API has one), then "
    "shutdown; each capped at {cap:g} s (a call still blocked then is left behind). No "
    "warm-up here: the first calls start the client. *GC max*: the longest "
    "garbage-collector pause (any thread; its CPU time) during the calls.",
    [
        ("max track() ms", _max_track),
        ("GC max ms", field("gc_max_ms", 1)),
        ("flush returned after s", _flush_after),
        ("shutdown returned after s", _shutdown_after),
        ("shutdown budget", lambda r, ref: str(r.get("shutdown_budget", "none"))),
        ("max track x", versus("max_track_ms")),
    ],
)


def _healthy_rate(r: Result, ref: Result) -> str:
    return num(r.get("healthy", {}).get("events_per_s"))


def _flaky_rate(r: Result, ref: Result) -> str:
    rate = num(r.get("events_per_s"))
    if r.get("capped_at_s"):
        return f"{rate} (at the {r['capped_at_s']:g} s cap, {r['calls_made']:,} calls made)"
    return rate


def _flaky_share(r: Result, ref: Result) -> str:
    return share(r.get("events_per_s"), r.get("healthy", {}).get("events_per_s"))


def _before_recovery(r: Result, ref: Result) -> str:
    return share(r.get("delivered"), r.get("calls_made"))


def _lost(r: Result, ref: Result) -> str:
    raised = r.get("calls_raised") or 0
    calls = "call" if raised == 1 else "calls"
    notes = [f"{raised:,} {calls} raised"] if raised else []
    if r.get("flush_returned_after_recovery") is False:
        notes.append("its flush still had not returned")
    return num(r.get("lost")) + (f" ({'; '.join(notes)})" if notes else "")


FLAKY = Table(
    "flaky",
    "### 6. A flaky destination",
    "{flaky_n} events to a destination that answers after {delay_ms:g} ms and answers 503 to "
    "{fail_pct:g}% of the requests at random (seeded: every run fails the same sequence), "
    "and, in a separate process, to the same destination healthy (every answer after "
    "{delay_ms:g} ms). events/s: events confirmed (by dedupe id) per second, from the "
    "first `track()` until every event was confirmed, or the client's flush returned and "
    "the counts stood still for {flaky_settle:g} s, or {flaky_cap:g} s passed (the cap: "
    "calls not made by then are not made). *before recovery*: the share of the events "
    "confirmed by then. Then the destination recovers (answers everything), the client is "
    "flushed and shut down: *lost* is what still never arrived. *503 answers*: the retries "
    "the receiver saw; CPU: the client process, all threads, per 10k events, in the flaky "
    "run.",
    [
        ("healthy events/s", _healthy_rate),
        ("flaky events/s", _flaky_rate),
        ("flaky / healthy", _flaky_share),
        ("before recovery", _before_recovery),
        ("lost", _lost),
        ("requests", field("requests")),
        ("503 answers", field("failed_requests")),
        ("CPU s / 10k", field("cpu_per_10k", 3)),
        ("flaky events/s x", versus("events_per_s")),
    ],
)


IMPORT = Table(
    "import",
    "### 7. Import and configure",
    'Fresh interpreters: `python -X importtime -c "<import>; <configure>"` (median of '
    "{import_repeat}, after one run that compiles the bytecode). *import*: the cumulative "
    "`-X importtime` of the import statement; *configure*: wall time of creating the "
    "client (tracking-core: `discover_tracking_providers()`), imports it triggers "
    "included; *total*: wall time of both.",
    [
        ("import ms", field("import_ms", 1)),
        ("configure ms", field("configure_ms", 1)),
        ("total ms", field("total_ms", 1)),
        ("total x", versus("total_ms")),
    ],
)


TABLES = [CALLER, E2E, ASYNCIO, ASYNCIO100, STALLED, FLAKY, IMPORT]


def _rows(results: Results, spec_table: Table, specs: Sequence[Spec]) -> list[list[str]]:
    by_client = results.get(spec_table.mode, {})
    reference = by_client.get(REFERENCE) or by_client.get("tracking-core-4") or {}
    rows = []
    for spec in specs:
        result = by_client.get(spec.key)
        if result is None or result.get("skipped"):
            continue
        label = f"**{spec.label}**" if spec.key in TRACKING_CORE else spec.label
        if "error" in result:
            rows.append([label, f"error: {result['error']}"])
            continue
        rows.append([label, *(cell(result, reference) for _, cell in spec_table.columns)])
    return rows


def report(results: Results, specs: Sequence[Spec], args: argparse.Namespace) -> str:
    out: list[str] = []
    if "capacity" in results:
        rows = [
            [
                f"{c['batch']} event{'s' if c['batch'] > 1 else ''} per request",
                str(c["connections"]),
                num(c["requests_per_s"]),
                num(c["events_per_s"]),
                f"{c['receiver_cpu_share']:.0%}",
            ]
            for c in results["capacity"].values()
        ]
        out += [
            "### Receiver capacity",
            "",
            "Keep-alive load processes on the same machine, PostHog-format JSON batches: what the "
            "receiver confirmed (a lower bound, since the load shares the CPUs).",
            "",
            table(["request", "connections", "requests/s", "events/s", "receiver CPU"], rows),
            "",
        ]
    words = vars(args) | {
        "n": f"{args.events:,}",
        "flaky_n": f"{args.flaky_events:,}",
        "ref": SPECS[REFERENCE].label,
        "delay_ms": args.answer_delay * 1000,
        "fail_pct": args.fail_rate * 100,
    }
    for spec_table in TABLES:
        if spec_table.mode not in results:
            continue
        headers = ["client", *(header for header, _ in spec_table.columns)]
        rows = _rows(results, spec_table, specs)
        out += [spec_table.heading, "", spec_table.about.format(**words), ""]
        out += [table(headers, rows), ""]
    out += targets(results, args)
    return "\n".join(out)


def _stalled_targets(
    label: str, s: Result, args: argparse.Namespace, bare: Result | None
) -> list[list[str]]:
    """The stalled receiver's rows of the targets table for one client (`bare`: the floor's
    stalled run, the slowest of as many calls that never wait)."""
    flush_s, shutdown_s = s.get("flush_s"), s.get("shutdown_s")
    budget = str(s.get("shutdown_budget", "")).split(maxsplit=1)[:1]
    budget_s = float(budget[0]) if budget and budget[0][:1].isdigit() else None
    track_met = s["max_track_ms"] < 1 and not s.get("track_blocked")
    flush_met = flush_s is not None and flush_s <= args.flush_timeout + 0.5
    shutdown_met = None
    if budget_s is not None:
        shutdown_met = shutdown_s is not None and shutdown_s <= budget_s + 0.5
    return [
        [
            f"stalled: max track() ({label})",
            "< 1 ms"
            + (f" (a bare SimpleQueue.put: {num(bare['max_track_ms'], 2)})" if bare else ""),
            num(s["max_track_ms"], 2),
            verdict(track_met),
        ],
        [
            f"stalled: flush({args.flush_timeout:g}) returns ({label})",
            f"in {args.flush_timeout:g} s",
            capped_seconds(flush_s, args.cap),
            verdict(flush_met),
        ],
        [
            f"stalled: shutdown ({label})",
            "≤ its budget" + (f", {budget_s:g} s" if budget_s is not None else ""),
            capped_seconds(shutdown_s, args.cap),
            verdict(shutdown_met),
        ],
    ]


def targets(results: Results, args: argparse.Namespace) -> list[str]:
    """tracking-core against issue #12's targets (information only: nothing fails on them)."""
    rows: list[list[str]] = []

    def get(mode: str, key: str, field: str) -> Result:
        """The result, or {} when it is missing, failed or lacks `field`."""
        result = results.get(mode, {}).get(key, {})
        return result if field in result else {}

    def add(measurement: str, goal: str, value: str, met: bool | None) -> None:
        rows.append([measurement, goal, value, verdict(met)])

    four = SPECS["tracking-core-4"].label
    alone = results.get("machine", {}).get("ticker")
    target = "≤ 5 ms" + (f" (the ticker alone: {num(alone['worst_ms'], 2)})" if alone else "")
    for mode, shape in (("asyncio", "a yield per event"), ("asyncio100", "a yield per 100")):
        a = get(mode, "tracking-core-4", "worst_ms")
        if a:
            worst = a["worst_ms"]
            add(f"asyncio worst lateness, {shape} ({four})", target, num(worst, 2), worst <= 5)
    floor = get("e2e", "floor-sender", "events_per_s")
    for key, shown in ((REFERENCE, ""), ("tracking-core-1-orjson", ", orjson extra")):
        e = get("e2e", key, "events_per_s")
        if not (e and floor):
            continue
        rate, cpu = e["events_per_s"], e["cpu_per_10k"]
        add(
            f"end to end, 1 HTTP provider{shown}: events/s",
            f"≥ 80% of the floor sender's {num(floor['events_per_s'])}",
            f"{num(rate)} ({share(rate, floor['events_per_s'])})",
            rate >= 0.8 * floor["events_per_s"],
        )
        if key == REFERENCE:
            add(
                "end to end, 1 HTTP provider: CPU s per 10k",
                f"≤ 2x the floor sender's {num(floor['cpu_per_10k'], 3)}",
                f"{num(cpu, 3)} ({ratio(cpu, floor['cpu_per_10k'])})",
                cpu <= 2 * floor["cpu_per_10k"],
            )
    for key in ("tracking-core-4", "tracking-core-4-orjson"):
        e4 = get("e2e", key, "events_per_s")
        if e4:
            rate = e4["events_per_s"]
            add(f"end to end ({SPECS[key].label})", "≥ 25,000 events/s", num(rate), rate >= 25_000)
    for key in TRACKING_CORE:
        f = get("flaky", key, "healthy")
        if f:
            label, healthy = SPECS[key].label, f["healthy"].get("events_per_s")
            add(
                f"flaky destination: events/s ({label})",
                f"≥ 60% of healthy ({num(healthy)})",
                f"{num(f['events_per_s'])} ({share(f['events_per_s'], healthy)})",
                bool(healthy) and f["events_per_s"] >= 0.6 * healthy,
            )
            add(f"flaky destination: lost ({label})", "0", _lost(f, {}), f["lost"] == 0)
    bare = get("stalled", "floor", "max_track_ms")
    for key in TRACKING_CORE:
        s = get("stalled", key, "max_track_ms")
        if s:
            rows.extend(_stalled_targets(SPECS[key].label, s, args, bare))
    for key in TRACKING_CORE:
        i = get("import", key, "import_ms")
        if i:
            label = SPECS[key].label
            add(
                f"`import tracking_core` ({label})",
                "≤ 15 ms",
                num(i["import_ms"], 1),
                i["import_ms"] <= 15,
            )
            add(
                f"discovery, `discover_tracking_providers()` ({label})",
                "≤ 15 ms",
                num(i["configure_ms"], 1),
                i["configure_ms"] <= 15,
            )
    c4 = get("caller", "tracking-core-4", "p50_us")
    if c4:
        add(f"caller p50 ({four})", "≤ 2.5 µs", micro(c4["p50_us"]), c4["p50_us"] <= 2.5)
    for key in TRACKING_CORE:
        c = get("caller", key, "dropped")
        if c:
            burst = f"dropped in a {args.events:,} burst ({SPECS[key].label})"
            add(burst, "0", num(c["dropped"]), c["dropped"] == 0)
    if not rows:
        return []
    return [
        "### tracking-core against the targets",
        "",
        "Issue #12's targets, then the earlier ones it keeps. Information only: a benchmark "
        "never fails a build.",
        "",
        table(["measurement", "target", "tracking-core", "met"], rows),
        "",
    ]


def environment(
    args: argparse.Namespace, argv: Sequence[str], loads: Sequence[float], results: Results
) -> str:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        cpu = platform.processor() or "unknown"
    versions = []
    for name in DISTRIBUTIONS:
        try:
            versions.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    shown: list[str] = []
    skip = False
    for arg in argv:  # where the output was written says nothing about the run
        if skip:
            skip = False
        elif arg in ("--output", "--json"):
            skip = True
        elif not arg.startswith(("--output=", "--json=")):
            shown.append(arg)
    command = "python benchmarks/peers/driver.py" + "".join(f" {a}" for a in shown)
    return "\n".join(
        [
            f"- date: {_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M} UTC",
            f"- machine: {cpu}, {os.cpu_count()} logical CPUs, {platform.system()} "
            f"{platform.release()}",
            f"- Python: {platform.python_implementation()} {platform.python_version()}",
            "- load average (1 min) before and after the run: "
            + " / ".join(f"{load:.2f}" for load in loads)
            + " (other work on the machine skews the numbers)",
            f"- packages: {', '.join(versions)}",
            f"- command: `{command}`",
            *_jitter_line(results),
        ]
    )


def machine_jitter(ticks: int, runs: int) -> dict[str, Any]:
    """This machine's own lateness: the asyncio tables' ticker (``common.py``) alone in a fresh
    interpreter for `ticks` ticks, `runs` times; the run with the median worst tick."""
    found: list[dict[str, Any]] = []
    for _ in range(runs):
        done = subprocess.run(
            [sys.executable, str(HERE / "common.py"), str(ticks)],
            capture_output=True,
            text=True,
            timeout=60 + ticks / 100,
        )
        found.append(json.loads(done.stdout))
    found.sort(key=lambda run: float(run["worst_ms"]))
    return found[len(found) // 2] | {"ticks": ticks, "runs": runs}


def _runs(count: int) -> str:
    return "one run" if count == 1 else f"median of {count} runs"


def _jitter_line(results: Results) -> list[str]:
    alone = results.get("machine", {}).get("ticker")
    if not alone:
        return []
    return [
        f"- this machine alone: the asyncio tables' 1 ms ticker with no client, "
        f"{alone['ticks']:,} ticks ({_runs(alone['runs'])}): worst "
        f"{alone['worst_ms']:.2f} ms, p99 {alone['p99_ms']:.2f} ms"
    ]


# -- main -------------------------------------------------------------------------------------


def _load_average() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")


def parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--clients",
        help=f"comma list of {', '.join(SPECS)} (default: every installed one)",
    )
    parser.add_argument(
        "--modes", default=",".join(MODES), help="comma list of " + ", ".join(MODES)
    )
    parser.add_argument("--events", type=int, default=20_000, help="events per run (20,000)")
    parser.add_argument(
        "--repeat", type=int, default=1, help="runs of caller, e2e and both asyncio (median)"
    )
    parser.add_argument("--cap", type=float, default=30.0, help="seconds a blocked call is given")
    parser.add_argument("--flush-timeout", type=float, default=5.0, help="stalled flush timeout")
    parser.add_argument(
        "--shutdown-budget",
        type=float,
        default=None,
        help="tracking-core's TRACKING_SHUTDOWN_TIMEOUT in the stalled run (default: 5 s)",
    )
    parser.add_argument("--import-repeat", type=int, default=5)
    parser.add_argument(
        "--answer-delay", type=float, default=0.002, help="flaky: seconds before answers (0.002)"
    )
    parser.add_argument(
        "--fail-rate", type=float, default=0.3, help="flaky: share of requests answered 503 (0.3)"
    )
    parser.add_argument("--seed", type=int, default=1, help="flaky: the failures' random seed")
    parser.add_argument(
        "--flaky-events",
        type=int,
        default=100_000,
        help="flaky: events per run (100,000: long enough that the rate is not decided by the "
        "backoff of the last few retries)",
    )
    parser.add_argument(
        "--flaky-cap", type=float, default=60.0, help="flaky: the longest a run may take (60 s)"
    )
    parser.add_argument(
        "--flaky-settle",
        type=float,
        default=12.0,
        help="flaky: how long the counts must stand still, after the client's flush returned, "
        "before a run ends (12 s: amplitude's SDK retries at its next 10 s flush)",
    )
    parser.add_argument(
        "--jitter-ticks",
        type=int,
        default=1500,
        help="ticks of the ticker run alone, as this machine's own lateness (0: skip it)",
    )
    parser.add_argument("--capacity-seconds", type=float, default=2.0, help="0: skip it")
    parser.add_argument("--output", type=Path, help="also write the Markdown here")
    parser.add_argument("--json", type=Path, help="write every raw result here")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse(argv)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown_modes = set(modes) - set(MODES)
    if unknown_modes:
        log(f"unknown modes: {sorted(unknown_modes)}")
        return 2
    if args.clients:
        keys = [k.strip() for k in args.clients.split(",") if k.strip()]
        unknown = [k for k in keys if k not in SPECS]
        if unknown:
            log(f"unknown clients: {unknown}; known: {list(SPECS)}")
            return 2
        missing = [k for k in keys if not SPECS[k].available()]
        if missing:
            log(f"not installed in {sys.executable}: {missing} (nox -s bench_peers installs them)")
            return 2
    else:
        keys = [k for k, spec in SPECS.items() if spec.available()]
        skipped = [k for k in SPECS if k not in keys]
        if skipped:
            log(f"not installed here, skipped: {', '.join(skipped)}")
    specs = [SPECS[k] for k in keys]
    results: Results = {}
    failed = False
    loads = [_load_average()]
    receiver = Receiver(args)
    try:
        if args.capacity_seconds > 0:
            log("receiver capacity")
            from capacity import measure

            results["capacity"] = {
                f"{batch}": measure(receiver.url, batch, 2, args.capacity_seconds)
                for batch in (1, 50)
            }
        if args.jitter_ticks > 0 and {"asyncio", "asyncio100"} & set(modes):
            log("this machine alone: a ticker")
            ticker = machine_jitter(args.jitter_ticks, max(1, args.repeat))
            results["machine"] = {"ticker": ticker}
        for mode in modes:
            log(f"{mode}:")
            for spec in specs:
                if mode in spec.modes:
                    result, failed_here = measure_client(spec, mode, receiver, args)
                    results.setdefault(mode, {})[spec.key] = result
                    failed |= failed_here
    finally:
        receiver.stop()
    loads.append(_load_average())
    text = "\n".join(
        [
            "## Environment",
            "",
            environment(args, argv, loads, results),
            "",
            report(results, specs, args),
        ]
    )
    print(text)
    if args.output:
        args.output.write_text(text + "\n")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
