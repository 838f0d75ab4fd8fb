"""Our bodies beside what the vendors' own Python SDKs send for the same track and identify calls
(segment-analytics-python, rudder-sdk-python), captured over real HTTP on 127.0.0.1 by the
strict fake, and compared field by field.

The fields that differ on purpose, and only those, are listed here (and in the docs):

- ``context.library``: the SDKs name themselves (``analytics-python``), we say ``tracking-core``;
  the ``User-Agent`` header likewise.
- ``anonymousId``/``userId``: the SDKs send ``null`` for the one not given; we leave it out.
- segment-analytics-python (2.4) also puts the write key in the body (``writeKey``); we send it
  only as Basic auth, which Segment accepts on its own (one copy of the secret fewer).
- gzip: segment-analytics-python does not compress unless asked; we gzip bodies from 1 KiB.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from tracking_segment.fake import SegmentFake

import tracking_core
from tracking_core.receivers import LoopbackReceiver, ReceivedRequest
from tracking_core.testing import RecordingProvider

UTC = dt.timezone.utc
WHEN = dt.datetime(2026, 1, 15, 10, 0, 0, 123456, tzinfo=UTC)
#: Fields that legitimately differ (see the module doc), by where they are.
ENVELOPE_ONLY_THEIRS = {"writeKey"}
NULL_IDS = {"anonymousId", "userId"}


def _sdk_client(vendor: str, key: str, url: str) -> Any:
    if vendor == "segment":
        from segment.analytics import Client as SegmentClient  # type: ignore[import-untyped]

        return SegmentClient(write_key=key, host=url, sync_mode=True)
    from rudderstack.analytics import Client as RudderClient  # type: ignore[import-untyped]

    return RudderClient(write_key=key, host=url, sync_mode=True)


def _theirs(vendor: Any, fake: SegmentFake, ids: list[str]) -> list[ReceivedRequest]:
    """What the SDK sends for the calls (with our message ids), accepted by the strict fake."""
    with LoopbackReceiver(fake) as server:
        client = _sdk_client(vendor.name, vendor.key, server.url)
        client.track(
            user_id="user-1",
            event="Signed Up",
            properties={"plan": "pro", "seats": 3},
            timestamp=WHEN,
            message_id=ids[0],
        )
        client.identify(
            user_id="user-1",
            traits={"email": "ada@example.com"},
            timestamp=WHEN,
            message_id=ids[1],
        )
        client.track(
            anonymous_id="device-1", event="Page Viewed", timestamp=WHEN, message_id=ids[2]
        )
        # sync mode: each call was posted before it returned
        assert fake.rejections == [], fake.rejections
        return list(server.requests)


def test_our_bodies_match_the_vendors_sdk_field_by_field(
    vendor: Any, enable: Callable[..., None], server: LoopbackReceiver, fake: SegmentFake
) -> None:
    enable()
    recorder = RecordingProvider()
    tracking_core.register_tracking_provider(recorder)
    tracking_core.track("Signed Up", {"plan": "pro", "seats": 3}, user_id="user-1", timestamp=WHEN)
    tracking_core.identify("user-1", {"email": "ada@example.com"})
    tracking_core.track("Page Viewed", anonymous_id="device-1", timestamp=WHEN)
    assert tracking_core.flush_tracking(10)
    assert fake.rejections == []
    (ours,) = server.requests
    ours_body = ours.json()
    events = recorder.settle().events
    identify_id = ours_body["batch"][1]["messageId"]
    ids = [events[0].event_id, identify_id, events[1].event_id]

    sdk_fake = SegmentFake(vendor.key, vendor=vendor.name)
    theirs = _theirs(vendor, sdk_fake, ids)
    assert len(theirs) == 3  # sync mode: one request a call
    # The same credentials, the same way; the same media type.
    for request in theirs:
        assert request.headers["authorization"] == ours.headers["authorization"]
        assert request.headers["content-type"] == ours.headers["content-type"]
        assert request.path == ours.path == "/v1/batch"
        # The envelope: the batch and sentAt, as an ISO 8601 time with its offset.
        body = request.json()
        assert set(body) - ENVELOPE_ONLY_THEIRS == set(ours_body) == {"batch", "sentAt"}
        for envelope in (body, ours_body):
            assert dt.datetime.fromisoformat(envelope["sentAt"]).utcoffset() is not None
        assert len(body["sentAt"]) == len(ours_body["sentAt"])  # the same precision

    # Each message, field by field: identical but for the library and the null ids.
    # The identify's timestamp is the time of the call, so it is compared by format only.
    for mine, request in zip(ours_body["batch"], theirs, strict=True):
        (sdk,) = request.json()["batch"]
        mine_context, sdk_context = mine.pop("context"), sdk.pop("context")
        assert mine_context.pop("library") == {
            "name": "tracking-core",
            "version": tracking_core.__version__,
        }
        assert sdk_context.pop("library")["name"] == "analytics-python"
        assert mine_context == sdk_context  # RudderStack's identify: context.traits
        if mine["type"] == "identify":
            assert len(mine.pop("timestamp")) == len(sdk.pop("timestamp"))
        dropped = {key for key, value in sdk.items() if key in NULL_IDS and value is None}
        assert dropped.isdisjoint(mine)
        assert mine == {key: value for key, value in sdk.items() if key not in dropped}


@pytest.mark.parametrize("sdk_sends_gzip", [False, True])
def test_the_fake_takes_the_sdk_bodies_gzipped_or_not(vendor: Any, sdk_sends_gzip: bool) -> None:
    fake = SegmentFake(vendor.key, vendor=vendor.name)
    with LoopbackReceiver(fake) as server:
        client = _sdk_client(vendor.name, vendor.key, server.url)
        client.gzip = sdk_sends_gzip
        client.track(user_id="user-1", event="Zipped", properties={"text": "z" * 2000})
        # sync mode: each call was posted before it returned
    assert fake.rejections == [] and len(fake.events) == 1
