"""A provider that hangs, is slow or raises harms nobody: not the caller, not other providers."""

from __future__ import annotations

import logging
import threading
import time

import pytest

import tracking_core as tc
from tracking_core.testing import RecordingProvider


class Hanging:
    name = "hanging"

    def __init__(self) -> None:
        self.release = threading.Event()
        self.entered = threading.Event()

    def track(self, event: tc.TrackingEvent) -> None:
        self.entered.set()
        self.release.wait(30)


def test_a_hung_provider_blocks_neither_the_caller_nor_the_others(clean_tracking: None) -> None:
    hanging = Hanging()
    healthy = RecordingProvider("healthy")
    tc.register_tracking_provider(hanging)
    tc.register_tracking_provider(healthy)
    try:
        started = time.perf_counter()
        for i in range(2000):
            tc.track("e", {"i": i})
        elapsed = time.perf_counter() - started
        # Generous bound: 2000 enqueues take milliseconds; a blocked caller would take 60 s.
        assert elapsed < 5.0
        assert hanging.entered.wait(5)
        assert tc.flush_tracking(0.5) is False  # the hung provider cannot finish
        deadline = time.monotonic() + 10
        while len(healthy.events) < 2000 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert [e.properties["i"] for e in healthy.events] == list(range(2000))
        stats = tc.tracking_stats()
        assert stats["healthy"].delivered == 2000
        assert stats["hanging"].delivered == 0 and stats["hanging"].queued == 2000
    finally:
        hanging.release.set()


def test_a_raising_provider_is_logged_by_name_counted_and_isolated(
    clean_tracking: None, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="tracking_core")

    class Raising:
        name = "raising"

        def __init__(self) -> None:
            self.calls = 0

        def track(self, event: tc.TrackingEvent) -> None:
            self.calls += 1
            if event.properties.get("fail"):
                raise RuntimeError("vendor exploded")

        def identify(self, user_id: str, traits: object) -> None:
            raise ValueError("no identify today")

    raising = Raising()
    healthy = RecordingProvider("healthy")
    tc.register_tracking_provider(raising)
    tc.register_tracking_provider(healthy)
    for i in range(10):
        tc.track("e", {"fail": i % 2 == 0})
    tc.identify("u-1")
    assert tc.flush_tracking(5)
    assert raising.calls == 10
    assert len(healthy.events) == 10 and len(healthy.identifies) == 1
    stats = tc.tracking_stats()["raising"]
    assert stats.accepted == 11
    assert stats.delivered == 5
    assert stats.failed == 6
    assert stats.dropped == {"provider_error": 6}
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert errors and all("'raising'" in r.getMessage() for r in errors)
    assert len(errors) == 1  # rate-limited: one line for six failures


def test_a_slow_provider_keeps_order_and_does_not_slow_the_others(clean_tracking: None) -> None:
    class Slow(RecordingProvider):
        def track(self, event: tc.TrackingEvent) -> None:
            time.sleep(0.002)
            super().track(event)

    slow, fast = Slow("slow"), RecordingProvider("fast")
    tc.register_tracking_provider(slow)
    tc.register_tracking_provider(fast)
    for i in range(200):
        tc.track("e", {"i": i})
    deadline = time.monotonic() + 5
    while len(fast.events) < 200 and time.monotonic() < deadline:
        time.sleep(0.001)
    assert len(fast.events) == 200
    assert tc.flush_tracking(10)
    assert [e.properties["i"] for e in slow.events] == list(range(200))


def test_queue_bound_drops_new_events_and_counts_them(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("TRACKING_MAX_QUEUE", "100")
    from tracking_core.testing import reset_tracking

    reset_tracking()
    caplog.set_level(logging.WARNING, logger="tracking_core")
    hanging = Hanging()
    tc.register_tracking_provider(hanging)
    try:
        tc.track("first")
        assert hanging.entered.wait(5)  # one event in flight, the rest wait
        for _ in range(500):
            tc.track("e")
        tc.flush_tracking(0.3)
        stats = tc.tracking_stats()["hanging"]
        assert stats.accepted == 501
        assert stats.queued == 100
        assert stats.dropped == {"queue_full": 401}
        warnings = [
            r.getMessage() for r in caplog.records if "TRACKING_MAX_QUEUE" in r.getMessage()
        ]
        # Rate-limited: one line for the lane's bound, and at most one for the intake's (calls
        # can outrun the dispatcher too), not one per dropped call.
        lane = [w for w in warnings if w.startswith("tracking: hanging has 100 events waiting")]
        assert len(lane) == 1 and len(warnings) <= 2, warnings
    finally:
        hanging.release.set()
        monkeypatch.delenv("TRACKING_MAX_QUEUE")
        reset_tracking()
