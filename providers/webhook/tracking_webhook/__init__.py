"""tracking-webhook: the tracking-core provider for any HTTP endpoint.

Installed and its URL set = on. Every batch is POSTed as a Segment HTTP Tracking API batch (so
Segment, RudderStack or Jitsu HTTP sources take it as is), with Standard Webhooks headers, signed
when a signing secret is set. See the package README.
"""

from tracking_core.kit import ProviderPlugin

from .provider import WebhookProvider, WebhookSettings

__all__ = ["WebhookProvider", "WebhookSettings", "plugin"]

plugin = ProviderPlugin(WebhookProvider, WebhookSettings, fake="tracking_webhook.fake:destination")
