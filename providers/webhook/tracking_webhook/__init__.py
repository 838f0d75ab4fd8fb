"""tracking-webhook: the tracking-core provider for any HTTP endpoint.

Installed and ``TRACKING_WEBHOOK_URL`` set = on. Every batch is POSTed as a Segment HTTP Tracking
API batch (so Segment, RudderStack or Jitsu HTTP sources take it as is), with Standard Webhooks
headers, signed when ``TRACKING_WEBHOOK_SECRET`` is set. See the package README.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from tracking_core import ProviderSetting, hookimpl

from .provider import (
    AUTH_VAR,
    DEFAULT_MAX_BATCH_BYTES,
    DEFAULT_MAX_EVENT_BYTES,
    DEFAULT_MAX_EVENTS,
    MAX_BATCH_BYTES_VAR,
    MAX_EVENT_BYTES_VAR,
    MAX_EVENTS_VAR,
    SECRET_VAR,
    URL_VAR,
    WebhookProvider,
    WebhookSettings,
)

__all__ = ["tracking_provider_settings", "tracking_register_providers"]


@hookimpl
def tracking_register_providers(
    register: Callable[[Any], None], environ: Mapping[str, str]
) -> None:
    """Register the webhook provider when ``TRACKING_WEBHOOK_URL`` (or its ``_FILE``) is set.

    Raises `tracking_core.SettingsError` (naming the variable, never its value) for a malformed
    setting; the core then logs it and leaves this provider disabled.
    """
    settings = WebhookSettings.from_environ(environ)
    if settings is not None:
        register(WebhookProvider(settings))


@hookimpl
def tracking_provider_settings() -> list[ProviderSetting]:
    """The variables this package reads."""
    return [
        ProviderSetting(
            URL_VAR,
            "The full URL every batch is POSTed to; enables the provider. It may carry "
            "credentials, so it is masked like a secret.",
            required=True,
            secret=True,
        ),
        ProviderSetting(
            AUTH_VAR,
            "Sent verbatim as the Authorization header (e.g. 'Bearer <token>', or "
            "'Basic <base64 of writeKey:>' for Segment).",
            secret=True,
        ),
        ProviderSetting(
            SECRET_VAR,
            "Standard Webhooks signing secret, 'whsec_<base64>' (the form receivers' "
            "verifiers read with the same text): adds webhook-signature to every request.",
            secret=True,
        ),
        ProviderSetting(
            MAX_EVENTS_VAR,
            "Messages per request (TRACKING_BATCH_SIZE is capped by it).",
            default=str(DEFAULT_MAX_EVENTS),
        ),
        ProviderSetting(
            MAX_BATCH_BYTES_VAR,
            "Bytes per request body (Segment accepts 500 KB).",
            default=str(DEFAULT_MAX_BATCH_BYTES),
        ),
        ProviderSetting(
            MAX_EVENT_BYTES_VAR,
            "Bytes per message; larger events are dropped as too_large (Segment: 32 KB).",
            default=str(DEFAULT_MAX_EVENT_BYTES),
        ),
    ]
