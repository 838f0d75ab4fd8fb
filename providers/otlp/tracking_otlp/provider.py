"""OpenTelemetry logs over OTLP/HTTP JSON: the settings and the wire mapping (``POST
<endpoint>/v1/logs``). Protobuf's JSON mapping is written by hand: no protobuf dependency."""

from __future__ import annotations

import dataclasses
import datetime as _dt
import re
import urllib.parse
from collections.abc import Sequence
from typing import Any

from tracking_core import SettingsError, TrackingEvent, TrackingIdentify, __version__, json_safe
from tracking_core.http import HttpProvider, HttpRequest, HttpResponse, Outcome, WireItem
from tracking_core.http.wire import default_outcome, dumps, join_json
from tracking_core.kit import ProviderSettings, endpoint, url, var

__all__ = ["OtlpProvider", "OtlpSettings", "any_value"]

#: Log records per request: the SDK's default export batch (OTLP sets no maximum).
MAX_RECORDS = 512
#: Bytes per request: under the Collector's default ``max_request_body_size`` (20 MiB).
MAX_REQUEST_BYTES = 20_000_000
#: The OTLP/HTTP status codes that are retried; no other failure is.
RETRYABLE = frozenset({429, 502, 503, 504})
_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # a header name


def _pairs(variable: str, text: str | None, headers: bool = False) -> dict[str, str]:
    """``key=value,...`` as W3C Baggage writes it (percent-decoded); a malformed entry is
    refused without being repeated (a header may be a credential)."""
    found = {}
    for number, entry in enumerate(filter(str.strip, (text or "").split(",")), 1):
        key, equals, value = (urllib.parse.unquote(part).strip() for part in entry.partition("="))
        bad = headers and not (_TOKEN.fullmatch(key) and value.isprintable())
        if not equals or not key or bad:
            raise SettingsError(variable, f"entry {number} is not a valid key=value pair")
        found[key.lower() if headers else key] = value
    return found


@dataclasses.dataclass(frozen=True)
class OtlpSettings(ProviderSettings):
    """Where the log records go, with which headers, and the resource they describe."""

    endpoint: str = var(
        "TRACKING_OTLP_ENDPOINT",
        "enables it: the Collector's base URL (records go to <url>/v1/logs), or `otel`",
        required=True,
        check=lambda variable, text: "otel" if text.lower() == "otel" else url(variable, text),
    )
    headers: str | None = var(
        "TRACKING_OTLP_HEADERS", "headers of every request: name=value,...", secret=True
    )
    logs_endpoint: str | None = var(
        "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "with `otel`: the logs URL, used as is"
    )
    otel_endpoint: str = var(
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "with `otel`, unless the logs one is set: the base URL (v1/logs appended)",
        default="http://localhost:4318",
    )
    logs_headers: str | None = var(
        "OTEL_EXPORTER_OTLP_LOGS_HEADERS", "with `otel`: the headers, name=value,...", secret=True
    )
    otel_headers: str | None = var(
        "OTEL_EXPORTER_OTLP_HEADERS", "with `otel`, unless the logs ones are set", secret=True
    )
    service_name: str | None = var("OTEL_SERVICE_NAME", "the resource's service.name")
    resource_attributes: str | None = var("OTEL_RESOURCE_ATTRIBUTES", "resource attributes")

    def validate(self) -> None:
        for check in (self.logs_url, self.header_map, self.resource):
            check()  # each refuses a malformed value that it uses

    def logs_url(self) -> str:
        """The URL records are posted to (with `otel`, by the OTLP exporter spec's rules)."""
        if self.endpoint != "otel":
            return self.endpoint + "/v1/logs"
        if self.logs_endpoint:
            return endpoint(self.name_of("logs_endpoint"), self.logs_endpoint)
        return url(self.name_of("otel_endpoint"), self.otel_endpoint) + "/v1/logs"

    def header_map(self) -> dict[str, str]:
        """The headers of every request: with `otel` the OpenTelemetry ones, then ours."""
        ours = _pairs(self.name_of("headers"), self.headers, True)
        if self.endpoint != "otel":
            return ours
        field = "logs_headers" if self.logs_headers else "otel_headers"
        return {**_pairs(self.name_of(field), getattr(self, field), True), **ours}

    def resource(self) -> dict[str, str]:
        """The resource's attributes, ``service.name`` set as the SDK sets it."""
        found = _pairs(self.name_of("resource_attributes"), self.resource_attributes)
        service = self.service_name or found.get("service.name") or "unknown_service:python"
        return {**found, "service.name": service}


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
