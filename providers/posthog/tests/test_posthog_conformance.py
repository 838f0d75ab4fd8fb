"""PostHog against tracking-core's provider conformance suite, with the strict fake as server.

The variables come from the package: its declaration says which are required and secret, and its
fake (`tracking_posthog.fake.destination`) says which values enable it against the fake.
"""

from __future__ import annotations

from collections.abc import Sequence

from tracking_core.conformance import ProviderConformance
from tracking_core.receivers import ReceivedRequest


class TestPostHogConformance(ProviderConformance):
    entry_point = "posthog"

    def count_received(self, requests: Sequence[ReceivedRequest]) -> int:
        """Unique ``uuid`` values (the event ids, identifies included) over every request."""
        return len({event["uuid"] for request in requests for event in request.json()["batch"]})
