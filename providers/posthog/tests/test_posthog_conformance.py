"""PostHog against tracking-core's provider conformance suite, with the strict fake as server."""

from __future__ import annotations

from collections.abc import Sequence

from tracking_posthog.fake import PostHogFake

from tracking_core.conformance import ProviderConformance
from tracking_core.receivers import ReceivedRequest

CONFORMANCE_KEY = "phc_C0nf0rmanceSecretKey0123456789abc"


class TestPostHogConformance(ProviderConformance):
    entry_point = "posthog"
    provider_name = "posthog"
    secret_variables = ("POSTHOG_API_KEY",)

    def enabling_environment(self, url: str) -> dict[str, str]:
        return {"POSTHOG_API_KEY": CONFORMANCE_KEY, "POSTHOG_HOST": url}

    def responder(self) -> PostHogFake:
        return PostHogFake(api_key=CONFORMANCE_KEY)

    def count_received(self, requests: Sequence[ReceivedRequest]) -> int:
        """Unique ``uuid`` values (the event ids, identifies included) over every request."""
        return len({event["uuid"] for request in requests for event in request.json()["batch"]})
