"""GA4: the exact Measurement Protocol requests, as accepted by the strict fake over real HTTP,
and GA4's limits applied before sending (what does not fit is counted, never sent to be lost)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from typing import Any

from tracking_ga4.fake import GA4Fake
from tracking_ga4.provider import CLIENT_NAMESPACE, EVENT_ID_PARAM

import tracking_core
from tracking_core.receivers import LoopbackReceiver
from tracking_core.testing import RecordingProvider

UTC = dt.timezone.utc
Enable = Callable[..., None]


def _flush() -> None:
    assert tracking_core.flush_tracking(10)


def _micros(moment: dt.datetime) -> int:
    return (moment - dt.datetime(1970, 1, 1, tzinfo=UTC)) // dt.timedelta(microseconds=1)


def _client_of_user(user_id: str) -> str:
    return str(uuid.uuid5(uuid.UUID(CLIENT_NAMESPACE), f"user:{user_id}"))


def _bodies(server: LoopbackReceiver) -> list[dict[str, Any]]:
    return [request.json() for request in server.requests]


def test_one_request_in_the_measurement_protocol_format(
    enable: Enable, server: LoopbackReceiver, fake: GA4Fake, measurement_id: str, secret: str
) -> None:
    enable()
    recorder = RecordingProvider()
    tracking_core.register_tracking_provider(recorder)
    when = (dt.datetime.now(UTC) - dt.timedelta(hours=1)).replace(microsecond=123456)
    browser = "1234567890.1768471200"  # the _ga cookie's client id, passed as the anonymous id
    tracking_core.track(
        "sign_up",
        {"method": "email", "seats": 3},
        user_id="user-1",
        anonymous_id=browser,
        timestamp=when,
    )
    tracking_core.track("tutorial_begin", user_id="user-1", anonymous_id=browser)
    _flush()

    assert fake.rejections == []
    (request,) = server.requests
    assert (request.method, request.path) == ("POST", "/mp/collect")
    assert dict(request.query) == {"measurement_id": measurement_id, "api_secret": secret}
    assert request.headers["content-type"] == "application/json"
    assert "content-encoding" not in request.headers
    body = request.json()
    assert body.keys() == {"client_id", "user_id", "events"}
    assert (body["client_id"], body["user_id"]) == (browser, "user-1")
    first, second = body["events"]
    events = recorder.settle().events
    assert first == {
        "name": "sign_up",
        "params": {EVENT_ID_PARAM: events[0].event_id, "method": "email", "seats": 3},
        "timestamp_micros": _micros(when),
    }
    assert second["name"] == "tutorial_begin"
    assert second["params"] == {EVENT_ID_PARAM: events[1].event_id}
    assert second["timestamp_micros"] == _micros(events[1].timestamp)
    stats = tracking_core.tracking_stats()["ga4"]
    assert (stats.delivered, stats.batches, dict(stats.dropped)) == (2, 1, {})
    assert dict(stats.conversions) == {}


def test_client_id_from_the_anonymous_id_else_the_user_id_else_the_event(
    enable: Enable, server: LoopbackReceiver, fake: GA4Fake
) -> None:
    enable()
    recorder = RecordingProvider()
    tracking_core.register_tracking_provider(recorder)
    tracking_core.track("a", user_id="user-2")
    tracking_core.track("b", user_id="user-2", anonymous_id="anonymous")  # a placeholder
    tracking_core.track("c", anonymous_id="device-9")
    tracking_core.track("d")
    tracking_core.track("e")
    _flush()
    assert fake.rejections == []
    sent = {
        event["name"]: (body["client_id"], body.get("user_id"))
        for body in _bodies(server)
        for event in body["events"]
    }
    ids = {event.name: event.event_id for event in recorder.settle().events}
    assert sent["a"] == sent["b"] == (_client_of_user("user-2"), "user-2")
    assert sent["c"] == ("device-9", None)
    for name in ("d", "e"):  # neither id: a client of its own, derived from the event id
        expected = str(uuid.uuid5(uuid.UUID(CLIENT_NAMESPACE), f"event:{ids[name]}"))
        assert sent[name] == (expected, None)
    # A request is one client (and user): four clients, four requests.
    assert len(server.requests) == 4


def test_at_most_25_events_a_request(
    enable: Enable, server: LoopbackReceiver, fake: GA4Fake
) -> None:
    enable(TRACKING_BATCH_SIZE="100")
    for i in range(60):
        tracking_core.track("level_up", {"level": i}, user_id="user-3")
    _flush()
    assert fake.rejections == []
    assert [len(body["events"]) for body in _bodies(server)] == [25, 25, 10]
    assert len(fake.events) == 60


def test_names_are_rewritten_to_fit_and_counted(enable: Enable, fake: GA4Fake) -> None:
    enable()
    tracking_core.track(
        "Signed Up!", {"Plan Name": "pro", "_private": 1, "ok_name": 2}, user_id="u-1"
    )
    tracking_core.track("x" * 45, user_id="u-1")
    _flush()
    assert fake.rejections == []
    first, second = fake.events
    assert first["name"] == "Signed_Up"
    assert set(first["params"]) == {EVENT_ID_PARAM, "Plan_Name", "private", "ok_name"}
    assert second["name"] == "x" * 40
    conversions = tracking_core.tracking_stats()["ga4"].conversions
    assert dict(conversions) == {"name_rewritten": 4}


def test_parameters_beyond_the_limits_are_cut_or_left_out_and_counted(
    enable: Enable, fake: GA4Fake
) -> None:
    enable()
    properties: dict[str, Any] = {f"p{i:02d}": i for i in range(30)}
    tracking_core.track("many", properties, user_id="u-1")
    tracking_core.track(
        "values",
        {
            "long": "y" * 150,
            "page_location": "https://example.com/" + "z" * 1200,
            "page_title": "t" * 299,
            "flag": True,
            "nothing": None,
            "nested": {"a": [1, 2]},
            "google_thing": "reserved prefix",
            "GA_other": "reserved prefix, any case",
            "firebase_conversion": "reserved name",
            "2fa": "no letter to start with",
            EVENT_ID_PARAM: "ours wins",
        },
        user_id="u-1",
    )
    _flush()
    assert fake.rejections == []
    many, values = fake.events
    assert len(many["params"]) == 25
    assert [name for name in many["params"] if name != EVENT_ID_PARAM] == [
        f"p{i:02d}" for i in range(24)
    ]
    params = values["params"]
    assert params["long"] == "y" * 100
    assert params["page_location"] == ("https://example.com/" + "z" * 1200)[:1000]
    assert params["page_title"] == "t" * 299
    assert params["flag"] == "true"
    assert params["nested"] == '{"a":[1,2]}'
    assert set(params) == {EVENT_ID_PARAM, "long", "page_location", "page_title", "flag", "nested"}
    assert params[EVENT_ID_PARAM] != "ours wins"
    conversions = tracking_core.tracking_stats()["ga4"].conversions
    # 6 beyond the 25th; None, 3 reserved, "2fa" and a second tracking_event_id left out.
    assert dict(conversions) == {"left_out": 12, "value_truncated": 2}


def test_events_that_cannot_fit_are_dropped_and_counted(
    enable: Enable, server: LoopbackReceiver, fake: GA4Fake
) -> None:
    enable()
    old = dt.datetime.now(UTC) - dt.timedelta(hours=73)
    tracking_core.track("session_start", user_id="u-1")  # reserved
    tracking_core.track("First_Visit", user_id="u-1")  # reserved, in any case
    tracking_core.track("google_signal", user_id="u-1")  # reserved prefix
    tracking_core.track("404 page", user_id="u-1")  # no letter to start with
    tracking_core.track("late", user_id="u-1", timestamp=old)  # older than 72 hours
    tracking_core.track("long user", user_id="u" * 257)  # user id over 256 characters
    tracking_core.track("fits", user_id="u-1", timestamp=old + dt.timedelta(hours=2))
    _flush()
    assert fake.rejections == []
    assert [event["name"] for event in fake.events] == ["fits"]
    stats = tracking_core.tracking_stats()["ga4"]
    assert (stats.delivered, dict(stats.dropped)) == (1, {"rejected": 6})


def test_identify_sets_user_properties_with_an_identify_event(
    enable: Enable, server: LoopbackReceiver, fake: GA4Fake
) -> None:
    enable()
    traits: dict[str, Any] = {
        "plan": "pro",
        "Lifetime Value": 12.5,
        "email": "e" * 50,
        "verified": False,
        "user_id": "reserved",
        "first_open_time": 1,
        "ga_segment": "reserved prefix",
        "a_user_property_name_longer_than_24": 1,
        "nothing": None,
    }
    traits.update({f"t{i:02d}": i for i in range(25)})
    tracking_core.identify("user-7", traits)
    tracking_core.track("after", user_id="user-7")
    _flush()
    assert fake.rejections == []
    identify_body, event_body = _bodies(server)  # never in one request with events
    assert identify_body.keys() == {"client_id", "user_id", "user_properties", "events"}
    assert identify_body["client_id"] == event_body["client_id"] == _client_of_user("user-7")
    assert identify_body["user_id"] == "user-7"
    properties = identify_body["user_properties"]
    assert len(properties) == 25
    assert list(properties)[:5] == [
        "plan",
        "Lifetime_Value",
        "email",
        "verified",
        "a_user_property_name_lon",
    ]
    assert properties["plan"] == {"value": "pro"}
    assert properties["Lifetime_Value"] == {"value": 12.5}
    assert properties["email"] == {"value": "e" * 36}
    assert properties["verified"] == {"value": "false"}
    (event,) = identify_body["events"]
    assert event["name"] == "identify" and set(event["params"]) == {EVENT_ID_PARAM}
    assert "user_properties" not in event_body
    assert [fake.user_of(item) for item in fake.identifies] == ["user-7"]
    assert [item["name"] for item in fake.events] == ["after"]
    conversions = tracking_core.tracking_stats()["ga4"].conversions
    # Left out: 3 reserved, None, and 5 beyond the 25th; renamed: 2; one value cut.
    assert dict(conversions) == {"left_out": 9, "name_rewritten": 2, "value_truncated": 1}


def test_an_identify_without_a_usable_user_id_is_dropped(enable: Enable, fake: GA4Fake) -> None:
    enable()
    tracking_core.identify("anonymous", {"plan": "pro"})
    _flush()
    assert fake.identifies == [] and fake.rejections == []
    assert dict(tracking_core.tracking_stats()["ga4"].dropped) == {"rejected": 1}


def test_any_2xx_is_delivered_and_5xx_is_retried(
    enable: Enable, server: LoopbackReceiver, fake: GA4Fake
) -> None:
    enable()
    fake.fail_next(503)
    tracking_core.track("retried", user_id="u-1")
    _flush()
    assert [reply.status for reply in fake.replies] == [503, 204]
    assert [event["name"] for event in fake.events] == ["retried"]
    stats = tracking_core.tracking_stats()["ga4"]
    assert (stats.delivered, stats.retried, stats.last_status) == (1, 1, 204)
