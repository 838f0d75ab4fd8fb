"""tracking-acme: the hooks through which tracking-core discovers this package."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from tracking_core import ProviderSetting, hookimpl

from .provider import AcmeProvider, AcmeSettings

__all__ = ["AcmeProvider", "AcmeSettings"]


@hookimpl
def tracking_register_providers(
    register: Callable[[Any], None], environ: Mapping[str, str]
) -> None:
    """Enable Acme when ACME_API_KEY (or ACME_API_KEY_FILE) is set."""
    settings = AcmeSettings.from_environ(environ)  # SettingsError on a malformed value
    if settings is not None:
        register(AcmeProvider(settings))


@hookimpl
def tracking_provider_settings() -> list[ProviderSetting]:
    """The variables this package reads, for `tracking providers`."""
    return [
        ProviderSetting("ACME_API_KEY", "enables Acme; sent as a bearer token", True, True),
        ProviderSetting("ACME_HOST", "Acme base URL", default=AcmeSettings.DEFAULT_HOST),
    ]
