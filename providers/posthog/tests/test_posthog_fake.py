"""The strict PostHog fake refuses what PostHog (or a careful server-side sender) would not send."""

from __future__ import annotations

import gzip
import json
import threading
import time
import uuid
from typing import Any

import httpx
import pytest
from tracking_posthog.fake import PostHogFake, destination

import tracking_core
from tracking_core.fakes import Rejection
from tracking_core.receivers import LoopbackReceiver, ReceivedRequest, Reply

KEY = "phc_FakeTestKey0123456789"


def _event(**overrides: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "event": "Signed Up",
        "distinct_id": "user-12345",
        "properties": {"plan": "pro"},
        "timestamp": "2026-01-15T10:00:00+00:00",
        "uuid": str(uuid.uuid4()),
    }
    event.update(overrides)
    return {k: v for k, v in event.items() if v is not ...}


def _body(*events: dict[str, Any], **top: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "api_key": KEY,
        "historical_migration": False,
        "sent_at": "2026-01-15T10:00:02+00:00",
        "batch": list(events) if events else [_event()],
    }
    body.update(top)
    return {k: v for k, v in body.items() if v is not ...}


def _request(
    body: Any = None,
    *,
    raw: bytes | None = None,
    path: str = "/batch/",
    method: str = "POST",
    headers: dict[str, str] | None = None,
    gzipped: bool = False,
) -> ReceivedRequest:
    data = raw if raw is not None else json.dumps(_body() if body is None else body).encode()
    sent = gzip.compress(data) if gzipped else data
    all_headers = {"content-type": "application/json"}
    if gzipped:
        all_headers["content-encoding"] = "gzip"
    all_headers.update(headers or {})
    return ReceivedRequest(method, path, {}, all_headers, sent, data, time.monotonic())


def _answer(fake: PostHogFake, request: ReceivedRequest) -> tuple[int, str]:
    reply = fake(request)
    body = reply.body if isinstance(reply.body, (str, bytes)) else json.dumps(reply.body)
    return reply.status, body.decode() if isinstance(body, bytes) else body


def test_accepts_a_good_batch_and_records_it() -> None:
    fake = PostHogFake(api_key=KEY)
    identify = _event(event="$identify", properties={"$set": {"email": "a@example.com"}})
    status, text = _answer(fake, _request(_body(_event(), identify)))
    assert (status, json.loads(text)) == (200, {"status": 1})
    assert len(fake.events) == 1 and fake.identifies == [identify]
    assert len(fake.batches) == 1 and fake.rejections == []
    assert fake.event_ids() == [e["uuid"] for e in fake.events]
    assert [fake.user_of(i) for i in fake.identifies] == ["user-12345"]


@pytest.mark.parametrize("path", ["/batch", "/batch/"])
def test_both_batch_routes(path: str) -> None:
    assert PostHogFake()(_request(path=path)).status == 200


@pytest.mark.parametrize(
    ("request_kwargs", "status", "message"),
    [
        ({"path": "/capture/"}, 404, "no route"),
        ({"method": "GET"}, 405, "POST"),
        ({"headers": {"content-type": "text/plain"}}, 400, "content type"),
        ({"raw": b"{not json"}, 400, "failed to parse request"),
        ({"raw": b'{"api_key": "phc_x", "batch": [], "n": NaN}'}, 400, "NaN"),
        ({"raw": b"\xff\xfe"}, 400, "invalid body encoding"),
        ({"raw": b"[]"}, 400, "failed to parse request"),
        ({"headers": {"content-encoding": "br"}}, 400, "unsupported encoding"),
        ({"headers": {"content-encoding": "gzip"}}, 400, "invalid gzip data"),
    ],
)
def test_refuses_malformed_requests(
    request_kwargs: dict[str, Any], status: int, message: str
) -> None:
    fake = PostHogFake()
    got, text = _answer(fake, _request(**request_kwargs))
    assert got == status and message in text
    assert fake.rejections == [Rejection(status, text)]
    assert fake.batches == []


@pytest.mark.parametrize(
    ("top", "status", "message"),
    [
        ({"api_key": ...}, 401, "without an api_key"),
        ({"api_key": ""}, 401, "not valid: empty"),
        ({"api_key": "phx_personal"}, 401, "personal_api_key"),
        ({"api_key": "phc_" + "k" * 70}, 401, "too_long"),
        ({"api_key": "phc_other"}, 401, "unknown project"),
        ({"batch": []}, 400, "no event"),
        ({"batch": {"event": "x"}}, 400, "array"),
        ({"historical_migration": "no"}, 400, "historical_migration"),
        ({"sent_at": 1768471202}, 400, "sent_at"),
        ({"sent_at": "yesterday"}, 400, "sent_at"),
    ],
)
def test_refuses_bad_envelopes(top: dict[str, Any], status: int, message: str) -> None:
    got, text = _answer(PostHogFake(api_key=KEY), _request(_body(**top)))
    assert got == status and message in text


def test_token_alias_is_accepted() -> None:
    body = _body(api_key=..., token=KEY)
    assert PostHogFake(api_key=KEY)(_request(body)).status == 200


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"event": ""}, "empty event name"),
        ({"event": ...}, "empty event name"),
        ({"distinct_id": ...}, "without a distinct_id"),
        ({"distinct_id": None}, "without a distinct_id"),
        ({"distinct_id": "  "}, "empty distinct_id"),
        ({"distinct_id": "anonymous"}, "placeholder"),
        ({"distinct_id": "Anonymous"}, "placeholder"),
        ({"distinct_id": "null"}, "placeholder"),
        ({"distinct_id": 12345}, "not a string"),
        ({"uuid": "not-a-uuid"}, "invalid uuid"),
        ({"uuid": ...}, "without a uuid"),
        ({"timestamp": 1768471200000}, "timestamp"),
        ({"timestamp": 1768471200}, "timestamp"),
        ({"timestamp": "1768471200000"}, "timestamp"),
        ({"timestamp": "2026-01-15T10:00:00"}, "no UTC offset"),
        ({"timestamp": ...}, "without a timestamp"),
        ({"properties": ["a"]}, "properties"),
        ({"properties": {"$set": "x"}}, "$set"),
    ],
)
def test_refuses_a_bad_event_and_with_it_the_whole_request(
    overrides: dict[str, Any], message: str
) -> None:
    fake = PostHogFake(api_key=KEY)
    got, text = _answer(fake, _request(_body(_event(), _event(**overrides))))
    assert got == 400 and message in text
    assert fake.events == []


def test_lenient_mode_takes_what_posthog_takes() -> None:
    fake = PostHogFake(strict=False)
    events = [
        _event(distinct_id=12345),
        _event(uuid=...),
        _event(timestamp=...),
        _event(timestamp="2026-01-15T10:00:00Z"),
        _event(timestamp="2026-01-15T10:00:00"),
        _event(distinct_id="anonymous"),
        _event(distinct_id=..., properties={"distinct_id": "from-props"}),
    ]
    assert fake(_request(_body(*events))).status == 200
    assert len(fake.events) == 7


def test_z_suffix_and_gzip_are_accepted() -> None:
    fake = PostHogFake(api_key=KEY)
    body = _body(_event(timestamp="2026-01-15T10:00:00.123Z"))
    assert fake(_request(body, gzipped=True)).status == 200
    # Gzip sniffed from the magic bytes, without a Content-Encoding header.
    data = gzip.compress(json.dumps(body).encode())
    request = ReceivedRequest(
        "POST", "/batch/", {}, {"content-type": "application/json"}, data, data, 0.0
    )
    assert fake(request).status == 200
    assert len(fake.events) == 2


def test_body_limit_applies_after_decompression() -> None:
    fake = PostHogFake(max_body_bytes=10_000)
    small = _body(_event(properties={"text": "a" * 20_000}))
    got, text = _answer(fake, _request(small, gzipped=True))
    assert (got, text) == (413, "maximum event size exceeded")
    got, _ = _answer(fake, _request(_body(_event(properties={"text": "a" * 5000}))))
    assert got == 200


def test_event_count_limit_is_opt_in() -> None:
    events = [_event() for _ in range(5)]
    assert PostHogFake()(_request(_body(*events))).status == 200
    fake = PostHogFake(max_events=4)
    got, text = _answer(fake, _request(_body(*events)))
    assert got == 400 and "max 4" in text


def test_oversized_events_are_discarded_but_the_request_succeeds() -> None:
    fake = PostHogFake(max_event_bytes=2000)
    big = _event(properties={"blob": "b" * 3000})
    assert fake(_request(_body(_event(), big))).status == 200
    assert len(fake.events) == 1 and fake.discarded == [big]


def test_scripted_failures_come_first_and_in_order() -> None:
    fake = PostHogFake()
    fake.fail_next(503, times=2)
    fake.fail_next(fake.error(429, retry_after="3"), Reply(action="reset"))
    replies = [fake(_request()) for _ in range(5)]
    assert [r.status for r in replies[:3]] == [503, 503, 429]
    assert replies[3].action == "reset" and replies[4].status == 200
    assert replies[0].body == "transient error, please retry"
    assert replies[2].headers == {"Retry-After": "3"}
    assert len(fake.events) == 1  # scripted answers record nothing
    assert len(fake.requests) == 5 and fake.replies == replies
    with pytest.raises(ValueError, match="times="):
        fake.fail_next(Reply(503), 2)
    fake.clear()
    assert fake.events == [] and fake.batches == [] and fake.requests == []


def test_thread_safe_under_concurrent_requests() -> None:
    fake = PostHogFake()
    fake.fail_next(Reply(503, "x"), times=10)

    def send() -> None:
        for _ in range(25):
            fake(_request())

    threads = [threading.Thread(target=send) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(fake.events) == 8 * 25 - 10
    assert len(fake.batches) == len(set(fake.event_ids())) == 8 * 25 - 10


def test_over_real_http() -> None:
    fake = PostHogFake(api_key=KEY, path_prefix="proxy")
    with LoopbackReceiver(fake) as server:
        ok = httpx.post(f"{server.url}/proxy/batch/", json=_body())
        bad = httpx.post(f"{server.url}/proxy/batch/", json=_body(api_key="phx_nope"))
        wrong_path = httpx.post(f"{server.url}/batch/", json=_body())
    assert (ok.status_code, ok.json()) == (200, {"status": 1})
    assert (bad.status_code, bad.text) == (401, "API key is not valid: personal_api_key")
    assert wrong_path.status_code == 404
    assert len(fake.events) == 1


def test_destination_enables_posthog_against_its_fake(tracking_env: Any) -> None:
    served = destination()
    with served.fake.serve() as server:
        tracking_env(TRACKING_PROVIDERS="posthog", **served.environment(server.url))
        tracking_core.track("Signed Up", {"plan": "pro"}, user_id="user-1")
        tracking_core.identify("user-1", {"plan": "pro"})
        assert tracking_core.flush_tracking(10)
    (event,) = served.fake.events
    assert served.fake.event_ids() == [event["uuid"]] and served.fake.rejections == []
    assert served.fake.properties_of(event)["plan"] == "pro"
    assert [served.fake.user_of(i) for i in served.fake.identifies] == ["user-1"]
