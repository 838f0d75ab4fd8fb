"""End-to-end delivery through one HTTP provider to a loopback receiver in its own process.

Measures, for N events (100,000 by default): wall time from the first ``track()`` until
``flush_tracking()`` returns with every event confirmed by the receiver, events per second, and
the client process's CPU seconds per 10,000 events (all its threads; the receiver's CPU is not
counted). Checks every event arrived exactly once.

    python benchmarks/bench_http.py [--events N] [--batch-size N]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence

import tracking_core as tc
from tracking_core.http import HttpProvider, HttpRequest, WireItem, join_json

RECEIVER = r"""
import json, sys
from tracking_core.receivers import LoopbackReceiver, Reply
ids = set()
total = [0]
def respond(request):
    if request.method == "GET":
        return Reply(200, {"unique": len(ids), "total": total[0]})
    for item in json.loads(request.body)["batch"]:
        ids.add(item["id"])
        total[0] += 1
    return Reply(200, b"ok")
server = LoopbackReceiver(respond).start()
print(server.url, flush=True)
sys.stdin.read()
"""


class Batch(HttpProvider):
    name = "bench"

    def __init__(self, url: str) -> None:
        self.url = url

    def encode(self, item: tc.TrackingEvent | tc.TrackingIdentify) -> WireItem:
        assert isinstance(item, tc.TrackingEvent)
        return WireItem(
            {
                "id": item.event_id,
                "event": item.name,
                "ts": item.timestamp.isoformat(),
                "properties": tc.json_safe(item.properties),
            }
        )

    def build_request(self, route: str, items: Sequence[bytes], batch_id: str) -> HttpRequest:
        return HttpRequest(self.url + "/batch", b'{"batch":' + join_json(items) + b"}")


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=None)
    args = parser.parse_args()
    if args.batch_size:
        os.environ["TRACKING_BATCH_SIZE"] = str(args.batch_size)
        from tracking_core.testing import reset_tracking

        reset_tracking()
    receiver = subprocess.Popen(
        [sys.executable, "-c", RECEIVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert receiver.stdout is not None
    url = receiver.stdout.readline().strip()
    try:
        tc.register_tracking_provider(Batch(url))
        props = {"plan": "pro", "amount": 42, "path": "/checkout"}
        cpu0, t0 = cpu(), time.perf_counter()
        for i in range(args.events):
            tc.track("Purchase", props, user_id=f"user-{i % 1000}")
        ok = tc.flush_tracking(300)
        wall, used = time.perf_counter() - t0, cpu() - cpu0
        with urllib.request.urlopen(url + "/count") as answer:
            counts = json.load(answer)
    finally:
        receiver.communicate("", timeout=10)
    stats = tc.tracking_stats()["bench"]
    batch = tc.registry.runtime().engine.settings.batch_size
    print(f"\n{args.events} events, TRACKING_BATCH_SIZE={batch}, flush ok={ok}\n")
    print("| events/s | CPU s per 10k events | wall s | requests | received once |")
    print("|---|---|---|---|---|")
    print(
        f"| {args.events / wall:,.0f} | {used / args.events * 10_000:.3f} | {wall:.2f} "
        f"| {stats.batches} | {counts['unique'] == counts['total'] == args.events} |"
    )


if __name__ == "__main__":
    main()
