"""tracking-ga4: Google Analytics 4 for tracking-core, through the Measurement Protocol."""

from tracking_core.kit import ProviderPlugin

from .provider import GA4Provider, GA4Settings

__all__ = ["GA4Provider", "GA4Settings", "plugin"]

plugin = ProviderPlugin(GA4Provider, GA4Settings, fake="tracking_ga4.fake:destination")
