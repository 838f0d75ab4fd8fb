"""tracking-otlp: events and identifies as OpenTelemetry log records, sent as OTLP/HTTP JSON to
any OpenTelemetry Collector; on once ``TRACKING_OTLP_ENDPOINT`` is set (see the README).

Discovery imports only the settings (`tracking_otlp.settings`); the wire mapping
(`tracking_otlp.provider`) is imported once it is configured, or when `OtlpProvider` or
`any_value` is first read from this package.
"""

from tracking_core.kit import ProviderPlugin, lazy_attributes

from .settings import OtlpSettings

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .provider import OtlpProvider, any_value

__all__ = ["OtlpProvider", "OtlpSettings", "any_value", "plugin"]

plugin = ProviderPlugin(
    "tracking_otlp.provider:OtlpProvider", OtlpSettings, fake="tracking_otlp.fake:destination"
)

__getattr__ = lazy_attributes(__name__, ".provider", "OtlpProvider", "any_value")
