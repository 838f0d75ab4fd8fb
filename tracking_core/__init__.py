"""tracking-core: one `track()` call, every configured analytics backend, never blocking.

The public API is re-exported here; the modules behind it are named for what they do (see
docs/design.md). Importing the package loads only `api` (and `process`, for the SIGTERM
handler); the other public names load their modules when first used.
"""

from ._version import __version__
from .api import (
    aflush_tracking,
    discover_tracking_providers,
    flush_tracking,
    identify,
    list_tracking_providers,
    register_tracking_provider,
    shutdown_tracking,
    submit_event,
    track,
    tracking_context,
    tracking_stats,
    unregister_tracking_provider,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .convert import json_safe
    from .discovery import PluginReport
    from .engine.receipts import DeliveryReceipt
    from .engine.stats import DropReason, ProviderStats
    from .event import TrackingEvent, TrackingIdentify
    from .hookspecs import hookimpl
    from .settings import SettingsError
    from .settings_doc import ProviderSetting
    from .types import TrackingProvider


#: The public names whose modules load on first use: name -> module.
_LAZY = {
    "DeliveryReceipt": "engine.receipts",
    "DropReason": "engine.stats",
    "PluginReport": "discovery",
    "ProviderSetting": "settings_doc",
    "ProviderStats": "engine.stats",
    "SettingsError": "settings",
    "TrackingEvent": "event",
    "TrackingIdentify": "event",
    "TrackingProvider": "types",
    "hookimpl": "hookspecs",
    "json_safe": "convert",
}


__all__ = [
    "DeliveryReceipt",
    "DropReason",
    "PluginReport",
    "ProviderSetting",
    "ProviderStats",
    "SettingsError",
    "TrackingEvent",
    "TrackingIdentify",
    "TrackingProvider",
    "__version__",
    "aflush_tracking",
    "discover_tracking_providers",
    "flush_tracking",
    "hookimpl",
    "identify",
    "json_safe",
    "list_tracking_providers",
    "register_tracking_provider",
    "shutdown_tracking",
    "submit_event",
    "track",
    "tracking_context",
    "tracking_stats",
    "unregister_tracking_provider",
]


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # later lookups are plain attribute reads
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
