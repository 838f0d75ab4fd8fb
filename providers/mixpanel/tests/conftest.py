"""Fixtures for the Mixpanel provider tests: a strict fake on 127.0.0.1 and an env switch."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from tracking_mixpanel.fake import MixpanelFake

from tracking_core.receivers import LoopbackReceiver
from tracking_core.testing import reset_tracking

TOKEN = "tok-3f9a1c2b7d6e4f00"
API_SECRET = "sec-9d8c7b6a5f4e3d21"
SA_USER = "sa-user.1234.mp-service-account"
SA_SECRET = "sasecret-77aa88bb99cc"
PROJECT_ID = "123456"

MIXPANEL_VARIABLES = (
    "MIXPANEL_TOKEN",
    "MIXPANEL_TOKEN_FILE",
    "MIXPANEL_HOST",
    "MIXPANEL_API_SECRET",
    "MIXPANEL_API_SECRET_FILE",
    "MIXPANEL_SERVICE_ACCOUNT_USERNAME",
    "MIXPANEL_SERVICE_ACCOUNT_SECRET",
    "MIXPANEL_SERVICE_ACCOUNT_SECRET_FILE",
    "MIXPANEL_PROJECT_ID",
)

Enable = Callable[..., None]


@pytest.fixture
def fake() -> MixpanelFake:
    """A strict Mixpanel fake that knows the test token, secret and service account."""
    return MixpanelFake(
        token=TOKEN, api_secret=API_SECRET, service_account=(SA_USER, SA_SECRET, PROJECT_ID)
    )


@pytest.fixture
def receiver(fake: MixpanelFake) -> Iterator[LoopbackReceiver]:
    """The fake, served on 127.0.0.1."""
    with fake.serve() as server:
        yield server


@pytest.fixture
def mp_env(monkeypatch: pytest.MonkeyPatch, clean_tracking: None) -> Enable:
    """A function that sets the environment (only the mixpanel plugin allowed, tiny intervals)
    and re-runs discovery. Keyword arguments are extra variables; a None value unsets one."""
    for name in MIXPANEL_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name in ("TRACKING_DISABLED", "TRACKING_BATCH_SIZE", "TRACKING_DEBUG"):
        monkeypatch.delenv(name, raising=False)

    def enable(**variables: str | None) -> None:
        base: dict[str, str | None] = {
            "TRACKING_PROVIDERS": "mixpanel",
            "TRACKING_FLUSH_INTERVAL": "0.05",
            "TRACKING_RETRY_BACKOFF": "0.01",
            "TRACKING_RETRY_BACKOFF_MAX": "0.05",
            "TRACKING_MAX_ATTEMPTS": "5",
        }
        base.update(variables)
        for name, value in base.items():
            if value is None:
                monkeypatch.delenv(name, raising=False)
            else:
                monkeypatch.setenv(name, value)
        reset_tracking(discover=True)

    return enable


@pytest.fixture
def tracked(mp_env: Enable, receiver: LoopbackReceiver) -> LoopbackReceiver:
    """Mixpanel enabled in /track mode against the fake."""
    mp_env(MIXPANEL_TOKEN=TOKEN, MIXPANEL_HOST=receiver.url)
    return receiver
