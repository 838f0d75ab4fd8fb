"""The producer: each event and identify appended to the stream as JSON with its id, bounded,
refusals counted as drops, a restarted Redis ridden out within the engine's bounds."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import pytest
from tracking_redis.testing import RedisServer
from tracking_redis.wire import decode

import tracking_core as tc

Env = Callable[..., None]


def _entries(client: Any, stream: str = "tracking:events") -> list[Any]:
    return [decode(fields) for _, fields in client.xrange(stream)]


def test_each_event_and_identify_is_appended_with_its_id_and_time(
    redis_env: Env, redis_client: Any
) -> None:
    redis_env(TRACKING_REDIS_STREAM="app:events")
    for n in range(5):
        tc.track("Signed Up", {"n": n, "plan": "pro"}, user_id=f"u-{n}")
    tc.identify("u-1", {"email": "ada@example.com"})
    assert tc.flush_tracking(10)
    items = _entries(redis_client, "app:events")
    assert [getattr(item, "name", "identify") for item in items] == ["Signed Up"] * 5 + ["identify"]
    assert [item.properties["n"] for item in items[:5]] == list(range(5))
    assert items[5].traits == {"email": "ada@example.com"}
    assert len({item.event_id for item in items}) == 6
    assert all(item.timestamp.tzinfo is not None for item in items)
    stats = tc.tracking_stats()["redis"]
    assert (stats.accepted, stats.delivered, dict(stats.dropped)) == (6, 6, {})
    assert stats.batches >= 1


def test_the_stream_is_bounded_approximately(redis_env: Env, redis_client: Any) -> None:
    redis_env(TRACKING_REDIS_MAXLEN="100")
    for n in range(2000):
        tc.track("Page Viewed", {"n": n})
    assert tc.flush_tracking(20)
    assert tc.tracking_stats()["redis"].delivered == 2000
    length = redis_client.xlen("tracking:events")
    assert 100 <= length < 400  # MAXLEN ~: whole nodes are trimmed
    assert int(redis_client.xinfo_stream("tracking:events")["entries-added"]) == 2000


def test_what_redis_refuses_for_good_is_dropped_as_rejected(
    redis_env: Env, redis_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    redis_client.set("tracking:events", "a string, not a stream")
    redis_env()
    for n in range(3):
        tc.track("Signed Up", {"n": n})
    assert tc.flush_tracking(10)
    stats = tc.tracking_stats()["redis"]
    assert (stats.delivered, dict(stats.dropped)) == (0, {"rejected": 3})
    assert "WRONGTYPE" in caplog.text and "rejected" in caplog.text


def test_a_wrong_password_is_rejected_and_never_logged(
    tracking_env: Callable[..., None],
    tmp_path: Any,
    caplog: pytest.LogCaptureFixture,
    redis_binary: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    with RedisServer(tmp_path / "r", options={"requirepass": "TheRightPassw0rd"}) as server:
        url = f"redis://:Wr0ngPassw0rdXyz@127.0.0.1:{server.port}/0"
        tracking_env(TRACKING_PROVIDERS="redis", TRACKING_REDIS_URL=url)
        tc.track("Signed Up")
        assert tc.flush_tracking(10)
        stats = tc.tracking_stats()["redis"]
    assert dict(stats.dropped) == {"rejected": 1}
    assert stats.last_error is not None and "Wr0ngPassw0rd" not in stats.last_error
    assert "Wr0ngPassw0rd" not in caplog.text and "invalid" in caplog.text.lower()


@pytest.mark.slow
def test_a_restarted_redis_loses_nothing_it_accepted_and_producers_resume(
    redis_env: Env, redis_server: RedisServer
) -> None:
    redis_env(
        TRACKING_MAX_QUEUE="300",
        TRACKING_MAX_ATTEMPTS="1000",
        TRACKING_MAX_RETRY_TIME="60",
        TRACKING_REDIS_TIMEOUT="1",
    )
    for n in range(200):
        tc.track("Before", {"n": n})
    assert tc.flush_tracking(10)
    assert tc.tracking_stats()["redis"].delivered == 200
    redis_server.kill()  # SIGKILL: only what the AOF holds survives
    for n in range(500):  # while Redis is down: the engine holds at most TRACKING_MAX_QUEUE
        tc.track("While down", {"n": n})
        if n % 100 == 0:
            time.sleep(0.05)
    time.sleep(0.5)
    down = tc.tracking_stats()["redis"]
    assert down.queued <= 300 and down.failed >= 1
    redis_server.start()  # same port, same AOF
    assert tc.flush_tracking(30)
    stats = tc.tracking_stats()["redis"]
    client = redis_server.client()
    names = [item.name for item in _entries(client)]
    assert names.count("Before") == 200  # nothing Redis had accepted was lost
    dropped = stats.dropped.get("queue_full", 0)
    assert names.count("While down") == 500 - dropped >= 300  # the queue's worth came through
    assert set(stats.dropped) <= {"queue_full"}
    assert stats.accepted == stats.delivered + dropped == 700
