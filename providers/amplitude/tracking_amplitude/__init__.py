"""Amplitude provider for tracking-core (entry point ``amplitude`` in the ``tracking_core`` group).

Enabled by ``AMPLITUDE_API_KEY`` (or ``AMPLITUDE_API_KEY_FILE``); ``AMPLITUDE_HOST`` overrides the
base URL. The wire mapping is in `tracking_amplitude.provider`, the strict test double in
`tracking_amplitude.fake`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from tracking_core import ProviderSetting, hookimpl

__all__ = ["tracking_provider_settings", "tracking_register_providers"]


@hookimpl
def tracking_register_providers(
    register: Callable[[Any], None], environ: Mapping[str, str]
) -> None:
    """Register the Amplitude provider when ``AMPLITUDE_API_KEY`` (or its ``_FILE``) is set."""
    from .provider import AmplitudeProvider, AmplitudeSettings

    settings = AmplitudeSettings.from_environ(environ)
    if settings is not None:
        register(AmplitudeProvider(settings))


@hookimpl
def tracking_provider_settings() -> list[ProviderSetting]:
    """The variables this package reads."""
    return [
        ProviderSetting(
            "AMPLITUDE_API_KEY",
            "Amplitude project API key; enables the provider (or AMPLITUDE_API_KEY_FILE)",
            required=True,
            secret=True,
        ),
        ProviderSetting(
            "AMPLITUDE_HOST",
            "Amplitude base URL, may carry a proxy path prefix (EU: https://api.eu.amplitude.com)",
            default="https://api2.amplitude.com",
        ),
    ]
