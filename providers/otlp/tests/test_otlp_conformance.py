"""OTLP against tracking-core's provider conformance suite, with the strict Collector fake as
server: the variables come from the package (its declaration and its fake's environment)."""

from __future__ import annotations

from collections.abc import Sequence

from tracking_core.conformance import ProviderConformance
from tracking_core.receivers import ReceivedRequest


class TestOtlpConformance(ProviderConformance):
    entry_point = "otlp"

    def count_received(self, requests: Sequence[ReceivedRequest]) -> int:
        """Distinct ``log.record.uid`` values (the event ids) over every request."""
        return len(
            {
                attribute["value"]["stringValue"]
                for request in requests
                for resource in request.json()["resourceLogs"]
                for scope in resource["scopeLogs"]
                for record in scope["logRecords"]
                for attribute in record["attributes"]
                if attribute["key"] == "log.record.uid"
            }
        )
