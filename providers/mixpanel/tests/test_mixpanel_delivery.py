"""Delivery: retries, 413 splits, Mixpanel's success bodies, partial rejection, limits, logs."""

from __future__ import annotations

import base64
import datetime as dt
import logging
from collections.abc import Callable

import pytest
from tracking_mixpanel.fake import MixpanelFake

import tracking_core
from tracking_core.receivers import ReceivedRequest, Reply

Enable = Callable[..., None]
RequestsTo = Callable[[str], list[ReceivedRequest]]
UTC = dt.timezone.utc


def _stats() -> tracking_core.ProviderStats:
    return tracking_core.tracking_stats()["mixpanel"]


def _idle_stats() -> tracking_core.ProviderStats:
    stats = _stats()
    assert stats.accepted == stats.delivered + sum(stats.dropped.values()) + stats.queued
    return stats


@pytest.mark.parametrize(
    "failure",
    [
        Reply(503, {"error": "unavailable", "status": 0}),
        Reply(429, "rate limited", headers={"Retry-After": "0"}),
        Reply(502, b"bad gateway"),
        Reply(action="reset"),
    ],
    ids=["503", "429", "502", "reset"],
)
@pytest.mark.usefixtures("tracked")
def test_retries_resend_the_same_ids_and_times(
    fake: MixpanelFake, requests_to: RequestsTo, failure: Reply
) -> None:
    fake.fail_next(failure, times=2, route="track")
    when = dt.datetime.now(UTC) - dt.timedelta(seconds=30)
    for n in range(3):
        tracking_core.track(f"Event {n}", {"n": n}, user_id="user-1", timestamp=when)
    assert tracking_core.flush_tracking(10)
    attempts = requests_to("track")
    assert len(attempts) == 3
    bodies = [r.json() for r in attempts]
    assert bodies[0] == bodies[1] == bodies[2]  # same $insert_id and time on every attempt
    assert len({e["properties"]["$insert_id"] for e in bodies[0]}) == 3
    assert [e["event"] for e in fake.events] == ["Event 0", "Event 1", "Event 2"]
    stats = _idle_stats()
    assert stats.delivered == 3
    assert stats.retried == 6
    assert stats.failed == 2
    assert stats.batches == 3
    assert stats.dropped == {}


@pytest.mark.parametrize(
    ("reply", "times", "attempts", "dropped"),
    [
        # what the body says decides success
        (Reply(200, "1"), 1, 1, {}),
        (Reply(200, "0"), 1, 1, {"rejected": 1}),
        (Reply(200, {"status": 1, "error": None}), 1, 1, {}),
        (Reply(200, {"status": 0, "error": "token, missing or empty"}), 1, 1, {"rejected": 1}),
        (Reply(400, {"status": 0, "error": "bad request"}), 1, 1, {"rejected": 1}),
        (Reply(401, {"error": "unauthorized"}), 1, 1, {"rejected": 1}),
        (Reply(200, b""), 1, 1, {}),  # an unreadable 2xx body: delivered, with a warning
        # a 413 on a single event: nothing left to split, dropped
        (Reply(413, b"too large"), 1, 1, {"too_large": 1}),
        # retries give up after the attempt limit (TRACKING_MAX_ATTEMPTS=5)
        (Reply(503, b""), 50, 5, {"retries_exhausted": 1}),
    ],
    ids=[
        "text-1",
        "text-0",
        "status-1",
        "status-0",
        "400",
        "401",
        "unreadable-2xx",
        "413-single-event",
        "retries-exhausted",
    ],
)
@pytest.mark.usefixtures("tracked")
def test_one_event_outcome_follows_the_answer(
    fake: MixpanelFake,
    requests_to: RequestsTo,
    reply: Reply,
    times: int,
    attempts: int,
    dropped: dict[str, int],
) -> None:
    fake.fail_next(reply, times=times, route="track")
    tracking_core.track("Once", user_id="user-1")
    assert tracking_core.flush_tracking(10)
    assert len(requests_to("track")) == attempts
    assert fake.events == []  # a scripted answer records nothing
    stats = _idle_stats()
    assert stats.delivered == (0 if dropped else 1)
    assert stats.dropped == dropped


@pytest.mark.usefixtures("tracked")
def test_413_splits_the_batch(fake: MixpanelFake, requests_to: RequestsTo) -> None:
    fake.fail_next(
        Reply(413, {"code": 413, "error": "request exceeds max limit", "status": 0}),
        route="track",
    )
    for n in range(4):
        tracking_core.track(f"Event {n}", user_id="user-1")
    assert tracking_core.flush_tracking(10)
    sizes = [len(r.json()) for r in requests_to("track")]
    assert sizes == [4, 2, 2]
    assert sorted(e["event"] for e in fake.events) == [f"Event {n}" for n in range(4)]
    stats = _idle_stats()
    assert stats.delivered == 4 and stats.dropped == {}


@pytest.mark.usefixtures("tracked")
def test_an_event_over_1mb_is_dropped_before_sending(fake: MixpanelFake) -> None:
    tracking_core.track("Huge", {"blob": "x" * 1_100_000}, user_id="user-1")
    tracking_core.track("Fine", user_id="user-1")
    assert tracking_core.flush_tracking(10)
    assert [e["event"] for e in fake.events] == ["Fine"]
    stats = _idle_stats()
    assert stats.delivered == 1 and stats.dropped == {"too_large": 1}


@pytest.mark.usefixtures("tracked")
def test_status_0_is_a_rejected_batch_not_retried(
    fake: MixpanelFake, requests_to: RequestsTo, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="tracking_core")
    fake.reject_events = lambda e: "bad property value" if e["event"] == "Bad" else None
    tracking_core.track("Good", user_id="user-1")
    tracking_core.track("Bad", user_id="user-1")
    assert tracking_core.flush_tracking(10)
    attempts = requests_to("track")
    assert len(attempts) == 1  # HTTP 200 with {"status": 0}: not retried
    assert fake.events == []
    stats = _idle_stats()
    assert stats.delivered == 0 and stats.retried == 0
    assert stats.dropped == {"rejected": 2}
    lines = [r.getMessage() for r in caplog.records if "mixpanel" in r.getMessage()]
    assert any("bad property value" in line for line in lines), lines


@pytest.mark.usefixtures("tracked")
def test_engage_status_0_is_rejected(fake: MixpanelFake, requests_to: RequestsTo) -> None:
    fake.fail_next(Reply(200, {"status": 0, "error": "$set must be an object"}), route="engage")
    tracking_core.identify("user-1", {"plan": "pro"})
    tracking_core.track("Still Sent", user_id="user-1")
    assert tracking_core.flush_tracking(10)
    assert len(requests_to("engage")) == 1
    assert [e["event"] for e in fake.events] == ["Still Sent"]
    stats = _idle_stats()
    assert stats.delivered == 1 and stats.dropped == {"rejected": 1}


def test_requests_are_capped_at_2000_events(
    enable_at_fake: Enable, fake: MixpanelFake, requests_to: RequestsTo
) -> None:
    enable_at_fake(TRACKING_BATCH_SIZE="5000", TRACKING_FLUSH_INTERVAL="30")
    for n in range(4100):
        tracking_core.track("Bulk", {"n": n}, user_id="user-1")
    for n in range(2100):
        tracking_core.identify(f"user-{n}", {"n": n})
    assert tracking_core.flush_tracking(10)
    track_sizes = [len(r.json()) for r in requests_to("track")]
    engage_sizes = [len(r.json()) for r in requests_to("engage")]
    assert max(track_sizes) == 2000 and sum(track_sizes) == 4100
    assert max(engage_sizes) <= 2000 and sum(engage_sizes) == 2100
    assert all(r.headers.get("content-encoding") == "gzip" for r in requests_to("track"))
    assert fake.rejections == []
    assert len(fake.events) == 4100 and len(fake.identifies) == 2100
    assert _idle_stats().delivered == 6200


@pytest.mark.usefixtures("tracked")
def test_times_mixpanel_refuses_are_dropped_before_sending(fake: MixpanelFake) -> None:
    now = dt.datetime.now(UTC)
    tracking_core.track("Too Old For Track", timestamp=now - dt.timedelta(days=6))
    tracking_core.track("Future", timestamp=now + dt.timedelta(hours=2))
    tracking_core.track("Ancient", timestamp=dt.datetime(1970, 6, 1, tzinfo=UTC))
    tracking_core.track("Recent", timestamp=now - dt.timedelta(days=4))
    assert tracking_core.flush_tracking(10)
    assert fake.rejections == []
    assert [e["event"] for e in fake.events] == ["Recent"]
    stats = _idle_stats()
    assert stats.delivered == 1 and stats.dropped == {"rejected": 3}


def test_import_partial_rejection_keeps_the_rest_without_resending(
    enable_import: Enable,
    fake: MixpanelFake,
    requests_to: RequestsTo,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="tracking_core")
    enable_import()
    fake.reject_events = lambda e: "'bad' is refused" if e["properties"].get("bad") else None
    tracking_core.track("A", user_id="user-1")
    tracking_core.track("B", {"bad": True}, user_id="user-1")
    tracking_core.track("C", user_id="user-1")
    tracking_core.track("D", {"bad": True}, user_id="user-1")
    assert tracking_core.flush_tracking(10)
    imports = requests_to("import")
    assert len(imports) == 1  # the valid records were imported: nothing is sent again
    assert [e["event"] for e in fake.events] == ["A", "C"]
    stats = _idle_stats()
    assert stats.delivered == 2
    assert stats.dropped == {"rejected": 2}
    assert stats.retried == 0
    assert any("'bad' is refused" in r.getMessage() for r in caplog.records)


def test_import_with_wrong_credentials_is_rejected(
    enable_import: Enable, fake: MixpanelFake, requests_to: RequestsTo
) -> None:
    enable_import(MIXPANEL_SERVICE_ACCOUNT_SECRET="wrong-secret")
    tracking_core.track("A", user_id="user-1")
    assert tracking_core.flush_tracking(10)
    assert len(requests_to("import")) == 1
    assert fake.events == []
    assert _idle_stats().dropped == {"rejected": 1}


def test_import_retries_a_503_then_delivers(
    enable_import: Enable, fake: MixpanelFake, requests_to: RequestsTo
) -> None:
    enable_import()
    fake.fail_next(Reply(503, {"code": 503, "error": "try again"}), route="import")
    tracking_core.track("A", user_id="user-1")
    assert tracking_core.flush_tracking(10)
    first, second = requests_to("import")
    assert first.json() == second.json()
    assert [e["event"] for e in fake.events] == ["A"]
    assert _idle_stats().retried == 1


def test_no_secret_in_any_log_line_with_debug(
    enable_import: Enable,
    mp_env: Enable,
    fake: MixpanelFake,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    enable_import(TRACKING_DEBUG="1")
    fake.reject_events = lambda e: f"echo {e['properties'].get('token')}"
    fake.fail_next(Reply(503, {"error": f"down, token {fake.token}"}), route="engage")
    fake.fail_next(Reply(200, {"status": 0, "error": f"bad token {fake.token}"}), route="engage")
    tracking_core.track("A", user_id="user-1")
    tracking_core.identify("user-1", {"plan": "pro"})
    assert tracking_core.flush_tracking(10)
    assert fake.service_account is not None
    user, secret, _project = fake.service_account
    basic = base64.b64encode(f"{user}:{secret}".encode()).decode()
    messages = [r.getMessage() for r in caplog.records]
    assert any("mixpanel sent" in m for m in messages), messages  # debug lines were logged
    assert any("echo ***" in m for m in messages), messages  # and the rejection, masked
    for message in messages:
        for value in (fake.token, secret, user, basic):
            assert value not in message
    # a bad setting is logged without its value either
    caplog.clear()
    mp_env(MIXPANEL_HOST="not a url")
    assert tracking_core.list_tracking_providers() == []
    for record in caplog.records:
        assert fake.token not in record.getMessage() and secret not in record.getMessage()
