"""tracking-ga4: Google Analytics 4 for tracking-core, through the Measurement Protocol.

Discovery imports only the settings (`tracking_ga4.settings`); the wire mapping
(`tracking_ga4.provider`) is imported once GA4 is configured, or when `GA4Provider` is first read
from this package.
"""

from tracking_core.kit import ProviderPlugin, lazy_attributes

from .settings import GA4Settings

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .provider import GA4Provider

__all__ = ["GA4Provider", "GA4Settings", "plugin"]

plugin = ProviderPlugin(
    "tracking_ga4.provider:GA4Provider", GA4Settings, fake="tracking_ga4.fake:destination"
)

__getattr__ = lazy_attributes(__name__, ".provider", "GA4Provider")
