"""tracking-posthog: the PostHog provider for tracking-core.

Installed and its project API key set = on. See the package README for the variables, the wire
format and the limits. Discovery imports only the settings (`tracking_posthog.settings`); the
wire mapping (`tracking_posthog.provider`) is imported once PostHog is configured, or when
`PostHogProvider` is first read from this package.
"""

from tracking_core.kit import ProviderPlugin, lazy_attributes

from .settings import PostHogSettings

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .provider import PostHogProvider

__all__ = ["PostHogProvider", "PostHogSettings", "plugin"]

plugin = ProviderPlugin(
    "tracking_posthog.provider:PostHogProvider",
    PostHogSettings,
    fake="tracking_posthog.fake:destination",
)

__getattr__ = lazy_attributes(__name__, ".provider", "PostHogProvider")
