"""tracking-segment: Segment's HTTP Tracking API and RudderStack's data plane for tracking-core.

Two providers, one plugin object and one entry point each (``segment``, ``rudderstack``).
Discovery imports only the settings (`tracking_segment.settings`); the wire mapping
(`tracking_segment.provider`) is imported once one of them is configured, or when a provider
class is first read from this package.
"""

from tracking_core.kit import ProviderPlugin, lazy_attributes

from .settings import RudderStackSettings, SegmentSettings

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .provider import RudderStackProvider, SegmentProvider

__all__ = [
    "RudderStackProvider",
    "RudderStackSettings",
    "SegmentProvider",
    "SegmentSettings",
    "plugin",
    "rudderstack_plugin",
]

plugin = ProviderPlugin(
    "tracking_segment.provider:SegmentProvider",
    SegmentSettings,
    fake="tracking_segment.fake:destination",
)
rudderstack_plugin = ProviderPlugin(
    "tracking_segment.provider:RudderStackProvider",
    RudderStackSettings,
    fake="tracking_segment.fake:rudderstack_destination",
)

__getattr__ = lazy_attributes(__name__, ".provider", "RudderStackProvider", "SegmentProvider")
