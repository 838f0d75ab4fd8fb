"""Segment's HTTP Tracking API batch endpoint and RudderStack's data plane, which takes the same
batches: the settings and the wire mappings. Each message is what the vendor's Python SDK sends
for the same call, but for the library's name, the null ids and the write key in the body (see
the package README and tests/test_segment_sdk_parity.py)."""

from __future__ import annotations

import base64
import datetime as _dt
from collections.abc import Sequence
from typing import Any, ClassVar

from tracking_core import DropReason, TrackingEvent, TrackingIdentify, __version__, json_safe
from tracking_core.event import usable_id, uuid5_string
from tracking_core.http import HttpProvider, HttpRequest, HttpResponse, Outcome, SkipItem, WireItem
from tracking_core.http.wire import default_outcome, join_json

from .settings import (  # noqa: F401 - DEFAULT_HOST and EU_HOST were defined here
    DEFAULT_HOST,
    EU_HOST,
    RudderStackSettings,
    SegmentSettings,
)

#: The namespace of the ``anonymousId`` (UUID5 of the event id) of events with neither id.
ANONYMOUS_NAMESPACE = "9a4e6c2b-1f3d-4b8a-a7e5-6d0c2f91b3e8"
LIBRARY = {"name": "tracking-core", "version": __version__}


class SegmentProvider(HttpProvider):
    """Track and identify messages, ``POST {host}/v1/batch`` with the write key as Basic auth;
    500 KB a request, 32 KB a message (larger ones dropped as ``too_large``)."""

    name, max_events, max_request_bytes, max_item_bytes = "segment", 1000, 500_000, 32_000
    #: What the vendor's SDK adds to each message, its timestamps' precision, and whether it
    #: puts an identify's traits in ``context.traits`` rather than ``traits``.
    sdk_fields: ClassVar[dict[str, Any]] = {"integrations": {}}
    timespec: ClassVar[str] = "milliseconds"
    traits_in_context: ClassVar[bool] = False
    settings: SegmentSettings

    def __init__(self, settings: SegmentSettings) -> None:
        super().__init__(settings)
        self._basic = base64.b64encode(f"{settings.write_key}:".encode()).decode()

    def secrets(self) -> Sequence[str]:
        """The write key, and the Basic credentials made from it."""
        return (*super().secrets(), self._basic)

    def encode(self, item: TrackingEvent | TrackingIdentify) -> WireItem:
        context: dict[str, Any] = {"library": LIBRARY}
        stamp = item.timestamp.isoformat(timespec=self.timespec)
        common = {"messageId": item.event_id, "timestamp": stamp, "context": context}
        if isinstance(item, TrackingIdentify):
            if usable_id(item.user_id) is None:
                raise SkipItem(
                    DropReason.REJECTED, "identify() with a blank or placeholder user id"
                )
            traits = {"traits": json_safe(item.traits)}
            (context if self.traits_in_context else common).update(traits)
            return WireItem(
                {"type": "identify", "userId": item.user_id, **common, **self.sdk_fields}
            )
        ids = {"userId": usable_id(item.user_id), "anonymousId": usable_id(item.anonymous_id)}
        if not any(ids.values()):  # a user or an anonymous id is required: one per event
            ids["anonymousId"] = uuid5_string(ANONYMOUS_NAMESPACE, item.event_id)
        track = {"type": "track", "event": item.name, "properties": json_safe(item.properties)}
        ids = {key: value for key, value in ids.items() if value}
        return WireItem({**track, **ids, **common, **self.sdk_fields})

    def build_request(self, route: str, items: Sequence[bytes], batch_id: str) -> HttpRequest:
        """``{"batch": [...], "sentAt": this attempt's time}``, gzipped from 1 KiB."""
        sent_at = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="microseconds")
        body = b'{"batch":' + join_json(items) + b',"sentAt":"' + sent_at.encode() + b'"}'
        auth = {"Authorization": f"Basic {self._basic}"}
        return HttpRequest(f"{self.settings.host}/v1/batch", body, auth, gzip=True)

    def read_response(self, route: str, response: HttpResponse) -> Outcome:
        """2xx delivered; 3xx (not followed), 401 and 403 dropped with what to fix; the rest as
        the core reads it (400 dropped, 413 split, 408/429/5xx retried)."""
        status, declared = response.status, type(self.settings)
        if 300 <= status < 400:
            fix = f"set {declared.variable('host').name} to the final URL"
            return Outcome("reject", f"HTTP {status}: a redirect, not followed; {fix}")
        if status in (401, 403):
            fix = f"check {declared.variable('write_key').name}"
            return Outcome("reject", f"HTTP {status} ({fix}): {response.text()}")
        return default_outcome(response)


class RudderStackProvider(SegmentProvider):
    """RudderStack's data plane: the same batches, as rudder-sdk-python sends them; 4 MB a
    request, 32 KB a message."""

    name, max_request_bytes = "rudderstack", 4_000_000
    sdk_fields: ClassVar[dict[str, Any]] = {"integrations": {"All": True}, "channel": "server"}
    timespec: ClassVar[str] = "auto"
    traits_in_context: ClassVar[bool] = True
    settings: RudderStackSettings
