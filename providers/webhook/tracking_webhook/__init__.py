"""tracking-webhook: the tracking-core provider for any HTTP endpoint.

Installed and its URL set = on. Every batch is POSTed as a Segment HTTP Tracking API batch (so
Segment, RudderStack or Jitsu HTTP sources take it as is), with Standard Webhooks headers, signed
when a signing secret is set. See the package README. Discovery imports only the settings
(`tracking_webhook.settings`); the wire mapping (`tracking_webhook.provider`) is imported once
the webhook is configured, or when `WebhookProvider` is first read from this package.
"""

from tracking_core.kit import ProviderPlugin, lazy_attributes

from .settings import WebhookSettings

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .provider import WebhookProvider

__all__ = ["WebhookProvider", "WebhookSettings", "plugin"]

plugin = ProviderPlugin(
    "tracking_webhook.provider:WebhookProvider",
    WebhookSettings,
    fake="tracking_webhook.fake:destination",
)

__getattr__ = lazy_attributes(__name__, ".provider", "WebhookProvider")
