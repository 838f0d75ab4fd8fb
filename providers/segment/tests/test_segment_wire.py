"""Segment and RudderStack: the exact batch requests, as each strict fake accepts them over real
HTTP, their limits, and what each answer means."""

from __future__ import annotations

import base64
import datetime as dt
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from tracking_segment.fake import SegmentFake
from tracking_segment.provider import ANONYMOUS_NAMESPACE

import tracking_core
from tracking_core.receivers import LoopbackReceiver
from tracking_core.testing import RecordingProvider

UTC = dt.timezone.utc
Enable = Callable[..., None]
LIBRARY = {"name": "tracking-core", "version": tracking_core.__version__}


def _flush() -> None:
    assert tracking_core.flush_tracking(10)


def test_one_batch_in_the_vendors_format(
    vendor: Any, enable: Enable, server: LoopbackReceiver, fake: SegmentFake
) -> None:
    enable()
    recorder = RecordingProvider()
    tracking_core.register_tracking_provider(recorder)
    when = dt.datetime(2026, 1, 15, 10, 0, 0, 123456, tzinfo=UTC)
    tracking_core.track("Signed Up", {"plan": "pro"}, user_id="user-1", timestamp=when)
    tracking_core.identify("user-1", {"email": "ada@example.com"})
    tracking_core.track("Page Viewed", anonymous_id="device-1")
    tracking_core.track("Cron Ran")
    _flush()

    assert fake.rejections == []
    (request,) = server.requests
    assert (request.method, request.path) == ("POST", "/v1/batch")
    token = base64.b64encode(f"{vendor.key}:".encode()).decode()
    assert request.headers["authorization"] == f"Basic {token}"
    assert request.headers["content-type"] == "application/json"
    body = request.json()
    assert body.keys() == {"batch", "sentAt"}
    sent_at = dt.datetime.fromisoformat(body["sentAt"])
    assert abs((dt.datetime.now(UTC) - sent_at).total_seconds()) < 60
    track, identify, page, cron = body["batch"]
    events = recorder.settle().events
    rudderstack = vendor.name == "rudderstack"
    extra: dict[str, Any] = {"channel": "server"} if rudderstack else {}
    assert track == {
        "type": "track",
        "messageId": events[0].event_id,
        "event": "Signed Up",
        "properties": {"plan": "pro"},
        "userId": "user-1",
        "timestamp": when.isoformat(timespec="auto" if rudderstack else "milliseconds"),
        "context": {"library": LIBRARY},
        "integrations": {"All": True} if rudderstack else {},
        **extra,
    }
    traits = {"email": "ada@example.com"}
    assert identify["type"] == "identify" and identify["userId"] == "user-1"
    if rudderstack:  # rudder-sdk-python puts them in context.traits
        assert "traits" not in identify and identify["context"]["traits"] == traits
    else:
        assert identify["traits"] == traits and identify["context"] == {"library": LIBRARY}
    assert page["anonymousId"] == "device-1" and "userId" not in page
    expected = str(uuid.uuid5(uuid.UUID(ANONYMOUS_NAMESPACE), events[2].event_id))
    assert cron["anonymousId"] == expected and "userId" not in cron
    assert [m["messageId"] for m in (track, page, cron)] == [e.event_id for e in events]
    stats = tracking_core.tracking_stats()[vendor.name]
    assert (stats.delivered, stats.batches, dict(stats.dropped)) == (4, 1, {})


def test_messages_over_32_kb_are_dropped_and_batches_kept_under_the_limit(
    vendor: Any, enable: Enable, server: LoopbackReceiver, fake: SegmentFake
) -> None:
    enable(TRACKING_BATCH_SIZE="100")
    tracking_core.track("Huge", {"text": "x" * 33_000}, user_id="user-1")
    for i in range(60):
        tracking_core.track("Big", {"i": i, "text": "y" * 20_000}, user_id="user-1")
    _flush()
    assert fake.rejections == []
    assert len(fake.events) == 60
    limit = 500_000 if vendor.name == "segment" else 4_000_000
    assert all(len(request.body) <= limit for request in server.requests)
    assert len(server.requests) == (3 if vendor.name == "segment" else 1)
    stats = tracking_core.tracking_stats()[vendor.name]
    assert (stats.delivered, dict(stats.dropped)) == (60, {"too_large": 1})


def test_a_host_with_a_path_prefix(
    vendor: Any, enable: Enable, server: LoopbackReceiver, fake: SegmentFake
) -> None:
    fake.path_prefix = "/proxy/seg"
    enable(**{vendor.url_variable: f"{server.url}/proxy/seg/"})
    tracking_core.track("Through a proxy", user_id="user-1")
    _flush()
    assert [request.path for request in server.requests] == ["/proxy/seg/v1/batch"]
    assert len(fake.events) == 1


def test_a_retried_batch_is_deduplicated_on_message_id(
    vendor: Any, enable: Enable, server: LoopbackReceiver, fake: SegmentFake
) -> None:
    enable()
    fake.fail_next(503, ingest=True)  # stored, then the answer lost: the client sends it again
    tracking_core.track("Once", user_id="user-1")
    _flush()
    assert len(server.requests) == 2
    assert len(fake.events) == 1 and len(fake.duplicates) == 1
    assert server.requests[0].json()["batch"] == server.requests[1].json()["batch"]


@pytest.mark.parametrize(("status", "hint"), [(401, "WRITE_KEY"), (400, "400"), (302, "redirect")])
def test_a_refusal_drops_the_batch_with_a_hint(
    vendor: Any, enable: Enable, server: LoopbackReceiver, fake: SegmentFake, status: int, hint: str
) -> None:
    enable()
    fake.fail_next(status, times=3)
    tracking_core.track("Refused", user_id="user-1")
    _flush()
    assert len(server.requests) == 1  # not retried
    stats = tracking_core.tracking_stats()[vendor.name]
    assert dict(stats.dropped) == {"rejected": 1}
    assert hint in (stats.last_error or "")
    assert vendor.key not in (stats.last_error or "")


def test_an_identify_without_a_usable_user_id_is_dropped(
    vendor: Any, enable: Enable, fake: SegmentFake
) -> None:
    enable()
    tracking_core.identify("anonymous", {"plan": "pro"})
    _flush()
    assert fake.identifies == [] and fake.rejections == []
    assert dict(tracking_core.tracking_stats()[vendor.name].dropped) == {"rejected": 1}
