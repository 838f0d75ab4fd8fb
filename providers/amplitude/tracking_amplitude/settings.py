"""Amplitude's settings declaration: all that discovery reads while Amplitude is not configured
(the wire mapping, in `tracking_amplitude.provider`, is imported once it is)."""

from __future__ import annotations

import dataclasses

from tracking_core.kit import ProviderSettings, url, var

__all__ = ["DEFAULT_HOST", "AmplitudeSettings"]

#: The US ingestion host (EU: ``https://api.eu.amplitude.com``).
DEFAULT_HOST = "https://api2.amplitude.com"


@dataclasses.dataclass(frozen=True)
class AmplitudeSettings(ProviderSettings):
    """The provider's configuration, read from the environment (the key never in a repr)."""

    api_key: str = var("AMPLITUDE_API_KEY", "project API key", required=True, secret=True)
    host: str = var(
        "AMPLITUDE_HOST",
        "base URL, may carry a proxy path prefix (EU: https://api.eu.amplitude.com)",
        default=DEFAULT_HOST,
        check=url,
    )
