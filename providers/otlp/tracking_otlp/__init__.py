"""tracking-otlp: events and identifies as OpenTelemetry log records, sent as OTLP/HTTP JSON to
any OpenTelemetry Collector; on once ``TRACKING_OTLP_ENDPOINT`` is set (see the README)."""

from tracking_core.kit import ProviderPlugin

from .provider import OtlpProvider, OtlpSettings, any_value

__all__ = ["OtlpProvider", "OtlpSettings", "any_value", "plugin"]

plugin = ProviderPlugin(OtlpProvider, OtlpSettings, fake="tracking_otlp.fake:destination")
