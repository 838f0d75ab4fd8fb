"""PostHog: success reading, retries, 413 splits, rejections, limits and log hygiene."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

import pytest
from tracking_posthog.fake import PostHogFake

import tracking_core
from tracking_core import ProviderStats
from tracking_core.receivers import LoopbackReceiver, Reply

Enable = Callable[..., None]


def _track(count: int, **properties: Any) -> None:
    for n in range(count):
        tracking_core.track(f"Event {n}", {"n": n, **properties}, user_id=f"user-{n % 3}")


def _flush(timeout: float = 10) -> ProviderStats:
    assert tracking_core.flush_tracking(timeout)
    return tracking_core.tracking_stats()["posthog"]


def _send(
    fake: PostHogFake, *replies: Reply, events: int = 2, timeout: float = 10, **properties: Any
) -> ProviderStats:
    """Script `replies` as the fake's next answers, track `events` events, flush: the stats."""
    for reply in replies:
        fake.fail_next(reply)
    _track(events, **properties)
    return _flush(timeout)


def _batches(server: LoopbackReceiver) -> list[list[dict[str, Any]]]:
    return [request.json()["batch"] for request in server.requests]


def test_retry_after_503_resends_the_same_ids_and_timestamps(
    enable: Enable, server: LoopbackReceiver, fake: PostHogFake
) -> None:
    enable()
    fake.fail_next(fake.error(503), times=2)
    _track(3)
    tracking_core.identify("user-1", {"plan": "pro"})
    stats = _flush()
    first, second, third = _batches(server)
    assert first == second == third  # same uuids, timestamps, distinct ids, properties
    sent = [request.json()["sent_at"] for request in server.requests]
    assert sent == sorted(sent)  # a fresh sent_at per attempt
    assert len(fake.events) == 3 and len(fake.identifies) == 1  # accepted exactly once
    assert (stats.delivered, stats.retried, stats.failed, stats.batches) == (4, 8, 2, 3)
    assert dict(stats.dropped) == {}


def test_anonymous_distinct_id_is_kept_across_retries(
    enable: Enable, server: LoopbackReceiver, fake: PostHogFake
) -> None:
    enable()
    fake.fail_next(fake.error(502, "Bad Gateway"))
    tracking_core.track("Anonymous")
    _flush()
    first, second = _batches(server)
    assert first[0]["distinct_id"] == second[0]["distinct_id"]
    assert fake.events == second


def test_429_waits_for_retry_after(
    enable: Enable, server: LoopbackReceiver, fake: PostHogFake
) -> None:
    enable()
    stats = _send(fake, fake.error(429, "rate limited", retry_after="1"))
    first, second = server.requests
    assert second.received_at - first.received_at >= 0.9
    assert first.json()["batch"] == second.json()["batch"]
    assert (stats.delivered, stats.retried) == (2, 2)


def test_retries_are_bounded(enable: Enable, server: LoopbackReceiver, fake: PostHogFake) -> None:
    enable(TRACKING_MAX_ATTEMPTS="3")
    stats = _send(fake, *[fake.error(503)] * 10)
    assert len(server.requests) == 3
    assert fake.events == []
    assert stats.delivered == 0
    assert dict(stats.dropped) == {"retries_exhausted": 2}


@pytest.mark.parametrize(
    ("replies", "retried"),
    [
        pytest.param([Reply(action="reset")], 2, id="connection-reset"),
        pytest.param([Reply(204, b""), Reply(202, {"status": 1})], 4, id="only-200-is-success"),
    ],
)
def test_failed_attempts_are_retried_until_a_200(
    enable: Enable,
    server: LoopbackReceiver,
    fake: PostHogFake,
    replies: list[Reply],
    retried: int,
) -> None:
    enable()
    stats = _send(fake, *replies)
    assert len(server.requests) == len(replies) + 1
    assert len(fake.events) == 2
    assert (stats.delivered, stats.retried, dict(stats.dropped)) == (2, retried, {})


@pytest.mark.parametrize(
    "body",
    [{"status": 1}, {"status": "Ok"}, {"status": 1, "quota_limited": ["recordings"]}, "", "OK"],
)
def test_a_200_is_success_whatever_its_body(enable: Enable, fake: PostHogFake, body: Any) -> None:
    fake.success_body = body
    enable()
    stats = _send(fake)
    assert (stats.delivered, stats.retried, stats.batches) == (2, 0, 1)


def test_400_is_dropped_not_retried_and_logged_without_the_key(
    enable: Enable,
    server: LoopbackReceiver,
    fake: PostHogFake,
    api_key: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    enable()
    stats = _send(
        fake, Reply(400, f"failed to parse request: bad token {api_key} in batch"), events=3
    )
    assert len(server.requests) == 1
    assert dict(stats.dropped) == {"rejected": 3}
    assert stats.delivered == 0 and stats.retried == 0
    lines = [r.getMessage() for r in caplog.records if "rejected" in r.getMessage()]
    assert lines and "failed to parse request" in lines[0]
    assert all(api_key not in r.getMessage() for r in caplog.records)


def test_401_from_a_wrong_key_is_not_retried(
    enable: Enable, server: LoopbackReceiver, fake: PostHogFake
) -> None:
    fake.api_key = "phc_theProjectsRealKey"
    enable()
    stats = _send(fake)
    assert len(server.requests) == 1
    assert [r.status for r in fake.rejections] == [401]
    assert dict(stats.dropped) == {"rejected": 2}


def test_redirects_are_not_followed(
    enable: Enable,
    server: LoopbackReceiver,
    fake: PostHogFake,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    enable()
    stats = _send(fake, Reply(308, "", headers={"Location": f"{server.url}/elsewhere/batch/"}))
    assert [r.path for r in server.requests] == ["/batch/"]
    assert dict(stats.dropped) == {"rejected": 2}
    assert any("/elsewhere/batch/" in r.getMessage() for r in caplog.records)


def test_413_splits_the_batch_and_resends_the_halves(
    enable: Enable, server: LoopbackReceiver, fake: PostHogFake
) -> None:
    enable()
    stats = _send(fake, fake.error(413), events=4)
    whole, *halves = _batches(server)
    assert [len(b) for b in halves] == [2, 2]
    assert halves[0] + halves[1] == whole
    assert fake.event_ids() == [e["uuid"] for e in whole]
    assert (stats.delivered, stats.batches, dict(stats.dropped)) == (4, 3, {})


def test_413_on_a_single_event_drops_it(
    enable: Enable, server: LoopbackReceiver, fake: PostHogFake
) -> None:
    enable()
    stats = _send(fake, fake.error(413), events=1)
    assert len(server.requests) == 1
    assert dict(stats.dropped) == {"too_large": 1}


def test_413_from_the_real_size_limit_splits_until_it_fits(
    enable: Enable, server: LoopbackReceiver, fake: PostHogFake
) -> None:
    fake.max_body_bytes = 5000
    enable()
    stats = _send(fake, events=8, text="x" * 1200)
    assert [r.status for r in fake.rejections] == [413] * len(fake.rejections)
    assert len(fake.rejections) >= 2
    assert sorted(e["properties"]["n"] for e in fake.events) == list(range(8))
    assert len(server.requests) == len(fake.rejections) + len(fake.batches)
    assert sum(len(r.body) > 5000 for r in server.requests) == len(fake.rejections)
    assert stats.delivered == 8 and dict(stats.dropped) == {}


def test_at_most_1000_events_per_request_whatever_the_batch_size(
    enable: Enable, server: LoopbackReceiver, fake: PostHogFake
) -> None:
    fake.max_events = 1000
    enable(TRACKING_BATCH_SIZE="5000")
    stats = _send(fake, events=2500, timeout=30)
    assert fake.rejections == []
    assert [len(b) for b in _batches(server)] == [1000, 1000, 500]
    assert len(set(fake.event_ids())) == 2500
    assert stats.delivered == 2500


def test_batch_size_setting_is_the_trigger(
    enable: Enable, server: LoopbackReceiver, fake: PostHogFake
) -> None:
    # TRACKING_BATCH_SIZE=4 and no interval to speak of: 4 waiting events are sent at once (a
    # backlog in one request of up to 1000), fewer wait for the flush.
    enable(TRACKING_BATCH_SIZE="4", TRACKING_FLUSH_INTERVAL="60")
    for count in (3, 1, 2):
        _track(count)
        time.sleep(0.3)
    assert sorted(len(b) for b in _batches(server)) == [4]  # 2 still wait
    stats = _flush()
    assert sorted(len(b) for b in _batches(server)) == [2, 4]
    assert stats.delivered == 6


def test_an_event_over_1_mb_is_dropped_the_rest_is_sent(enable: Enable, fake: PostHogFake) -> None:
    enable()
    tracking_core.track("Huge", {"blob": "x" * 1_000_100}, user_id="user-1")
    tracking_core.track("Fine", {"blob": "x" * 900_000}, user_id="user-1")
    stats = _flush()
    assert [e["event"] for e in fake.events] == ["Fine"]
    assert fake.discarded == []  # nothing the vendor would discard was sent
    assert dict(stats.dropped) == {"too_large": 1}
    assert stats.delivered == 1


def test_requests_stay_under_20_mb(
    enable: Enable, server: LoopbackReceiver, fake: PostHogFake
) -> None:
    enable()
    stats = _send(fake, events=30, timeout=30, blob="y" * 800_000)
    assert fake.rejections == []
    assert len(server.requests) == 2
    assert all(len(r.body) < 20_000_000 for r in server.requests)
    assert sum(len(b) for b in _batches(server)) == 30
    assert stats.delivered == 30


def test_no_secret_in_any_log_line_with_debug_on(
    enable: Enable,
    fake: PostHogFake,
    api_key: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    enable(TRACKING_DEBUG="1", TRACKING_MAX_ATTEMPTS="2")
    _send(fake, Reply(503, f"upstream said: key={api_key}"))
    fake.fail_next(Reply(400, json.dumps({"error": "bad", "api_key": api_key})), times=2)
    _track(2)
    fake.fail_next(Reply(401, f"API key is not valid: {api_key}"))
    tracking_core.identify("user-1", {"token": api_key[:5]})
    _flush()
    messages = [r.getMessage() for r in caplog.records]
    sent = [m for m in messages if "posthog sent" in m]
    assert len(sent) >= 3  # TRACKING_DEBUG logs each request (provider, count, status)
    assert any(" -> 503 " in m for m in sent) and any(" -> 200 " in m for m in sent)
    assert any("***" in m for m in messages)  # echoed keys were masked
    for record in caplog.records:
        assert api_key not in record.getMessage()
        assert api_key not in str(record.args)
