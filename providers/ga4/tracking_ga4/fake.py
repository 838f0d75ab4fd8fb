"""A strict loopback fake of GA4's Measurement Protocol: a `VendorFake`.

``POST /debug/mp/collect`` is GA4's validation server: it answers 200 with
``{"validationMessages": [{"fieldPath", "description", "validationCode"}, ...]}`` and records
nothing. ``POST /mp/collect`` collects: GA4 answers 2xx to everything and silently discards what
breaks its rules (a wrong measurement ID or API secret, a name or value over its limits, a
reserved name, a timestamp more than 72 hours back...). The fake answers 204 and records what is
valid; what is not, it refuses with 400 (``strict``, the default: a sender's bug must show) or,
like GA4, answers 204 and keeps in `discarded`. Accepted events are recorded with the request's
``client_id``, ``user_id`` and ``user_properties``; an ``identify`` event is an identify.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Mapping
from typing import Any

from tracking_core.fakes import FakeDestination, Refused, VendorFake
from tracking_core.receivers import ReceivedRequest, Reply

from .provider import (
    EVENT_ID_PARAM,
    IDENTIFY_EVENT,
    LONG_VALUES,
    MAX_AGE_HOURS,
    RESERVED_EVENTS,
    RESERVED_PREFIXES,
    RESERVED_USER_PROPERTIES,
)

__all__ = ["GA4Fake", "destination"]

#: The stream and secret `destination()` expects.
TEST_MEASUREMENT_ID = "G-DEMO012345"
TEST_API_SECRET = "demo-ga4-api-secret-0123"
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
#: (fieldPath, validationCode, description) of one finding.
Finding = tuple[str, str, str]


def _name(field: str, name: Any, limit: int, reserved: frozenset[str]) -> list[Finding]:
    if not isinstance(name, str) or not _NAME.fullmatch(name) or len(name) > limit:
        return [(field, "NAME_INVALID", f"invalid name [{name}]: {limit} letters, digits or _")]
    if name.lower() in reserved or name.lower().startswith(RESERVED_PREFIXES):
        return [(field, "NAME_RESERVED", f"name [{name}] is reserved")]
    return []


def _value(field: str, value: Any, limit: int) -> list[Finding]:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return [
            (field, "VALUE_INVALID", f"value of type {type(value).__name__}: a string or number")
        ]
    if isinstance(value, str) and len(value) > limit:
        return [(field, "VALUE_OUT_OF_BOUNDS", f"value of {len(value)} characters (max {limit})")]
    return []


def findings(body: Any, now: float | None = None) -> list[Finding]:
    """What GA4 would report about (and discard of) the request `body`."""
    if not isinstance(body, dict):
        return [("", "VALUE_INVALID", "the body is not a JSON object")]
    found: list[Finding] = []
    if not isinstance(body.get("client_id"), str) or not body["client_id"]:
        found.append(("client_id", "VALUE_REQUIRED", "client_id is required"))
    user_id = body.get("user_id")
    if user_id is not None and (not isinstance(user_id, str) or len(user_id) > 256):
        found.append(("user_id", "VALUE_OUT_OF_BOUNDS", "user_id: a string of 256 at most"))
    properties = body.get("user_properties", {})
    if not isinstance(properties, dict) or len(properties) > 25:
        found.append(("user_properties", "EXCEEDED_MAX_ENTITIES", "25 user properties at most"))
    for key, holder in properties.items() if isinstance(properties, dict) else ():
        field = f"user_properties.{key}"
        found += _name(field, key, 24, RESERVED_USER_PROPERTIES)
        if not isinstance(holder, dict) or "value" not in holder:
            found.append((field, "VALUE_INVALID", 'a user property is {"value": ...}'))
        else:
            found += _value(field, holder["value"], 36)
    events = body.get("events")
    if not isinstance(events, list) or not events:
        return [*found, ("events", "VALUE_REQUIRED", "at least one event is required")]
    if len(events) > 25:
        found.append(("events", "EXCEEDED_MAX_ENTITIES", f"{len(events)} events (max 25)"))
    oldest = ((time.time() if now is None else now) - MAX_AGE_HOURS * 3600) * 1_000_000
    for index, event in enumerate(events):
        found += _event(f"events[{index}]", event, oldest)
    return found


def _event(field: str, event: Any, oldest: float) -> list[Finding]:
    if not isinstance(event, dict):
        return [(field, "VALUE_INVALID", "an event is an object")]
    found = _name(f"{field}.name", event.get("name"), 40, RESERVED_EVENTS)
    params = event.get("params", {})
    if not isinstance(params, dict) or len(params) > 25:
        found.append((f"{field}.params", "EXCEEDED_MAX_ENTITIES", "25 parameters at most"))
    for key, value in params.items() if isinstance(params, dict) else ():
        found += _name(f"{field}.params.{key}", key, 40, frozenset())
        found += _value(f"{field}.params.{key}", value, LONG_VALUES.get(key, 100))
    micros = event.get("timestamp_micros")
    if micros is not None and (not isinstance(micros, int) or micros < oldest):
        found.append((f"{field}.timestamp_micros", "VALUE_OUT_OF_BOUNDS", "72 hours back at most"))
    return found


@dataclasses.dataclass(eq=False, repr=False)
class GA4Fake(VendorFake):
    """GA4's collection and validation endpoints (see the module doc).

    Args:
        measurement_id, api_secret: what ``/mp/collect`` expects in its query; None: any.
        strict: refuse (400) what GA4 would silently discard, rather than keep it in
            `discarded` and answer 204 as GA4 does.
        max_body_bytes: GA4's limit (the body must be smaller than 130 kB); 413 beyond.
    """

    user_key, identify_when = "user_id", ("name", IDENTIFY_EVENT)
    properties_key = "params"

    measurement_id: str | None = None
    api_secret: str | None = None
    _: dataclasses.KW_ONLY
    strict: bool = True
    max_body_bytes: int = 130_000 - 1
    discarded: list[Any] = dataclasses.field(default_factory=list, init=False)

    def event_id(self, event: Mapping[str, Any]) -> str:
        """The event's id, from the parameter the provider sends it in."""
        return str(self.properties_of(event).get(EVENT_ID_PARAM))

    def handle(self, request: ReceivedRequest) -> Reply:
        if request.method != "POST":
            raise Refused(405, f"method {request.method} not allowed")
        if request.path not in ("/mp/collect", "/debug/mp/collect"):
            raise Refused(404, f"no route for {request.path}")
        body = self.read_json(request)
        found = findings(body)
        if request.path == "/debug/mp/collect":  # the validation server: nothing recorded
            keys = ("fieldPath", "validationCode", "description")
            return Reply(
                200, {"validationMessages": [dict(zip(keys, f, strict=True)) for f in found]}
            )
        query = request.query
        for key, wanted in (
            ("measurement_id", self.measurement_id),
            ("api_secret", self.api_secret),
        ):
            if query.get(key) is None or wanted not in (None, query[key]):
                found.append((key, "VALUE_INVALID", f"unknown {key} (GA4 drops the request)"))
        if found:
            if self.strict:
                problems = "; ".join(f"{code} at {path}: {text}" for path, code, text in found)
                raise Refused(400, f"fake (strict): GA4 would discard this request: {problems}")
            self.discarded.append(body)
            return Reply(204, b"")
        shared = {
            key: body[key] for key in ("client_id", "user_id", "user_properties") if key in body
        }
        self.record(body, [{**event, **shared} for event in body["events"]])
        return Reply(204, b"")

    def clear(self) -> None:
        """Forget everything, what was discarded included."""
        super().clear()
        self.discarded.clear()


def destination() -> FakeDestination:
    """A `GA4Fake` expecting the test stream and secret, and the variables that point GA4 at it."""
    variables = {"GA4_MEASUREMENT_ID": TEST_MEASUREMENT_ID, "GA4_API_SECRET": TEST_API_SECRET}
    fake = GA4Fake(TEST_MEASUREMENT_ID, TEST_API_SECRET)
    return FakeDestination("ga4", fake, lambda url: {**variables, "GA4_HOST": url})
