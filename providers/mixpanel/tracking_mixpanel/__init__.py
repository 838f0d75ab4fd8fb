"""tracking-mixpanel: the Mixpanel provider for tracking-core.

Installed and its project token set = on. See the package README for every variable and for what
is sent. The settings are in `tracking_mixpanel.settings` (all that discovery imports while
Mixpanel is not configured), the wire mapping in `tracking_mixpanel.provider` (imported once it
is, or when `MixpanelProvider` is first read from this package), a strict loopback fake of
Mixpanel in `tracking_mixpanel.fake`.
"""

from tracking_core.kit import ProviderPlugin, lazy_attributes

from .settings import MixpanelSettings

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .provider import MixpanelProvider

__all__ = ["MixpanelProvider", "MixpanelSettings", "plugin"]

plugin = ProviderPlugin(
    "tracking_mixpanel.provider:MixpanelProvider",
    MixpanelSettings,
    fake="tracking_mixpanel.fake:destination",
)

__getattr__ = lazy_attributes(__name__, ".provider", "MixpanelProvider")
