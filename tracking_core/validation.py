"""``tracking send --validate``: the event goes to the providers' validation endpoints instead.

A provider offers validation by overriding `HttpProvider.validation_request` and
`HttpProvider.read_validation` (GA4's Measurement Protocol has ``/debug/mp/collect``, which
checks a request and records nothing). `start` puts a `Validating` copy of each such registered
provider in its place and unregisters the others, so that nothing is recorded anywhere; the
event then goes through the usual delivery (the same encoding, limits, masking and retries),
and `report` prints what each vendor found.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TextIO

from . import api
from ._log import mask, secret_forms
from .event import TrackingEvent, TrackingIdentify
from .http.wire import HttpProvider, HttpRequest, HttpResponse, Limits, Outcome, WireItem
from .registry import runtime

__all__ = ["Validating", "can_validate", "report", "start"]


class Validating(HttpProvider):
    """`inner`'s wire mapping with its requests sent to its validation endpoint. What the vendor
    reports is added to `messages`; an answered check counts as delivered (nothing recorded)."""

    def __init__(self, inner: HttpProvider) -> None:
        super().__init__(inner.settings)
        self.inner = inner
        self.name = inner.name
        self.messages: list[str] = []

    def encode(self, item: TrackingEvent | TrackingIdentify) -> WireItem:
        return self.inner.encode(item)

    def limits(self, route: str) -> Limits:
        return self.inner.limits(route)

    def batch_limit(self) -> int:
        return self.inner.batch_limit()

    def secrets(self) -> Sequence[str]:
        return self.inner.secrets()

    def build_request(self, route: str, items: Sequence[bytes], batch_id: str) -> HttpRequest:
        request = self.inner.validation_request(route, items, batch_id)
        if request is None:
            raise TypeError(f"{self.name} gave no validation request")
        return request

    def read_response(self, route: str, response: HttpResponse) -> Outcome:
        if not 200 <= response.status < 300:
            return self.inner.read_response(route, response)
        self.messages += self.inner.read_validation(route, response)
        return Outcome("delivered")


def can_validate(provider: object) -> bool:
    """Whether `provider` is an `HttpProvider` whose class overrides `validation_request`."""
    return (
        isinstance(provider, HttpProvider)
        and type(provider).validation_request is not HttpProvider.validation_request
    )


def start(names: Sequence[str], out: TextIO) -> list[str]:
    """Put a `Validating` copy in place of each of the registered providers `names` that can
    validate and unregister the others (saying so on `out`); returns the validating ones."""
    providers = {lane.name: lane.provider for lane in runtime().engine.lanes}
    checking = []
    for name in names:
        provider = providers.get(name)
        if isinstance(provider, HttpProvider) and can_validate(provider):
            api.register_tracking_provider(Validating(provider))
            checking.append(name)
        else:
            api.unregister_tracking_provider(name)
            out.write(f"{name}: its vendor has no validation endpoint; nothing is sent to it\n")
    if not checking:
        out.write("None of the enabled providers can validate (GA4 can, for one).\n")
    return checking


def report(out: TextIO) -> bool:
    """Print what each validating provider's vendor reported; True when any reported something."""
    found = False
    stats = api.tracking_stats()
    for lane in runtime().engine.lanes:
        provider = lane.provider
        if isinstance(provider, Validating):
            messages = list(provider.messages)
            found = found or bool(messages)
            verdict = f"{len(messages)} validation message(s)" if messages else "no message"
            out.write(f"{provider.name} validation: {verdict}\n")
            forms = secret_forms(provider.secrets())
            out.writelines(f"  {mask(message, forms)}\n" for message in messages)
            converted = sorted(stats[provider.name].conversions.items())
            if converted:  # what the wire mapping changed to fit the vendor's rules
                changes = ", ".join(f"{kind} {count}" for kind, count in converted)
                out.write(f"  sent other than given: {changes}\n")
    return found
