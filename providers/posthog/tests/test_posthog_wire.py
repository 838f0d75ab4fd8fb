"""PostHog: the exact wire format, as accepted by the strict fake over real HTTP."""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import gzip
import uuid
from collections.abc import Callable
from typing import Any

from tracking_posthog.fake import PLACEHOLDER_IDS, PostHogFake

import tracking_core
from tracking_core.receivers import LoopbackReceiver
from tracking_core.testing import RecordingProvider

UTC = dt.timezone.utc
Enable = Callable[..., None]


def _flush() -> None:
    assert tracking_core.flush_tracking(10)


def _aware(text: str) -> dt.datetime:
    moment = dt.datetime.fromisoformat(text)
    assert moment.utcoffset() is not None, text
    return moment


def test_one_batched_request_in_posthogs_format(
    enable: Enable, server: LoopbackReceiver, fake: PostHogFake, api_key: str
) -> None:
    enable()
    recorder = RecordingProvider()  # sees the same events, with their ids and timestamps
    tracking_core.register_tracking_provider(recorder)
    when = dt.datetime(2026, 1, 15, 10, 0, 0, 123456, tzinfo=UTC)
    tracking_core.track("Signed Up", {"plan": "pro"}, user_id="user-12345", timestamp=when)
    tracking_core.track("Project Created", {"project_id": "p_42"}, user_id="user-12345")
    tracking_core.identify("user-12345", {"email": "ada@example.com", "name": "Ada"})
    tracking_core.track("Invited", {"n": 3}, user_id="user-12345")
    _flush()

    assert fake.rejections == []
    assert len(server.requests) == 1
    request = server.requests[0]
    assert request.method == "POST"
    assert request.path == "/batch/"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["user-agent"] == f"tracking-core/{tracking_core.__version__} (posthog)"
    body = request.json()
    assert set(body) == {"api_key", "historical_migration", "sent_at", "batch"}
    assert body["api_key"] == api_key
    assert body["historical_migration"] is False
    sent_at = _aware(body["sent_at"])
    assert abs((dt.datetime.now(UTC) - sent_at).total_seconds()) < 60

    batch = body["batch"]
    assert [e["event"] for e in batch] == ["Signed Up", "Project Created", "$identify", "Invited"]
    for event in batch:
        assert set(event) == {"event", "distinct_id", "properties", "timestamp", "uuid"}
        assert event["distinct_id"] == "user-12345"
        assert uuid.UUID(event["uuid"]).version == 4
        assert event["properties"]["$lib"] == "tracking-core"
        assert event["properties"]["$lib_version"] == tracking_core.__version__
        assert event["properties"]["$geoip_disable"] is True
        assert "$process_person_profile" not in event["properties"]
        _aware(event["timestamp"])
    assert len({e["uuid"] for e in batch}) == 4

    # The event id is the dedupe key, and the timestamp is the one given, with its offset.
    recorded = recorder.settle().events
    assert [e["uuid"] for e in batch if e["event"] != "$identify"] == [e.event_id for e in recorded]
    assert batch[0]["timestamp"] == "2026-01-15T10:00:00.123456+00:00"
    assert _aware(batch[1]["timestamp"]) == recorded[1].timestamp
    assert batch[0]["properties"]["plan"] == "pro"

    identify = batch[2]
    assert identify["properties"]["$set"] == {"email": "ada@example.com", "name": "Ada"}
    assert fake.identifies == [identify]
    assert [e["event"] for e in fake.events] == ["Signed Up", "Project Created", "Invited"]
    stats = tracking_core.tracking_stats()["posthog"]
    assert (stats.delivered, stats.batches, dict(stats.dropped)) == (4, 1, {})


def test_identify_without_traits(enable: Enable, fake: PostHogFake) -> None:
    enable()
    tracking_core.identify("user-7")
    _flush()
    (identify,) = fake.identifies
    assert identify["distinct_id"] == "user-7"
    assert identify["properties"]["$set"] == {}


def test_anonymous_events(enable: Enable, fake: PostHogFake) -> None:
    enable()
    tracking_core.track("Anon 1")
    tracking_core.track("Anon 2", {"$process_person_profile": True})
    tracking_core.track("Device", anonymous_id="anon-9f8e7d6c")
    tracking_core.track("Both", user_id="user-1", anonymous_id="anon-9f8e7d6c")
    with tracking_core.tracking_context(anonymous_id="anon-ctx-1"):
        tracking_core.track("In context")
    _flush()
    assert fake.rejections == []
    events = {e["event"]: e for e in fake.events}
    assert len(events) == 5

    anon1, anon2 = events["Anon 1"], events["Anon 2"]
    for event in (anon1, anon2):
        assert uuid.UUID(event["distinct_id"])  # a fresh random id ...
        assert event["distinct_id"].lower() not in PLACEHOLDER_IDS
        assert event["properties"]["$process_person_profile"] is False  # ... and no person
    assert anon1["distinct_id"] != anon2["distinct_id"]
    assert anon1["distinct_id"] != anon1["uuid"]

    assert events["Device"]["distinct_id"] == "anon-9f8e7d6c"
    assert "$process_person_profile" not in events["Device"]["properties"]
    assert events["Both"]["distinct_id"] == "user-1"
    assert events["In context"]["distinct_id"] == "anon-ctx-1"


def test_host_with_a_path_prefix(
    enable: Enable, server: LoopbackReceiver, fake: PostHogFake
) -> None:
    fake.path_prefix = "/proxy/ph"
    enable(POSTHOG_HOST=f"{server.url}/proxy/ph/")
    tracking_core.track("Through a proxy", user_id="user-1")
    _flush()
    assert [r.path for r in server.requests] == ["/proxy/ph/batch/"]
    assert len(fake.events) == 1
    assert tracking_core.tracking_stats()["posthog"].delivered == 1


class Color(enum.Enum):
    RED = "red"


def test_values_json_cannot_carry_arrive_as_strict_json(
    enable: Enable, server: LoopbackReceiver, fake: PostHogFake
) -> None:
    enable()
    when = dt.datetime(2026, 1, 15, 10, 0, tzinfo=UTC)
    cyclic: list[Any] = [1]
    cyclic.append(cyclic)
    properties: dict[Any, Any] = {
        "when": when,
        "day": dt.date(2026, 1, 15),
        "amount": decimal.Decimal("12.50"),
        "tags": {"b", "a"},
        "pair": (1, 2),
        "nan": float("nan"),
        "inf": float("inf"),
        "raw": b"bytes",
        "id": uuid.UUID("12345678-1234-5678-1234-567812345678"),
        "color": Color.RED,
        "nested": {"deep": {1: decimal.Decimal("NaN")}},
        "cycle": cyclic,
        7: "int key",
    }
    tracking_core.track("Odd values", properties, user_id="user-1")
    tracking_core.identify("user-1", {"since": when, "score": float("-inf")})
    _flush()
    assert fake.rejections == []
    body = server.requests[0].json()  # strict: refuses NaN/Infinity tokens
    props = body["batch"][0]["properties"]
    assert props["when"] == "2026-01-15T10:00:00+00:00"
    assert props["day"] == "2026-01-15"
    assert props["amount"] == 12.5
    assert props["tags"] == ["a", "b"]
    assert props["pair"] == [1, 2]
    assert props["nan"] is None
    assert props["inf"] is None
    assert props["raw"] == "bytes"
    assert props["id"] == "12345678-1234-5678-1234-567812345678"
    assert props["color"] == "red"
    assert props["nested"] == {"deep": {"1": None}}
    assert props["cycle"] == [1, "<cycle>"]
    assert props["7"] == "int key"
    traits = body["batch"][1]["properties"]["$set"]
    assert traits == {"since": "2026-01-15T10:00:00+00:00", "score": None}


def test_large_bodies_are_gzipped_small_ones_are_not(
    enable: Enable, server: LoopbackReceiver, fake: PostHogFake
) -> None:
    enable()
    tracking_core.track("Small", user_id="u-1")
    _flush()
    tracking_core.track("Large", {"text": "lorem ipsum " * 2000}, user_id="u-1")
    _flush()
    small, large = server.requests
    assert "content-encoding" not in small.headers
    assert small.raw_body == small.body
    assert large.headers["content-encoding"] == "gzip"
    assert large.raw_body[:2] == b"\x1f\x8b"
    assert len(large.raw_body) < len(large.body) // 10
    assert gzip.decompress(large.raw_body) == large.body
    assert [e["event"] for e in fake.events] == ["Small", "Large"]


def test_caller_ip_keeps_geoip(enable: Enable, fake: PostHogFake) -> None:
    enable()
    tracking_core.track("With ip", {"$ip": "203.0.113.9"}, user_id="u-1")
    tracking_core.track("Geo on", {"$geoip_disable": False}, user_id="u-1")
    _flush()
    with_ip, geo_on = fake.events
    assert "$geoip_disable" not in with_ip["properties"]
    assert with_ip["properties"]["$ip"] == "203.0.113.9"
    assert geo_on["properties"]["$geoip_disable"] is False


def test_lib_properties_cannot_be_overridden(enable: Enable, fake: PostHogFake) -> None:
    enable()
    tracking_core.track("Spoof", {"$lib": "other", "$lib_version": "9"}, user_id="u-1")
    _flush()
    (event,) = fake.events
    assert event["properties"]["$lib"] == "tracking-core"
    assert event["properties"]["$lib_version"] == tracking_core.__version__
