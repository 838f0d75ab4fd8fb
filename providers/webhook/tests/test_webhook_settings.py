"""The webhook provider is enabled by its variables, and a malformed one disables it safely."""

from __future__ import annotations

import base64
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from tracking_webhook.fake import WebhookFake

import tracking_core as tc
from tracking_core.receivers import LoopbackReceiver
from tracking_core.testing import reset_tracking

SECRET = "whsec_" + base64.b64encode(b"settings-test-key-0123456789abcd").decode()
AUTH = "Bearer settings-auth-token-9876"


@pytest.fixture
def fake() -> WebhookFake:
    return WebhookFake(secret=SECRET, auth=AUTH, path="/hooks/in")


@pytest.fixture
def receiver(fake: WebhookFake) -> Iterator[LoopbackReceiver]:
    with LoopbackReceiver(fake) as receiver:
        yield receiver


@pytest.fixture
def env(
    monkeypatch: pytest.MonkeyPatch, receiver: LoopbackReceiver, clean_tracking: None
) -> Iterator[pytest.MonkeyPatch]:
    for name in list(os.environ):
        if name.startswith("TRACKING_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("TRACKING_PROVIDERS", "webhook")
    monkeypatch.setenv("TRACKING_FLUSH_INTERVAL", "0.05")
    monkeypatch.setenv("TRACKING_RETRY_BACKOFF", "0.01")
    yield monkeypatch
    reset_tracking()  # while the receiver still runs


def discovered() -> list[str]:
    reset_tracking(discover=True)
    return tc.list_tracking_providers()


def test_webhook_disabled_without_its_url(env: pytest.MonkeyPatch) -> None:
    env.setenv("TRACKING_WEBHOOK_AUTH", AUTH)
    env.setenv("TRACKING_WEBHOOK_SECRET", SECRET)
    assert discovered() == []
    env.setenv("TRACKING_WEBHOOK_URL", "")
    assert discovered() == []


def test_webhook_enabled_by_its_url(
    env: pytest.MonkeyPatch, receiver: LoopbackReceiver, fake: WebhookFake
) -> None:
    env.setenv("TRACKING_WEBHOOK_URL", receiver.url + "/hooks/in")
    env.setenv("TRACKING_WEBHOOK_AUTH", AUTH)
    env.setenv("TRACKING_WEBHOOK_SECRET", SECRET)
    assert discovered() == ["webhook"]
    tc.track("Signed Up", user_id="user-12345")
    assert tc.flush_tracking(10)
    assert fake.event_names() == ["Signed Up"]
    assert fake.refusals == []
    # TRACKING_PROVIDERS without it keeps it off.
    env.setenv("TRACKING_PROVIDERS", "posthog")
    assert discovered() == []


def test_webhook_file_variants(
    env: pytest.MonkeyPatch, receiver: LoopbackReceiver, fake: WebhookFake, tmp_path: Path
) -> None:
    for name, value in [
        ("TRACKING_WEBHOOK_URL", receiver.url + "/hooks/in"),
        ("TRACKING_WEBHOOK_AUTH", AUTH),
        ("TRACKING_WEBHOOK_SECRET", SECRET),
    ]:
        path = tmp_path / name.lower()
        path.write_text(value + "\n", encoding="utf-8")
        env.setenv(f"{name}_FILE", str(path))
    assert discovered() == ["webhook"]
    tc.track("From Files", anonymous_id="anon-9f8e7d6c")
    tc.identify("user-12345", {"plan": "pro"})
    assert tc.flush_tracking(10)
    assert fake.refusals == []  # the Authorization and the signature came from the files
    assert fake.event_names() == ["From Files"]
    assert [m["userId"] for m in fake.identifies] == ["user-12345"]
    assert tc.tracking_stats()["webhook"].delivered == 2


URL_WITH_SECRET = "https://hook-user:url-pass-s3cret@hooks.example.com:99999/path"


@pytest.mark.parametrize(
    ("variables", "named", "hidden"),
    [
        ({"TRACKING_WEBHOOK_URL": "hooks.example.com/in"}, "TRACKING_WEBHOOK_URL", None),
        ({"TRACKING_WEBHOOK_URL": "ftp://hooks.example.com/in"}, "TRACKING_WEBHOOK_URL", None),
        ({"TRACKING_WEBHOOK_URL": "https:///no-host"}, "TRACKING_WEBHOOK_URL", None),
        ({"TRACKING_WEBHOOK_URL": URL_WITH_SECRET}, "TRACKING_WEBHOOK_URL", "url-pass-s3cret"),
        (
            {"TRACKING_WEBHOOK_SECRET": "whsec_not*base64*secret-xyz"},
            "TRACKING_WEBHOOK_SECRET",
            "not*base64*secret-xyz",
        ),
        (
            {"TRACKING_WEBHOOK_AUTH": "Bearer line-one-secret\nX-Evil: 1"},
            "TRACKING_WEBHOOK_AUTH",
            "line-one-secret",
        ),
        (
            {"TRACKING_WEBHOOK_AUTH": "Bearer caf\u00e9-secret-token"},
            "TRACKING_WEBHOOK_AUTH",
            "secret-token",
        ),
        (
            {
                "TRACKING_WEBHOOK_URL": "https://u:url-pw-secret@hooks.example.com/in",
                "TRACKING_WEBHOOK_AUTH": "Bearer both-auth-secret",
            },
            "TRACKING_WEBHOOK_AUTH",
            "both-auth-secret",
        ),
        (
            {"TRACKING_WEBHOOK_AUTH_FILE": "/nonexistent/auth-secret-file"},
            "TRACKING_WEBHOOK_AUTH_FILE",
            None,
        ),
        ({"TRACKING_WEBHOOK_MAX_BATCH_BYTES": "lots"}, "TRACKING_WEBHOOK_MAX_BATCH_BYTES", None),
        ({"TRACKING_WEBHOOK_MAX_EVENTS": "0"}, "TRACKING_WEBHOOK_MAX_EVENTS", None),
    ],
)
def test_webhook_malformed_setting_disables_it_with_one_safe_line(
    env: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    variables: dict[str, str],
    named: str,
    hidden: str | None,
) -> None:
    caplog.set_level(logging.DEBUG)
    env.setenv("TRACKING_WEBHOOK_URL", "https://hooks.example.com/in")
    for name, value in variables.items():
        env.setenv(name, value)
    assert discovered() == []
    lines = [r.getMessage() for r in caplog.records if named in r.getMessage()]
    assert len(lines) == 1, caplog.text
    assert "webhook" in lines[0]
    assert "disabled" in lines[0]
    for name, value in variables.items():
        if "MAX_" not in name:  # the URL and the secrets are never repeated
            assert value not in caplog.text
    if hidden is not None:
        assert hidden not in caplog.text
    report = {p.name: p for p in tc.discover_tracking_providers()}["webhook"]
    assert report.providers == ()
    assert report.error is not None
    assert named in report.error
