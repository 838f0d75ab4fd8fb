"""tracking-core: one `track()` call, every configured analytics backend, never blocking.

The public API is re-exported here; the modules behind it are named for what they do:
`api` (the functions), `event` (records and JSON conversion), `registry` (the process-wide
registry), `hookspecs` (the plugin hook), `discovery` (entry points), `engine` (queues, workers,
batching, flush, shutdown, fork), `http` (the batching HTTP sender), `settings` (environment
variables).
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
    track,
    tracking_context,
    tracking_stats,
    unregister_tracking_provider,
)
from .discovery import PluginReport
from .engine import DropReason, ProviderStats
from .event import TrackingEvent, TrackingIdentify, json_safe
from .hookspecs import hookimpl
from .settings import SettingsError
from .settings_doc import ProviderSetting
from .types import TrackingProvider

__all__ = [
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
    "track",
    "tracking_context",
    "tracking_stats",
    "unregister_tracking_provider",
]
