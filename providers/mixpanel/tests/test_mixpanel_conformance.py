"""tracking-mixpanel checked by tracking-core's conformance suite, against the strict fake.

The suite reads the declared variables (required, secret) from the package, and the enabling
environment and the server from its fake (`tracking_mixpanel.fake.destination`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from tracking_mixpanel.fake import TEST_TOKEN, MixpanelFake

from tracking_core.conformance import ProviderConformance
from tracking_core.receivers import ReceivedRequest

SERVICE_ACCOUNT = ("sa-conformance.1", "sa-secret-conformance-9f8e", "4242")


class TestMixpanelConformance(ProviderConformance):
    entry_point = "mixpanel"

    def count_received(self, requests: Sequence[ReceivedRequest]) -> int | None:
        """Events by their ``$insert_id`` (the dedupe key, the same on every attempt), plus the
        ``/engage`` profile updates, which carry no id: each distinct update counts once."""
        events: set[str] = set()
        updates: set[str] = set()
        for request in requests:
            route = request.path.rstrip("/").rpartition("/")[2]
            for record in request.json():
                if route == "engage":
                    updates.add(json.dumps(record, sort_keys=True))
                else:
                    events.add(record["properties"]["$insert_id"])
        return len(events) + len(updates)


class TestMixpanelImportConformance(TestMixpanelConformance):
    """The same checks with a service account: events go to ``/import`` with Basic auth."""

    def enabling_environment(self, url: str) -> dict[str, str]:
        user, secret, project_id = SERVICE_ACCOUNT
        return {
            **super().enabling_environment(url),
            "MIXPANEL_SERVICE_ACCOUNT_USERNAME": user,
            "MIXPANEL_SERVICE_ACCOUNT_SECRET": secret,
            "MIXPANEL_PROJECT_ID": project_id,
        }

    def responder(self) -> MixpanelFake:
        return MixpanelFake(token=TEST_TOKEN, service_account=SERVICE_ACCOUNT)
