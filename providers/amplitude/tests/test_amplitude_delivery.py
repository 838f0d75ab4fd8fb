"""End to end: tracking_core.track()/identify() -> real HTTP -> the strict Amplitude fake."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from tracking_amplitude.fake import AmplitudeFake, error_reply

import tracking_core
from tracking_core.fakes import Rejection
from tracking_core.testing import LoopbackReceiver, Reply

WHEN = dt.datetime(2026, 1, 15, 10, 0, 0, 123456, tzinfo=dt.timezone.utc)
WHEN_MS = 1768471200123
LIBRARY = f"tracking-core/{tracking_core.__version__}"

Configure = Callable[..., None]


def track(*names: str, user_id: str | None = "user-12345", **fields: Any) -> None:
    """Track one event per name (by default for ``user-12345``)."""
    for name in names:
        tracking_core.track(name, user_id=user_id, **fields)


def throttled(**fields: Any) -> Reply:
    """Amplitude's 429, with ``Retry-After: 0`` (it sends none) so that tests do not wait 30 s."""
    return error_reply(
        429, "Too many requests for some devices and users", headers={"Retry-After": "0"}, **fields
    )


def flush() -> tracking_core.ProviderStats:
    assert tracking_core.flush_tracking(10)
    return tracking_core.tracking_stats()["amplitude"]


def bodies(server: LoopbackReceiver) -> list[dict[str, Any]]:
    return [request.json() for request in server.requests]


def insert_ids(body: dict[str, Any]) -> list[str]:
    return [event["insert_id"] for event in body["events"]]


# -- the wire format ------------------------------------------------------------------------


def test_events_and_identifies_go_out_in_one_batch_in_the_vendor_format(
    enable_amplitude: Configure, server: LoopbackReceiver, fake: AmplitudeFake, api_key: str
) -> None:
    enable_amplitude()
    before = int(time.time() * 1000)
    tracking_core.track(
        "Signed Up",
        {"plan": "pro"},
        user_id="user-12345",
        anonymous_id="anon-9f8e7d6c",
        timestamp=WHEN,
    )
    tracking_core.track("Page Viewed", anonymous_id="anon-9f8e7d6c", timestamp=WHEN)
    tracking_core.identify("user-12345", {"email": "ada@example.com", "name": "Ada"})
    stats = flush()
    after = int(time.time() * 1000)

    assert len(server.requests) == 1
    request = server.requests[0]
    assert request.method == "POST"
    assert request.path == "/2/httpapi"
    assert request.headers["user-agent"] == f"tracking-core/{tracking_core.__version__} (amplitude)"
    assert request.headers["content-type"] == "application/json"
    assert "content-encoding" not in request.headers
    body = request.json()
    assert set(body) == {"api_key", "events"}  # no options: every id is long enough
    assert body["api_key"] == api_key
    ids = insert_ids(body)
    assert len(set(ids)) == 3
    assert all(uuid.UUID(i).version == 4 for i in ids)
    signed_up, viewed, identify = body["events"]
    assert signed_up == {
        "event_type": "Signed Up",
        "user_id": "user-12345",
        "device_id": "anon-9f8e7d6c",
        "time": WHEN_MS,
        "insert_id": ids[0],
        "event_properties": {"plan": "pro"},
        "library": LIBRARY,
    }
    assert viewed == {
        "event_type": "Page Viewed",
        "device_id": "anon-9f8e7d6c",
        "time": WHEN_MS,
        "insert_id": ids[1],
        "event_properties": {},
        "library": LIBRARY,
    }
    identify_time = identify.pop("time")
    assert type(identify_time) is int
    assert before <= identify_time <= after
    assert identify == {
        "event_type": "$identify",
        "user_id": "user-12345",
        "insert_id": ids[2],
        "user_properties": {"$set": {"email": "ada@example.com", "name": "Ada"}},
        "library": LIBRARY,
    }

    assert [e["event_type"] for e in fake.events] == ["Signed Up", "Page Viewed"]
    assert fake.identifies[0]["user_id"] == "user-12345"
    assert (stats.delivered, stats.batches, dict(stats.dropped)) == (3, 1, {})


def test_events_without_an_id_amplitude_accepts_are_dropped_as_unsupported(
    enable_amplitude: Configure,
    server: LoopbackReceiver,
    fake: AmplitudeFake,
    caplog: pytest.LogCaptureFixture,
) -> None:
    enable_amplitude()
    tracking_core.track("No Ids")
    tracking_core.track("Placeholder Only", user_id="anonymous")
    tracking_core.track("Placeholder User", user_id="null", anonymous_id="device-12345")
    tracking_core.identify("undefined", {"plan": "pro"})
    stats = flush()
    assert dict(stats.dropped) == {"unsupported": 3}
    assert stats.delivered == 1
    assert len(fake.events) == 1
    sent = fake.events[0]
    assert sent["event_type"] == "Placeholder User"
    assert sent["device_id"] == "device-12345"
    assert "user_id" not in sent
    raw = b"".join(r.body for r in server.requests)
    assert b"anonymous" not in raw
    assert b'"null"' not in raw
    assert "Amplitude cannot take this event" in caplog.text


def test_short_ids_are_kept_with_min_id_length(
    enable_amplitude: Configure, server: LoopbackReceiver, fake: AmplitudeFake
) -> None:
    enable_amplitude()
    tracking_core.track("Normal", user_id="user-12345")
    tracking_core.track("Two", user_id="u1")
    tracking_core.track("Three", user_id="abc", anonymous_id="device-123")
    tracking_core.identify("42", {"plan": "pro"})
    stats = flush()
    assert stats.delivered == 4
    assert dict(stats.dropped) == {}
    by_option = {
        body.get("options", {}).get("min_id_length"): sorted(
            e["event_type"] for e in body["events"]
        )
        for body in bodies(server)
    }
    assert by_option == {None: ["Normal"], 2: ["$identify", "Two"], 3: ["Three"]}
    # The fake removes ids shorter than min_id_length: they all arrived intact.
    assert {e["event_type"]: e.get("user_id") for e in fake.events} == {
        "Normal": "user-12345",
        "Two": "u1",
        "Three": "abc",
    }
    assert fake.identifies[0]["user_id"] == "42"


def test_a_host_with_a_path_prefix(enable_amplitude: Configure, api_key: str) -> None:
    proxied = AmplitudeFake(api_key=api_key, prefix="/proxy")
    with LoopbackReceiver(proxied) as proxy:
        enable_amplitude(AMPLITUDE_HOST=f"{proxy.url}/proxy/")
        track("Signed Up")
        stats = flush()
        assert [r.path for r in proxy.requests] == ["/proxy/2/httpapi"]
    assert stats.delivered == 1
    assert len(proxied.events) == 1


def test_values_json_cannot_carry_arrive_as_strict_json(
    enable_amplitude: Configure, server: LoopbackReceiver
) -> None:
    enable_amplitude()
    props = {
        "when": dt.datetime(2026, 1, 15, 10, 0, tzinfo=dt.timezone.utc),
        "price": decimal.Decimal("9.99"),
        "tags": {"b", "a"},
        "ratio": float("nan"),
        "big": float("inf"),
        "raw": b"bytes",
        "blob": b"\xff\xfe",
        "nested": {1: ("x", None)},
    }
    tracking_core.track("Bought", props, user_id="user-12345")
    stats = flush()
    assert stats.delivered == 1
    sent = server.requests[0].json()["events"][0]["event_properties"]  # strict: no NaN token
    assert sent == {
        "when": "2026-01-15T10:00:00+00:00",
        "price": 9.99,
        "tags": ["a", "b"],
        "ratio": None,
        "big": None,
        "raw": "bytes",
        "blob": "base64://4=",
        "nested": {"1": ["x", None]},
    }


# -- limits ---------------------------------------------------------------------------------


def test_requests_stay_under_2000_events_whatever_the_batch_size(
    enable_amplitude: Configure, server: LoopbackReceiver, fake: AmplitudeFake
) -> None:
    enable_amplitude(TRACKING_BATCH_SIZE="5000")
    for i in range(4100):
        tracking_core.track("Tick", {"i": i}, user_id="user-12345")
    stats = flush()
    counts = [len(body["events"]) for body in bodies(server)]
    assert max(counts) == 1999
    assert sum(counts) == 4100
    assert fake.rejections == []
    assert stats.delivered == 4100
    assert stats.retried == 0


def test_requests_stay_under_1_mb(
    enable_amplitude: Configure, server: LoopbackReceiver, fake: AmplitudeFake
) -> None:
    enable_amplitude()
    # Three of these make a body just over 1 MB: the provider must cut them 2 + 2 + 1.
    for i in range(5):
        tracking_core.track("Big", {"blob": "x" * 340_000, "i": i}, user_id="user-12345")
    tracking_core.track("Huge", {"blob": "x" * 995_000}, user_id="user-12345")
    stats = flush()
    sizes = [len(r.raw_body) for r in server.requests]
    assert all(size < 1_000_000 for size in sizes), sizes
    assert [len(body["events"]) for body in bodies(server)] == [2, 2, 1]
    assert fake.rejections == []  # the fake never had to answer 413
    assert stats.delivered == 5
    assert dict(stats.dropped) == {"too_large": 1}


# -- answers --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "times", "names", "counts"),
    [
        (error_reply(503, "Service Unavailable"), 2, ("A", "B", "C"), (3, 6, 2)),
        (
            throttled(
                eps_threshold=30, throttled_users={"user-12345": 31}, throttled_events=[0, 1]
            ),
            1,
            ("A", "B"),
            (2, 2, 1),
        ),
        # The JSON code decides, even on HTTP 200.
        (Reply(200, {"code": 503, "error": "Service Unavailable"}), 1, ("A",), (1, 1, 1)),
    ],
    ids=["503", "429", "code-503-on-http-200"],
)
def test_a_retryable_answer_is_retried_with_the_same_ids_and_times(
    enable_amplitude: Configure,
    server: LoopbackReceiver,
    fake: AmplitudeFake,
    reply: Reply,
    times: int,
    names: tuple[str, ...],
    counts: tuple[int, int, int],
) -> None:
    enable_amplitude()
    fake.fail_next(reply, times=times)
    track(*names, timestamp=WHEN)
    stats = flush()
    assert len(server.requests) == times + 1
    first, *again = (r.body for r in server.requests)
    assert all(body == first for body in again)  # byte-identical: same insert_id and time
    assert [e["event_type"] for e in fake.events] == list(names)
    assert (stats.delivered, stats.retried, stats.failed) == counts


def test_a_500_after_ingesting_is_deduplicated_by_insert_id(
    enable_amplitude: Configure, server: LoopbackReceiver, fake: AmplitudeFake
) -> None:
    enable_amplitude()
    fake.fail_next(error_reply(500, "Internal Server Error"), ingest=True)
    track("A", "B")
    stats = flush()
    assert len(server.requests) == 2
    assert len(fake.events) == 2
    assert len(fake.duplicates) == 2
    assert stats.delivered == 2


def test_a_429_pauses_30_seconds(
    enable_amplitude: Configure, server: LoopbackReceiver, fake: AmplitudeFake
) -> None:
    # With one second of retry time, a 503 is retried (short backoff) but a 429 is not:
    # Amplitude asks for 30 s, which the core will not wait.
    enable_amplitude(TRACKING_MAX_RETRY_TIME="1")
    fake.fail_next(error_reply(503, "Service Unavailable"))
    track("A")
    assert flush().delivered == 1
    fake.fail_next(error_reply(429, "Too many requests", throttled_users={"user-12345": 31}))
    track("B")
    started = time.monotonic()
    stats = flush()
    assert time.monotonic() - started < 5
    assert len(server.requests) == 3
    assert dict(stats.dropped) == {"retries_exhausted": 1}


def test_a_429_drops_the_events_over_the_daily_quota(
    enable_amplitude: Configure, server: LoopbackReceiver, fake: AmplitudeFake
) -> None:
    enable_amplitude()
    fake.fail_next(
        throttled(
            throttled_events=[0, 1, 2],
            throttled_devices={"device-00002": 40},
            exceeded_daily_quota_users={"user-aaaaa": 500_001},
            exceeded_daily_quota_devices={"device-00001": 500_001},
        )
    )
    tracking_core.track("A1", user_id="user-aaaaa")
    tracking_core.track("D1", anonymous_id="device-00001")
    tracking_core.track("D2", anonymous_id="device-00002")
    tracking_core.track("B1", user_id="user-bbbbb")
    tracking_core.track("A2", user_id="user-aaaaa")  # not throttled in this answer: resent
    stats = flush()
    first, second = bodies(server)
    assert insert_ids(second) == [insert_ids(first)[i] for i in (2, 3, 4)]
    assert [e["event_type"] for e in fake.events] == ["D2", "B1", "A2"]
    assert dict(stats.dropped) == {"rejected": 2}
    assert stats.delivered == 3


def test_a_413_splits_the_batch(
    enable_amplitude: Configure, server: LoopbackReceiver, fake: AmplitudeFake
) -> None:
    enable_amplitude()
    fake.fail_next(error_reply(413, "Payload too large"))
    track("A", "B", "C", "D")
    stats = flush()
    counts = [len(body["events"]) for body in bodies(server)]
    assert counts == [4, 2, 2]
    first = insert_ids(bodies(server)[0])
    assert sorted(first) == sorted(i for body in bodies(server)[1:] for i in insert_ids(body))
    assert [e["event_type"] for e in fake.events] == ["A", "B", "C", "D"]
    assert stats.delivered == 4


def test_a_413_on_a_single_event_drops_it_as_too_large(
    enable_amplitude: Configure, fake: AmplitudeFake
) -> None:
    enable_amplitude()
    fake.fail_next(error_reply(413, "Payload too large"))
    track("A")
    stats = flush()
    assert dict(stats.dropped) == {"too_large": 1}
    assert fake.events == []


@pytest.mark.parametrize(
    "fields",
    [
        {
            "events_with_invalid_fields": {"time": [1]},
            "events_with_missing_fields": {"event_type": [2]},
        },
        {"silenced_events": [1, 2], "silenced_devices": ["device-1"], "throttled_events": [3]},
        {"events_with_invalid_id_lengths": {"user_id": [1], "device_id": [2]}},
    ],
)
def test_a_400_listing_events_drops_them_and_resends_the_rest_at_once(
    enable_amplitude: Configure,
    server: LoopbackReceiver,
    fake: AmplitudeFake,
    fields: dict[str, Any],
) -> None:
    enable_amplitude(TRACKING_RETRY_BACKOFF="5", TRACKING_RETRY_BACKOFF_MAX="5")  # no backoff used
    fake.fail_next(error_reply(400, "Invalid field values on some events", **fields))
    track("A", "B", "C", "D")
    started = time.monotonic()
    stats = flush()
    assert time.monotonic() - started < 2
    first, second = bodies(server)
    assert insert_ids(second) == [insert_ids(first)[0], insert_ids(first)[3]]
    assert [e["event_type"] for e in fake.events] == ["A", "D"]
    assert dict(stats.dropped) == {"rejected": 2}
    assert stats.delivered == 2


@pytest.mark.parametrize(
    "reply",
    [
        error_reply(  # the documented example: missing_field wins over the event lists
            400,
            "Request missing required field",
            missing_field="api_key",
            events_with_invalid_fields={"time": [0]},
        ),
        error_reply(400, "Invalid field values on some events"),  # lists no event
        error_reply(400, "Invalid field values", events_with_invalid_fields={"time": [7]}),
        error_reply(403, "Forbidden"),
        Reply(200, {"code": 400, "error": "Invalid API key"}),  # a 200 that says failure
        Reply(200, b"<html>Welcome to the hotel wifi</html>"),  # not Amplitude at all
        Reply(202, {"status": "queued"}),
    ],
)
def test_answers_that_refuse_the_whole_batch(
    enable_amplitude: Configure, server: LoopbackReceiver, fake: AmplitudeFake, reply: Reply
) -> None:
    enable_amplitude()
    fake.fail_next(reply)
    track("A", "B")
    stats = flush()
    assert len(server.requests) == 1  # not retried
    assert dict(stats.dropped) == {"rejected": 2}
    assert stats.delivered == 0
    assert fake.events == []


def test_a_wrong_key_is_rejected_without_retry(
    enable_amplitude: Configure, server: LoopbackReceiver, fake: AmplitudeFake
) -> None:
    enable_amplitude(AMPLITUDE_API_KEY="amp-wrong-key-000")
    track("A")
    stats = flush()
    assert len(server.requests) == 1
    assert fake.rejections == [Rejection(400, "Invalid API key")]
    assert dict(stats.dropped) == {"rejected": 1}


def test_no_secret_in_any_log_line(
    enable_amplitude: Configure,
    server: LoopbackReceiver,
    fake: AmplitudeFake,
    caplog: pytest.LogCaptureFixture,
    api_key: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    enable_amplitude(TRACKING_DEBUG="1")
    fake.fail_next(error_reply(503, f"upstream refused key {api_key}"))
    fake.fail_next(error_reply(400, f"Invalid API key: {api_key}"))
    track("A")
    tracking_core.identify("user-12345", {"plan": "pro"})
    stats = flush()
    assert dict(stats.dropped) == {"rejected": 2}
    assert len(server.requests) == 2
    assert "sent 2 items" in caplog.text  # the debug lines are there...
    assert "Invalid API key: ***" in caplog.text  # ... the vendor's reason too, masked
    assert api_key not in caplog.text
    for record in caplog.records:
        assert api_key not in record.getMessage()


def test_each_attempt_is_checked_by_the_strict_fake(
    enable_amplitude: Configure, server: LoopbackReceiver, fake: AmplitudeFake, api_key: str
) -> None:
    """Every request the provider made passed the fake's own validation."""
    enable_amplitude()
    tracking_core.track("A", {"nested": {"deep": [1, 2, {"x": None}]}}, user_id="user-12345")
    tracking_core.identify("user-12345", {})
    stats = flush()
    assert fake.rejections == []
    assert stats.delivered == 2
    assert all(json.loads(r.body)["api_key"] == api_key for r in server.requests)
