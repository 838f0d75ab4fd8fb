"""PostHog's settings declaration: all that discovery reads while PostHog is not configured
(the wire mapping, in `tracking_posthog.provider`, is imported once it is)."""

from __future__ import annotations

import dataclasses

from tracking_core.kit import ProviderSettings, url, var
from tracking_core.settings import SettingsError

__all__ = ["DEFAULT_HOST", "PostHogSettings"]

#: PostHog Cloud US ingestion host.
DEFAULT_HOST = "https://us.i.posthog.com"

# The app hosts are not ingestion hosts; posthog-python rewrites them the same way.
_APP_HOSTS = {
    "https://app.posthog.com": "https://us.i.posthog.com",
    "https://us.posthog.com": "https://us.i.posthog.com",
    "https://eu.posthog.com": "https://eu.i.posthog.com",
}


def _api_key(variable: str, key: str) -> str:
    """`key`, unless PostHog's capture refuses it (``validate_token``); never repeats it."""
    if len(key) > 64:
        problem = "is longer than 64 characters; expected a project API key"
    elif not key.isascii():
        problem = "contains non-ASCII characters; expected the project API key (phc_...)"
    elif "\x00" in key:
        problem = "contains a NUL character"
    elif key.startswith("phx_"):
        problem = "holds a personal API key (phx_...), which capture refuses; use the project "
        problem += "API key (phc_...)"
    else:
        return key
    raise SettingsError(variable, problem)


def _ingestion_host(variable: str, text: str) -> str:
    """A base URL (`tracking_core.kit.url`), with PostHog's app hosts made ingestion hosts."""
    import urllib.parse  # loaded by the URL's check already

    host = url(variable, text)
    parts = urllib.parse.urlsplit(host)
    if parts.path in ("", "/") and not parts.query and parts.port is None:
        return _APP_HOSTS.get(f"{parts.scheme.lower()}://{(parts.hostname or '').lower()}", host)
    return host


@dataclasses.dataclass(frozen=True)
class PostHogSettings(ProviderSettings):
    """The PostHog provider's configuration (the key is hidden from ``repr``)."""

    api_key: str = var(
        "POSTHOG_API_KEY", "project API key (phc_...)", required=True, secret=True, check=_api_key
    )
    host: str = var(
        "POSTHOG_HOST",
        "ingestion base URL (EU: https://eu.i.posthog.com); a path prefix (a proxy) is kept",
        default=DEFAULT_HOST,
        check=_ingestion_host,
    )

    @property
    def batch_url(self) -> str:
        """The URL every batch is posted to."""
        return f"{self.host}/batch/"
