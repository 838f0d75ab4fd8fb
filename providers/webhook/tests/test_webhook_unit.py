"""Unit tests of the webhook wire helpers and of the strict fake's own rules."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import json
import time
import uuid
from typing import Any

import pytest
from tracking_webhook.fake import WebhookFake
from tracking_webhook.provider import (
    WebhookProvider,
    WebhookSettings,
    anonymous_id_for,
    format_timestamp,
    sign,
    signing_key,
)

from tracking_core.receivers import ReceivedRequest, Reply

SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()
UTC = dt.timezone.utc


def test_webhook_signature_matches_the_standard_webhooks_test_vector() -> None:
    key = signing_key(SPEC_SECRET)
    signature = sign(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}')
    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_webhook_signing_key_forms() -> None:
    assert signing_key(SPEC_SECRET) == base64.b64decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    # Missing base64 padding is tolerated.
    assert signing_key("whsec_YWJjZA") == b"abcd"
    # Raw text (no prefix) is refused: the reference verifiers would not read it as its bytes
    # (test_webhook_verifiers.py shows it with both libraries).
    with pytest.raises(ValueError, match="whsec_"):
        signing_key("plain-text-sécret")


@pytest.mark.parametrize("bad", ["whsec_not*base64!", "whsec_abcde", "whsec_Zm9v YmFy"])
def test_webhook_signing_key_refuses_bad_base64_without_echoing_it(bad: str) -> None:
    with pytest.raises(ValueError) as info:
        signing_key(bad)
    assert bad.removeprefix("whsec_") not in str(info.value)
    with pytest.raises(ValueError, match="holds no key"):
        signing_key("whsec_")


def test_webhook_format_timestamp() -> None:
    aware = dt.datetime(2026, 1, 15, 11, 0, 0, 123456, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    assert format_timestamp(aware) == "2026-01-15T10:00:00.123Z"
    assert format_timestamp(dt.datetime(2026, 1, 15, 10, 0)) == "2026-01-15T10:00:00.000Z"


def test_webhook_anonymous_id_is_stable_distinct_and_a_uuid() -> None:
    event_id = str(uuid.uuid4())
    first = anonymous_id_for(event_id)
    assert first == anonymous_id_for(event_id)
    assert first != event_id
    assert str(uuid.UUID(first)) == first
    assert anonymous_id_for(str(uuid.uuid4())) != first


def test_webhook_reprs_hide_every_secret() -> None:
    settings = WebhookSettings(
        url="https://user:pw-in-url@hooks.example.com/t0k3n-path?key=qs-secret",
        auth="Bearer auth-secret-value",
        secret=SECRET,
        key=signing_key(SECRET),
    )
    provider = WebhookProvider(settings)
    for text in (repr(settings), repr(provider)):
        for secret in ("pw-in-url", "t0k3n-path", "qs-secret", "auth-secret-value", SECRET):
            assert secret not in text
    masked = provider.secrets()
    for secret in ("pw-in-url", "/t0k3n-path", "key=qs-secret", "Bearer auth-secret-value"):
        assert secret in masked


def test_webhook_declares_its_settings() -> None:
    settings = {s.name: s for s in WebhookSettings.describe()}
    assert settings["TRACKING_WEBHOOK_URL"].required
    assert settings["TRACKING_WEBHOOK_AUTH"].secret
    assert settings["TRACKING_WEBHOOK_SECRET"].secret
    assert settings["TRACKING_WEBHOOK_MAX_BATCH_BYTES"].default == "500000"
    assert settings["TRACKING_WEBHOOK_MAX_EVENT_BYTES"].default == "32000"
    assert settings["TRACKING_WEBHOOK_MAX_EVENTS"].default == "500"


# -- the fake's own strictness (each rule must refuse what it should) --------------------------


def message(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "type": "track",
        "messageId": str(uuid.uuid4()),
        "event": "Signed Up",
        "properties": {"plan": "pro"},
        "userId": "user-12345",
        "timestamp": "2026-01-15T10:00:00.000Z",
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def request(
    batch: list[dict[str, Any]] | None = None,
    *,
    secret: str | None = SECRET,
    msg_id: str = "9d0f0a52-6d6f-4a32-9d8a-5d9b2c7e0001",
    stamp: int | None = None,
    auth: str | None = "Bearer t0ken",
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> ReceivedRequest:
    now = time.time()
    if body is None:
        sent_at = format_timestamp(dt.datetime.fromtimestamp(now, UTC))
        body = json.dumps({"batch": batch or [message()], "sentAt": sent_at}).encode()
    stamp = int(now) if stamp is None else stamp
    all_headers = {"content-type": "application/json", "webhook-id": msg_id}
    all_headers["webhook-timestamp"] = str(stamp)
    if secret is not None:
        all_headers["webhook-signature"] = sign(signing_key(secret), msg_id, stamp, body)
    if auth is not None:
        all_headers["authorization"] = auth
    all_headers.update(headers or {})
    return ReceivedRequest("POST", "/v1/batch", {}, all_headers, body, body, time.monotonic())


def strict_fake(**options: Any) -> WebhookFake:
    return WebhookFake(**{"secret": SECRET, "auth": "Bearer t0ken", "path": "/v1/batch", **options})


def test_webhook_fake_accepts_a_valid_signed_batch() -> None:
    fake = strict_fake()
    reply = fake(
        request(
            [
                message(),
                message(
                    type="identify",
                    event=None,
                    properties=None,
                    traits={"email": "ada@example.com"},
                ),
            ]
        )
    )
    assert reply.status == 200
    assert reply.body == {"success": True}
    assert len(fake.events) == 1
    assert len(fake.identifies) == 1
    assert fake.rejections == []


LIMITS = {"max_messages": 2, "max_body_bytes": 2000, "max_message_bytes": 400}
NAN_BODY = b'{"batch":[{"type":"track","value":NaN}],"sentAt":"2026-01-15T10:00:00Z"}'
OTHER_SECRET = "whsec_" + base64.b64encode(b"another key!").decode()


def refused(
    batch: list[dict[str, Any]] | None = None,
    why: str = "",
    status: int = 400,
    options: dict[str, Any] | None = None,
    **request_options: Any,
) -> Any:
    """One case of `test_webhook_fake_refuses_what_it_should`: `request(batch,
    **request_options)` sent to `strict_fake(**options)` is answered `status`, for `why`."""
    return pytest.param(options or {}, batch, request_options, status, why, id=why)


@pytest.mark.parametrize(
    ("options", "batch", "request_options", "status", "why"),
    [
        # the messages
        refused([message(userId=None)], "userId or anonymousId is required"),
        refused([message(userId="anonymous")], "'anonymous' is a placeholder"),
        refused([message(userId=None, anonymousId="undefined")], "'undefined' is a placeholder"),
        refused([message(userId=12345)], "non-empty strings"),
        refused([message(timestamp=1768471200000)], "timestamp must be an ISO 8601 string"),
        refused([message(timestamp="2026-01-15T10:00:00")], "got '2026-01-15T10:00:00'"),
        refused([message(messageId="evt-1")], "messageId"),
        refused([message(event="")], "event name"),
        refused([message(properties=[1, 2])], "properties"),
        refused([message(type="page")], "type"),
        refused([message(uuid="x")], "unknown fields"),
        # the signature, the Authorization and the clock
        refused(why="no matching v1 signature", secret=OTHER_SECRET),
        refused(why="missing webhook-id/-timestamp/-signature", secret=None),
        refused(why="missing or wrong Authorization header", status=401, auth=None),
        refused(why="wrong Authorization header", status=401, auth="Bearer wrong"),
        refused(why="tolerance", stamp=int(time.time()) - 301),
        # The clock is injectable: a fake living 1000 s ahead refuses what is fresh now.
        refused(why="outside the tolerance", options={"clock": lambda: time.time() + 1000}),
        # the limits and the JSON
        refused([message(), message(), message()], "messages exceed", options=LIMITS),
        refused([message(properties={"x": "y" * 3000})], "exceeds 2000", options=LIMITS),
        refused([message(properties={"x": "y" * 500})], "over 400", options=LIMITS),
        refused(why="strict JSON", options=LIMITS, body=NAN_BODY),
        refused(
            why="Content-Type must be application/json",
            options=LIMITS,
            headers={"content-type": "text/plain"},
        ),
        refused(
            [message(), message()],
            "2 messages exceed 1",
            status=413,
            options={"too_large_status": 413, "max_messages": 1},
        ),
    ],
)
def test_webhook_fake_refuses_what_it_should(
    options: dict[str, Any],
    batch: list[dict[str, Any]] | None,
    request_options: dict[str, Any],
    status: int,
    why: str,
) -> None:
    fake = strict_fake(**options)
    reply = fake(request(batch, **request_options))
    assert reply.status == status
    assert why in fake.rejections[-1].message
    assert fake.events == fake.identifies == []


def test_webhook_fake_checks_the_raw_body_and_accepts_rotated_signatures() -> None:
    fake = strict_fake()
    good = request()
    body = good.raw_body.replace(b"Signed Up", b"Signed Uq")
    assert fake(dataclasses.replace(good, raw_body=body, body=body)).status == 400
    assert "no matching v1 signature" in fake.rejections[-1].message
    # Several signatures (key rotation): one matching v1 entry is enough.
    good = request(msg_id="9d0f0a52-6d6f-4a32-9d8a-5d9b2c7e00ff")
    rotated = dict(good.headers)
    rotated["webhook-signature"] = "v1a,AAAA v1,Zm9v " + good.headers["webhook-signature"]
    assert fake(dataclasses.replace(good, headers=rotated)).status == 200
    assert fake.events


def test_webhook_fake_checks_webhook_id_across_retries() -> None:
    fake = strict_fake()
    first = [message()]
    stamp = int(time.time())
    fake.fail_next(Reply(503, {"code": "unavailable"}, headers={"Retry-After": "1"}))
    assert fake(request(first, stamp=stamp)).status == 503
    # The same id with another batch is a client bug.
    assert fake(request([message()], stamp=stamp)).status == 400
    assert "reused" in fake.rejections[-1].message
    # A retry whose timestamp went backwards is refused too.
    assert fake(request(first, stamp=stamp - 5)).status == 400
    assert "backwards" in fake.rejections[-1].message
    assert fake(request(first, stamp=stamp + 1)).status == 200
    # A delivery repeated after success is acknowledged but not recorded twice.
    assert fake(request(first, stamp=stamp + 2)).status == 200
    assert fake.duplicate_deliveries == 1
    assert len(fake.events) == 1
    # The same messageId in another batch is a duplicate event.
    assert fake(request(first, msg_id="9d0f0a52-6d6f-4a32-9d8a-5d9b2c7e0002")).status == 200
    assert len(fake.events) == 1
    assert len(fake.duplicates) == 1
