"""Amplitude provider for tracking-core (entry point ``amplitude`` in the ``tracking_core`` group).

Installed and its API key set = on. The settings are in `tracking_amplitude.settings` (all that
discovery imports while Amplitude is not configured), the wire mapping in
`tracking_amplitude.provider` (imported once it is, or when `AmplitudeProvider` is first read
from this package), the strict test double in `tracking_amplitude.fake`.
"""

from tracking_core.kit import ProviderPlugin, lazy_attributes

from .settings import AmplitudeSettings

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .provider import AmplitudeProvider

__all__ = ["AmplitudeProvider", "AmplitudeSettings", "plugin"]

plugin = ProviderPlugin(
    "tracking_amplitude.provider:AmplitudeProvider",
    AmplitudeSettings,
    fake="tracking_amplitude.fake:destination",
)

__getattr__ = lazy_attributes(__name__, ".provider", "AmplitudeProvider")
