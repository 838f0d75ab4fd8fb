"""GA4: the wire mapping (the Measurement Protocol; the settings are in `tracking_ga4.settings`).
GA4 answers 2xx even to what it discards, so its limits are applied here: what does not fit is
rewritten, cut or left out (counted in ``conversions``), or the event is dropped (counted)."""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

from tracking_core import DropReason, TrackingEvent, TrackingIdentify
from tracking_core.event import epoch_ms, usable_id, uuid5_string
from tracking_core.http import HttpProvider, HttpRequest, HttpResponse, SkipItem, WireItem
from tracking_core.http.wire import dumps, join_json
from tracking_core.kit import json_object

from .settings import DEFAULT_HOST, GA4Settings  # noqa: F401 - DEFAULT_HOST was defined here

#: GA4's limits ("Limitations" of the Measurement Protocol guide; event collection limits).
MAX_EVENTS, MAX_PARAMS, BODY_BYTES = 25, 25, 130_000  # parameters or user properties: 25
NAME_LENGTH, VALUE_LENGTH, USER_ID_LENGTH, MAX_AGE_HOURS = 40, 100, 256, 72
PROPERTY_NAME_LENGTH, PROPERTY_VALUE_LENGTH = 24, 36
LONG_VALUES = {"page_title": 300, "page_referrer": 420, "page_location": 1000}
RESERVED_PREFIXES = ("google_", "ga_", "firebase_")
RESERVED_EVENTS = frozenset(
    "ad_activeview ad_click ad_exposure ad_query ad_reward adunit_exposure app_background "
    "app_clear_data app_exception app_remove app_store_refund app_store_subscription_cancel "
    "app_store_subscription_convert app_store_subscription_renew app_update app_upgrade "
    "dynamic_link_app_open dynamic_link_app_update dynamic_link_first_open error "
    "firebase_campaign first_open first_visit in_app_purchase notification_dismiss "
    "notification_foreground notification_open notification_receive os_update session_start "
    "session_start_with_rollout user_engagement".split()
)
RESERVED_USER_PROPERTIES = frozenset(
    "first_open_time first_visit_time last_deep_link_referrer user_id "
    "first_open_after_install".split()
)
#: The parameter holding the event's id (GA4 has no dedupe key; a BigQuery export can use it),
#: the event that carries an identify's user properties, and the namespace of derived client ids.
EVENT_ID_PARAM, IDENTIFY_EVENT = "tracking_event_id", "identify"
CLIENT_NAMESPACE = "5d3c1f0e-8a47-4b2e-9c61-3f0a7e2b9d14"
_INVALID = re.compile(r"[^A-Za-z0-9_]+")


class GA4Provider(HttpProvider):
    """Events to ``/mp/collect``, 25 at most a request, one client (and user) a request; an
    identify as ``user_properties`` with an ``identify`` event. See the package README."""

    name, max_events, max_request_bytes, max_item_bytes = "ga4", MAX_EVENTS, BODY_BYTES - 1, 64_000
    settings: GA4Settings

    def encode(self, item: TrackingEvent | TrackingIdentify) -> WireItem:
        user_id, identify = usable_id(item.user_id), isinstance(item, TrackingIdentify)
        hours = (time.time() * 1000 - epoch_ms(item.timestamp)) / 3_600_000
        why = _first(
            (identify and not user_id, "identify() with a blank or placeholder user id"),
            (len(user_id or "") > USER_ID_LENGTH, "a user id over GA4's 256 characters"),
            (hours > MAX_AGE_HOURS, f"an event {hours:.0f} hours old (GA4 takes 72 at most)"),
        )
        if why:
            raise SkipItem(DropReason.REJECTED, why)
        anonymous_id = None if isinstance(item, TrackingIdentify) else usable_id(item.anonymous_id)
        seed = f"user:{user_id}" if user_id else f"event:{item.event_id}"
        head: dict[str, Any] = {"client_id": anonymous_id or uuid5_string(CLIENT_NAMESPACE, seed)}
        head.update({"user_id": user_id} if user_id else {})
        params: dict[str, Any] = {EVENT_ID_PARAM: item.event_id}
        if isinstance(item, TrackingIdentify):
            name, fitted = IDENTIFY_EVENT, self._fit("user property", item.traits, {})
            head["user_properties"] = {key: {"value": value} for key, value in fitted.items()}
        else:
            name = self._name("event name", item.name, NAME_LENGTH) or ""
            lower = name.lower()
            if not name or lower in RESERVED_EVENTS or lower.startswith(RESERVED_PREFIXES):
                raise SkipItem(DropReason.REJECTED, f"GA4 refuses the event name {item.name!r:.60}")
            self._fit("parameter", item.properties, params)
        micros = epoch_ms(item.timestamp) * 1000 + item.timestamp.microsecond % 1000
        event = {"name": name, "params": params, "timestamp_micros": micros}
        return WireItem(event, route=dumps(head).decode())

    def batch_limit(self) -> int:
        """Items handed over at once: many, as they go out in requests of one client each."""
        return 20 * MAX_EVENTS

    def _fit(self, what: str, values: Mapping[str, Any], into: dict[str, Any]) -> dict[str, Any]:
        """`values` added to `into` (after what it holds) by GA4's rules for a `what`."""
        user = what == "user property"
        reserved = RESERVED_USER_PROPERTIES if user else frozenset()  # and RESERVED_PREFIXES
        for key, value in json_object(values).items():
            name = self._name(what, key, PROPERTY_NAME_LENGTH if user else NAME_LENGTH)
            lower = (name or "").lower()
            why = _first(
                (name is None, "its name has no letter to start with"),
                (lower in reserved or lower.startswith(RESERVED_PREFIXES), "its name is reserved"),
                (name in into, "another has that name"),
                (value is None, "it has no value"),
                (len(into) >= MAX_PARAMS, f"it is past the {MAX_PARAMS}th"),
            )
            if why or name is None:
                self.note_conversion("left_out", "ga4: a %s was left out: %s", what, why)
                continue
            limit = PROPERTY_VALUE_LENGTH if user else LONG_VALUES.get(name, VALUE_LENGTH)
            into[name] = self._value(what, value, limit)
        return into

    def _name(self, what: str, text: str, limit: int) -> str | None:
        name = _INVALID.sub("_", text).strip("_")[:limit]
        if name[:1].isalpha() and name != text:
            self.note_conversion("name_rewritten", "ga4: %s %r sent as %r", what, text[:60], name)
        return name if name[:1].isalpha() else None

    def _value(self, what: str, value: Any, limit: int) -> Any:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            value = value if isinstance(value, str) else dumps(value).decode()
            if len(value) > limit:
                self.note_conversion("value_truncated", "ga4: a %s value cut to %d", what, limit)
        return value[:limit] if isinstance(value, str) else value

    def build_request(self, route: str, items: Sequence[bytes], batch_id: str) -> HttpRequest:
        return self._request("/mp/collect", route, items, b"")

    def validation_request(self, route: str, items: Sequence[bytes], batch_id: str) -> HttpRequest:
        """To GA4's validation server, which records nothing, with its strictest checks."""
        extra = b',"validation_behavior":"ENFORCE_RECOMMENDATIONS"'
        return self._request("/debug/mp/collect", route, items, extra)

    def _request(self, path: str, route: str, items: Sequence[bytes], extra: bytes) -> HttpRequest:
        s, events = self.settings, b',"events":' + join_json(items) + b"}"
        query = f"measurement_id={quote(s.measurement_id)}&api_secret={quote(s.api_secret, '')}"
        return HttpRequest(f"{s.host}{path}?{query}", route.encode()[:-1] + extra + events)

    def read_validation(self, route: str, response: HttpResponse) -> list[str]:
        """Each of GA4's ``validationMessages`` as ``CODE (field path): description``."""
        found = response.json()
        if not isinstance(found, dict) or not isinstance(found.get("validationMessages"), list):
            return [f"an answer without validationMessages: {response.text()}"]
        keys = ("validationCode", "fieldPath", "description")
        found = [m for m in found["validationMessages"] if isinstance(m, dict)]
        return ["{} ({}): {}".format(*map(m.get, keys)) for m in found]


def _first(*checks: tuple[bool, str]) -> str | None:
    """The text of the first check that holds."""
    return next((text for holds, text in checks if holds), None)
