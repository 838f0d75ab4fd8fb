"""Fixtures for the Mixpanel provider tests: a strict fake on 127.0.0.1 and an env switch.

The generic fixtures (``clean_tracking``, ``tracking_env``...) come from
`tracking_core.testing`, which the repository's root conftest loads.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from tracking_mixpanel.fake import MixpanelFake

from tracking_core.receivers import LoopbackReceiver, ReceivedRequest
from tracking_core.testing import configure_tracking

TOKEN = "tok-3f9a1c2b7d6e4f00"
API_SECRET = "sec-9d8c7b6a5f4e3d21"
SA_USER = "sa-user.1234.mp-service-account"
SA_SECRET = "sasecret-77aa88bb99cc"
PROJECT_ID = "123456"

#: Unset before each test, so that nothing from the outer environment leaks in.
UNSET_VARIABLES = (
    "MIXPANEL_TOKEN",
    "MIXPANEL_TOKEN_FILE",
    "MIXPANEL_HOST",
    "MIXPANEL_API_SECRET",
    "MIXPANEL_API_SECRET_FILE",
    "MIXPANEL_SERVICE_ACCOUNT_USERNAME",
    "MIXPANEL_SERVICE_ACCOUNT_SECRET",
    "MIXPANEL_SERVICE_ACCOUNT_SECRET_FILE",
    "MIXPANEL_PROJECT_ID",
    "MIXPANEL_ID_MERGE",
    "TRACKING_DISABLED",
    "TRACKING_BATCH_SIZE",
    "TRACKING_DEBUG",
)

#: What every `mp_env` call sets on top of `tracking_core.testing.FAST_DELIVERY`.
MIXPANEL_ONLY = {"TRACKING_PROVIDERS": "mixpanel", "TRACKING_MAX_ATTEMPTS": "5"}

Enable = Callable[..., None]
RequestsTo = Callable[[str], list[ReceivedRequest]]


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
def requests_to(receiver: LoopbackReceiver) -> RequestsTo:
    """``requests_to(route)``: the requests the fake got on ``/track``, ``/engage`` or
    ``/import`` (under any path prefix), in order."""

    def requests(route: str) -> list[ReceivedRequest]:
        return [r for r in receiver.requests if r.path.rstrip("/").endswith("/" + route)]

    return requests


@pytest.fixture
def mp_env(monkeypatch: pytest.MonkeyPatch, tracking_env: Enable) -> Enable:
    """``enable(**variables)``: only the mixpanel plugin allowed, 5 attempts, `FAST_DELIVERY`,
    plus `variables` (None unsets one), then discovery runs again. Every call keeps what the
    previous ones set; the Mixpanel and engine variables that change behaviour start unset."""
    configure_tracking(monkeypatch, dict.fromkeys(UNSET_VARIABLES), discover=False)

    def enable(**variables: str | None) -> None:
        tracking_env(**{**MIXPANEL_ONLY, **variables})

    return enable


@pytest.fixture
def enable_at_fake(mp_env: Enable, fake: MixpanelFake, receiver: LoopbackReceiver) -> Enable:
    """``enable_at_fake(**extra)``: `mp_env` with the fake's token and the served fake as the
    host; `extra` variables are set too (and win)."""

    def enable(**extra: str | None) -> None:
        mp_env(**{"MIXPANEL_TOKEN": fake.token, "MIXPANEL_HOST": receiver.url, **extra})

    return enable


@pytest.fixture
def tracked(enable_at_fake: Enable, receiver: LoopbackReceiver) -> LoopbackReceiver:
    """Mixpanel enabled in /track mode against the fake."""
    enable_at_fake()
    return receiver


@pytest.fixture
def enable_import(enable_at_fake: Enable, fake: MixpanelFake) -> Enable:
    """``enable_import(**extra)``: like `enable_at_fake`, in /import mode with the fake's service
    account."""
    assert fake.service_account is not None
    user, secret, project_id = fake.service_account

    def enable(**extra: str | None) -> None:
        enable_at_fake(
            **{
                "MIXPANEL_SERVICE_ACCOUNT_USERNAME": user,
                "MIXPANEL_SERVICE_ACCOUNT_SECRET": secret,
                "MIXPANEL_PROJECT_ID": project_id,
                **extra,
            }
        )

    return enable
