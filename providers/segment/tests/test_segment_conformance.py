"""Both providers of the package against tracking-core's conformance suite, each with its strict
fake as server. One package, two entry points: ``segment`` and ``rudderstack``."""

from __future__ import annotations

from collections.abc import Sequence

from tracking_core.conformance import ProviderConformance
from tracking_core.receivers import ReceivedRequest


def _message_ids(requests: Sequence[ReceivedRequest]) -> int:
    """Unique ``messageId`` values (the event ids, identifies included) over every request."""
    return len(
        {message["messageId"] for request in requests for message in request.json()["batch"]}
    )


class TestSegmentConformance(ProviderConformance):
    entry_point = "segment"

    def count_received(self, requests: Sequence[ReceivedRequest]) -> int:
        return _message_ids(requests)


class TestRudderStackConformance(ProviderConformance):
    entry_point = "rudderstack"

    def count_received(self, requests: Sequence[ReceivedRequest]) -> int:
        return _message_ids(requests)
