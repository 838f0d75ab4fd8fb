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
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
MODES = ("caller", "e2e", "asyncio", "stalled", "import")
REFERENCE = "tracking-core-1"


class Spec:
    """A client the driver knows: its runner, arguments, label and the modules it needs."""

    def __init__(
        self, key: str, script: str, label: str, needs: Sequence[str], args: Sequence[str] = ()
    ) -> None:
        self.key = key
        self.script = script
        self.label = label
        self.needs = tuple(needs)
        self.args = tuple(args)

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
        Spec("floor", "run_floor.py", "floor: SimpleQueue.put", ()),
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
#: Which clients take part in which measurement (the floor only where it means something).
ONLY = {"floor": ("caller", "asyncio")}

DISTRIBUTIONS = (
    "tracking-core",
    "tracking-posthog",
    "tracking-mixpanel",
    "tracking-amplitude",
    "tracking-webhook",
    "httpx",
    "posthog",
    "segment-analytics-python",
    "mixpanel",
    "amplitude-analytics",
    "requests",
    "urllib3",
)


# -- running ----------------------------------------------------------------------------------


class Receiver:
    """The receiver process; `url` answers, `stall_url` never does."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(HERE / "receiver.py")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError("the receiver did not start")
        urls = json.loads(line)
        self.url: str = urls["url"]
        self.stall_url: str = urls["stall_url"]

    def stop(self) -> None:
        try:
            self.process.communicate("", timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def log(message: str) -> None:
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


def run_one(spec: Spec, mode: str, receiver: Receiver, args: argparse.Namespace) -> dict[str, Any]:
    command = [
        sys.executable,
        str(HERE / spec.script),
        "--mode",
        mode,
        "--url",
        receiver.url,
        "--stall-url",
        receiver.stall_url,
        "--events",
        str(args.events),
        "--cap",
        str(args.cap),
        "--flush-timeout",
        str(args.flush_timeout),
        "--import-repeat",
        str(args.import_repeat),
        *spec.args,
    ]
    if spec.script == "run_tracking_core.py" and args.shutdown_budget is not None:
        command += ["--shutdown-budget", str(args.shutdown_budget)]
    start = time.perf_counter()
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=4 * args.cap + 600, cwd=HERE
        )
    except subprocess.TimeoutExpired:
        log(f"  {spec.key} {mode}: timed out")
        return {"error": "timed out"}
    took = time.perf_counter() - start
    lines = done.stdout.strip().splitlines()
    try:
        result: dict[str, Any] = json.loads(lines[-1])
    except (IndexError, ValueError):
        tail = done.stderr.strip()[-1500:]
        log(f"  {spec.key} {mode}: failed (exit {done.returncode})\n{tail}")
        return {"error": f"exit {done.returncode}"}
    log(f"  {spec.key} {mode}: {took:.1f} s")
    return result


def median_run(runs: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """The run whose `key` is the median (runs that failed are left out)."""
    good = [run for run in runs if key in run]
    if not good:
        return runs[-1]
    good.sort(key=lambda run: float(run[key]))
    return good[len(good) // 2]


MEDIAN_OF = {"caller": "p50_us", "e2e": "events_per_s", "asyncio": "worst_ms"}


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


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def capped_seconds(value: Any, cap: float) -> str:
    if value is None:
        return f"> {cap:g} (still blocked)"
    return num(value, 2)


Results = dict[str, dict[str, dict[str, Any]]]  # mode -> client key -> result


def _rows(
    results: Results,
    mode: str,
    specs: Sequence[Spec],
    cells: Callable[[dict[str, Any], dict[str, Any]], list[str]],
) -> list[list[str]]:
    by_client = results.get(mode, {})
    reference = by_client.get(REFERENCE) or by_client.get("tracking-core-4") or {}
    rows = []
    for spec in specs:
        result = by_client.get(spec.key)
        if result is None or result.get("skipped"):
            continue
        label = f"**{spec.label}**" if spec.key.startswith("tracking-core") else spec.label
        if "error" in result:
            rows.append([label, f"error: {result['error']}"])
            continue
        rows.append([label, *cells(result, reference)])
    return rows


def report(results: Results, specs: Sequence[Spec], args: argparse.Namespace) -> str:
    n = f"{args.events:,}"
    out: list[str] = []
    ref_label = SPECS[REFERENCE].label
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

    def caller(r: dict[str, Any], ref: dict[str, Any]) -> list[str]:
        dropped = r.get("dropped")
        return [
            micro(r["p50_us"]),
            micro(r["p99_us"]),
            micro(r["p999_us"]),
            micro(r["max_us"]),
            "n/a" if dropped is None else num(dropped),
            num(r.get("gc_max_ms"), 1),
            ratio(r["p50_us"], ref.get("p50_us")),
        ]

    out += [
        "### 1. Caller cost",
        "",
        f"{n} back-to-back `track()` calls in a fresh process, each timed with "
        "`perf_counter` (µs). *dropped*: events the receiver never got after flush and "
        "shutdown, with default settings (per destination, summed). *GC max*: the longest "
        "pause of Python's cyclic garbage collector (any thread) during the calls. "
        f"x = p50 / {ref_label}'s.",
        "",
        table(
            ["client", "p50 µs", "p99 µs", "p99.9 µs", "max µs", "dropped", "GC max ms", "p50 x"],
            _rows(results, "caller", specs, caller),
        ),
        "",
    ]

    def e2e(r: dict[str, Any], ref: dict[str, Any]) -> list[str]:
        busy = r["receiver_cpu_s"] / r["wall_s"] if r.get("wall_s") else None
        confirmed = "yes" if r.get("confirmed") else "**no**"
        return [
            num(r["events_per_s"]),
            num(r["cpu_per_10k"], 3),
            num(r["peak_rss_mib"], 1),
            num(r["wall_s"], 2),
            num(r["requests"]),
            "n/a" if busy is None else f"{busy:.0%}",
            confirmed,
            ratio(r["events_per_s"], ref.get("events_per_s")),
            ratio(r["cpu_per_10k"], ref.get("cpu_per_10k")),
        ]

    out += [
        "### 2. End to end",
        "",
        f"{n} events from the first `track()` until flush returned and the receiver confirmed "
        "every one (by dedupe id); CPU: the client process, all threads; RSS: the process's "
        "peak. *receiver*: the receiver process's CPU over the same wall time, as a share of "
        "one core (near 100% it would be the bottleneck).",
        "",
        table(
            [
                "client",
                "events/s",
                "CPU s / 10k",
                "peak RSS MiB",
                "wall s",
                "requests",
                "receiver",
                "all confirmed",
                "events/s x",
                "CPU x",
            ],
            _rows(results, "e2e", specs, e2e),
        ),
        "",
    ]

    def asyncio_(r: dict[str, Any], ref: dict[str, Any]) -> list[str]:
        return [
            num(r["worst_ms"], 2),
            num(r["p99_ms"], 2),
            num(r["p50_ms"], 2),
            num(r["ticks"]),
            num(r["wall_s"], 2),
            num(r.get("gc_max_ms"), 1),
            ratio(r["worst_ms"], ref.get("worst_ms")),
        ]

    out += [
        "### 3. Inside asyncio",
        "",
        f"A 1 ms ticker (`await asyncio.sleep(0.001)`) while one coroutine tracks {n} events "
        "(yielding after each) and then awaits the flush in a worker thread; lateness = how "
        "much later than 1 ms each tick woke up, from the first event until every event was "
        "confirmed. *GC max*: the longest garbage-collector pause in that time.",
        "",
        table(
            ["client", "worst ms", "p99 ms", "p50 ms", "ticks", "wall s", "GC max ms", "worst x"],
            _rows(results, "asyncio", specs, asyncio_),
        ),
        "",
    ]

    def stalled(r: dict[str, Any], ref: dict[str, Any]) -> list[str]:
        cap = float(r.get("cap_s", args.cap))
        track = f"{r['max_track_ms']:,.2f}"
        if r.get("track_blocked"):
            track = f"> {cap * 1000:,.0f} (blocked after {r['calls_done']:,} calls)"
        timeout = r.get("flush_timeout")
        flush_call = "flush()" if timeout is None else f"flush({timeout:g})"
        return [
            track,
            f"{flush_call}: {capped_seconds(r['flush_s'], cap)}",
            capped_seconds(r["shutdown_s"], cap),
            str(r.get("shutdown_budget", "none")),
            num(r.get("gc_max_ms"), 1),
            ratio(r["max_track_ms"], ref.get("max_track_ms")),
        ]

    out += [
        "### 4. Stalled receiver",
        "",
        f"The receiver accepts connections and reads requests but never answers. {n} `track()` "
        f"calls, then flush (with a {args.flush_timeout:g} s timeout where the API has one), "
        f"then shutdown; each capped at {args.cap:g} s (a call still blocked then is left "
        "behind). No warm-up here: the first calls start the client. *GC max*: the longest "
        "garbage-collector pause during the calls.",
        "",
        table(
            [
                "client",
                "max track() ms",
                "flush returned after s",
                "shutdown returned after s",
                "shutdown budget",
                "GC max ms",
                "max track x",
            ],
            _rows(results, "stalled", specs, stalled),
        ),
        "",
    ]

    def imports(r: dict[str, Any], ref: dict[str, Any]) -> list[str]:
        return [
            num(r["import_ms"], 1),
            num(r["configure_ms"], 1),
            num(r["total_ms"], 1),
            ratio(r["total_ms"], ref.get("total_ms")),
        ]

    out += [
        "### 5. Import and configure",
        "",
        'Fresh interpreters: `python -X importtime -c "<import>; <configure>"` (median of '
        f"{args.import_repeat}, after one run that compiles the bytecode). *import*: the "
        "cumulative `-X importtime` of the import statement; *configure*: wall time of "
        "creating the client (tracking-core: `discover_tracking_providers()`), imports it "
        "triggers included; *total*: wall time of both.",
        "",
        table(
            ["client", "import ms", "configure ms", "total ms", "total x"],
            _rows(results, "import", specs, imports),
        ),
        "",
    ]
    out += targets(results, args)
    return "\n".join(out)


def targets(results: Results, args: argparse.Namespace) -> list[str]:
    """tracking-core against the issue's targets (information only: nothing fails on them)."""
    rows: list[list[str]] = []

    def get(mode: str, key: str) -> dict[str, Any]:
        result = results.get(mode, {}).get(key, {})
        return {} if "error" in result else result

    def add(target: str, goal: str, value: Any, met: bool | None) -> None:
        rows.append([target, goal, value, "n/a" if met is None else ("yes" if met else "**no**")])

    c4 = get("caller", "tracking-core-4")
    if "p50_us" in c4:
        add("caller p50, 4 providers", "≤ 2.5 µs", micro(c4["p50_us"]), c4["p50_us"] <= 2.5)
    for key in ("tracking-core-1", "tracking-core-4"):
        c = get("caller", key)
        if "dropped" in c:
            add(
                f"dropped in a {args.events:,} burst ({SPECS[key].label})",
                "0",
                num(c["dropped"]),
                c["dropped"] == 0,
            )
    e = get("e2e", "tracking-core-1")
    if "events_per_s" in e:
        add(
            "end to end, 1 HTTP provider",
            "≥ 50,000 events/s",
            num(e["events_per_s"]),
            e["events_per_s"] >= 50_000,
        )
        add(
            "client CPU, 1 HTTP provider",
            "≤ 0.2 s per 10k",
            num(e["cpu_per_10k"], 3),
            e["cpu_per_10k"] <= 0.2,
        )
    for key in ("tracking-core-1", "tracking-core-4"):
        a = get("asyncio", key)
        if "worst_ms" in a:
            add(
                f"asyncio worst lateness ({SPECS[key].label})",
                "≤ 5 ms",
                num(a["worst_ms"], 2),
                a["worst_ms"] <= 5,
            )
    for key in ("tracking-core-1", "tracking-core-4"):
        s = get("stalled", key)
        if "max_track_ms" not in s:
            continue
        label = SPECS[key].label
        add(
            f"stalled: max track() ({label})",
            "< 1 ms",
            num(s["max_track_ms"], 2),
            s["max_track_ms"] < 1 and not s.get("track_blocked"),
        )
        flush_s = s.get("flush_s")
        add(
            f"stalled: flush({args.flush_timeout:g}) returns ({label})",
            f"in {args.flush_timeout:g} s",
            capped_seconds(flush_s, args.cap),
            flush_s is not None and flush_s <= args.flush_timeout + 0.5,
        )
        shutdown_s = s.get("shutdown_s")
        budget = str(s.get("shutdown_budget", ""))
        try:
            budget_s: float | None = float(budget.split(maxsplit=1)[0])
        except (ValueError, IndexError):
            budget_s = None
        add(
            f"stalled: shutdown ({label})",
            f"≤ its budget, {budget_s:g} s" if budget_s is not None else "≤ its budget",
            capped_seconds(shutdown_s, args.cap),
            None if budget_s is None else shutdown_s is not None and shutdown_s <= budget_s + 0.5,
        )
    for key in ("tracking-core-1", "tracking-core-4"):
        i = get("import", key)
        if "total_ms" in i:
            add(
                f"import and configure ({SPECS[key].label})",
                "≤ 30 ms",
                num(i["total_ms"], 1),
                i["total_ms"] <= 30,
            )
    if not rows:
        return []
    return [
        "### tracking-core against the targets",
        "",
        "Information only: a benchmark never fails a build.",
        "",
        table(["measurement", "target", "tracking-core", "met"], rows),
        "",
    ]


def environment(args: argparse.Namespace, argv: Sequence[str], loads: Sequence[float]) -> str:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        cpu = platform.processor() or "unknown"
    import os

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
        ]
    )


# -- main -------------------------------------------------------------------------------------


def _load_average() -> float:
    import os

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
    parser.add_argument("--repeat", type=int, default=1, help="runs of caller/e2e/asyncio (median)")
    parser.add_argument("--cap", type=float, default=30.0, help="seconds a blocked call is given")
    parser.add_argument("--flush-timeout", type=float, default=5.0, help="stalled flush timeout")
    parser.add_argument(
        "--shutdown-budget",
        type=float,
        default=None,
        help="tracking-core's TRACKING_SHUTDOWN_TIMEOUT in the stalled run (default: 5 s)",
    )
    parser.add_argument("--import-repeat", type=int, default=5)
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
    receiver = Receiver()
    try:
        if args.capacity_seconds > 0:
            log("receiver capacity")
            from capacity import measure

            results["capacity"] = {
                f"{batch}": measure(receiver.url, batch, 2, args.capacity_seconds)
                for batch in (1, 50)
            }
        for mode in modes:
            log(f"{mode}:")
            for spec in specs:
                if mode not in ONLY.get(spec.key, MODES):
                    continue
                repeat = args.repeat if mode in MEDIAN_OF else 1
                runs = [run_one(spec, mode, receiver, args) for _ in range(repeat)]
                failed |= any("error" in run for run in runs)
                result = median_run(runs, MEDIAN_OF[mode]) if mode in MEDIAN_OF else runs[0]
                results.setdefault(mode, {})[spec.key] = result
    finally:
        receiver.stop()
    loads.append(_load_average())
    text = "\n".join(
        ["## Environment", "", environment(args, argv, loads), "", report(results, specs, args)]
    )
    print(text)
    if args.output:
        args.output.write_text(text + "\n")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
