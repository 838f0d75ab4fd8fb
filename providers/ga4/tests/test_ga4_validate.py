"""``tracking send --validate``: the event goes to GA4's validation endpoint (which records
nothing) and its messages are printed; a provider without one is sent nothing. Run as a
subprocess, the way users run it, against the fake on 127.0.0.1."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
from tracking_ga4.fake import GA4Fake

from tracking_core.receivers import LoopbackReceiver, Reply

WEBHOOK_TOKEN = "Bearer validate-webhook-token-77"


@pytest.fixture
def webhook() -> Iterator[LoopbackReceiver]:
    with LoopbackReceiver() as receiver:
        yield receiver


@pytest.fixture
def ga4(server: LoopbackReceiver, measurement_id: str, secret: str) -> dict[str, str]:
    """The variables that enable GA4 against the fake."""
    return {"GA4_MEASUREMENT_ID": measurement_id, "GA4_API_SECRET": secret, "GA4_HOST": server.url}


def tracking(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``python -m tracking_core ARGS`` with no tracking variable but `env`'s (quick retries)."""
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("TRACKING_", "GA4_"))}
    command = [sys.executable, "-m", "tracking_core", *args]
    environment = {**keep, "TRACKING_RETRY_BACKOFF": "0.01", "TRACKING_MAX_ATTEMPTS": "2", **env}
    return subprocess.run(command, capture_output=True, text=True, timeout=120, env=environment)


def test_validate_sends_to_the_validation_endpoint_only(
    server: LoopbackReceiver, fake: GA4Fake, ga4: dict[str, str], secret: str
) -> None:
    result = tracking(
        "send",
        "Signed Up",
        "--prop",
        "plan=pro",
        "--user-id",
        "user-1",
        "--validate",
        TRACKING_PROVIDERS="ga4",
        **ga4,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ga4 validation: no message" in result.stdout
    # What the mapping changed before sending is said too: GA4 names have no spaces.
    assert "name_rewritten 1" in result.stdout
    (request,) = server.requests
    assert request.path == "/debug/mp/collect"
    body = request.json()
    assert body["validation_behavior"] == "ENFORCE_RECOMMENDATIONS"
    assert [event["name"] for event in body["events"]] == ["Signed_Up"]
    assert body["events"][0]["params"]["plan"] == "pro"
    assert fake.events == [] and fake.identifies == []
    assert secret not in result.stdout + result.stderr


def test_validate_prints_the_messages_and_exits_1(
    server: LoopbackReceiver, fake: GA4Fake, ga4: dict[str, str]
) -> None:
    message = {
        "fieldPath": "events.params.currency",
        "description": "Currency is required with value.",
        "validationCode": "VALUE_REQUIRED",
    }
    fake.fail_next(Reply(200, {"validationMessages": [message]}))
    result = tracking("send", "purchase", "--validate", TRACKING_PROVIDERS="ga4", **ga4)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "ga4 validation: 1 validation message(s)" in result.stdout
    line = "VALUE_REQUIRED (events.params.currency): Currency is required with value."
    assert f"  {line}\n" in result.stdout
    assert fake.events == []


def test_validate_sends_nothing_to_a_provider_without_validation(
    server: LoopbackReceiver, fake: GA4Fake, webhook: LoopbackReceiver, ga4: dict[str, str]
) -> None:
    hook = {"TRACKING_WEBHOOK_URL": f"{webhook.url}/hook", "TRACKING_WEBHOOK_AUTH": WEBHOOK_TOKEN}
    result = tracking(
        "send", "checked", "--validate", TRACKING_PROVIDERS="ga4,webhook", **ga4, **hook
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "webhook: its vendor has no validation endpoint; nothing is sent to it" in result.stdout
    assert webhook.requests == []
    assert [request.path for request in server.requests] == ["/debug/mp/collect"]

    alone = tracking("send", "checked", "--validate", TRACKING_PROVIDERS="webhook", **hook)
    assert alone.returncode == 2, alone.stdout + alone.stderr
    assert "None of the enabled providers can validate" in alone.stdout
    assert webhook.requests == []
    assert WEBHOOK_TOKEN not in result.stdout + result.stderr + alone.stdout + alone.stderr


def test_without_validate_the_event_is_collected(
    server: LoopbackReceiver, fake: GA4Fake, ga4: dict[str, str]
) -> None:
    result = tracking("send", "collected", "--user-id", "u-1", TRACKING_PROVIDERS="ga4", **ga4)
    assert result.returncode == 0, result.stdout + result.stderr
    assert [request.path for request in server.requests] == ["/mp/collect"]
    assert [event["name"] for event in fake.events] == ["collected"]
