"""Fixtures shared by the Amplitude provider tests: the strict fake, served on 127.0.0.1, and the
environment switches that enable the plugin against it exactly as a user would.

The tracking-core pytest plugin (``tracking_env``, ``clean_tracking``...) is loaded by the
repository's root conftest.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from tracking_amplitude.fake import AmplitudeFake

import tracking_core
from tracking_core.testing import LoopbackReceiver

#: The key the fake expects and `enable_amplitude` sets (a module may override `api_key`).
API_KEY = "amp-test-secret-4b1d9e"

Configure = Callable[..., None]


@pytest.fixture
def api_key() -> str:
    """The Amplitude API key of the test."""
    return API_KEY


@pytest.fixture
def fake(api_key: str) -> AmplitudeFake:
    """A strict Amplitude fake that accepts only `api_key`."""
    return AmplitudeFake(api_key=api_key)


@pytest.fixture
def server(fake: AmplitudeFake) -> Iterator[LoopbackReceiver]:
    """The fake, served on 127.0.0.1."""
    with LoopbackReceiver(fake) as receiver:
        yield receiver


@pytest.fixture
def configure(tracking_env: Configure, server: LoopbackReceiver) -> Configure:
    """``configure(**variables)``: only the amplitude plugin allowed, pointed at the fake, on
    `tracking_core.testing.FAST_DELIVERY`, with no key and no stray ``TRACKING_*`` overrides
    unless `variables` say so (None removes one); then the plugins are rediscovered."""

    def apply(**variables: str | None) -> None:
        tracking_env(
            **{
                "TRACKING_PROVIDERS": "amplitude",
                "TRACKING_DISABLED": None,
                "TRACKING_BATCH_SIZE": None,
                "TRACKING_DEBUG": None,
                "TRACKING_MAX_RETRY_TIME": None,
                "AMPLITUDE_API_KEY": None,
                "AMPLITUDE_API_KEY_FILE": None,
                "AMPLITUDE_HOST": server.url,
                **variables,
            }
        )

    return apply


@pytest.fixture
def enable_amplitude(configure: Configure, api_key: str) -> Configure:
    """`configure` with the key set and batches cut only by ``flush_tracking()``; asserts that
    the plugin is on (extra variables override; None removes one)."""

    def apply(**variables: str | None) -> None:
        configure(**{"AMPLITUDE_API_KEY": api_key, "TRACKING_FLUSH_INTERVAL": "5", **variables})
        assert tracking_core.list_tracking_providers() == ["amplitude"]

    return apply
