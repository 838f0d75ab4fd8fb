"""OpenTelemetry logs over OTLP/HTTP JSON: the settings and the wire mapping (``POST
<endpoint>/v1/logs``). Protobuf's JSON mapping is written by hand: no protobuf dependency."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence
from typing import Any

from tracking_core import TrackingEvent, TrackingIdentify, __version__, json_safe
from tracking_core.http import HttpProvider, HttpRequest, HttpResponse, Outcome, WireItem
from tracking_core.http.wire import default_outcome, dumps, join_json

from .settings import OtlpSettings

__all__ = ["OtlpProvider", "OtlpSettings", "any_value"]

#: Log records per request: the SDK's default export batch (OTLP sets no maximum).
MAX_RECORDS = 512
#: Bytes per request: under the Collector's default ``max_request_body_size`` (20 MiB).
MAX_REQUEST_BYTES = 20_000_000
#: The OTLP/HTTP status codes that are retried; no other failure is.
RETRYABLE = frozenset({429, 502, 503, 504})
_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)


def any_value(value: Any) -> dict[str, Any]:
    """A `json_safe` value as an OTLP ``AnyValue`` (protobuf's JSON: int64 as text; past it, a
    string value)."""
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int) and -(2**63) <= value < 2**63:
        return {"intValue": str(value)}
    if isinstance(value, (str, int)):
        return {"stringValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    if isinstance(value, list):
        return {"arrayValue": {"values": [any_value(v) for v in value]} if value else {}}
    if isinstance(value, dict):
        return {"kvlistValue": {"values": _kvs(value, True)} if value else {}}
    return {}  # None: the empty value


def _kvs(values: dict[str, Any], nested: bool = False) -> list[dict[str, Any]]:
    """Key-values: no empty key at the top (OTLP forbids it); nested, its "" is left out."""
    pairs = [({"key": k} if k else {}) | {"value": any_value(v)} for k, v in values.items()]
    return pairs if nested else [pair for pair in pairs if "key" in pair]


class OtlpProvider(HttpProvider):
    """Each event and identify as one log record (the package README has the mapping)."""

    name, max_events, max_request_bytes = "otlp", MAX_RECORDS, MAX_REQUEST_BYTES
    settings: OtlpSettings

    def __init__(self, settings: OtlpSettings) -> None:
        super().__init__(settings)
        self._url, self._headers = settings.logs_url(), settings.header_map()
        resource = dumps({"attributes": _kvs(settings.resource())})
        scope = dumps({"name": "tracking-core", "version": __version__})
        self._head = b'{"resourceLogs":[{"resource":' + resource + b',"scopeLogs":[{"scope":'
        self._head += scope + b',"logRecords":'

    def secrets(self) -> Sequence[str]:
        return (*self.settings.secrets(), *self.settings.header_map().values())

    def encode(self, item: TrackingEvent | TrackingIdentify) -> WireItem:
        ids: dict[str, str | None] = {"user.id": item.user_id}
        if isinstance(item, TrackingIdentify):
            name, values = "identify", item.traits
        else:
            name, values, ids["enduser.pseudo.id"] = item.name, item.properties, item.anonymous_id
        attributes = {**json_safe(values), "event.name": name, "log.record.uid": item.event_id}
        attributes.update((key, value) for key, value in ids.items() if value)
        nanos = max(0, (item.timestamp - _EPOCH) // _dt.timedelta(microseconds=1) * 1000)
        record: dict[str, Any] = {"timeUnixNano": str(nanos), "observedTimeUnixNano": str(nanos)}
        record = record if nanos else {}  # before 1970: unknown (fixed64 has no negative values)
        record.update(severityNumber=9, severityText="INFO", body={"stringValue": name})
        return WireItem({**record, "attributes": _kvs(attributes), "eventName": name})

    def build_request(self, route: str, items: Sequence[bytes], batch_id: str) -> HttpRequest:
        return HttpRequest(self._url, self._head + join_json(items) + b"}]}]}", self._headers, True)

    def read_response(self, route: str, response: HttpResponse) -> Outcome:
        """A partial success's rejected records are dropped (``rejected``), never sent again;
        429, 502, 503 and 504 are retried, 413 splits the batch; no other failure is retried."""
        answer, count = response.json() if response.status == 200 else None, response.count
        partial = answer.get("partialSuccess") if isinstance(answer, dict) else None
        if isinstance(partial, dict):
            message = str(partial.get("errorMessage") or "")[:300]
            text = str(partial.get("rejectedLogRecords", 0))  # an int64: text, or a number
            rejected = min(count, int(text) if text.isdigit() else 0)
            if rejected:
                return Outcome("delivered", message, rejected=range(count - rejected, count))
            if message:
                self.warn("partial", "otlp: the Collector took every record and says: %s", message)
        if 200 <= response.status < 300 or response.status in (413, *RETRYABLE):
            return default_outcome(response)
        return Outcome("reject", f"HTTP {response.status}: {response.text()}")
