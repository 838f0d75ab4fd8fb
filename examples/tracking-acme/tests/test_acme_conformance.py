"""tracking-acme checked by tracking-core's conformance suite, against a strict fake of Acme."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tracking_core.conformance import ProviderConformance
from tracking_core.fakes import Refused, VendorFake
from tracking_core.receivers import ReceivedRequest, Reply

KEY = "acme-secret-key-123"


class AcmeFake(VendorFake):
    """Acme's rules: the bearer key, ``{"events": [...]}`` bodies, each item's ``id`` its
    dedupe key (a retried batch is not counted twice)."""

    def handle(self, request: ReceivedRequest) -> Reply:
        if request.headers.get("authorization") != f"Bearer {KEY}":
            raise Refused(401, "invalid key")
        if request.path not in ("/v1/events", "/v1/profiles"):
            raise Refused(404, f"no route {request.path}")
        body = self.read_json(request)
        items = body.get("events") if isinstance(body, dict) else None
        if not isinstance(items, list) or not all(
            isinstance(i, dict) and i.get("id") for i in items
        ):
            raise Refused(400, 'expected {"events": [{"id": ...}, ...]}')
        self.record(body, items)
        return Reply(200, {"ok": True})

    def is_identify(self, item: Mapping[str, Any]) -> bool:
        return "traits" in item

    def dedupe_key(self, item: Mapping[str, Any]) -> str:
        return str(item["id"])

    def event_id(self, event: Mapping[str, Any]) -> str:
        return str(event["id"])

    def user_of(self, identify: Mapping[str, Any]) -> str:
        return str(identify["user"])


class TestAcmeConformance(ProviderConformance):
    entry_point = "acme"

    def enabling_environment(self, url: str) -> dict[str, str]:
        return {"ACME_API_KEY": KEY, "ACME_HOST": url}

    def responder(self) -> AcmeFake:
        self.fake = AcmeFake()
        return self.fake

    def count_received(self, requests: Sequence[ReceivedRequest]) -> int:
        return len(self.fake.events) + len(self.fake.identifies)
