"""Fixtures shared by the PostHog tests: the strict fake on 127.0.0.1 and the environment.

The fixtures of `tracking_core.testing` (``tracking_env``, ``clean_tracking``, ...) are loaded by
the repository's root conftest.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from tracking_posthog.fake import PostHogFake

import tracking_core
from tracking_core.receivers import LoopbackReceiver

#: The project API key the tests configure and the fake expects (long enough that a log line
#: holding any part of it is noticed).
KEY = "phc_S3cr3tPostHogKey0123456789abcdefXYZ"

#: What every ``env(...)`` starts from: only this plugin, no PostHog variable and no engine
#: setting from the surrounding environment (None removes a variable).
BASE_ENVIRONMENT: dict[str, str | None] = {
    "POSTHOG_API_KEY": None,
    "POSTHOG_API_KEY_FILE": None,
    "POSTHOG_HOST": None,
    "TRACKING_DISABLED": None,
    "TRACKING_DEBUG": None,
    "TRACKING_BATCH_SIZE": None,
    "TRACKING_MAX_ATTEMPTS": None,
    "TRACKING_PROVIDERS": "posthog",
}


@pytest.fixture
def api_key() -> str:
    """The project API key: `enable` configures it and `fake` expects it."""
    return KEY


@pytest.fixture
def fake(api_key: str) -> PostHogFake:
    """A strict PostHog fake that accepts `api_key` only."""
    return PostHogFake(api_key=api_key)


@pytest.fixture
def server(fake: PostHogFake) -> Iterator[LoopbackReceiver]:
    """The fake, served on 127.0.0.1."""
    with LoopbackReceiver(fake) as receiver:
        yield receiver


@pytest.fixture
def env(tracking_env: Callable[..., None]) -> Callable[..., None]:
    """``env(**variables)``: `BASE_ENVIRONMENT` plus `variables` (None removes one) on top of
    the core's fast delivery settings, then discovery runs again. Each call starts again from
    that base, so a PostHog variable set by an earlier call and not repeated is removed."""

    def configure(**variables: str | None) -> None:
        tracking_env(**{**BASE_ENVIRONMENT, **variables})

    return configure


@pytest.fixture
def enable(env: Callable[..., None], server: LoopbackReceiver, api_key: str) -> Callable[..., None]:
    """``enable(**variables)``: PostHog on against the fake with `api_key`.

    The flush interval is long, so only `flush_tracking` (or a full batch) sends: what a test
    tracks goes out in one request. `variables` override the defaults (``POSTHOG_HOST=...``).
    """

    def apply(**variables: str | None) -> None:
        defaults = {
            "POSTHOG_API_KEY": api_key,
            "POSTHOG_HOST": server.url,
            "TRACKING_FLUSH_INTERVAL": "30",
        }
        env(**{**defaults, **variables})
        assert tracking_core.list_tracking_providers() == ["posthog"]

    return apply
