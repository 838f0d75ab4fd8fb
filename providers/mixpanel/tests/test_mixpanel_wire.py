"""What reaches Mixpanel: the exact wire format, accepted by the strict fake, over real HTTP."""

from __future__ import annotations

import datetime as dt
import decimal
import math
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from tracking_mixpanel.fake import MixpanelFake
from tracking_mixpanel.provider import mixpanel_datetime

import tracking_core
from tracking_core import json_safe
from tracking_core.receivers import LoopbackReceiver, ReceivedRequest
from tracking_core.testing import RecordingProvider

Enable = Callable[..., None]
RequestsTo = Callable[[str], list[ReceivedRequest]]
UTC = dt.timezone.utc


def _by_name(fake: MixpanelFake) -> dict[str, dict[str, Any]]:
    return {e["event"]: e["properties"] for e in fake.events}


@pytest.mark.usefixtures("tracked")
def test_events_are_batched_with_ids_time_and_user_agent(
    fake: MixpanelFake, requests_to: RequestsTo
) -> None:
    recorder = RecordingProvider()
    tracking_core.register_tracking_provider(recorder)
    when = dt.datetime.now(UTC).replace(microsecond=123_987) - dt.timedelta(minutes=3)
    with tracking_core.tracking_context(properties={"env": "test"}):
        tracking_core.track(
            "Signed Up",
            {"plan": "pro"},
            user_id="user-12345",
            anonymous_id="anon-9f8e",
            timestamp=when,
        )
        tracking_core.track("Project Created", {"project_id": "p_42"}, user_id="user-12345")
        tracking_core.track("Page Viewed", {"path": "/"}, anonymous_id="anon-9f8e")
        tracking_core.track("Cron Ran", {"job": "cleanup"})
    assert tracking_core.flush_tracking(10)

    track_requests = requests_to("track")
    assert len(track_requests) == 1  # one request carries the whole batch
    request = track_requests[0]
    assert request.method == "POST"
    assert request.query["verbose"] == "1"
    assert request.headers["user-agent"] == f"tracking-core/{tracking_core.__version__} (mixpanel)"
    assert request.headers["content-type"].startswith("application/json")
    body = request.json()
    assert isinstance(body, list) and len(body) == 4
    assert fake.rejections == []
    assert [e["event"] for e in fake.events] == [
        "Signed Up",
        "Project Created",
        "Page Viewed",
        "Cron Ran",
    ]

    props = _by_name(fake)
    signed = props["Signed Up"]
    assert signed["token"] == fake.token
    assert signed["distinct_id"] == "user-12345"
    assert signed["$user_id"] == "user-12345"
    assert signed["$device_id"] == "anon-9f8e"
    assert signed["plan"] == "pro" and signed["env"] == "test"
    expected_ms = int(when.timestamp()) * 1000 + 123
    assert signed["time"] == expected_ms
    assert type(signed["time"]) is int

    # event_id is the dedupe key, unchanged
    by_id = {e.name: e.event_id for e in recorder.events}
    for name, properties in props.items():
        assert properties["$insert_id"] == by_id[name]
        assert uuid.UUID(properties["$insert_id"]).version == 4
        assert type(properties["time"]) is int and properties["time"] > 10**12

    assert props["Project Created"]["distinct_id"] == "user-12345"
    assert "$device_id" not in props["Project Created"]

    page = props["Page Viewed"]
    assert page["$device_id"] == "anon-9f8e"
    assert page["distinct_id"] == "$device:anon-9f8e"
    assert "$user_id" not in page

    cron = props["Cron Ran"]
    assert cron["distinct_id"] == ""  # Mixpanel's "no user", never "anonymous"
    assert "$user_id" not in cron and "$device_id" not in cron


@pytest.mark.usefixtures("tracked")
def test_placeholder_ids_are_left_out(fake: MixpanelFake) -> None:
    tracking_core.track("A", user_id="anonymous", anonymous_id="null")
    tracking_core.track("B", user_id="  ", anonymous_id="Undefined")
    tracking_core.track("C", user_id="NULL", anonymous_id="device-1")
    assert tracking_core.flush_tracking(10)
    assert fake.rejections == []
    props = _by_name(fake)
    for name in ("A", "B"):
        assert props[name]["distinct_id"] == ""
        assert "$user_id" not in props[name] and "$device_id" not in props[name]
    assert props["C"]["distinct_id"] == "$device:device-1"
    assert tracking_core.tracking_stats()["mixpanel"].delivered == 3


@pytest.mark.usefixtures("tracked")
def test_reserved_properties_cannot_be_overridden(fake: MixpanelFake) -> None:
    tracking_core.track(
        "Sneaky",
        {
            "token": "other-token",
            "time": 5,
            "distinct_id": "someone-else",
            "$insert_id": "not valid!",
            "$user_id": "x",
            "$device_id": "anonymous",
            "ip": "203.0.113.9",
        },
        user_id="user-1",
    )
    tracking_core.track("Plain")
    assert tracking_core.flush_tracking(10)
    assert fake.rejections == []
    props = _by_name(fake)
    sneaky = props["Sneaky"]
    assert sneaky["token"] == fake.token
    assert sneaky["distinct_id"] == "user-1" and sneaky["$user_id"] == "user-1"
    assert "$device_id" not in sneaky
    assert sneaky["time"] > 10**12
    assert uuid.UUID(sneaky["$insert_id"]).version == 4
    assert sneaky["ip"] == "203.0.113.9"  # the end user's address is the caller's to give
    assert props["Plain"]["ip"] == "0"  # otherwise: no geolocation from the server's address
    assert props["Plain"]["mp_lib"] == "tracking-core"


@pytest.mark.usefixtures("tracked")
def test_values_json_cannot_carry_arrive_as_strict_json(
    fake: MixpanelFake, requests_to: RequestsTo
) -> None:
    when = dt.datetime(2026, 1, 15, 10, 0, tzinfo=UTC)
    weird: dict[str, Any] = {
        "when": when,
        "day": dt.date(2026, 1, 15),
        "price": decimal.Decimal("9.99"),
        "tags": {"b", "a"},
        "ratio": math.nan,
        "big": math.inf,
        "raw": b"\xff\x00",
        "text": b"hello",
        "pair": (1, 2),
        "id": uuid.UUID(int=1),
        "nested": {"at": when, 3: "three"},
    }
    tracking_core.track("Weird", weird, user_id="user-1")
    assert tracking_core.flush_tracking(10)
    request = requests_to("track")[0]
    body = request.json()  # refuses NaN/Infinity tokens
    props = body[0]["properties"]
    expected = json_safe(weird, datetime_format=mixpanel_datetime)
    for key, value in expected.items():
        assert props[key] == value
    assert props["ratio"] is None and props["big"] is None  # null, never "NaN"/"Infinity"
    assert props["when"] == "2026-01-15T10:00:00" and props["nested"]["at"] == props["when"]
    assert props["tags"] == ["a", "b"]
    assert props["raw"].startswith("base64:")
    assert fake.events[0]["event"] == "Weird"


@pytest.mark.usefixtures("tracked")
def test_identify_goes_to_engage_without_gzip(fake: MixpanelFake, requests_to: RequestsTo) -> None:
    big_bio = "x" * 5000  # large enough that /track would be gzipped
    tracking_core.track("Signed Up", {"bio": big_bio}, user_id="user-12345")
    tracking_core.identify(
        "user-12345",
        {
            "$email": "ada@example.com",
            "$name": "Ada",
            "plan": "pro",
            "bio": big_bio,
            "since": dt.date(2026, 1, 1),
        },
    )
    tracking_core.identify("user-2")
    assert tracking_core.flush_tracking(10)
    engage = requests_to("engage")
    track = requests_to("track")
    assert len(engage) == 1 and len(track) == 1  # never mixed in one request
    assert "content-encoding" not in engage[0].headers
    assert engage[0].raw_body == engage[0].body
    assert track[0].headers.get("content-encoding") == "gzip"
    assert engage[0].query["verbose"] == "1"
    assert engage[0].headers["user-agent"].endswith("(mixpanel)")
    assert fake.rejections == []
    first, second = fake.identifies
    assert first == {
        "$token": fake.token,
        "$distinct_id": "user-12345",
        "$ip": "0",
        "$set": {
            "$email": "ada@example.com",
            "$name": "Ada",
            "plan": "pro",
            "bio": big_bio,
            "since": "2026-01-01",
        },
    }
    assert second["$distinct_id"] == "user-2" and second["$set"] == {}
    assert [e["event"] for e in fake.events] == ["Signed Up"]
    stats = tracking_core.tracking_stats()["mixpanel"]
    assert stats.delivered == 3 and stats.batches == 2


@pytest.mark.usefixtures("tracked")
def test_identify_with_a_placeholder_id_is_dropped(fake: MixpanelFake) -> None:
    tracking_core.identify("anonymous", {"plan": "pro"})
    tracking_core.identify("user-1", {"plan": "pro"})
    assert tracking_core.flush_tracking(10)
    assert [u["$distinct_id"] for u in fake.identifies] == ["user-1"]
    stats = tracking_core.tracking_stats()["mixpanel"]
    assert stats.delivered == 1
    assert stats.dropped.get("rejected") == 1


@pytest.mark.usefixtures("tracked")
def test_small_event_batches_are_not_gzipped(fake: MixpanelFake, requests_to: RequestsTo) -> None:
    tracking_core.track("Tiny", user_id="u-1")
    assert tracking_core.flush_tracking(10)
    request = requests_to("track")[0]
    assert "content-encoding" not in request.headers
    assert len(fake.events) == 1


def test_host_with_a_path_prefix(
    enable_at_fake: Enable, receiver: LoopbackReceiver, fake: MixpanelFake
) -> None:
    enable_at_fake(MIXPANEL_HOST=f"{receiver.url}/proxy/")
    tracking_core.track("Through Proxy", user_id="user-1")
    tracking_core.identify("user-1", {"plan": "pro"})
    assert tracking_core.flush_tracking(10)
    assert sorted(r.path for r in receiver.requests) == ["/proxy/engage", "/proxy/track"]
    assert len(fake.events) == 1 and len(fake.identifies) == 1


def test_import_mode_with_a_service_account(
    enable_import: Enable, fake: MixpanelFake, requests_to: RequestsTo
) -> None:
    assert fake.service_account is not None
    project = fake.service_account[2]
    enable_import()
    old = dt.datetime.now(UTC) - dt.timedelta(days=30)  # /import has no 5-day window
    tracking_core.track("Old Event", user_id="user-1", timestamp=old)
    tracking_core.track("New Event")
    tracking_core.identify("user-1", {"plan": "pro"})
    assert tracking_core.flush_tracking(10)
    imports = requests_to("import")
    assert len(imports) == 1
    assert imports[0].query == {"strict": "1", "project_id": project}
    assert imports[0].headers["authorization"].startswith("Basic ")
    assert requests_to("track") == []
    engage = requests_to("engage")
    assert len(engage) == 1 and "authorization" not in engage[0].headers
    assert fake.rejections == []
    props = _by_name(fake)
    assert props["Old Event"]["time"] == int(old.timestamp() * 1000)
    assert props["New Event"]["distinct_id"] == ""
    assert len(fake.identifies) == 1
    assert tracking_core.tracking_stats()["mixpanel"].delivered == 3


def test_import_mode_with_the_project_secret(
    enable_at_fake: Enable, requests_to: RequestsTo, tmp_path: Path, fake: MixpanelFake
) -> None:
    assert fake.api_secret is not None
    secret_file = tmp_path / "mp-secret"
    secret_file.write_text(fake.api_secret, encoding="utf-8")
    enable_at_fake(MIXPANEL_API_SECRET_FILE=str(secret_file))
    tracking_core.track("Imported", user_id="user-1")
    assert tracking_core.flush_tracking(10)
    imports = requests_to("import")
    assert len(imports) == 1 and imports[0].query == {"strict": "1"}
    assert [e["event"] for e in fake.events] == ["Imported"]


@pytest.mark.usefixtures("tracked")
def test_datetime_values_are_sent_in_mixpanels_date_form_in_utc(fake: MixpanelFake) -> None:
    """Mixpanel's Date properties: ``YYYY-MM-DDTHH:MM:SS`` in UTC, in events and in ``$set``."""
    minus_five = dt.timezone(dt.timedelta(hours=-5))
    values: dict[str, Any] = {
        "aware": dt.datetime(2026, 1, 15, 21, 30, 5, 999_999, tzinfo=minus_five),
        "naive": dt.datetime(2026, 1, 15, 10, 0, 0, 250_000),  # taken as UTC
        "utc": dt.datetime(2026, 1, 15, 10, 0, tzinfo=UTC),
        "day": dt.date(2026, 1, 15),  # a date stays a date
        "list": [dt.datetime(2026, 1, 15, 23, 0, tzinfo=minus_five)],
    }
    expected = {
        "aware": "2026-01-16T02:30:05",
        "naive": "2026-01-15T10:00:00",
        "utc": "2026-01-15T10:00:00",
        "day": "2026-01-15",
        "list": ["2026-01-16T04:00:00"],
    }
    tracking_core.track("Dated", values, user_id="user-1")
    tracking_core.identify("user-1", values)
    assert tracking_core.flush_tracking(10)
    assert fake.rejections == []
    props = _by_name(fake)["Dated"]
    assert {key: props[key] for key in expected} == expected
    assert fake.identifies[0]["$set"] == expected


def _served_fake(
    mp_env: Enable, id_merge: str | None, **variables: str
) -> tuple[MixpanelFake, LoopbackReceiver]:
    fake = MixpanelFake(token="tok-id-merge-1", id_merge=id_merge)
    receiver = LoopbackReceiver(fake).start()
    mp_env(MIXPANEL_TOKEN=fake.token, MIXPANEL_HOST=receiver.url, **variables)
    return fake, receiver


def _track_the_three_identities() -> None:
    tracking_core.track("Anonymous", anonymous_id="anon-9f8e")
    tracking_core.track("Both", user_id="user-12345", anonymous_id="anon-9f8e")
    tracking_core.track("User", user_id="user-12345")
    tracking_core.track("Nobody")
    assert tracking_core.flush_tracking(10)


@pytest.mark.parametrize("setting", [None, "simplified", " Simplified "])
def test_simplified_id_merge_by_default(mp_env: Enable, setting: str | None) -> None:
    variables = {} if setting is None else {"MIXPANEL_ID_MERGE": setting}
    fake, receiver = _served_fake(mp_env, "simplified", **variables)
    try:
        _track_the_three_identities()
    finally:
        receiver.stop()
    assert fake.rejections == []
    props = _by_name(fake)
    assert props["Anonymous"]["distinct_id"] == "$device:anon-9f8e"
    assert props["Anonymous"]["$device_id"] == "anon-9f8e" and "$user_id" not in props["Anonymous"]
    assert props["Both"]["distinct_id"] == "user-12345"
    assert props["Both"]["$user_id"] == "user-12345" and props["Both"]["$device_id"] == "anon-9f8e"
    assert (
        props["User"]["distinct_id"] == "user-12345" and props["User"]["$user_id"] == "user-12345"
    )
    assert props["Nobody"]["distinct_id"] == ""


@pytest.mark.parametrize("import_mode", [False, True], ids=["track", "import"])
def test_original_id_merge_uses_the_anonymous_id_itself(mp_env: Enable, import_mode: bool) -> None:
    variables = {"MIXPANEL_ID_MERGE": "Original"}
    if import_mode:
        variables["MIXPANEL_API_SECRET"] = "sec-id-merge-1"
    fake, receiver = _served_fake(mp_env, "original", **variables)
    fake.api_secret = "sec-id-merge-1"
    try:
        _track_the_three_identities()
    finally:
        receiver.stop()
    assert fake.rejections == []
    assert [r.path for r in receiver.requests] == ["/import" if import_mode else "/track"]
    props = _by_name(fake)
    assert props["Anonymous"]["distinct_id"] == "anon-9f8e"
    assert props["Both"]["distinct_id"] == "user-12345"
    assert props["User"]["distinct_id"] == "user-12345"
    assert props["Nobody"]["distinct_id"] == ""
    for name in ("Anonymous", "Both", "User", "Nobody"):
        # Simplified ID Merge's properties: not sent to an Original ID Merge project.
        assert "$device_id" not in props[name] and "$user_id" not in props[name], name
    assert tracking_core.tracking_stats()["mixpanel"].delivered == 4


def test_the_simplified_shape_is_refused_by_an_original_project(mp_env: Enable) -> None:
    """The fake in Original mode catches a provider left on the default for such a project."""
    fake, receiver = _served_fake(mp_env, "original")
    try:
        tracking_core.track("Anonymous", anonymous_id="anon-9f8e")
        assert tracking_core.flush_tracking(10)
    finally:
        receiver.stop()
    assert fake.events == []
    assert any("$device:" in rejection.message for rejection in fake.rejections)
