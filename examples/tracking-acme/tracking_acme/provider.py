"""The Acme wire mapping and its settings: all a provider package needs to write."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import ClassVar

from tracking_core import TrackingEvent, TrackingIdentify, json_safe
from tracking_core.http import HttpProvider, HttpRequest, WireItem, join_json
from tracking_core.settings import env_secret, env_url


@dataclasses.dataclass(frozen=True)
class AcmeSettings:
    """What the environment says about Acme."""

    DEFAULT_HOST: ClassVar[str] = "https://api.acme.example"

    api_key: str = dataclasses.field(repr=False)  # never in a repr
    host: str = DEFAULT_HOST

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> AcmeSettings | None:
        """The settings, or None when Acme is not configured."""
        api_key = env_secret(environ, "ACME_API_KEY")
        if api_key is None:
            return None
        host = env_url(environ, "ACME_HOST", cls.DEFAULT_HOST) or cls.DEFAULT_HOST
        return cls(api_key=api_key, host=host)


class AcmeProvider(HttpProvider):
    """Events to ``/v1/events``, identifies to ``/v1/profiles``, 500 per request."""

    name = "acme"
    max_events = 500
    max_request_bytes = 5_000_000
    max_item_bytes = 64_000

    def __init__(self, settings: AcmeSettings) -> None:
        self.settings = settings

    def encode(self, item: TrackingEvent | TrackingIdentify) -> WireItem:
        if isinstance(item, TrackingIdentify):
            payload = {"id": item.event_id, "user": item.user_id, "traits": json_safe(item.traits)}
            return WireItem(payload, route="profiles")
        return WireItem(
            {
                "id": item.event_id,  # Acme's dedupe key: the same on every retry
                "event": item.name,
                "user": item.user_id or item.anonymous_id,
                "time": item.timestamp.isoformat(),
                "properties": json_safe(item.properties),
            },
            route="events",
        )

    def build_request(self, route: str, items: Sequence[bytes], batch_id: str) -> HttpRequest:
        return HttpRequest(
            url=f"{self.settings.host}/v1/{route}",
            body=b'{"events":' + join_json(items) + b"}",
            headers={"Authorization": f"Bearer {self.settings.api_key}"},
            gzip=True,
        )

    def secrets(self) -> Sequence[str]:
        return (self.settings.api_key,)
