"""tracking-posthog: the PostHog provider for tracking-core.

Installed and ``POSTHOG_API_KEY`` (or ``POSTHOG_API_KEY_FILE``) set = on. ``POSTHOG_HOST``
overrides the ingestion host (default ``https://us.i.posthog.com``; a path prefix is allowed).
See the package README for the wire format and limits.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from tracking_core import ProviderSetting, hookimpl

from .provider import (
    API_KEY_VARIABLE,
    DEFAULT_HOST,
    HOST_VARIABLE,
    PostHogProvider,
    PostHogSettings,
)

__all__ = ["PostHogProvider", "PostHogSettings"]


@hookimpl
def tracking_register_providers(
    register: Callable[[Any], None], environ: Mapping[str, str]
) -> None:
    """Register the PostHog provider when ``POSTHOG_API_KEY`` (or its ``_FILE``) is set.

    Raises `tracking_core.SettingsError` for a malformed key or ``POSTHOG_HOST``.
    """
    settings = PostHogSettings.from_environ(environ)
    if settings is not None:
        register(PostHogProvider(settings))


@hookimpl
def tracking_provider_settings() -> list[ProviderSetting]:
    """The variables this package reads."""
    return [
        ProviderSetting(
            API_KEY_VARIABLE,
            "PostHog project API key (phc_...); enables PostHog. "
            f"{API_KEY_VARIABLE}_FILE may name a file holding it.",
            required=True,
            secret=True,
        ),
        ProviderSetting(
            HOST_VARIABLE,
            "PostHog ingestion base URL (EU: https://eu.i.posthog.com); "
            "may carry a path prefix for a reverse proxy.",
            default=DEFAULT_HOST,
        ),
    ]
