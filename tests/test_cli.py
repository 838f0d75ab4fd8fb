"""The `tracking` command, run as a subprocess the way users run it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tracking_core.receivers import LoopbackReceiver, Reply

SECRET_KEY = "phc_cli_secret_value_987654"
SECRET_AUTH = "Bearer cli-secret-token-42"


def tracking(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("TRACKING_", "POSTHOG_"))}
    base.update({"TRACKING_RETRY_BACKOFF": "0.01", "TRACKING_MAX_ATTEMPTS": "2"})
    return subprocess.run(
        [sys.executable, "-m", "tracking_core", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**base, **env},
    )


@pytest.fixture
def receiver() -> Iterator[LoopbackReceiver]:
    with LoopbackReceiver() as server:
        yield server


def test_console_script_is_installed() -> None:
    exe = shutil.which("tracking", path=os.path.dirname(sys.executable))
    assert exe, "the `tracking` console script is not installed next to python"
    result = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.startswith("tracking-core ")


def test_providers_lists_installed_packages_and_how_to_enable_them() -> None:
    result = tracking("providers", POSTHOG_API_KEY=SECRET_KEY, TRACKING_WEBHOOK_AUTH=SECRET_AUTH)
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert "posthog  (tracking-posthog 0.1.0)\n  enabled as posthog" in text
    assert "mixpanel  (tracking-mixpanel" in text
    assert "disabled: set MIXPANEL_TOKEN" in text
    assert "disabled: set TRACKING_WEBHOOK_URL" in text
    assert "POSTHOG_API_KEY (required): set (hidden)" in text
    for secret in (SECRET_KEY, SECRET_AUTH, "cli-secret-token-42"):
        assert secret not in text and secret not in result.stderr


def test_providers_json_reports_errors_and_allowlist() -> None:
    result = tracking(
        "providers",
        "--json",
        POSTHOG_API_KEY=SECRET_KEY,
        POSTHOG_HOST="not a url",
        TRACKING_PROVIDERS="posthog,amplitude",
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    plugins = {p["entry_point"]: p for p in data["plugins"]}
    assert plugins["posthog"]["enabled"] is False
    assert "POSTHOG_HOST" in plugins["posthog"]["status"]
    assert plugins["mixpanel"]["status"] == "not loaded: not listed in TRACKING_PROVIDERS"
    assert plugins["amplitude"]["status"].startswith("disabled: set AMPLITUDE_API_KEY")
    assert SECRET_KEY not in result.stdout + result.stderr


def test_send_delivers_and_reports_each_provider(receiver: LoopbackReceiver) -> None:
    result = tracking(
        "send",
        "CLI Check",
        "--prop",
        "plan=pro",
        "--prop",
        "seats=3",
        "--user-id",
        "user-12345",
        TRACKING_PROVIDERS="webhook",
        TRACKING_WEBHOOK_URL=receiver.url + "/in",
        TRACKING_WEBHOOK_AUTH=SECRET_AUTH,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "webhook" in result.stdout and "delivered" in result.stdout and "200" in result.stdout
    (request,) = receiver.requests
    (message,) = request.json()["batch"]
    assert message["event"] == "CLI Check" and message["userId"] == "user-12345"
    assert message["properties"] == {"plan": "pro", "seats": 3}
    assert SECRET_AUTH not in result.stdout + result.stderr


def test_send_exits_non_zero_when_a_provider_fails(receiver: LoopbackReceiver) -> None:
    receiver.responder = lambda request: Reply(500, {"error": "down"})
    result = tracking(
        "send",
        "CLI Check",
        TRACKING_PROVIDERS="webhook",
        TRACKING_WEBHOOK_URL=receiver.url + "/in",
        TRACKING_WEBHOOK_AUTH=SECRET_AUTH,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    line = next(line for line in result.stdout.splitlines() if line.startswith("webhook"))
    assert "dropped" in line and "500" in line and "retries_exhausted" in line
    assert len(receiver.requests) == 2  # TRACKING_MAX_ATTEMPTS=2
    assert SECRET_AUTH not in result.stdout + result.stderr


def test_send_without_any_enabled_provider_says_so() -> None:
    result = tracking("send", "Nothing", TRACKING_PROVIDERS="none")
    assert result.returncode == 2
    assert "No provider is enabled" in result.stdout


def test_demo_delivers_every_event_exactly_once() -> None:
    result = tracking("demo", "--events", "60")
    assert result.returncode == 0, result.stdout + result.stderr
    table = result.stdout
    assert "Every event arrived exactly once at every destination." in table
    for name in ("posthog", "mixpanel", "amplitude", "webhook"):
        row = next(line.split() for line in table.splitlines() if line.startswith(name + " "))
        events, identifies, requests, retries, missing, duplicated = map(int, row[1:])
        assert events == 4 * 60 + 50 * 6
        assert identifies == 4 and missing == 0 and duplicated == 0
        assert retries >= 1  # each destination failed its first request
        assert requests >= 2
    for secret in ("phc_demo_key_0123456789", "demo-webhook-token"):
        assert secret not in result.stdout + result.stderr
