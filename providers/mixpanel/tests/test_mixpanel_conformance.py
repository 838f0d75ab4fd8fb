"""tracking-mixpanel checked by tracking-core's conformance suite, against the strict fake."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import ClassVar

import pytest
from tracking_mixpanel.fake import MixpanelFake

from tracking_core.conformance import ProviderConformance
from tracking_core.receivers import ReceivedRequest

TOKEN = "tok-conformance-5e1d2c3b4a"
SERVICE_ACCOUNT = ("sa-conformance.1", "sa-secret-conformance-9f8e", "4242")


class TestMixpanelConformance(ProviderConformance):
    entry_point = "mixpanel"
    provider_name = "mixpanel"
    secret_variables: ClassVar[Sequence[str]] = ("MIXPANEL_TOKEN",)

    @pytest.fixture(autouse=True)
    def _outer_environment_cleared(self, mp_env: Callable[..., None]) -> None:
        """The suite sets only `enabling_environment`: unset the other Mixpanel and engine
        variables first (the conftest's `mp_env` does), so that an exported
        ``MIXPANEL_API_SECRET``, say, cannot switch the provider to ``/import``."""

    def enabling_environment(self, url: str) -> dict[str, str]:
        return {"MIXPANEL_TOKEN": TOKEN, "MIXPANEL_HOST": url}

    def responder(self) -> MixpanelFake:
        return MixpanelFake(token=TOKEN)

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

    secret_variables = ("MIXPANEL_TOKEN", "MIXPANEL_SERVICE_ACCOUNT_SECRET")

    def enabling_environment(self, url: str) -> dict[str, str]:
        user, secret, project_id = SERVICE_ACCOUNT
        return {
            **super().enabling_environment(url),
            "MIXPANEL_SERVICE_ACCOUNT_USERNAME": user,
            "MIXPANEL_SERVICE_ACCOUNT_SECRET": secret,
            "MIXPANEL_PROJECT_ID": project_id,
        }

    def responder(self) -> MixpanelFake:
        return MixpanelFake(token=TOKEN, service_account=SERVICE_ACCOUNT)
