"""tracking-redis: producers append every event to a Redis stream; ``tracking relay`` delivers
the stream to the providers enabled where the relays run.

Installed and ``TRACKING_REDIS_URL`` set = on (except inside a relay, which never feeds the
stream it reads). See docs/deployment.md for the whole picture. Discovery imports only the
settings (`tracking_redis.settings`); the stream provider (`tracking_redis.provider`) is imported
once ``TRACKING_REDIS_URL`` is set, or when `RedisStreamProvider` is first read from this
package.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from tracking_core import ProviderSetting, hookimpl
from tracking_core.kit import ProviderPlugin, lazy_attributes

from .settings import RELAYING, RedisSettings, RelaySettings

if TYPE_CHECKING:
    from .provider import RedisStreamProvider

__all__ = ["RedisPlugin", "RedisSettings", "RedisStreamProvider", "RelaySettings", "plugin"]


class RedisPlugin(ProviderPlugin[RedisSettings]):
    """`ProviderPlugin` for the stream, which a relay's process never enables, and which
    describes the relay's variables too (``tracking providers`` lists them)."""

    @hookimpl
    def tracking_register_providers(
        self, register: Callable[[Any], None], environ: Mapping[str, str]
    ) -> None:
        """Register the stream provider when ``TRACKING_REDIS_URL`` is set, but in a relay."""
        if not RELAYING.is_set():
            super().tracking_register_providers(register, environ)

    @hookimpl
    def tracking_provider_settings(self) -> list[ProviderSetting]:
        """The producer's and the relay's variables."""
        return RelaySettings.describe()


plugin = RedisPlugin("tracking_redis.provider:RedisStreamProvider", RedisSettings)

__getattr__ = lazy_attributes(__name__, ".provider", "RedisStreamProvider")
