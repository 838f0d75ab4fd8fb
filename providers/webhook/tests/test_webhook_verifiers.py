"""The docs' promise, checked with the real reference verifiers: a receiver verifies every request
with the same secret, through ``standardwebhooks.Webhook(secret).verify(body, headers)`` or
``svix.webhooks.Webhook(secret).verify(body, headers)``.

Every request here goes through the engine and real HTTP to a `LoopbackReceiver` (the strict
fake as its responder), first attempts and retries alike. A secret that those libraries would
read differently from the provider is refused when the settings are read, with a message that
says how to make one they read the same way.
"""

from __future__ import annotations

import base64
import logging
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Protocol

import pytest
import standardwebhooks
import svix.webhooks
from tracking_webhook.fake import WebhookFake
from tracking_webhook.provider import WebhookSettings, sign, signing_key

import tracking_core as tc
from tracking_core.receivers import LoopbackReceiver, Reply

Configure = Callable[..., list[str]]


class Verifier(Protocol):
    def verify(self, data: bytes, headers: dict[str, str]) -> object: ...


def verifiers(secret: str) -> list[Verifier]:
    """Both reference verifiers, built from `secret` exactly as a receiver would."""
    return [standardwebhooks.Webhook(secret), svix.webhooks.Webhook(secret)]


KEY_31, KEY_32, KEY_33 = bytes(range(1, 32)), bytes(range(40, 72)), bytes(range(80, 113))

#: Every form the provider accepts, with its key: whsec_ + standard base64, "=" padding
#: optional. Both libraries read each as the same key.
ACCEPTED = {
    "one-pad": ("whsec_" + base64.b64encode(KEY_32).decode(), KEY_32),
    "one-pad-missing": ("whsec_" + base64.b64encode(KEY_32).decode().rstrip("="), KEY_32),
    "two-pads": ("whsec_" + base64.b64encode(KEY_31).decode(), KEY_31),
    "two-pads-missing": ("whsec_" + base64.b64encode(KEY_31).decode().rstrip("="), KEY_31),
    "no-padding-needed": ("whsec_" + base64.b64encode(KEY_33).decode(), KEY_33),
    "spec-example": (
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        base64.b64decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
    ),
}

#: Forms the provider refuses. The second value is the key that text stands for (what the
#: provider signed with before, or what URL-safe base64 decodes to; None: refused already); the
#: libraries, given the same text, do not verify what that key signs, or cannot read the text.
URLSAFE = base64.urlsafe_b64encode(bytes(range(200, 232))).decode()  # has "-" and "_"
BARE = base64.b64encode(KEY_32).decode()
REFUSED: dict[str, tuple[str, bytes | None]] = {
    "raw-text": ("our shared webhook secret 4711", b"our shared webhook secret 4711"),
    "raw-text-in-base64-alphabet": ("ourSharedSecret4711", b"ourSharedSecret4711"),
    "base64-without-prefix": (BARE, BARE.encode()),
    "upper-case-prefix": ("WHSEC_" + BARE, ("WHSEC_" + BARE).encode()),
    "urlsafe-alphabet": ("whsec_" + URLSAFE, base64.urlsafe_b64decode(URLSAFE)),
    "inner-space": ("whsec_Zm9vYmFy YmF6cXV4", None),
    "not-base64": ("whsec_not*base64*at-all", None),
    "impossible-length": ("whsec_abcde", None),
    "prefix-only": ("whsec_", None),
}


def signed(key: bytes, body: bytes) -> dict[str, str]:
    """Standard Webhooks headers for `body`, signed now with `key` by the provider's `sign`."""
    stamp = int(time.time())
    headers = {"webhook-id": "msg_2Lk9QvJx", "webhook-timestamp": str(stamp)}
    headers["webhook-signature"] = sign(key, headers["webhook-id"], stamp, body)
    return headers


@pytest.mark.parametrize(("secret", "key"), ACCEPTED.values(), ids=ACCEPTED.keys())
def test_reference_verifiers_accept_every_request_and_retry(
    secret: str,
    key: bytes,
    webhook_env: Configure,
    webhook_variables: dict[str, str],
    receiver: LoopbackReceiver,
    fake: WebhookFake,
) -> None:
    assert signing_key(secret) == key
    fake.secret = secret
    fake.fail_next(Reply(503, {"code": "unavailable"}))  # the first attempt is retried
    variables = {**webhook_variables, "TRACKING_WEBHOOK_SECRET": secret}
    assert webhook_env(**variables, TRACKING_FLUSH_INTERVAL="5") == ["webhook"]
    tc.track("Signed Up", {"plan": "pro", "note": "caf\u00e9 \u2603"}, user_id="user-12345")
    tc.track("Anonymous", anonymous_id="anon-9f8e7d6c")
    tc.identify("user-12345", {"email": "ada@example.com"})
    assert tc.flush_tracking(10)
    tc.track("Second Batch", user_id="user-12345")
    assert tc.flush_tracking(10)

    assert fake.rejections == []
    assert fake.statuses() == [503, 200, 200]
    first, retry, second = receiver.requests
    assert first.headers["webhook-id"] == retry.headers["webhook-id"]  # a retry of one batch
    assert second.headers["webhook-id"] != first.headers["webhook-id"]
    for request in (first, retry, second):
        headers = dict(request.headers)
        standard, svix_ = verifiers(secret)
        assert standard.verify(request.raw_body, headers) == request.json()
        assert svix_.verify(request.raw_body, headers) is None  # svix returns nothing on success
        for verifier in (standard, svix_):  # and both notice a changed byte: the check is real
            with pytest.raises(standardwebhooks.WebhookVerificationError):
                verifier.verify(request.raw_body.replace(b"user-12345", b"user-12346"), headers)
    assert fake.event_names() == ["Signed Up", "Anonymous", "Second Batch"]
    assert tc.tracking_stats()["webhook"].delivered == 4


@pytest.mark.parametrize(("secret", "used_to_sign_with"), REFUSED.values(), ids=REFUSED.keys())
def test_secrets_the_verifiers_cannot_verify_are_refused_saying_how_to_make_one(
    secret: str,
    used_to_sign_with: bytes | None,
    webhook_env: Configure,
    webhook_variables: dict[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    if used_to_sign_with is not None:  # why it must be refused: nothing verifies it
        body = b'{"batch":[]}'
        headers = signed(used_to_sign_with, body)
        for make in (standardwebhooks.Webhook, svix.webhooks.Webhook):
            # WebhookVerificationError, or binascii.Error (a ValueError) reading the secret.
            with pytest.raises((standardwebhooks.WebhookVerificationError, ValueError)):
                make(secret).verify(body, headers)

    caplog.set_level(logging.DEBUG)
    variables = {**webhook_variables, "TRACKING_WEBHOOK_SECRET": secret}
    assert webhook_env(**variables) == []
    lines = [r.getMessage() for r in caplog.records if "TRACKING_WEBHOOK_SECRET" in r.getMessage()]
    assert len(lines) == 1, caplog.text
    assert "whsec_" in lines[0]
    assert "base64.b64encode(os.urandom(32))" in lines[0]  # how to make one
    hidden = secret.removeprefix("whsec_")
    if hidden:
        assert hidden not in caplog.text
    report = {p.name: p for p in tc.discover_tracking_providers()}["webhook"]
    assert report.providers == ()
    assert report.error is not None
    assert "TRACKING_WEBHOOK_SECRET" in report.error

    with pytest.raises(tc.SettingsError, match="whsec_"):
        WebhookSettings.from_environ(variables)
    with pytest.raises(ValueError):
        WebhookFake(secret=secret)  # the fake is as strict as the provider


def test_the_command_in_the_message_makes_a_secret_both_verifiers_read() -> None:
    environ = {
        "TRACKING_WEBHOOK_URL": "https://hooks.example.com/in",
        "TRACKING_WEBHOOK_SECRET": "correct horse battery staple",
    }
    with pytest.raises(tc.SettingsError) as info:
        WebhookSettings.from_environ(environ)
    command = str(info.value).split('python -c "', 1)[1].split('"', 1)[0]
    made = subprocess.run(
        [sys.executable, "-c", command], capture_output=True, text=True, check=True, timeout=60
    ).stdout.strip()
    settings = WebhookSettings.from_environ({**environ, "TRACKING_WEBHOOK_SECRET": made})
    assert settings is not None and settings.key is not None
    assert len(settings.key) == 32
    body = b'{"batch":[]}'
    headers = signed(settings.key, body)
    for verifier in verifiers(made):
        verifier.verify(body, headers)
