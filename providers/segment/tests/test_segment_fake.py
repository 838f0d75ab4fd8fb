"""The Segment/RudderStack fake is strict: what either vendor refuses, it refuses, worded as the
vendor words it, and it accepts the SDKs' own bodies (see test_segment_sdk_parity.py)."""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from tracking_segment.fake import SegmentFake

from tracking_core.receivers import LoopbackReceiver

KEY = "fake-write-key-0123456789"


@pytest.fixture(params=["segment", "rudderstack"])
def fake(request: pytest.FixtureRequest) -> SegmentFake:
    return SegmentFake(KEY, vendor=request.param)


@pytest.fixture
def url(fake: SegmentFake) -> Iterator[str]:
    with LoopbackReceiver(fake) as server:
        yield server.url


def _message(**fields: Any) -> dict[str, Any]:
    now = dt.datetime.now(dt.timezone.utc).isoformat()
    return {
        "type": "track",
        "messageId": "m-1",
        "event": "E",
        "userId": "u-1",
        "timestamp": now,
        **fields,
    }


def _post(url: str, body: Any, key: str | None = KEY, **headers: str) -> httpx.Response:
    if key is not None:
        headers["Authorization"] = "Basic " + base64.b64encode(f"{key}:".encode()).decode()
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers.setdefault("Content-Type", "application/json")
    return httpx.post(f"{url}/v1/batch", content=data, headers=headers, timeout=10)


def test_accepts_a_batch_and_answers_as_the_vendor(url: str, fake: SegmentFake) -> None:
    response = _post(url, {"batch": [_message()], "sentAt": "2026-01-15T10:00:00Z"})
    assert response.status_code == 200
    if fake.vendor == "segment":
        assert response.json() == {"success": True}
    else:
        assert response.text == "OK"
    assert fake.event_ids() == ["m-1"]


@pytest.mark.parametrize(
    ("body", "key", "status"),
    [
        ({"batch": [_message()]}, None, 401),
        ({"batch": [_message()]}, "wrong-key", 401),
        (b"{not json", KEY, 400),
        ({"batch": []}, KEY, 400),
        ({"messages": [_message()]}, KEY, 400),
        ({"batch": [_message(type="page_view")]}, KEY, 400),
        ({"batch": [_message(messageId=None)]}, KEY, 400),
        ({"batch": [_message(userId=None)]}, KEY, 400),
        ({"batch": [_message(event="")]}, KEY, 400),
        ({"batch": [_message(timestamp="yesterday")]}, KEY, 400),
        ({"batch": [_message(timestamp="2026-01-15T10:00:00")]}, KEY, 400),  # no offset
        ({"batch": [_message(properties={"t": "x" * 33_000})]}, KEY, 400),
    ],
)
def test_refuses_what_the_vendor_refuses(
    url: str, fake: SegmentFake, body: Any, key: str | None, status: int
) -> None:
    assert _post(url, body, key).status_code == status
    assert fake.events == [] and fake.rejections[-1].status == status


def test_segment_takes_the_write_key_in_the_body_too(url: str, fake: SegmentFake) -> None:
    response = _post(url, {"batch": [_message()], "writeKey": KEY}, key=None)
    assert response.status_code == (200 if fake.vendor == "segment" else 401)


def test_the_body_limit(url: str, fake: SegmentFake) -> None:
    messages = [_message(messageId=f"m-{i}", properties={"t": "x" * 30_000}) for i in range(20)]
    response = _post(url, {"batch": messages})
    assert response.status_code == (400 if fake.vendor == "segment" else 200)
