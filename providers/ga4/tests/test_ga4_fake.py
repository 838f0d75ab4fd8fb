"""The GA4 fake is as strict as GA4: its validation endpoint reports what GA4 would discard, and
its collection endpoint refuses it (strict) or answers 2xx and discards it (as GA4 does)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from tracking_ga4.fake import GA4Fake

from tracking_core.receivers import LoopbackReceiver

Post = Callable[..., httpx.Response]


@pytest.fixture
def post(server: LoopbackReceiver, measurement_id: str, secret: str) -> Post:
    """``post(path, body, api_secret=...)``: a request to the fake, with the stream it expects."""

    def send(path: str, body: Any, api_secret: str = secret) -> httpx.Response:
        query = {"measurement_id": measurement_id, "api_secret": api_secret}
        return httpx.post(f"{server.url}{path}", params=query, json=body, timeout=10)

    return send


def _event(name: str = "sign_up", /, **params: Any) -> dict[str, Any]:
    micros = int(time.time() * 1_000_000)
    return {
        "name": name,
        "params": {"tracking_event_id": "e-1", **params},
        "timestamp_micros": micros,
    }


def _codes(response: httpx.Response) -> list[str]:
    return [message["validationCode"] for message in response.json()["validationMessages"]]


def test_a_valid_request_is_recorded_with_204(post: Post, fake: GA4Fake) -> None:
    body = {"client_id": "c-1", "user_id": "u-1", "events": [_event(plan="pro")]}
    response = post("/mp/collect", body)
    assert response.status_code == 204 and response.content == b""
    (event,) = fake.events
    assert fake.properties_of(event) == {"tracking_event_id": "e-1", "plan": "pro"}
    assert fake.event_ids() == ["e-1"]


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"events": [_event()]}, "VALUE_REQUIRED"),
        ({"client_id": "c", "events": []}, "VALUE_REQUIRED"),
        ({"client_id": "c", "events": [_event()] * 26}, "EXCEEDED_MAX_ENTITIES"),
        ({"client_id": "c", "events": [_event("_bad")]}, "NAME_INVALID"),
        ({"client_id": "c", "events": [_event("Signed Up")]}, "NAME_INVALID"),
        ({"client_id": "c", "events": [_event("x" * 41)]}, "NAME_INVALID"),
        ({"client_id": "c", "events": [_event("session_start")]}, "NAME_RESERVED"),
        ({"client_id": "c", "events": [_event(google_x=1)]}, "NAME_RESERVED"),
        ({"client_id": "c", "events": [_event(**{"bad name": 1})]}, "NAME_INVALID"),
        ({"client_id": "c", "events": [_event(v="y" * 101)]}, "VALUE_OUT_OF_BOUNDS"),
        ({"client_id": "c", "events": [_event(v=None)]}, "VALUE_INVALID"),
        ({"client_id": "c", "events": [_event(v=[1])]}, "VALUE_INVALID"),
        (
            {"client_id": "c", "events": [_event(**{f"p{i}": i for i in range(25)})]},
            "EXCEEDED_MAX_ENTITIES",
        ),
        ({"client_id": "c", "user_id": "u" * 257, "events": [_event()]}, "VALUE_OUT_OF_BOUNDS"),
        (
            {"client_id": "c", "user_properties": {"x" * 25: {"value": 1}}, "events": [_event()]},
            "NAME_INVALID",
        ),
        (
            {
                "client_id": "c",
                "user_properties": {"plan": {"value": "v" * 37}},
                "events": [_event()],
            },
            "VALUE_OUT_OF_BOUNDS",
        ),
        (
            {
                "client_id": "c",
                "user_properties": {"user_id": {"value": "1"}},
                "events": [_event()],
            },
            "NAME_RESERVED",
        ),
        (
            {"client_id": "c", "user_properties": {"plan": "pro"}, "events": [_event()]},
            "VALUE_INVALID",
        ),
        (
            {"client_id": "c", "events": [{**_event(), "timestamp_micros": 1}]},
            "VALUE_OUT_OF_BOUNDS",
        ),
    ],
)
def test_what_ga4_would_discard_is_reported_refused_or_discarded(
    post: Post, fake: GA4Fake, body: dict[str, Any], code: str
) -> None:
    checked = post("/debug/mp/collect", body)
    assert checked.status_code == 200
    assert code in _codes(checked)

    refused = post("/mp/collect", body)
    assert refused.status_code == 400
    assert fake.rejections[-1].status == 400
    fake.strict = False
    lax = post("/mp/collect", body)
    assert lax.status_code == 204  # what GA4 does: 2xx, and the data is lost
    assert fake.events == [] and len(fake.discarded) == 1


def test_the_validation_endpoint_records_nothing(post: Post, fake: GA4Fake) -> None:
    body = {
        "client_id": "c-1",
        "validation_behavior": "ENFORCE_RECOMMENDATIONS",
        "events": [_event()],
    }
    checked = post("/debug/mp/collect", body, api_secret="not checked there")
    assert checked.status_code == 200 and checked.json() == {"validationMessages": []}
    assert fake.events == [] and fake.identifies == []


def test_the_collection_endpoint_checks_the_stream_and_secret(
    post: Post, fake: GA4Fake, server: LoopbackReceiver
) -> None:
    body = {"client_id": "c-1", "events": [_event()]}
    assert post("/mp/collect", body, api_secret="wrong").status_code == 400
    assert "api_secret" in fake.rejections[-1].message
    fake.strict = False
    assert post("/mp/collect", body, api_secret="wrong").status_code == 204
    assert fake.events == [] and len(fake.discarded) == 1
    assert httpx.get(f"{server.url}/mp/collect", timeout=10).status_code == 405
    assert post("/collect", body).status_code == 404


def test_an_identify_event_carries_the_request_user(post: Post, fake: GA4Fake) -> None:
    body = {
        "client_id": "c-1",
        "user_id": "user-9",
        "user_properties": {"plan": {"value": "pro"}},
        "events": [_event("identify")],
    }
    assert post("/mp/collect", body).status_code == 204
    (identify,) = fake.identifies
    assert fake.user_of(identify) == "user-9"
    assert identify["user_properties"] == {"plan": {"value": "pro"}}
