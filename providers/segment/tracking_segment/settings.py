"""The Segment and RudderStack settings declarations: all that discovery reads while neither is
configured (the wire mapping, in `tracking_segment.provider`, is imported once one is)."""

from __future__ import annotations

import dataclasses

from tracking_core.kit import ProviderSettings, url, var

__all__ = ["DEFAULT_HOST", "EU_HOST", "RudderStackSettings", "SegmentSettings"]

DEFAULT_HOST = "https://api.segment.io"
EU_HOST = "https://events.eu1.segmentapis.com"


@dataclasses.dataclass(frozen=True)
class SegmentSettings(ProviderSettings):
    """Segment's configuration (the write key is hidden from ``repr``)."""

    write_key: str = var(
        "SEGMENT_WRITE_KEY", "a source's write key, sent as Basic auth", required=True, secret=True
    )
    host: str = var("SEGMENT_HOST", f"EU workspaces: {EU_HOST}", default=DEFAULT_HOST, check=url)


@dataclasses.dataclass(frozen=True)
class RudderStackSettings(SegmentSettings):
    """RudderStack's configuration: the same fields, from RudderStack's variables."""

    write_key: str = var(
        "RUDDERSTACK_WRITE_KEY",
        "the source's write key, sent as Basic auth",
        required=True,
        secret=True,
    )
    host: str = var("RUDDERSTACK_DATA_PLANE_URL", "the data plane URL", required=True, check=url)
