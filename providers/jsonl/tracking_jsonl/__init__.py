"""tracking-jsonl: one JSON line per event or identify, to a file (rotated by size) or stdout;
on once ``TRACKING_JSONL_PATH`` is set. The package README has the variables and the format."""

from tracking_core.kit import ProviderPlugin

from .provider import JsonlProvider, JsonlSettings, encode

__all__ = ["JsonlProvider", "JsonlSettings", "encode", "plugin"]

plugin = ProviderPlugin(JsonlProvider, JsonlSettings, fake="tracking_jsonl.fake:destination")
