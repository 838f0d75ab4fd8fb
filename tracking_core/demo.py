"""``tracking demo``: the library's job end to end, on loopback, with no vendor account.

It starts four loopback servers that speak PostHog's, Mixpanel's, Amplitude's and a Segment-style
webhook's formats (the strict fakes shipped with the built-in provider packages), points the
four providers at them through the environment, and runs a small simulated application: web-handler
threads and asyncio tasks calling `track()` and `identify()`. Each destination fails its first
request with a 503, so the retries show. It prints progress, flushes, and checks that every event
arrived exactly once at every destination.
"""

from __future__ import annotations

import asyncio
import collections
import importlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TextIO

from . import api
from .receivers import LoopbackReceiver, Reply
from .registry import runtime

__all__ = ["DEMO_KEYS", "Destination", "builtin_destinations", "run_demo"]

DEMO_KEYS = {
    "POSTHOG_API_KEY": "phc_demo_key_0123456789",
    "MIXPANEL_TOKEN": "demo-mixpanel-token",
    "AMPLITUDE_API_KEY": "demo-amplitude-key",
    "TRACKING_WEBHOOK_AUTH": "Bearer demo-webhook-token",
    "TRACKING_WEBHOOK_SECRET": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
}
WORKERS = 4
ASYNC_TASKS = 50


class Destination:
    """One loopback server with a built-in provider's vendor fake, and how to read what it
    accepted. Also used by the reliability test suite.

    Attributes:
        provider: the provider (and entry-point) name.
        fake: the vendor fake (the server's responder).
        props_key: where an accepted event keeps its properties.
        id_of: the event id (the vendor's dedupe key) of an accepted event.
        user_of: the user id of an accepted identify.
        environment: the variables that point the provider at a base URL.
        server: the `LoopbackReceiver` serving `fake` (not started).
    """

    def __init__(
        self,
        provider: str,
        fake: Any,
        props_key: str,
        environment: Callable[[str], dict[str, str]],
        id_of: Callable[[dict[str, Any]], str],
        user_of: Callable[[dict[str, Any]], str],
    ) -> None:
        self.provider = provider
        self.fake = fake
        self.props_key = props_key
        self.environment = environment
        self.id_of = id_of
        self.user_of = user_of
        self.server = LoopbackReceiver(fake)

    def event_ids(self) -> list[str]:
        """The ids of the accepted events, in arrival order (repeats included)."""
        return [self.id_of(event) for event in list(self.fake.events)]

    def identified_users(self) -> list[str]:
        """The user ids of the accepted identifies, in arrival order."""
        return [self.user_of(update) for update in list(self.fake.identifies)]

    def sequence_numbers(self) -> list[int]:
        return [
            int(event[self.props_key]["demo_seq"])
            for event in list(self.fake.events)
            if "demo_seq" in event.get(self.props_key, {})
        ]

    def identify_count(self) -> int:
        return len(list(self.fake.identifies))


def builtin_destinations() -> list[Destination]:
    """A `Destination` for each built-in provider, with its fake expecting `DEMO_KEYS`.

    Raises ImportError when a built-in provider package is not installed.
    """
    fakes = {}
    for name in ("posthog", "mixpanel", "amplitude", "webhook"):
        fakes[name] = importlib.import_module(f"tracking_{name}.fake")
    secret = DEMO_KEYS["TRACKING_WEBHOOK_SECRET"]
    return [
        Destination(
            "posthog",
            fakes["posthog"].PostHogFake(DEMO_KEYS["POSTHOG_API_KEY"]),
            "properties",
            lambda url: {"POSTHOG_HOST": url},
            lambda event: event["uuid"],
            lambda update: update["distinct_id"],
        ),
        Destination(
            "mixpanel",
            fakes["mixpanel"].MixpanelFake(DEMO_KEYS["MIXPANEL_TOKEN"]),
            "properties",
            lambda url: {"MIXPANEL_HOST": url},
            lambda event: event["properties"]["$insert_id"],
            lambda update: update["$distinct_id"],
        ),
        Destination(
            "amplitude",
            fakes["amplitude"].AmplitudeFake(DEMO_KEYS["AMPLITUDE_API_KEY"]),
            "event_properties",
            lambda url: {"AMPLITUDE_HOST": url},
            lambda event: event["insert_id"],
            lambda update: update["user_id"],
        ),
        Destination(
            "webhook",
            fakes["webhook"].WebhookFake(
                secret=secret, auth=DEMO_KEYS["TRACKING_WEBHOOK_AUTH"], path="/hooks/analytics"
            ),
            "properties",
            lambda url: {"TRACKING_WEBHOOK_URL": url + "/hooks/analytics"},
            lambda event: event["messageId"],
            lambda update: update["userId"],
        ),
    ]


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
    try:
        destinations = builtin_destinations()
    except ImportError as exc:
        out.write(
            f"The demo needs the four built-in provider packages ({exc.name} is missing):\n"
            "  pip install tracking-posthog tracking-mixpanel tracking-amplitude tracking-webhook\n"
        )
        return 2
    for destination in destinations:
        destination.server.start()
        destination.fake.fail_next(Reply(503, {"error": "warming up"}))
    environment = {
        **DEMO_KEYS,
        "TRACKING_PROVIDERS": "posthog,mixpanel,amplitude,webhook",
        "TRACKING_FLUSH_INTERVAL": "0.2",
        "TRACKING_RETRY_BACKOFF": "0.2",
        "TRACKING_DISABLED": "0",
    }
    for destination in destinations:
        environment.update(destination.environment(destination.server.url))
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
            return _report(out, destinations, total, flushed, elapsed)
    finally:
        engine.reset(discover=True)
        for destination in destinations:
            destination.server.stop()


def _progress(out: TextIO, done: threading.Event, quiet: bool) -> None:
    while not done.wait(0.5):
        if quiet:
            continue
        stats = api.tracking_stats()
        line = "  ".join(f"{name} {s.delivered}/{s.accepted}" for name, s in stats.items())
        out.write(f"  delivered: {line}\n")
        out.flush()


def _report(
    out: TextIO, destinations: list[Destination], total: int, flushed: bool, elapsed: float
) -> int:
    stats = api.tracking_stats()
    header = (
        f"\n{'destination':<12} {'events':>7} {'identifies':>10} {'requests':>8} "
        f"{'failed requests':>15} {'events resent':>13} {'missing':>7} {'duplicated':>10}\n"
    )
    out.write(header)
    everything = flushed
    for destination in destinations:
        counts = collections.Counter(destination.sequence_numbers())
        missing = sum(1 for seq in range(total) if counts[seq] == 0)
        duplicated = sum(1 for count in counts.values() if count > 1)
        identifies = destination.identify_count()
        provider = stats.get(destination.provider)
        failed = provider.failed if provider else 0
        resent = provider.retried if provider else 0
        out.write(
            f"{destination.provider:<12} {sum(counts.values()):>7} {identifies:>10} "
            f"{len(destination.server.requests):>8} {failed:>15} {resent:>13} {missing:>7} "
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
