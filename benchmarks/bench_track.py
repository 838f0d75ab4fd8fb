"""Caller cost of ``track()`` with four registered no-op providers, beside the floor.

The floor is a bare ``queue.SimpleQueue.put`` of a dict holding the same event, measured in the
same run. Prints p50/p99/p99.9 in microseconds and the ratio to the floor (target: p50 within 4x).

    python benchmarks/bench_track.py [--calls N]
"""

from __future__ import annotations

import argparse
import gc
import queue
import statistics
import time

import tracking_core as tc


class NoOp:
    def __init__(self, name: str) -> None:
        self.name = name

    def track(self, event: tc.TrackingEvent) -> None:
        pass


def percentiles(samples: list[float]) -> dict[str, float]:
    samples.sort()
    n = len(samples)
    return {
        "p50": samples[n // 2] * 1e6,
        "p99": samples[int(n * 0.99)] * 1e6,
        "p99.9": samples[int(n * 0.999)] * 1e6,
        "mean": statistics.fmean(samples) * 1e6,
    }


def measure(call: object, calls: int) -> dict[str, float]:
    clock = time.perf_counter
    samples = []
    props = {"plan": "pro", "amount": 42}
    gc.collect()
    for i in range(calls):
        start = clock()
        call("Signed Up", props, user_id="user-12345")  # type: ignore[operator]
        samples.append(clock() - start)
        if i % 2000 == 1999:
            tc.flush_tracking(30)  # keep queues short, as a live process would
    return percentiles(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=20_000)
    args = parser.parse_args()
    tc.discover_tracking_providers()
    for name in ("a", "b", "c", "d"):
        tc.register_tracking_provider(NoOp(name))
    floor_queue: queue.SimpleQueue[dict[str, object]] = queue.SimpleQueue()

    def floor(name: str, properties: dict[str, object], user_id: str) -> None:
        floor_queue.put({"name": name, "properties": properties, "user_id": user_id})

    tc.track("warm-up")
    tc.flush_tracking(10)
    results = {
        "queue.SimpleQueue.put (floor)": measure(floor, args.calls),
        "tracking_core.track, 4 providers": measure(tc.track, args.calls),
    }
    tc.flush_tracking(30)
    base = results["queue.SimpleQueue.put (floor)"]["p50"]
    print(f"\n{args.calls} calls each\n")
    print("| what | p50 µs | p99 µs | p99.9 µs | mean µs | p50 / floor |")
    print("|---|---|---|---|---|---|")
    for name, r in results.items():
        print(
            f"| {name} | {r['p50']:.2f} | {r['p99']:.2f} | {r['p99.9']:.2f} | {r['mean']:.2f} "
            f"| {r['p50'] / base:.1f}x |"
        )
    stats = tc.tracking_stats()
    delivered = {name: s.delivered for name, s in stats.items()}
    print(f"\ndelivered per provider: {delivered}")


if __name__ == "__main__":
    main()
