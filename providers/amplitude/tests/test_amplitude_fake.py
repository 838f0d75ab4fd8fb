"""The strict Amplitude fake validates like the vendor (called directly, no HTTP)."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from tracking_amplitude.fake import TEST_KEY, AmplitudeFake, destination, error_reply

from tracking_core.fakes import Rejection
from tracking_core.receivers import ReceivedRequest, Reply

KEY = "fake-test-key-0123"
MS = 1768471200000


def request(
    body: Any,
    *,
    path: str = "/2/httpapi",
    method: str = "POST",
    headers: dict[str, str] | None = None,
) -> ReceivedRequest:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return ReceivedRequest(
        method=method,
        path=path,
        query={},
        headers={"content-type": "application/json", **(headers or {})},
        raw_body=raw,
        body=raw,
        received_at=time.monotonic(),
    )


def event(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "event_type": "Signed Up",
        "user_id": "user-12345",
        "time": MS,
        "insert_id": "0190f3a2-7c1e-7b3a-9d2e-1a2b3c4d5e61",
    }
    base.update(fields)
    return {k: v for k, v in base.items() if v is not None}


def answer(reply: Reply) -> dict[str, Any]:
    """The JSON body of one of the fake's replies (always an object with ``code``)."""
    assert isinstance(reply.body, dict)
    return reply.body


def batch(*events: Any, **top: Any) -> dict[str, Any]:
    """A request body carrying `KEY`, `events` and the `top`-level fields."""
    return {"api_key": KEY, "events": list(events), **top}


def send(fake: AmplitudeFake, *events: dict[str, Any], **top: Any) -> Reply:
    return fake(request(batch(*events, **top)))


@pytest.fixture
def api_key() -> str:
    """The requests here are built with `KEY` (at collection time): the fake expects it."""
    return KEY


def test_a_valid_batch_is_ingested_with_the_vendor_success_body(fake: AmplitudeFake) -> None:
    reply = send(
        fake,
        event(event_properties={"plan": "pro"}),
        event(
            event_type="$identify",
            insert_id="id-2",
            user_properties={"$set": {"email": "ada@example.com"}},
        ),
    )
    assert reply.status == 200
    assert answer(reply)["code"] == 200
    assert answer(reply)["events_ingested"] == 2
    assert [e["event_type"] for e in fake.events] == ["Signed Up"]
    assert fake.identifies[0]["user_properties"] == {"$set": {"email": "ada@example.com"}}
    assert len(fake.batches) == 1


@pytest.mark.parametrize(
    ("req", "status", "error"),
    [
        (request(batch(event()), path="/batch"), 400, "Invalid request path"),
        (request(batch(event()), method="GET"), 405, "Method not allowed"),
        (
            request(batch(event()), headers={"content-type": "text/plain"}),
            400,
            "Invalid JSON request body",
        ),
        (
            request(batch(event()), headers={"content-encoding": "gzip"}),
            400,
            "Invalid JSON request body",
        ),
        (request(b'{"api_key": "k", "events": [NaN]}'), 400, "Invalid JSON request body"),
        (request([event()]), 400, "Invalid JSON request body"),
        (request({"events": [event()]}), 400, "Request missing required field"),
        (request({"api_key": "other-key", "events": [event()]}), 400, "Invalid API key"),
        (request(batch()), 400, "Request missing required field"),
        (request(batch(1)), 400, "Invalid event JSON"),
        (
            request(batch(event(), options={"min_id_length": 0})),
            400,
            "Invalid JSON request body",
        ),
    ],
)
def test_malformed_requests_are_refused_with_json_code(
    fake: AmplitudeFake, req: ReceivedRequest, status: int, error: str
) -> None:
    reply = fake(req)
    assert reply.status == status
    assert answer(reply)["code"] == status
    assert answer(reply)["error"] == error
    assert fake.events == []
    assert fake.rejections == [Rejection(status, error)]


def test_missing_api_key_names_the_field(fake: AmplitudeFake) -> None:
    reply = fake(request({"events": [event()]}))
    assert answer(reply)["missing_field"] == "api_key"


def test_size_and_count_limits_answer_413(fake: AmplitudeFake) -> None:
    events = [event(insert_id=f"id-{i}") for i in range(2000)]
    assert send(fake, *events).status == 413
    assert send(fake, *events[:1999]).status == 200
    big = event(insert_id="big", event_properties={"blob": "x" * 1_000_000})
    assert send(fake, big).status == 413
    # Just under 1,000,000 bytes is fine.
    body: dict[str, Any] = {
        "api_key": KEY,
        "events": [event(insert_id="near", event_properties={"blob": ""})],
    }
    pad = 999_999 - len(json.dumps(body).encode())
    body["events"][0]["event_properties"]["blob"] = "x" * pad
    assert len(json.dumps(body).encode()) == 999_999
    assert fake(request(body)).status == 200


@pytest.mark.parametrize(
    "bad_id",
    [
        "anonymous",
        "NULL",
        "None",
        "nil",
        "n/a",
        "undefined",
        "unknown",
        "0",
        "-1",
        "",
        "{}",
        "lmy47d",
        "00000000-0000-0000-0000-000000000000",
    ],
)
def test_placeholder_ids_make_the_request_fail_whole(fake: AmplitudeFake, bad_id: str) -> None:
    reply = send(
        fake,
        event(insert_id="ok"),
        event(insert_id="bad", user_id=None, device_id=bad_id),
    )
    assert reply.status == 400
    assert answer(reply)["events_with_invalid_fields"] == {"device_id": [1]}
    assert fake.events == []  # nothing of a refused request is ingested


def test_short_ids_are_removed_unless_min_id_length_allows_them(fake: AmplitudeFake) -> None:
    # A short user_id next to a long device_id: Amplitude removes the short one.
    assert send(fake, event(user_id="u1", device_id="device-123")).status == 200
    assert "user_id" not in fake.events[-1]
    # Alone, the event is left with no id: refused.
    reply = send(fake, event(insert_id="x2", user_id="u1"))
    assert reply.status == 400
    assert answer(reply)["events_with_invalid_fields"] == {"user_id": [0]}
    # With options.min_id_length the id is kept.
    reply = send(fake, event(insert_id="x3", user_id="u1"), options={"min_id_length": 2})
    assert reply.status == 200
    assert fake.events[-1]["user_id"] == "u1"


def test_an_event_needs_an_id_and_an_event_type(fake: AmplitudeFake) -> None:
    reply = send(fake, event(user_id=None), event(insert_id="b", event_type=None))
    assert reply.status == 400
    assert answer(reply)["events_with_missing_fields"] == {"user_id": [0], "event_type": [1]}
    assert answer(send(fake, event(event_type="")))["events_with_invalid_fields"] == {
        "event_type": [0]
    }


@pytest.mark.parametrize(
    "when",
    [1768471200, 1768471200000.0, "1768471200000", "2026-01-15T10:00:00Z", True, 1768471200000000],
)
def test_time_must_be_integer_milliseconds(fake: AmplitudeFake, when: Any) -> None:
    reply = send(fake, event(time=when))
    assert reply.status == 400
    assert answer(reply)["events_with_invalid_fields"] == {"time": [0]}


def test_user_property_operations_only_on_identify(fake: AmplitudeFake) -> None:
    on_track = send(fake, event(user_properties={"$set": {"a": 1}}))
    assert answer(on_track)["events_with_invalid_fields"] == {"user_properties": [0]}
    mixed = send(fake, event(event_type="$identify", user_properties={"$set": {}, "plain": 1}))
    assert mixed.status == 400
    unknown = send(fake, event(event_type="$identify", user_properties={"$bogus": {}}))
    assert unknown.status == 400
    not_object = send(fake, event(event_properties=["a"]))
    assert answer(not_object)["events_with_invalid_fields"] == {"event_properties": [0]}
    plain = send(fake, event(user_properties={"plan": "pro"}))
    assert plain.status == 200


def test_insert_id_deduplicates_per_device(fake: AmplitudeFake) -> None:
    send(fake, event(device_id="device-123"))
    send(fake, event(device_id="device-123"))
    send(fake, event(device_id="device-456"))
    assert len(fake.events) == 2
    assert len(fake.duplicates) == 1


def test_scripted_failures_come_first_and_can_ingest(fake: AmplitudeFake) -> None:
    fake.fail_next(503, times=2)
    fake.fail_next(error_reply(500, "Internal error"), ingest=True)
    assert answer(send(fake, event())) == {"code": 503, "error": "Service Unavailable"}
    assert send(fake, event()).status == 503
    assert fake.events == []
    reply = send(fake, event())
    assert reply.status == 500
    assert answer(reply) == {"code": 500, "error": "Internal error"}
    assert len(fake.events) == 1  # the work was done although the answer says otherwise
    assert send(fake, event()).status == 200
    assert len(fake.duplicates) == 1 and len(fake.requests) == 4


def test_error_reply_carries_fields_and_headers() -> None:
    reply = error_reply(429, "Too many", headers={"Retry-After": "0"}, throttled_events=[1])
    assert reply.status == 429
    assert reply.body == {"code": 429, "error": "Too many", "throttled_events": [1]}
    assert reply.headers == {"Retry-After": "0"}


def test_destination_and_reading_events_without_amplitudes_field_names() -> None:
    amplitude = destination()
    fake = amplitude.fake
    assert amplitude.provider == "amplitude"
    url = "http://127.0.0.1:9/proxy"
    assert amplitude.environment(url) == {"AMPLITUDE_API_KEY": TEST_KEY, "AMPLITUDE_HOST": url}
    played = event(event_properties={"level": 3})
    identify = event(event_type="$identify", insert_id="id-2", user_id="player-1")
    assert fake(request({"api_key": TEST_KEY, "events": [played, identify]})).status == 200
    assert fake.event_ids() == [played["insert_id"]]
    assert [fake.properties_of(e) for e in fake.events] == [{"level": 3}]
    assert [fake.user_of(i) for i in fake.identifies] == ["player-1"]
