"""End to end: tracking_core.track() -> the webhook provider -> real HTTP -> the strict fake."""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import logging
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from tracking_webhook.fake import WebhookFake
from tracking_webhook.provider import anonymous_id_for

import tracking_core as tc
from tracking_core.receivers import LoopbackReceiver, ReceivedRequest, Reply
from tracking_core.testing import RecordingProvider

Start = Callable[..., None]


@pytest.fixture
def start(webhook_env: Callable[..., list[str]], webhook_variables: dict[str, str]) -> Start:
    """``start(**variables)``: the provider enabled against the fake (its URL, Authorization
    and secret), `variables` on top (None removes one); asserts it is the one provider on."""

    def start(**variables: str | None) -> None:
        # A flush interval long enough that the events of one test go out together on
        # flush_tracking().
        enabled = webhook_env(**{"TRACKING_FLUSH_INTERVAL": "5", **webhook_variables, **variables})
        assert enabled == ["webhook"]

    return start


def flush() -> tc.ProviderStats:
    assert tc.flush_tracking(10)
    return tc.tracking_stats()["webhook"]


def batch_of(request: ReceivedRequest) -> list[dict[str, Any]]:
    return request.json()["batch"]  # type: ignore[no-any-return]


def test_webhook_sends_one_signed_segment_batch(
    start: Start, receiver: LoopbackReceiver, fake: WebhookFake
) -> None:
    start()
    recorder = RecordingProvider()
    tc.register_tracking_provider(recorder)
    when = dt.datetime(2026, 1, 15, 10, 0, 0, tzinfo=dt.timezone.utc)
    tc.track("Signed Up", {"plan": "pro"}, user_id="user-12345", timestamp=when)
    tc.track("Viewed", {"n": 1}, anonymous_id="anon-9f8e7d6c")
    tc.track("Both", user_id="user-12345", anonymous_id="anon-9f8e7d6c")
    tc.track("Nobody", {"source": "cron"})
    tc.identify("user-12345", {"email": "ada@example.com", "name": "Ada"})
    stats = flush()

    assert fake.rejections == []
    assert len(receiver.requests) == 1  # one batch, not one request per event
    request = receiver.requests[0]
    assert request.method == "POST"
    assert request.path == fake.path
    assert request.headers["content-type"] == "application/json"
    assert request.headers["user-agent"] == f"tracking-core/{tc.__version__} (webhook)"
    assert request.headers["authorization"] == fake.auth
    assert str(uuid.UUID(request.headers["webhook-id"])) == request.headers["webhook-id"]
    assert request.headers["webhook-timestamp"].isdigit()
    assert request.headers["webhook-signature"].startswith("v1,")
    assert "content-encoding" not in request.headers
    body = request.json()
    assert set(body) == {"batch", "sentAt"}
    assert body["sentAt"].endswith("Z")

    messages = body["batch"]
    event_ids = [event.event_id for event in recorder.events]
    assert [m["messageId"] for m in messages[:4]] == event_ids
    library = {"library": {"name": "tracking-core", "version": tc.__version__}}
    assert messages[0] == {
        "type": "track",
        "messageId": event_ids[0],
        "event": "Signed Up",
        "properties": {"plan": "pro"},
        "userId": "user-12345",
        "timestamp": "2026-01-15T10:00:00.000Z",
        "context": library,
    }
    assert messages[1]["anonymousId"] == "anon-9f8e7d6c"
    assert "userId" not in messages[1]
    assert (messages[2]["userId"], messages[2]["anonymousId"]) == ("user-12345", "anon-9f8e7d6c")
    # Neither id: a stable anonymousId derived from the event id, never a placeholder.
    assert "userId" not in messages[3]
    assert messages[3]["anonymousId"] == anonymous_id_for(event_ids[3])
    identify = messages[4]
    assert identify["type"] == "identify"
    assert identify["userId"] == "user-12345"
    assert identify["traits"] == {"email": "ada@example.com", "name": "Ada"}
    assert str(uuid.UUID(identify["messageId"])) == identify["messageId"]
    assert set(identify) == {"type", "messageId", "userId", "traits", "timestamp", "context"}
    for message in messages[1:]:
        assert dt.datetime.fromisoformat(message["timestamp"].replace("Z", "+00:00"))

    assert fake.event_names() == ["Signed Up", "Viewed", "Both", "Nobody"]
    assert len(fake.identifies) == 1
    assert (stats.delivered, stats.batches, dict(stats.dropped)) == (5, 1, {})


def test_webhook_unsigned_without_a_secret(
    start: Start, receiver: LoopbackReceiver, fake: WebhookFake
) -> None:
    fake.secret = None
    start(TRACKING_WEBHOOK_SECRET=None)
    tc.track("Unsigned", user_id="user-12345")
    assert flush().delivered == 1
    headers = receiver.requests[0].headers
    assert "webhook-signature" not in headers
    assert headers["webhook-id"]  # still the batch's idempotency key
    assert fake.event_names() == ["Unsigned"]


def test_webhook_url_is_used_exactly_as_given(
    start: Start, receiver: LoopbackReceiver, fake: WebhookFake
) -> None:
    fake.path = "/proxy/hooks/"
    start(TRACKING_WEBHOOK_URL=receiver.url + "/proxy/hooks/?source=api&v=2")
    tc.track("Proxied", user_id="user-12345")
    assert flush().delivered == 1
    assert fake.rejections == []
    assert receiver.requests[0].path == "/proxy/hooks/"
    assert receiver.requests[0].query == {"source": "api", "v": "2"}


def test_webhook_retry_keeps_id_and_messages_and_refreshes_the_signature(
    start: Start, receiver: LoopbackReceiver, fake: WebhookFake
) -> None:
    start()
    # ingest: the fake checks the first attempt too (and then answers 503).
    fake.fail_next(Reply(503, {"code": "unavailable"}, headers={"Retry-After": "1"}), ingest=True)
    for n in range(3):
        tc.track("Retried", {"n": n}, user_id="user-12345")
    stats = flush()

    assert fake.rejections == []
    assert fake.statuses() == [503, 200]
    first, second = fake.requests
    assert first.headers["webhook-id"] == second.headers["webhook-id"]  # the idempotency key stays
    assert [m["messageId"] for m in batch_of(first)] == [m["messageId"] for m in batch_of(second)]
    # Retry-After: 1 was honoured, so this attempt's timestamp and signature are new.
    assert second.received_at - first.received_at >= 0.9
    assert int(second.headers["webhook-timestamp"]) > int(first.headers["webhook-timestamp"])
    assert first.headers["webhook-signature"] != second.headers["webhook-signature"]
    assert first.json()["sentAt"] != second.json()["sentAt"]
    # The messages themselves (ids, timestamps) are byte-identical.
    old, new = (batch_of(r) for r in receiver.requests)
    assert old == new
    assert len(fake.events) == 3
    assert fake.duplicates == []
    assert (stats.delivered, stats.retried, stats.failed, stats.batches) == (3, 3, 1, 2)


def test_webhook_429_and_timeouts_are_retried(start: Start, fake: WebhookFake) -> None:
    start(TRACKING_HTTP_TIMEOUT="0.3")
    fake.fail_next(
        Reply(429, {"code": "rate_limited"}, headers={"Retry-After": "0"}),
        Reply(action="hang"),
        Reply(502),
    )
    tc.track("Eventually", user_id="user-12345")
    stats = flush()
    assert fake.statuses() == [429, None, 502, 200]
    assert len({r.headers["webhook-id"] for r in fake.requests}) == 1
    assert fake.event_names() == ["Eventually"]
    assert (stats.delivered, stats.retried, stats.failed) == (1, 3, 3)


def test_webhook_gives_up_after_the_attempts(
    start: Start, receiver: LoopbackReceiver, fake: WebhookFake
) -> None:
    start(TRACKING_MAX_ATTEMPTS="3")
    fake.fail_next(Reply(503), times=10)
    tc.track("Lost", user_id="user-12345")
    stats = flush()
    assert len(receiver.requests) == 3
    assert stats.dropped == {"retries_exhausted": 1}
    assert fake.events == []


def test_webhook_410_stops_the_provider(
    start: Start,
    receiver: LoopbackReceiver,
    fake: WebhookFake,
    caplog: pytest.LogCaptureFixture,
) -> None:
    start()
    fake.fail_next(Reply(410, {"code": "gone", "message": "endpoint removed"}), times=100)
    tc.track("First", user_id="user-12345")
    tc.track("Second", user_id="user-12345")
    stats = flush()
    assert stats.dropped == {"provider_stopped": 2}
    for n in range(3):
        tc.track("Later", {"n": n}, user_id="user-12345")
    tc.identify("user-12345", {"plan": "pro"})
    stats = flush()
    assert stats.dropped == {"provider_stopped": 6}
    assert stats.delivered == 0
    assert len(receiver.requests) == 1  # nothing after the 410
    assert len([r for r in caplog.records if "is stopped" in r.getMessage()]) == 1


def test_webhook_410_drops_the_rest_of_the_batch_unsent(
    start: Start, receiver: LoopbackReceiver, fake: WebhookFake
) -> None:
    # 20 events of ~300 bytes under a 2000-byte request limit: one batch, several requests.
    start(TRACKING_WEBHOOK_MAX_BATCH_BYTES="2000")
    fake.fail_next(Reply(410), times=100)
    for n in range(20):
        tc.track("Chunked", {"n": n, "pad": "x" * 100}, user_id="user-12345")
    stats = flush()
    assert len(receiver.requests) == 1
    assert stats.dropped == {"provider_stopped": 20}


def test_webhook_redirects_are_not_followed(
    start: Start,
    receiver: LoopbackReceiver,
    fake: WebhookFake,
    caplog: pytest.LogCaptureFixture,
) -> None:
    start()
    fake.fail_next(Reply(301, b"", headers={"Location": receiver.url + "/moved"}))
    fake.fail_next(Reply(307, b"", headers={"Location": receiver.url + "/moved"}))
    tc.track("Redirected", user_id="user-12345")
    stats = flush()
    tc.track("Redirected again", user_id="user-12345")
    stats = flush()
    assert [r.path for r in receiver.requests] == [fake.path, fake.path]
    assert stats.dropped == {"rejected": 2}
    assert stats.retried == 0
    assert "TRACKING_WEBHOOK_URL" in caplog.text
    # Still running: the next batch is delivered.
    tc.track("Fine", user_id="user-12345")
    assert flush().delivered == 1


def test_webhook_any_2xx_is_success(start: Start, fake: WebhookFake) -> None:
    start()
    fake.fail_next(Reply(202, ""), Reply(204, b""), Reply(200, {"success": False}))
    for name in ("Accepted", "No Content", "Odd Body"):
        tc.track(name, user_id="user-12345")
        flush()
    stats = flush()
    assert fake.statuses() == [202, 204, 200]
    assert (stats.delivered, stats.retried, dict(stats.dropped)) == (3, 0, {})


def test_webhook_other_4xx_are_dropped_with_the_reason(
    start: Start,
    receiver: LoopbackReceiver,
    caplog: pytest.LogCaptureFixture,
) -> None:
    start(TRACKING_WEBHOOK_AUTH="Bearer not-the-right-one")
    tc.track("Refused", user_id="user-12345")
    stats = flush()
    assert stats.dropped == {"rejected": 1}
    assert len(receiver.requests) == 1
    assert "HTTP 401" in caplog.text
    assert "TRACKING_WEBHOOK_AUTH" in caplog.text


def test_webhook_fake_refuses_a_wrong_signature_and_a_skewed_clock(
    start: Start, fake: WebhookFake
) -> None:
    start(TRACKING_WEBHOOK_SECRET="whsec_" + base64.b64encode(b"some other key").decode())
    tc.track("Badly Signed", user_id="user-12345")
    assert flush().dropped == {"rejected": 1}
    assert "no matching v1 signature" in fake.rejections[-1].message

    fake.clock = lambda: dt.datetime.now(dt.timezone.utc).timestamp() + 1000
    start()
    tc.track("Late", user_id="user-12345")
    assert flush().dropped == {"rejected": 1}
    assert "tolerance" in fake.rejections[-1].message
    assert fake.events == []


def test_webhook_413_splits_and_drops_a_single_oversized_event(
    start: Start, receiver: LoopbackReceiver, fake: WebhookFake
) -> None:
    fake.max_body_bytes = 4000
    fake.too_large_status = 413
    start()
    for n in range(20):
        tc.track("Split", {"n": n, "pad": "x" * 200}, user_id="user-12345")
    tc.track("Huge", {"pad": "y" * 5000}, user_id="user-12345")  # under 32 KB, over 4000 B
    stats = flush()
    assert 413 in fake.statuses()
    assert sorted(m["properties"]["n"] for m in fake.events) == list(range(20))
    accepted = [r for r, s in zip(receiver.requests, fake.statuses(), strict=True) if s == 200]
    assert all(len(r.raw_body) <= 4000 for r in accepted)
    assert stats.delivered == 20
    assert stats.dropped == {"too_large": 1}
    assert fake.duplicates == []


def test_webhook_event_over_the_message_limit_is_dropped_before_sending(
    start: Start, receiver: LoopbackReceiver, fake: WebhookFake
) -> None:
    start()
    tc.track("Too Big", {"pad": "z" * 40_000}, user_id="user-12345")  # Segment: 32 KB
    tc.track("Fits", {"pad": "z" * 30_000}, user_id="user-12345")
    stats = flush()
    assert fake.event_names() == ["Fits"]
    assert stats.dropped == {"too_large": 1}
    assert all(b"Too Big" not in r.body for r in receiver.requests)

    start(TRACKING_WEBHOOK_MAX_EVENT_BYTES="1000")
    tc.track("Over 1000", {"pad": "z" * 1000}, user_id="user-12345")
    assert flush().dropped == {"too_large": 1}


def test_webhook_caps_messages_per_request_whatever_the_batch_size(
    start: Start, receiver: LoopbackReceiver, fake: WebhookFake
) -> None:
    start(TRACKING_BATCH_SIZE="5000")
    for n in range(1100):
        tc.track("Bulk", {"n": n}, user_id="user-12345")
    stats = flush()
    sizes = [len(batch_of(r)) for r in receiver.requests]
    assert max(sizes) == 500
    assert sum(sizes) == 1100
    assert stats.delivered == 1100
    assert fake.rejections == []

    fake.max_messages = 10
    start(TRACKING_BATCH_SIZE="5000", TRACKING_WEBHOOK_MAX_EVENTS="10")
    receiver.clear()
    for n in range(35):
        tc.track("Small Batches", {"n": n}, user_id="user-12345")
    assert flush().delivered == 35
    assert [len(batch_of(r)) for r in receiver.requests] == [10, 10, 10, 5]


def test_webhook_caps_bytes_per_request(
    start: Start, receiver: LoopbackReceiver, fake: WebhookFake
) -> None:
    fake.max_body_bytes = 4000
    start(TRACKING_WEBHOOK_MAX_BATCH_BYTES="4000")
    for n in range(60):
        tc.track("Sized", {"n": n, "pad": "x" * 150}, user_id="user-12345")
    stats = flush()
    assert len(receiver.requests) > 3
    assert all(len(r.raw_body) <= 4000 for r in receiver.requests)
    assert stats.delivered == 60
    assert fake.rejections == []


class Color:
    def __repr__(self) -> str:
        return "<Color red>"


def test_webhook_values_json_cannot_carry_arrive_as_strict_json(
    start: Start, receiver: LoopbackReceiver
) -> None:
    start()
    moment = dt.datetime(2026, 1, 15, 10, 0, tzinfo=dt.timezone.utc)
    tc.track(
        "Odd Values",
        {
            "when": moment,
            "day": dt.date(2026, 1, 15),
            "price": decimal.Decimal("12.50"),
            "tags": {"b", "a"},
            "ratio": float("nan"),
            "big": float("inf"),
            "raw": b"\xff\x00",
            "text": b"hello",
            "id": uuid.UUID("12345678-1234-5678-1234-567812345678"),
            "obj": Color(),
            "nested": {1: (1, 2)},
        },
        user_id="user-12345",
    )
    tc.identify("user-12345", {"since": moment, "score": decimal.Decimal("1.5")})
    assert flush().delivered == 2
    messages = batch_of(receiver.requests[0])  # strict: NaN/Infinity tokens would raise
    assert messages[0]["properties"] == {
        "when": "2026-01-15T10:00:00+00:00",
        "day": "2026-01-15",
        "price": 12.5,
        "tags": ["a", "b"],
        "ratio": None,
        "big": None,
        "raw": "base64:/wA=",
        "text": "hello",
        "id": "12345678-1234-5678-1234-567812345678",
        "obj": "<Color red>",
        "nested": {"1": [1, 2]},
    }
    assert messages[1]["traits"] == {"since": "2026-01-15T10:00:00+00:00", "score": 1.5}


def test_webhook_url_credentials_are_sent_as_basic_auth(
    start: Start, webhook_variables: dict[str, str], fake: WebhookFake
) -> None:
    fake.auth = "Basic " + base64.b64encode(b"hook-user:url-password").decode()
    url = webhook_variables["TRACKING_WEBHOOK_URL"]
    with_credentials = url.replace("://", "://hook-user:url-password@")
    start(TRACKING_WEBHOOK_AUTH=None, TRACKING_WEBHOOK_URL=with_credentials)
    tc.track("Basic", user_id="user-12345")
    assert flush().delivered == 1
    assert fake.rejections == []


def test_webhook_logs_no_secret_even_in_debug(
    start: Start,
    webhook_variables: dict[str, str],
    receiver: LoopbackReceiver,
    fake: WebhookFake,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    auth = webhook_variables["TRACKING_WEBHOOK_AUTH"]
    secret = webhook_variables["TRACKING_WEBHOOK_SECRET"]
    path_token = "/hooks/T0KEN-in-the-path-77"
    query_token = "qs-token-secret-55"
    fake.path = path_token
    url = receiver.url + path_token + "?token=" + query_token
    start(TRACKING_DEBUG="1", TRACKING_WEBHOOK_URL=url, TRACKING_MAX_ATTEMPTS="2")
    # A receiver that echoes what it got in its error body: the log must still not show it.
    echo = f"bad request from {url} with {auth} signed by {secret}"
    fake.fail_next(Reply(503, echo), Reply(400, echo))
    tc.track("Echoed", user_id="user-12345")
    flush()
    tc.track("Debugged", user_id="user-12345")
    stats = flush()
    assert stats.delivered == 1
    assert stats.dropped == {"rejected": 1}
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "webhook sent 1 items to 127.0.0.1" in text  # the debug lines are there
    assert "HTTP 400" in text
    for hidden in (
        auth,
        auth.split()[1],
        secret,
        secret.removeprefix("whsec_"),
        query_token,
        path_token,
        url,
    ):
        assert hidden not in text


def test_webhook_url_token_not_in_httpx_log_lines(
    start: Start,
    receiver: LoopbackReceiver,
    fake: WebhookFake,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    fake.path = None
    start(TRACKING_WEBHOOK_URL=receiver.url + "/hooks/in?token=qs-token-secret-55")
    tc.track("Logged", user_id="user-12345")
    assert flush().delivered == 1
    assert "qs-token-secret-55" not in caplog.text
