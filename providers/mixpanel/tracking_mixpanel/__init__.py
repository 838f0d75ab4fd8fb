"""tracking-mixpanel: the Mixpanel provider for tracking-core.

Installed and ``MIXPANEL_TOKEN`` set = on. See the package README for every variable and for
what is sent. This module holds only the two plugin hooks; the wire mapping is in
`tracking_mixpanel.provider`, a strict loopback fake of Mixpanel in `tracking_mixpanel.fake`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from tracking_core import ProviderSetting, hookimpl

from .provider import DEFAULT_HOST, ID_MERGE_SIMPLIFIED, MixpanelProvider, MixpanelSettings

__all__ = [
    "MixpanelProvider",
    "MixpanelSettings",
    "tracking_provider_settings",
    "tracking_register_providers",
]


@hookimpl
def tracking_register_providers(
    register: Callable[[Any], None], environ: Mapping[str, str]
) -> None:
    """Register the Mixpanel provider when ``MIXPANEL_TOKEN`` (or ``MIXPANEL_TOKEN_FILE``) is set.

    Raises `tracking_core.SettingsError` for a malformed variable (the core then logs it and
    leaves only this provider disabled).
    """
    settings = MixpanelSettings.from_environ(environ)
    if settings is not None:
        register(MixpanelProvider(settings))


@hookimpl
def tracking_provider_settings() -> list[ProviderSetting]:
    """The variables this package reads."""
    return [
        ProviderSetting(
            "MIXPANEL_TOKEN",
            "Mixpanel project token; enables the provider",
            required=True,
            secret=True,
        ),
        ProviderSetting(
            "MIXPANEL_HOST",
            "ingestion base URL (EU: https://api-eu.mixpanel.com, India: "
            "https://api-in.mixpanel.com); a path prefix is kept",
            default=DEFAULT_HOST,
        ),
        ProviderSetting(
            "MIXPANEL_API_SECRET",
            "project secret: send events to /import?strict=1 with Basic auth instead of /track",
            secret=True,
        ),
        ProviderSetting(
            "MIXPANEL_SERVICE_ACCOUNT_USERNAME",
            "service account user for /import (with the secret and MIXPANEL_PROJECT_ID)",
        ),
        ProviderSetting(
            "MIXPANEL_SERVICE_ACCOUNT_SECRET",
            "service account secret for /import",
            secret=True,
        ),
        ProviderSetting(
            "MIXPANEL_PROJECT_ID",
            "numeric project id, sent with a service account",
        ),
        ProviderSetting(
            "MIXPANEL_ID_MERGE",
            "the project's ID Merge API (Project Settings > Identity Merge): simplified, or "
            "original (anonymous events then use the anonymous id itself as distinct_id, "
            "without $device_id/$user_id)",
            default=ID_MERGE_SIMPLIFIED,
        ),
    ]
