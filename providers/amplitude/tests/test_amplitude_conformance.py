"""tracking-core's conformance suite, run against the Amplitude plugin and its strict fake.

The suite reads the declared variables (required, secret) from the package, and the enabling
environment and the server from its fake (`tracking_amplitude.fake.destination`).
"""

from __future__ import annotations

from collections.abc import Sequence

from tracking_core.conformance import ProviderConformance
from tracking_core.receivers import ReceivedRequest


class TestAmplitudeConformance(ProviderConformance):
    entry_point = "amplitude"

    def count_received(self, requests: Sequence[ReceivedRequest]) -> int:
        """Unique ``insert_id``s (the events' ids) over every request body: a resent batch
        carries the same ids, so retries are not counted twice."""
        return len(
            {event["insert_id"] for request in requests for event in request.json()["events"]}
        )
