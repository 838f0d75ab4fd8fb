"""The OTLP provider's settings declaration: all that discovery reads while it is not
configured (the wire mapping, in `tracking_otlp.provider`, is imported once it is)."""

from __future__ import annotations

import dataclasses
import re

from tracking_core.kit import ProviderSettings, endpoint, url, var
from tracking_core.settings import SettingsError

__all__ = ["OtlpSettings"]

_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # a header name


def _pairs(variable: str, text: str | None, headers: bool = False) -> dict[str, str]:
    """``key=value,...`` as W3C Baggage writes it (percent-decoded); a malformed entry is
    refused without being repeated (a header may be a credential)."""
    import urllib.parse  # only once the provider is configured

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
