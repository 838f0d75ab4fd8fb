"""``tracking demo``: the library's job end to end, on loopback, with no vendor account.

It serves, on 127.0.0.1, the strict vendor fake of every installed provider package that ships
one (the ``tracking_provider_fake`` hook: the four built-in packages' speak PostHog's,
Mixpanel's, Amplitude's and a Segment-style webhook's formats), points those providers at them
through the environment, and runs a small simulated application: web-handler threads and asyncio
tasks calling `track()` and `identify()`. Each destination fails its first request with a 503, so
the retries show. It prints progress, flushes, and checks that every event arrived exactly once
at every destination. It reads what a fake accepted only through the fake (`event_ids`,
`properties_of`), never through a vendor's field names.
"""

from __future__ import annotations

import asyncio
import collections
import os
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, TextIO

from . import api
from .receivers import LoopbackReceiver
from .registry import runtime

if TYPE_CHECKING:
    from .fakes import FakeDestination

__all__ = ["run_demo"]

WORKERS = 4
ASYNC_TASKS = 50


@contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, old in saved.items():
            if old is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = old


def _simulated_app(events_per_worker: int) -> int:
    """Web-handler threads and asyncio tasks tracking events; returns how many were tracked."""
    counter = iter(range(10**9))
    lock = threading.Lock()

    def next_seq() -> int:
        with lock:
            return next(counter)

    def web_handler(worker: int) -> None:
        user = f"user-{worker:04d}"
        api.identify(user, {"plan": "pro" if worker % 2 else "free", "worker": worker})
        with api.tracking_context(user_id=user, properties={"source": "web"}):
            for i in range(events_per_worker):
                api.track("Page Viewed", {"demo_seq": next_seq(), "path": f"/items/{i}"})

    async def job(n: int) -> None:
        with api.tracking_context(anonymous_id=f"device-{n:04d}"):
            for _ in range(max(1, events_per_worker // 10)):
                api.track("Job Finished", {"demo_seq": next_seq(), "job": n})
                await asyncio.sleep(0)

    async def workers() -> None:
        await asyncio.gather(*(job(n) for n in range(ASYNC_TASKS)))

    threads = [threading.Thread(target=web_handler, args=(w,)) for w in range(WORKERS)]
    for thread in threads:
        thread.start()
    asyncio.run(workers())
    for thread in threads:
        thread.join()
    return next_seq()


def run_demo(out: TextIO, *, events_per_worker: int = 250, quiet: bool = False) -> int:
    """Run the demo, writing to `out`; returns 0 when every event arrived exactly once."""
    from .discovery import installed_fakes  # loads the installed plugins: only when run

    destinations = installed_fakes()
    if not destinations:
        out.write(
            "The demo needs a provider package that ships a fake, e.g. the built-in ones:\n"
            "  pip install tracking-posthog tracking-mixpanel tracking-amplitude tracking-webhook\n"
        )
        return 2
    servers = [LoopbackReceiver(destination.fake).start() for destination in destinations]
    environment = {
        "TRACKING_PROVIDERS": ",".join(destination.provider for destination in destinations),
        "TRACKING_FLUSH_INTERVAL": "0.2",
        "TRACKING_RETRY_BACKOFF": "0.2",
        "TRACKING_DISABLED": "0",
    }
    for destination, server in zip(destinations, servers, strict=True):
        destination.fake.fail_next(destination.fake.error(503, "warming up"))
        environment.update(destination.environment(server.url))
    engine = runtime().engine
    try:
        with _environment(environment):
            engine.reset(discover=True)
            enabled = api.list_tracking_providers()
            out.write(f"tracking-core demo: loopback destinations for {', '.join(enabled)}\n")
            done = threading.Event()
            progress = threading.Thread(target=_progress, args=(out, done, quiet), daemon=True)
            progress.start()
            started = time.monotonic()
            total = _simulated_app(events_per_worker)
            flushed = api.flush_tracking(60)
            done.set()
            progress.join()
            elapsed = time.monotonic() - started
            return _report(out, destinations, servers, total, flushed, elapsed)
    finally:
        engine.reset(discover=True)
        for server in servers:
            server.stop()


def _progress(out: TextIO, done: threading.Event, quiet: bool) -> None:
    while not done.wait(0.5):
        if quiet:
            continue
        stats = api.tracking_stats()
        line = "  ".join(f"{name} {s.delivered}/{s.accepted}" for name, s in stats.items())
        out.write(f"  delivered: {line}\n")
        out.flush()


def _sequence_numbers(destination: FakeDestination) -> list[int]:
    """The ``demo_seq`` property of every event the fake accepted, repeats included."""
    fake = destination.fake
    found = (fake.properties_of(event).get("demo_seq") for event in list(fake.events))
    return [int(seq) for seq in found if seq is not None]


def _report(
    out: TextIO,
    destinations: Sequence[FakeDestination],
    servers: Sequence[LoopbackReceiver],
    total: int,
    flushed: bool,
    elapsed: float,
) -> int:
    stats = api.tracking_stats()
    header = (
        f"\n{'destination':<12} {'events':>7} {'identifies':>10} {'requests':>8} "
        f"{'failed requests':>15} {'events resent':>13} {'missing':>7} {'duplicated':>10}\n"
    )
    out.write(header)
    everything = flushed
    for destination, server in zip(destinations, servers, strict=True):
        counts = collections.Counter(_sequence_numbers(destination))
        missing = sum(1 for seq in range(total) if counts[seq] == 0)
        duplicated = sum(1 for count in counts.values() if count > 1)
        identifies = len(list(destination.fake.identifies))
        provider = stats.get(destination.provider)
        failed = provider.failed if provider else 0
        resent = provider.retried if provider else 0
        out.write(
            f"{destination.provider:<12} {sum(counts.values()):>7} {identifies:>10} "
            f"{len(server.requests):>8} {failed:>15} {resent:>13} {missing:>7} "
            f"{duplicated:>10}\n"
        )
        if missing or duplicated or identifies != WORKERS:
            everything = False
    out.write(
        f"\n{total} events and {WORKERS} identifies tracked from {WORKERS} threads and "
        f"{ASYNC_TASKS} asyncio tasks in {elapsed:.1f}s.\n"
    )
    out.write(
        "Every event arrived exactly once at every destination.\n"
        if everything
        else "Some events did not arrive exactly once (see the table).\n"
    )
    return 0 if everything else 1
