"""Fan-out in thirty lines: two custom providers, events from threads and asyncio tasks.

    python -m pip install . && python examples/fanout.py

Exits 0 when both providers received every event exactly once.
"""

from __future__ import annotations

import asyncio
import collections
import sys
import threading

import tracking_core as tc


class Counter:
    """A plain provider: counts events by name and remembers their ids."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.ids: list[str] = []
        self.by_name: collections.Counter[str] = collections.Counter()

    def track(self, event: tc.TrackingEvent) -> None:
        self.ids.append(event.event_id)
        self.by_name[event.name] += 1


class AsyncAudit(Counter):
    """An async provider: its methods run on the core's own event loop."""

    async def track(self, event: tc.TrackingEvent) -> None:  # type: ignore[override]
        await asyncio.sleep(0)
        super().track(event)


def web_handler(worker: int) -> None:
    with tc.tracking_context(user_id=f"user-{worker}"):
        for i in range(250):
            tc.track("Page Viewed", {"path": f"/items/{i}", "worker": worker})


async def async_jobs() -> None:
    async def job(n: int) -> None:
        tc.track("Job Finished", {"job": n})
        await asyncio.sleep(0)

    await asyncio.gather(*(job(n) for n in range(200)))
    await tc.aflush_tracking(10)


def main() -> int:
    counter, audit = Counter("counter"), AsyncAudit("audit")
    tc.register_tracking_provider(counter)
    tc.register_tracking_provider(audit)
    threads = [threading.Thread(target=web_handler, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    asyncio.run(async_jobs())
    ok = tc.flush_tracking(10)
    print(f"{'provider':<10} {'Page Viewed':>12} {'Job Finished':>13} {'unique ids':>11}")
    for provider in (counter, audit):
        print(
            f"{provider.name:<10} {provider.by_name['Page Viewed']:>12} "
            f"{provider.by_name['Job Finished']:>13} {len(set(provider.ids)):>11}"
        )
    expected = 4 * 250 + 200
    everything = all(len(set(p.ids)) == len(p.ids) == expected for p in (counter, audit))
    print("every event arrived once at both providers" if ok and everything else "MISSING EVENTS")
    return 0 if ok and everything else 1


if __name__ == "__main__":
    sys.exit(main())
