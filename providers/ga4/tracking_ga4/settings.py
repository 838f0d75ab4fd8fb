"""GA4's settings declaration: all that discovery reads while GA4 is not configured (the
wire mapping, in `tracking_ga4.provider`, is imported once it is)."""

from __future__ import annotations

import dataclasses
import re

from tracking_core.kit import ProviderSettings, url, var
from tracking_core.settings import SettingsError

__all__ = ["DEFAULT_HOST", "GA4Settings"]

DEFAULT_HOST = "https://www.google-analytics.com"


def _stream(variable: str, text: str) -> str:
    if not re.fullmatch(r"G-[A-Za-z0-9]+", text):
        raise SettingsError(variable, "expected a web data stream's measurement ID, G-XXXXXXXXXX")
    return text


@dataclasses.dataclass(frozen=True)
class GA4Settings(ProviderSettings):
    """The GA4 provider's configuration (the API secret is hidden from ``repr``)."""

    measurement_id: str = var(
        "GA4_MEASUREMENT_ID", "a web stream's measurement ID, G-...", required=True, check=_stream
    )
    api_secret: str = var(
        "GA4_API_SECRET", "a Measurement Protocol API secret", required=True, secret=True
    )
    host: str = var(
        "GA4_HOST", "EU: https://region1.google-analytics.com", default=DEFAULT_HOST, check=url
    )
