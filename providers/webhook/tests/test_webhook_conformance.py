"""The core's conformance suite, run against the webhook provider and its strict fake.

The suite reads the declared variables from the package (the URL is declared secret too: webhook
URLs often carry a token), and the enabling environment and the server from its fake
(`tracking_webhook.fake.destination`).
"""

from __future__ import annotations

from collections.abc import Sequence

from tracking_core.conformance import ProviderConformance
from tracking_core.receivers import ReceivedRequest


class TestWebhookConformance(ProviderConformance):
    entry_point = "webhook"

    def count_received(self, requests: Sequence[ReceivedRequest]) -> int:
        """Unique ``messageId``s (each is an event's or identify's id; retries repeat them)."""
        return len(
            {message["messageId"] for request in requests for message in request.json()["batch"]}
        )
