"""tracking-acme checked by tracking-core's conformance suite, against a loopback server."""

from __future__ import annotations

import json
from collections.abc import Sequence

from tracking_core.conformance import ProviderConformance
from tracking_core.receivers import ReceivedRequest


class TestAcmeConformance(ProviderConformance):
    entry_point = "acme"
    provider_name = "acme"
    secret_variables = ("ACME_API_KEY",)

    def enabling_environment(self, url: str) -> dict[str, str]:
        return {"ACME_API_KEY": "acme-secret-key-123", "ACME_HOST": url}

    def count_received(self, requests: Sequence[ReceivedRequest]) -> int | None:
        ids = {event["id"] for r in requests for event in json.loads(r.body)["events"]}
        return len(ids)
