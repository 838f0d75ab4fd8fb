"""OTLP: what each answer of a Collector means (the OTLP/HTTP spec's failure rules), partial
success, 413 splits, and secrets in log lines."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest
from tracking_otlp.fake import OtlpFake

import tracking_core
from tracking_core import ProviderStats
from tracking_core.receivers import LoopbackReceiver, Reply

Enable = Callable[..., None]


def _send(fake: OtlpFake, *replies: Reply | int, events: int = 2, **props: Any) -> ProviderStats:
    """Script `replies` as the fake's next answers, track `events` events, flush: the stats."""
    if replies:
        fake.fail_next(*replies)
    for n in range(events):
        tracking_core.track(f"Event {n}", {"n": n, **props}, user_id="user-1")
    assert tracking_core.flush_tracking(10)
    return tracking_core.tracking_stats()["otlp"]


@pytest.mark.parametrize("status", [429, 502, 503, 504])
def test_the_retryable_codes_are_retried_with_the_same_records(
    enable: Enable, server: LoopbackReceiver, fake: OtlpFake, status: int
) -> None:
    enable()
    stats = _send(fake, status)
    first, second = server.requests
    assert first.body == second.body  # the same records, byte for byte
    assert len(fake.events) == 2 and fake.duplicates == []
    assert (stats.delivered, stats.retried, stats.failed, dict(stats.dropped)) == (2, 2, 1, {})


def test_retry_after_is_honoured(enable: Enable, server: LoopbackReceiver, fake: OtlpFake) -> None:
    enable()
    stats = _send(fake, fake.error(429, retry_after="1"))
    first, second = server.requests
    assert second.received_at - first.received_at >= 0.9
    assert stats.delivered == 2


@pytest.mark.parametrize("status", [400, 401, 403, 404, 408, 410, 500, 501])
def test_every_other_failure_is_not_retried(
    enable: Enable, server: LoopbackReceiver, fake: OtlpFake, status: int
) -> None:
    # "All other 4xx or 5xx response status codes MUST NOT be retried" (OTLP/HTTP).
    enable()
    stats = _send(fake, status)
    assert len(server.requests) == 1
    assert (stats.delivered, stats.retried, dict(stats.dropped)) == (0, 0, {"rejected": 2})
    assert tracking_core.list_tracking_providers() == ["otlp"]  # 410 does not stop it
    stats = _send(fake)
    assert stats.delivered == 2


def test_a_connection_reset_is_retried(
    enable: Enable, server: LoopbackReceiver, fake: OtlpFake
) -> None:
    enable()
    stats = _send(fake, Reply(action="reset"))
    assert len(server.requests) == 2 and len(fake.events) == 2
    assert stats.delivered == 2


def test_partial_success_counts_the_rejected_records_and_is_not_retried(
    enable: Enable, server: LoopbackReceiver, fake: OtlpFake, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    fake.refuse_events = {"Event 1", "Event 3"}
    enable()
    stats = _send(fake, events=5)
    assert len(server.requests) == 1  # "The client MUST NOT retry" a partial success
    answer = fake.replies[0].body
    assert isinstance(answer, dict)
    assert answer["partialSuccess"]["rejectedLogRecords"] == "2"
    assert [e["eventName"] for e in fake.events] == ["Event 0", "Event 2", "Event 4"]
    assert (stats.delivered, dict(stats.dropped)) == (3, {"rejected": 2})
    lines = [r.getMessage() for r in caplog.records if "rejected 2 of 5" in r.getMessage()]
    assert lines and "refused by the fake" in lines[0]


def test_a_partial_success_with_nothing_rejected_is_a_warning(
    enable: Enable, fake: OtlpFake, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    enable()
    warning = {"partialSuccess": {"rejectedLogRecords": "0", "errorMessage": "slow down soon"}}
    stats = _send(fake, Reply(200, warning))
    assert (stats.delivered, dict(stats.dropped)) == (2, {})
    assert any("slow down soon" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("body", [b"", b"{}", b"not json", b'{"partialSuccess": {}}'])
def test_a_200_without_partial_success_delivers(
    enable: Enable, fake: OtlpFake, body: bytes
) -> None:
    enable()
    stats = _send(fake, Reply(200, body))
    assert (stats.delivered, dict(stats.dropped)) == (2, {})


def test_413_splits_the_batch(enable: Enable, server: LoopbackReceiver, fake: OtlpFake) -> None:
    enable()
    stats = _send(fake, 413, events=4)
    assert [
        len(r.json()["resourceLogs"][0]["scopeLogs"][0]["logRecords"]) for r in server.requests
    ] == [4, 2, 2]
    assert len(fake.events) == 4
    assert (stats.delivered, dict(stats.dropped)) == (4, {})


def test_the_collectors_body_limit_splits_until_it_fits(
    enable: Enable, server: LoopbackReceiver, fake: OtlpFake
) -> None:
    fake.max_body_bytes = 6000
    enable()
    stats = _send(fake, events=8, text="x" * 1200)
    assert len(fake.rejections) >= 2 and {r.status for r in fake.rejections} == {413}
    assert sorted(value["n"] for value in map(fake.properties_of, fake.events)) == list(range(8))
    assert (stats.delivered, dict(stats.dropped)) == (8, {})


def test_at_most_512_records_per_request(
    enable: Enable, server: LoopbackReceiver, fake: OtlpFake
) -> None:
    enable(TRACKING_BATCH_SIZE="2000")
    stats = _send(fake, events=1100)
    sizes = [
        len(r.json()["resourceLogs"][0]["scopeLogs"][0]["logRecords"]) for r in server.requests
    ]
    assert sizes == [512, 512, 76]
    assert stats.delivered == 1100 and len(set(fake.event_ids())) == 1100


def test_no_secret_in_any_log_line_with_debug_on(
    enable: Enable, fake: OtlpFake, caplog: pytest.LogCaptureFixture, token: str
) -> None:
    caplog.set_level(logging.DEBUG)
    enable(TRACKING_DEBUG="1", TRACKING_MAX_ATTEMPTS="2")
    echo = {"code": 16, "message": f"bad token Bearer {token} for tenant-7"}
    _send(fake, Reply(503, echo), Reply(401, echo))
    fake.headers = {"authorization": "Bearer another"}
    _send(fake)  # refused by the fake itself: 401
    messages = [r.getMessage() for r in caplog.records]
    assert any("otlp sent" in m for m in messages)
    assert any("***" in m for m in messages)  # the echoed token was masked
    for record in caplog.records:
        assert token not in record.getMessage() and token not in str(record.args)
        assert "tenant-7" not in record.getMessage()  # every header value is a secret
