"""The webhook provider is enabled by its variables, and a malformed one disables it safely."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pytest
from tracking_webhook.fake import WebhookFake

import tracking_core as tc

Configure = Callable[..., list[str]]


def test_webhook_disabled_without_its_url(
    webhook_env: Configure, webhook_variables: dict[str, str]
) -> None:
    assert webhook_env(**{**webhook_variables, "TRACKING_WEBHOOK_URL": None}) == []
    assert webhook_env(TRACKING_WEBHOOK_URL="") == []


@pytest.mark.parametrize("from_files", [False, True], ids=["variables", "file-variants"])
def test_webhook_enabled_by_its_variables(
    webhook_env: Configure,
    webhook_variables: dict[str, str],
    fake: WebhookFake,
    tmp_path: Path,
    from_files: bool,
) -> None:
    variables = dict(webhook_variables)
    if from_files:  # <NAME>_FILE: the path of a file holding the value
        variables = {}
        for name, value in webhook_variables.items():
            path = tmp_path / name.lower()
            path.write_text(value + "\n", encoding="utf-8")
            variables[f"{name}_FILE"] = str(path)
    assert webhook_env(**variables) == ["webhook"]
    tc.track("Signed Up", user_id="user-12345")
    tc.track("Anonymous", anonymous_id="anon-9f8e7d6c")
    tc.identify("user-12345", {"plan": "pro"})
    assert tc.flush_tracking(10)
    assert fake.rejections == []  # the Authorization and the signature were right
    assert fake.event_names() == ["Signed Up", "Anonymous"]
    assert [m["userId"] for m in fake.identifies] == ["user-12345"]
    assert tc.tracking_stats()["webhook"].delivered == 3
    # TRACKING_PROVIDERS without it keeps it off.
    assert webhook_env(TRACKING_PROVIDERS="posthog") == []


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
    webhook_env: Configure,
    caplog: pytest.LogCaptureFixture,
    variables: dict[str, str],
    named: str,
    hidden: str | None,
) -> None:
    caplog.set_level(logging.DEBUG)
    assert (
        webhook_env(**{"TRACKING_WEBHOOK_URL": "https://hooks.example.com/in", **variables}) == []
    )
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
