"""GA4 against tracking-core's provider conformance suite, with the strict fake as server.

The variables come from the package: its declaration says which are required and secret, and its
fake (`tracking_ga4.fake.destination`) says which values enable it against the fake.
"""

from __future__ import annotations

from collections.abc import Sequence

from tracking_ga4.provider import EVENT_ID_PARAM

from tracking_core.conformance import ProviderConformance
from tracking_core.receivers import ReceivedRequest


class TestGA4Conformance(ProviderConformance):
    entry_point = "ga4"

    def count_received(self, requests: Sequence[ReceivedRequest]) -> int:
        """Unique event ids (identifies included) over every request to ``/mp/collect``."""
        return len(
            {
                event["params"][EVENT_ID_PARAM]
                for request in requests
                if request.path == "/mp/collect"
                for event in request.json()["events"]
            }
        )
