"""tracking-segment: Segment's HTTP Tracking API and RudderStack's data plane for tracking-core.

Two providers, one plugin object and one entry point each (``segment``, ``rudderstack``)."""

from tracking_core.kit import ProviderPlugin

from .provider import RudderStackProvider, RudderStackSettings, SegmentProvider, SegmentSettings

__all__ = [
    "RudderStackProvider",
    "RudderStackSettings",
    "SegmentProvider",
    "SegmentSettings",
    "plugin",
    "rudderstack_plugin",
]

plugin = ProviderPlugin(SegmentProvider, SegmentSettings, fake="tracking_segment.fake:destination")
rudderstack_plugin = ProviderPlugin(
    RudderStackProvider, RudderStackSettings, fake="tracking_segment.fake:rudderstack_destination"
)
