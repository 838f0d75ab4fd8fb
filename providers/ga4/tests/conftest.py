"""Fixtures shared by the GA4 tests: the strict fake on 127.0.0.1 and the environment.

The fixtures of `tracking_core.testing` (``tracking_env``, ``clean_tracking``, ...) are loaded by
the repository's root conftest.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from tracking_ga4.fake import GA4Fake

import tracking_core
from tracking_core.receivers import LoopbackReceiver

#: What the tests configure and the fake expects (the secret long enough that a log line
#: holding any part of it is noticed).
MEASUREMENT_ID = "G-T3ST0123AB"
SECRET = "ga4-Secr3t/ApiValue+0123456789xyz"

#: What every ``env(...)`` starts from: only this plugin, no GA4 variable and no engine setting
#: from the surrounding environment (None removes a variable).
BASE_ENVIRONMENT: dict[str, str | None] = {
    "GA4_MEASUREMENT_ID": None,
    "GA4_API_SECRET": None,
    "GA4_API_SECRET_FILE": None,
    "GA4_HOST": None,
    "TRACKING_DISABLED": None,
    "TRACKING_DEBUG": None,
    "TRACKING_BATCH_SIZE": None,
    "TRACKING_MAX_ATTEMPTS": None,
    "TRACKING_PROVIDERS": "ga4",
}


@pytest.fixture
def measurement_id() -> str:
    """The measurement ID `enable` configures and `fake` expects."""
    return MEASUREMENT_ID


@pytest.fixture
def secret() -> str:
    """The API secret `enable` configures and `fake` expects."""
    return SECRET


@pytest.fixture
def fake() -> GA4Fake:
    """A strict GA4 fake expecting `MEASUREMENT_ID` and `SECRET`."""
    return GA4Fake(MEASUREMENT_ID, SECRET)


@pytest.fixture
def server(fake: GA4Fake) -> Iterator[LoopbackReceiver]:
    """The fake, served on 127.0.0.1."""
    with LoopbackReceiver(fake) as receiver:
        yield receiver


@pytest.fixture
def env(tracking_env: Callable[..., None]) -> Callable[..., None]:
    """``env(**variables)``: `BASE_ENVIRONMENT` plus `variables` on top of the core's fast
    delivery settings, then discovery runs again."""

    def configure(**variables: str | None) -> None:
        tracking_env(**{**BASE_ENVIRONMENT, **variables})

    return configure


@pytest.fixture
def enable(env: Callable[..., None], server: LoopbackReceiver) -> Callable[..., None]:
    """``enable(**variables)``: GA4 on against the fake; only `flush_tracking` (or a full batch)
    sends, so what a test tracks goes out together."""

    def apply(**variables: str | None) -> None:
        defaults = {
            "GA4_MEASUREMENT_ID": MEASUREMENT_ID,
            "GA4_API_SECRET": SECRET,
            "GA4_HOST": server.url,
            "TRACKING_FLUSH_INTERVAL": "30",
        }
        env(**{**defaults, **variables})
        assert tracking_core.list_tracking_providers() == ["ga4"]

    return apply
