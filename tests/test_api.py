"""The public API: registry semantics, fan-out, snapshots, bad input, context, flush, stats."""

from __future__ import annotations

import asyncio
import contextvars
import datetime as dt
import logging
import threading
from collections.abc import Mapping
from typing import Any

import pytest

import tracking_core as tc
from tracking_core.testing import RecordingProvider


class Named:
    def __init__(self, name: Any) -> None:
        self.name = name

    def track(self, event: tc.TrackingEvent) -> None:
        pass


def test_register_rejects_objects_without_name_or_track(clean_tracking: None) -> None:
    with pytest.raises(TypeError, match="name"):
        tc.register_tracking_provider(object())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="name"):
        tc.register_tracking_provider(Named(42))
    with pytest.raises(ValueError, match="empty"):
        tc.register_tracking_provider(Named("  "))

    class NoTrack:
        name = "x"
        track = "not callable"

    with pytest.raises(TypeError, match="track"):
        tc.register_tracking_provider(NoTrack())  # type: ignore[arg-type]
    assert tc.list_tracking_providers() == []


def test_registration_order_replacement_and_unregister(clean_tracking: None) -> None:
    first, second, third = RecordingProvider("a"), RecordingProvider("b"), RecordingProvider("c")
    for provider in (first, second, third):
        tc.register_tracking_provider(provider)
    assert tc.list_tracking_providers() == ["a", "b", "c"]

    replacement = RecordingProvider("b")
    tc.register_tracking_provider(replacement)
    assert tc.list_tracking_providers() == ["a", "c", "b"]

    tc.track("after-replace")
    assert tc.flush_tracking(5)
    assert replacement.names() == ["after-replace"]
    assert second.names() == []

    assert tc.unregister_tracking_provider("a") is True
    assert tc.unregister_tracking_provider("a") is False
    assert tc.list_tracking_providers() == ["c", "b"]
    tc.track("after-unregister")
    assert tc.flush_tracking(5)
    assert first.names() == ["after-replace"]
    assert third.names() == ["after-replace", "after-unregister"]


def test_track_fans_out_an_event_with_the_documented_fields(clean_tracking: None) -> None:
    a, b = RecordingProvider("a"), RecordingProvider("b")
    tc.register_tracking_provider(a)
    tc.register_tracking_provider(b)
    when = dt.datetime(2026, 1, 15, 11, 0, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    tc.track("Signed Up", {"plan": "pro"}, user_id="u-1", anonymous_id="anon-1", timestamp=when)
    tc.track("Naive", timestamp=dt.datetime(2026, 1, 15, 10, 0))
    tc.track("Now")
    assert tc.flush_tracking(5)

    event = a.events[0]
    assert event == b.events[0]  # the same event (id, time, values) at every provider
    assert event.name == "Signed Up"
    assert dict(event.properties) == {"plan": "pro"}
    assert event.user_id == "u-1" and event.anonymous_id == "anon-1"
    assert event.timestamp == dt.datetime(2026, 1, 15, 10, 0, tzinfo=dt.timezone.utc)
    assert event.timestamp.tzinfo is dt.timezone.utc
    assert len(event.event_id) == 36 and event.event_id[14] == "4"  # UUID4
    with pytest.raises(AttributeError):
        event.name = "changed"  # type: ignore[misc]
    with pytest.raises(TypeError):
        event.properties["plan"] = "free"  # type: ignore[index]

    naive, now = a.events[1], a.events[2]
    assert naive.timestamp == dt.datetime(2026, 1, 15, 10, 0, tzinfo=dt.timezone.utc)
    age = dt.datetime.now(dt.timezone.utc) - now.timestamp
    assert dt.timedelta(0) <= age < dt.timedelta(seconds=30)
    assert len({e.event_id for e in a.events}) == 3


def test_properties_are_a_snapshot(tracking_events: RecordingProvider) -> None:
    props = {"count": 1, "nested": [1]}
    tc.track("snap", props)
    props["count"] = 2
    props["added"] = True
    event = tracking_events.assert_tracked("snap")
    assert dict(event.properties) == {"count": 1, "nested": [1]}


def test_identify_reaches_only_providers_that_implement_it(clean_tracking: None) -> None:
    recorder = RecordingProvider("rec")
    plain = Named("plain")
    tc.register_tracking_provider(recorder)
    tc.register_tracking_provider(plain)
    tc.identify("u-1", {"email": "ada@example.com"})
    tc.identify("u-2")
    assert tc.flush_tracking(5)
    assert recorder.identifies[0][0] == "u-1"
    assert dict(recorder.identifies[0][1] or {}) == {"email": "ada@example.com"}
    assert recorder.identifies[1][0] == "u-2"
    stats = tc.tracking_stats()
    assert stats["rec"].accepted == 2 and stats["rec"].delivered == 2
    assert stats["plain"].accepted == 0


@pytest.mark.parametrize(
    ("call", "fragment"),
    [
        (lambda: tc.track(""), "non-empty str"),
        (lambda: tc.track(None), "non-empty str"),  # type: ignore[arg-type]
        (lambda: tc.track(123), "non-empty str"),  # type: ignore[arg-type]
        (lambda: tc.track("e", ["not", "a", "mapping"]), "mapping"),  # type: ignore[arg-type]
        (lambda: tc.track("e", user_id=42), "user_id"),  # type: ignore[arg-type]
        (lambda: tc.track("e", anonymous_id=b"x"), "anonymous_id"),  # type: ignore[arg-type]
        (lambda: tc.track("e", timestamp="yesterday"), "timestamp"),  # type: ignore[arg-type]
        (lambda: tc.identify(""), "user_id"),
        (lambda: tc.identify(7), "user_id"),  # type: ignore[arg-type]
        (lambda: tc.identify("u", traits=[1]), "traits"),  # type: ignore[arg-type]
    ],
)
def test_bad_input_is_dropped_counted_and_logged(
    tracking_events: RecordingProvider,
    caplog: pytest.LogCaptureFixture,
    call: Any,
    fragment: str,
) -> None:
    caplog.set_level(logging.WARNING, logger="tracking_core")
    assert call() is None
    tc.track("good")
    tracking_events.settle()
    assert tracking_events.names() == ["good"]
    stats = tc.tracking_stats()["recorder"]
    assert stats.dropped == {"bad_input": 1}
    assert stats.accepted == stats.delivered + sum(stats.dropped.values())
    lines = [r.getMessage() for r in caplog.records if "dropped a call" in r.getMessage()]
    assert len(lines) == 1 and fragment in lines[0]


def test_bad_input_log_is_rate_limited(
    tracking_events: RecordingProvider, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="tracking_core")
    for _ in range(500):
        tc.track("")
    tracking_events.settle()
    assert tc.tracking_stats()["recorder"].dropped["bad_input"] == 500
    assert sum("dropped a call" in r.getMessage() for r in caplog.records) == 1


def test_a_mapping_that_raises_while_copied_is_a_counted_drop(
    tracking_events: RecordingProvider,
) -> None:
    class Broken(Mapping[str, Any]):
        def __getitem__(self, key: str) -> Any:
            raise RuntimeError("boom")

        def __iter__(self) -> Any:
            return iter(["a"])

        def __len__(self) -> int:
            return 1

    tc.track("broken", Broken())
    tc.track("fine", {"weird": object()})
    tracking_events.settle()
    assert tracking_events.names() == ["fine"]
    assert tc.tracking_stats()["recorder"].dropped == {"bad_input": 1}


def test_context_supplies_defaults_and_explicit_arguments_win(
    tracking_events: RecordingProvider,
) -> None:
    with tc.tracking_context(user_id="ctx-user", properties={"tenant": "t1", "plan": "free"}):
        tc.track("inside", {"plan": "pro"})
        with tc.tracking_context(anonymous_id="ctx-anon", properties={"region": "eu"}):
            tc.track("nested", user_id="explicit")
    tc.track("outside")
    tracking_events.settle()
    inside, nested, outside = tracking_events.events
    assert inside.user_id == "ctx-user"
    assert dict(inside.properties) == {"tenant": "t1", "plan": "pro"}
    assert nested.user_id == "explicit" and nested.anonymous_id == "ctx-anon"
    assert dict(nested.properties) == {"tenant": "t1", "plan": "free", "region": "eu"}
    assert outside.user_id is None and dict(outside.properties) == {}


def test_context_follows_asyncio_tasks_and_copied_thread_contexts(
    tracking_events: RecordingProvider,
) -> None:
    async def handler(user: str) -> None:
        with tc.tracking_context(user_id=user):
            await asyncio.sleep(0.01)
            await asyncio.gather(child(f"{user}-child"))
            tc.track("handler")

    async def child(tag: str) -> None:
        await asyncio.sleep(0)
        tc.track("child", {"tag": tag})

    async def main() -> None:
        await asyncio.gather(*(handler(f"user-{i}") for i in range(5)))

    asyncio.run(main())
    with tc.tracking_context(user_id="thread-user"):
        ctx = contextvars.copy_context()
        copied = threading.Thread(target=ctx.run, args=(tc.track, "copied"))
        plain = threading.Thread(target=tc.track, args=("plain",))
        copied.start()
        plain.start()
        copied.join()
        plain.join()
    tracking_events.settle()
    for event in tracking_events.find("child"):
        assert event.properties["tag"] == f"{event.user_id}-child"
    assert sorted(e.user_id or "" for e in tracking_events.find("handler")) == [
        f"user-{i}" for i in range(5)
    ]
    assert tracking_events.find("copied")[0].user_id == "thread-user"
    assert tracking_events.find("plain")[0].user_id is None


def test_async_provider_methods_run_on_a_core_loop(clean_tracking: None) -> None:
    loops: set[int] = set()
    threads: set[str] = set()

    class AsyncProvider:
        name = "async"

        def __init__(self) -> None:
            self.events: list[str] = []
            self.traits: list[str] = []
            self.flushed = 0

        async def track(self, event: tc.TrackingEvent) -> None:
            await asyncio.sleep(0.001)
            loops.add(id(asyncio.get_running_loop()))
            threads.add(threading.current_thread().name)
            self.events.append(event.name)

        async def identify(self, user_id: str, traits: Mapping[str, Any] | None) -> None:
            await asyncio.sleep(0)
            self.traits.append(user_id)

        async def flush(self) -> None:
            await asyncio.sleep(0)
            self.flushed += 1

    provider = AsyncProvider()
    tc.register_tracking_provider(provider)

    async def app() -> bool:
        for i in range(20):
            tc.track(f"e{i}")
        tc.identify("u-1")
        return await tc.aflush_tracking(5)

    assert asyncio.run(app()) is True
    assert provider.events == [f"e{i}" for i in range(20)]
    assert provider.traits == ["u-1"] and provider.flushed == 1
    assert len(loops) == 1 and threads == {"tracking-async"}


def test_aflush_does_not_block_the_event_loop(clean_tracking: None) -> None:
    release = threading.Event()

    class Slow:
        name = "slow"

        def track(self, event: tc.TrackingEvent) -> None:
            release.wait(5)

    tc.register_tracking_provider(Slow())
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while not release.is_set():
            ticks += 1
            await asyncio.sleep(0.01)

    async def app() -> bool:
        tc.track("e")
        task = asyncio.create_task(ticker())
        result = await tc.aflush_tracking(0.3)
        release.set()
        await task
        return result

    assert asyncio.run(app()) is False
    assert ticks >= 5  # the loop kept running while the flush waited


def test_flush_calls_each_providers_flush_and_reports_failure(clean_tracking: None) -> None:
    good = RecordingProvider("good")

    class BadFlush(RecordingProvider):
        def flush(self) -> None:
            raise RuntimeError("flush failed")

    bad = BadFlush("bad")
    tc.register_tracking_provider(good)
    tc.register_tracking_provider(bad)
    tc.track("e")
    assert tc.flush_tracking(5) is False  # a provider's flush raised
    assert good.flushes == 1
    tc.unregister_tracking_provider("bad")
    assert tc.flush_tracking(5) is True
    assert good.flushes == 2


def test_flush_with_no_providers_and_default_timeout(clean_tracking: None) -> None:
    tc.track("nobody-listens")
    assert tc.flush_tracking() is True
    assert tc.tracking_stats() == {}


def test_public_names_are_pinned() -> None:
    assert tc.__all__ == sorted(tc.__all__)
    assert set(tc.__all__) == {
        "DeliveryReceipt",
        "DropReason",
        "PluginReport",
        "ProviderSetting",
        "ProviderStats",
        "SettingsError",
        "TrackingEvent",
        "TrackingIdentify",
        "TrackingProvider",
        "__version__",
        "aflush_tracking",
        "discover_tracking_providers",
        "flush_tracking",
        "hookimpl",
        "identify",
        "json_safe",
        "list_tracking_providers",
        "register_tracking_provider",
        "shutdown_tracking",
        "submit_event",
        "track",
        "tracking_context",
        "tracking_stats",
        "unregister_tracking_provider",
    }
    for name in tc.__all__:
        assert hasattr(tc, name)


def test_tracking_provider_protocol_matches_minimal_providers() -> None:
    assert isinstance(Named("x"), tc.TrackingProvider)
    assert not isinstance(object(), tc.TrackingProvider)
