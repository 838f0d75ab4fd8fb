"""tracking-jsonl: one JSON line per event or identify, to a file (rotated by size) or stdout;
on once ``TRACKING_JSONL_PATH`` is set. The package README has the variables and the format.

Discovery imports only the settings (`tracking_jsonl.settings`); the provider
(`tracking_jsonl.provider`) is imported once it is configured, or when `JsonlProvider` or
`encode` is first read from this package.
"""

from tracking_core.kit import ProviderPlugin, lazy_attributes

from .settings import JsonlSettings

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .provider import JsonlProvider, encode

__all__ = ["JsonlProvider", "JsonlSettings", "encode", "plugin"]

plugin = ProviderPlugin(
    "tracking_jsonl.provider:JsonlProvider", JsonlSettings, fake="tracking_jsonl.fake:destination"
)

__getattr__ = lazy_attributes(__name__, ".provider", "JsonlProvider", "encode")
