"""tracking-core's conformance suite, run against the Amplitude plugin and its strict fake."""

from __future__ import annotations

from collections.abc import Sequence

from tracking_amplitude.fake import AmplitudeFake

from tracking_core.conformance import ProviderConformance
from tracking_core.receivers import ReceivedRequest

KEY = "amp-conformance-secret-5e2a91"


class TestAmplitudeConformance(ProviderConformance):
    entry_point = "amplitude"
    provider_name = "amplitude"
    secret_variables = ("AMPLITUDE_API_KEY",)

    def enabling_environment(self, url: str) -> dict[str, str]:
        return {"AMPLITUDE_API_KEY": KEY, "AMPLITUDE_HOST": url}

    def responder(self) -> AmplitudeFake:
        return AmplitudeFake(api_key=KEY)

    def count_received(self, requests: Sequence[ReceivedRequest]) -> int:
        """Unique ``insert_id``s (the events' ids) over every request body: a resent batch
        carries the same ids, so retries are not counted twice."""
        return len(
            {event["insert_id"] for request in requests for event in request.json()["events"]}
        )
