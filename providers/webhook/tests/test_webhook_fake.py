"""The webhook fake on the shared `tracking_core.fakes.VendorFake` base: its answers, scripted
replies, the record of every request, and `destination()` (the rules themselves are tested in
test_webhook_unit.py)."""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid
from typing import Any

from tracking_webhook.fake import TEST_PATH, WebhookFake, destination
from tracking_webhook.provider import format_timestamp, sign, signing_key

import tracking_core as tc
from tracking_core.fakes import Rejection
from tracking_core.receivers import ReceivedRequest, Reply

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def signed(auth: str = "Bearer ok", msg_id: str = "msg-1") -> ReceivedRequest:
    """A valid signed request carrying one track message."""
    message = {
        "type": "track",
        "messageId": str(uuid.uuid4()),
        "event": "Checked",
        "userId": "user-12345",
        "timestamp": format_timestamp(dt.datetime.now(dt.timezone.utc)),
    }
    sent_at = format_timestamp(dt.datetime.now(dt.timezone.utc))
    body = json.dumps({"batch": [message], "sentAt": sent_at}).encode()
    stamp = int(time.time())
    headers = {"content-type": "application/json", "authorization": auth, "webhook-id": msg_id}
    headers["webhook-timestamp"] = str(stamp)
    headers["webhook-signature"] = sign(signing_key(SECRET), msg_id, stamp, body)
    return ReceivedRequest("POST", "/in", {}, headers, body, body, time.monotonic())


def test_refusals_are_segment_shaped_and_recorded() -> None:
    fake = WebhookFake(secret=SECRET, auth="Bearer ok", path="/in")
    reply = fake(signed(auth="Bearer nope"))
    assert (reply.status, reply.body) == (
        401,
        {"code": "unauthorized", "message": "missing or wrong Authorization header"},
    )
    assert fake.rejections == [
        Rejection(401, "unauthorized: missing or wrong Authorization header")
    ]
    assert fake.statuses() == [401] and fake.events == []


def test_scripted_replies_by_status_or_reply_and_after_the_rules() -> None:
    fake = WebhookFake(secret=SECRET, auth="Bearer ok")
    fake.fail_next(503, Reply(action="reset"))
    fake.fail_next(Reply(500), ingest=True)
    replies = [fake(signed(msg_id=f"msg-{n}")) for n in range(4)]
    assert replies[0].body == {"code": "http_503", "message": "Service Unavailable"}
    assert fake.statuses() == [503, None, 500, 200]
    # Only the request scripted with ingest=True went through the rules before its 500.
    assert [m["messageId"] for m in fake.events] == [
        json.loads(r.body)["batch"][0]["messageId"] for r in fake.requests[2:]
    ]
    fake.clear()
    assert fake.requests == [] and fake.events == [] and fake.statuses() == []
    assert fake(signed(msg_id="msg-2")).status == 200  # accepted again: clear() forgot it
    assert fake.duplicate_deliveries == 0


def test_destination_enables_the_webhook_provider_against_its_fake(
    tracking_env: Any,
) -> None:
    webhook = destination()
    with webhook.fake.serve() as receiver:
        tracking_env(TRACKING_PROVIDERS="webhook", **webhook.environment(receiver.url))
        tc.track("Ordered", {"total": 12}, user_id="user-12345")
        tc.identify("user-12345", {"plan": "pro"})
        assert tc.flush_tracking(10)
    fake = webhook.fake
    assert receiver.requests[0].path == TEST_PATH
    assert fake.rejections == [] and fake.statuses() == [200]
    assert [fake.properties_of(event)["total"] for event in fake.events] == [12]
    assert fake.event_ids() == [message["messageId"] for message in fake.events]
    assert [fake.user_of(identify) for identify in fake.identifies] == ["user-12345"]
