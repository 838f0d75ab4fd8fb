"""Fixtures shared by the webhook provider tests: the strict fake served on 127.0.0.1, the
variables that point the provider at it, and an environment switch built on the core's
`configure_tracking` (the repo's root conftest loads `tracking_core.testing`)."""

from __future__ import annotations

import base64
import os
from collections.abc import Callable, Iterator

import pytest
from tracking_webhook.fake import WebhookFake

import tracking_core as tc
from tracking_core.receivers import LoopbackReceiver
from tracking_core.testing import FAST_DELIVERY, configure_tracking, reset_tracking

SECRET = "whsec_" + base64.b64encode(b"webhook-test-key-0123456789abcdef").decode()
AUTH = "Bearer webhook-auth-token-4242"
PATH = "/v1/batch"


@pytest.fixture
def fake() -> WebhookFake:
    """A strict receiver that requires the test secret, Authorization value and path."""
    return WebhookFake(secret=SECRET, auth=AUTH, path=PATH)


@pytest.fixture
def receiver(fake: WebhookFake) -> Iterator[LoopbackReceiver]:
    """The fake, served on 127.0.0.1."""
    with LoopbackReceiver(fake) as receiver:
        yield receiver


@pytest.fixture
def webhook_variables(receiver: LoopbackReceiver) -> dict[str, str]:
    """The variables that enable the provider and point it at the fake, with its credentials."""
    return {
        "TRACKING_WEBHOOK_URL": receiver.url + PATH,
        "TRACKING_WEBHOOK_AUTH": AUTH,
        "TRACKING_WEBHOOK_SECRET": SECRET,
    }


@pytest.fixture
def webhook_env(
    monkeypatch: pytest.MonkeyPatch, receiver: LoopbackReceiver
) -> Iterator[Callable[..., list[str]]]:
    """``configure(**variables)``: set `variables` (None removes one), reset tracking with
    discovery on, and return the enabled providers.

    Before the test, every ``TRACKING_*`` variable of the outer environment is removed, only
    this provider is allowed (``TRACKING_PROVIDERS=webhook``) and `FAST_DELIVERY` applies.
    Everything is undone after the test, and tracking is reset while the receiver still runs.
    """
    stray = {name: None for name in os.environ if name.startswith("TRACKING_")}
    configure_tracking(
        monkeypatch, {**stray, **FAST_DELIVERY, "TRACKING_PROVIDERS": "webhook"}, discover=False
    )

    def configure(**variables: str | None) -> list[str]:
        configure_tracking(monkeypatch, variables)
        return tc.list_tracking_providers()

    yield configure
    reset_tracking()
