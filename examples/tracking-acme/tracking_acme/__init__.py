"""tracking-acme: the settings and wire mapping of the (fictional) Acme Analytics API."""

import dataclasses
from collections.abc import Sequence

from tracking_core import TrackingEvent, TrackingIdentify, json_safe
from tracking_core.http import HttpProvider, HttpRequest, WireItem, join_json
from tracking_core.kit import ProviderPlugin, ProviderSettings, url, var


@dataclasses.dataclass(frozen=True)
class AcmeSettings(ProviderSettings):
    api_key: str = var("ACME_API_KEY", "enables Acme; a bearer token", required=True, secret=True)
    host: str = var("ACME_HOST", "Acme base URL", default="https://api.acme.example", check=url)


class AcmeProvider(HttpProvider):
    """Events to ``/v1/events``, identifies to ``/v1/profiles``, 500 per request."""

    name, max_events, max_request_bytes, max_item_bytes = "acme", 500, 5_000_000, 64_000

    def __init__(self, settings: AcmeSettings) -> None:
        self.settings = settings

    def encode(self, item: TrackingEvent | TrackingIdentify) -> WireItem:
        if isinstance(item, TrackingIdentify):
            payload = {"id": item.event_id, "user": item.user_id, "traits": json_safe(item.traits)}
            return WireItem(payload, route="profiles")
        user, when = item.user_id or item.anonymous_id, item.timestamp.isoformat()
        payload = {"id": item.event_id, "event": item.name, "user": user, "time": when}
        return WireItem({**payload, "properties": json_safe(item.properties)}, route="events")

    def build_request(self, route: str, items: Sequence[bytes], batch_id: str) -> HttpRequest:
        body, auth = b'{"events":' + join_json(items) + b"}", f"Bearer {self.settings.api_key}"
        return HttpRequest(f"{self.settings.host}/v1/{route}", body, {"Authorization": auth}, True)


plugin = ProviderPlugin(AcmeProvider, AcmeSettings)
