"""tracking-posthog: the PostHog provider for tracking-core.

Installed and its project API key set = on. See the package README for the variables, the wire
format and the limits.
"""

from tracking_core.kit import ProviderPlugin

from .provider import PostHogProvider, PostHogSettings

__all__ = ["PostHogProvider", "PostHogSettings", "plugin"]

plugin = ProviderPlugin(PostHogProvider, PostHogSettings, fake="tracking_posthog.fake:destination")
