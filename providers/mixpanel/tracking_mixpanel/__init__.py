"""tracking-mixpanel: the Mixpanel provider for tracking-core.

Installed and its project token set = on. See the package README for every variable and for what
is sent. The wire mapping is in `tracking_mixpanel.provider`, a strict loopback fake of Mixpanel
in `tracking_mixpanel.fake`.
"""

from tracking_core.kit import ProviderPlugin

from .provider import MixpanelProvider, MixpanelSettings

__all__ = ["MixpanelProvider", "MixpanelSettings", "plugin"]

plugin = ProviderPlugin(
    MixpanelProvider, MixpanelSettings, fake="tracking_mixpanel.fake:destination"
)
