"""The core's conformance suite, run against the webhook provider and its strict fake."""

from __future__ import annotations

import base64
from collections.abc import Sequence

from tracking_webhook.fake import WebhookFake

from tracking_core.conformance import ProviderConformance
from tracking_core.receivers import ReceivedRequest

SECRET = "whsec_" + base64.b64encode(b"conformance-key-0123456789abcdef").decode()
AUTH = "Bearer conformance-auth-token-31337"
PATH = "/v1/batch"


class TestWebhookConformance(ProviderConformance):
    entry_point = "webhook"
    provider_name = "webhook"
    # The URL is declared secret too: webhook URLs often carry a token.
    secret_variables = ("TRACKING_WEBHOOK_URL", "TRACKING_WEBHOOK_AUTH", "TRACKING_WEBHOOK_SECRET")

    def enabling_environment(self, url: str) -> dict[str, str]:
        return {
            "TRACKING_WEBHOOK_URL": url + PATH,
            "TRACKING_WEBHOOK_AUTH": AUTH,
            "TRACKING_WEBHOOK_SECRET": SECRET,
        }

    def responder(self) -> WebhookFake:
        return WebhookFake(secret=SECRET, auth=AUTH, path=PATH)

    def count_received(self, requests: Sequence[ReceivedRequest]) -> int:
        """Unique ``messageId``s (each is an event's or identify's id; retries repeat them)."""
        return len(
            {message["messageId"] for request in requests for message in request.json()["batch"]}
        )
