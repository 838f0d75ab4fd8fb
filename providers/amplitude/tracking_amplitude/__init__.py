"""Amplitude provider for tracking-core (entry point ``amplitude`` in the ``tracking_core`` group).

Installed and its API key set = on. The wire mapping is in `tracking_amplitude.provider`, the
strict test double in `tracking_amplitude.fake`.
"""

from tracking_core.kit import ProviderPlugin

from .provider import AmplitudeProvider, AmplitudeSettings

__all__ = ["AmplitudeProvider", "AmplitudeSettings", "plugin"]

plugin = ProviderPlugin(
    AmplitudeProvider, AmplitudeSettings, fake="tracking_amplitude.fake:destination"
)
