"""A strict loopback fake of an OpenTelemetry Collector's OTLP/HTTP logs receiver (JSON).

It reads requests as the Collector's ``otlp`` receiver does: ``POST /v1/logs``, ``Content-Type:
application/json`` (415 otherwise), gzip, a body of at most 20 MiB after decompression (the
default ``max_request_body_size``; 413 beyond), and answers errors with a JSON ``Status``
(``{"code", "message"}``). Where the Collector would ignore what protobuf's JSON mapping does not
allow (an unknown or snake_case field is silently dropped: data lost without a word), this fake
refuses it (400): unknown fields, 64-bit integers as JSON numbers, enum names, an ``AnyValue``
with more than one value, repeated or empty attribute keys, no ``log.record.uid`` (the dedupe
key) or ``eventName``. Records whose ``eventName`` is in `OtlpFake.refuse_events` are refused
with a partial success answer, the others accepted.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Hashable, Mapping
from typing import Any, ClassVar

from tracking_core.fakes import FakeDestination, Refused, VendorFake
from tracking_core.receivers import ReceivedRequest, Reply

__all__ = ["TEST_TOKEN", "OtlpFake", "destination", "value_of"]

#: The bearer token `destination()` expects.
TEST_TOKEN = "otlp-demo-token-0123456789"
_FIELDS: Mapping[str, frozenset[str]] = {
    "request": frozenset({"resourceLogs"}),
    "resourceLogs": frozenset({"resource", "scopeLogs", "schemaUrl"}),
    "resource": frozenset({"attributes", "droppedAttributesCount", "entityRefs"}),
    "scopeLogs": frozenset({"scope", "logRecords", "schemaUrl"}),
    "scope": frozenset({"name", "version", "attributes", "droppedAttributesCount"}),
    "logRecord": frozenset(
        {"timeUnixNano", "observedTimeUnixNano", "severityNumber", "severityText", "body"}
        | {"attributes", "droppedAttributesCount", "flags", "traceId", "spanId", "eventName"}
    ),
}
_VALUES = ("stringValue", "boolValue", "intValue", "doubleValue", "arrayValue", "kvlistValue")
#: The gRPC code the Collector puts in the ``Status`` of each HTTP error.
_GRPC = {400: 3, 401: 16, 403: 7, 404: 12, 413: 8, 415: 3, 429: 8, 500: 13, 501: 12}


def value_of(value: Mapping[str, Any]) -> Any:
    """An OTLP ``AnyValue`` (JSON) as a Python value: ``intValue`` text as an int, lists,
    dicts; None for an empty value."""
    if "intValue" in value:
        return int(value["intValue"])
    if "doubleValue" in value:
        return float(value["doubleValue"])
    if "arrayValue" in value:
        return [value_of(item) for item in value["arrayValue"].get("values", [])]
    if "kvlistValue" in value:
        pairs = value["kvlistValue"].get("values", [])
        return {pair.get("key", ""): value_of(pair.get("value", {})) for pair in pairs}
    return next(
        (value[key] for key in ("stringValue", "boolValue", "bytesValue") if key in value), None
    )


def _object(value: Any, kind: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise Refused(400, f"{kind} must be a JSON object")
    unknown = sorted(set(value) - _FIELDS[kind])
    if unknown:
        raise Refused(400, f"unknown field(s) {unknown} in {kind} (protobuf JSON: lowerCamelCase)")
    return value


def _list(value: Any, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise Refused(400, f"{what} must be a JSON array")
    return value


def _uint64(value: Any, field: str) -> None:
    if not (isinstance(value, str) and value.isascii() and value.isdigit() and int(value) < 2**64):
        raise Refused(400, f"{field} {value!r}: a 64-bit integer is a decimal string in OTLP/JSON")


def _check_value(value: Any, where: str) -> None:
    if not isinstance(value, dict) or len(value) > 1 or set(value) - {*_VALUES, "bytesValue"}:
        raise Refused(400, f"{where}: an AnyValue holds one of {list(_VALUES)}, got {value!r:.80}")
    kind, content = next(iter(value.items()), ("", None))
    if kind == "intValue":
        if not isinstance(content, str) or not re.fullmatch(r"-?[0-9]{1,19}", content):
            raise Refused(400, f"{where}: intValue {content!r} is not an int64 decimal string")
        if not -(2**63) <= int(content) < 2**63:
            raise Refused(400, f"{where}: intValue {content!r} is not an int64 decimal string")
    elif kind == "doubleValue" and (
        isinstance(content, bool) or not isinstance(content, (int, float))
    ):
        raise Refused(400, f"{where}: doubleValue {content!r} is not a JSON number")
    elif kind in ("stringValue", "bytesValue") and not isinstance(content, str):
        raise Refused(400, f"{where}: {kind} must be a string")
    elif kind == "boolValue" and not isinstance(content, bool):
        raise Refused(400, f"{where}: boolValue must be true or false")
    elif kind == "arrayValue":
        where = f"{where} arrayValue"
        for item in _list(_object_of(content, {"values"}, where).get("values", []), where):
            _check_value(item, where)
    elif kind == "kvlistValue":
        where = f"{where} kvlistValue"
        pairs = _list(_object_of(content, {"values"}, where).get("values", []), where)
        _check_attributes(pairs, where, nested=True)


def _object_of(value: Any, allowed: set[str], where: str) -> dict[str, Any]:
    if not isinstance(value, dict) or set(value) - allowed:
        raise Refused(400, f"{where}: expected an object with {sorted(allowed)}")
    return value


def _check_attributes(pairs: Any, where: str, nested: bool = False) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for given in _list(pairs, where):
        pair = _object_of(given, {"key", "value"}, where)
        key = pair.get("key", "")  # the default, "", is left out in protobuf's JSON
        if not isinstance(key, str) or (not key and not nested):
            raise Refused(400, f"{where}: an attribute has an empty key")
        if key in found:
            raise Refused(400, f"{where}: attribute {key!r} given twice")
        _check_value(pair.get("value", {}), f"{where} attribute {key!r}")
        found[key] = value_of(pair.get("value", {}))
    return found


@dataclasses.dataclass(eq=False, repr=False)
class OtlpFake(VendorFake):
    """An OpenTelemetry Collector's ``/v1/logs`` (see the module doc).

    Args:
        headers: headers every request must carry (names in lower case), e.g. a bearer token.
        path: the logs route.
        refuse_events: event names whose records are refused by a partial success answer.
        max_body_bytes: the body limit after decompression (413 beyond it).
    """

    status_messages: ClassVar[Mapping[int, str]] = {503: "Service Unavailable"}

    headers: Mapping[str, str] = dataclasses.field(default_factory=dict)
    _: dataclasses.KW_ONLY
    path: str = "/v1/logs"
    refuse_events: set[str] = dataclasses.field(default_factory=set)
    max_body_bytes: int = 20 * 1024 * 1024

    def refusal(self, status: int, message: str) -> Reply:
        """The Collector's errors: a JSON ``Status``."""
        return Reply(
            status, {"code": _GRPC.get(status, 14 if status >= 500 else 2), "message": message}
        )

    def is_identify(self, item: Mapping[str, Any]) -> bool:
        return item.get("eventName") == "identify"

    def event_id(self, event: Mapping[str, Any]) -> str:
        return str(self.properties_of(event).get("log.record.uid"))

    def user_of(self, identify: Mapping[str, Any]) -> str:
        return str(self.properties_of(identify).get("user.id"))

    def properties_of(self, event: Mapping[str, Any]) -> Mapping[str, Any]:
        """Every attribute of a record, as Python values."""
        pairs = event.get("attributes", [])
        return {kv.get("key", ""): value_of(kv.get("value", {})) for kv in pairs}

    def dedupe_key(self, item: Mapping[str, Any]) -> Hashable | None:
        return self.event_id(item)

    def handle(self, request: ReceivedRequest) -> Reply:
        if request.method != "POST" or request.path != self.path:
            raise Refused(
                405 if request.path == self.path else 404,
                f"no route {request.method} {request.path}",
            )
        if self.media_type(request) != "application/json":
            raise Refused(415, f"unsupported content type {self.media_type(request)!r}")
        for name, value in self.headers.items():
            if request.headers.get(name) != value:
                raise Refused(401, f"header {name!r} is missing or wrong")
        body = _object(self.read_json(request), "request")
        records = []
        for each in _list(body.get("resourceLogs", []), "resourceLogs"):
            resource_logs = _object(each, "resourceLogs")
            resource = _object(resource_logs.get("resource", {}), "resource")
            _check_attributes(resource.get("attributes", []), "resource")
            for scope in _list(resource_logs.get("scopeLogs", []), "scopeLogs"):
                scope_logs = _object(scope, "scopeLogs")
                _object(scope_logs.get("scope", {}), "scope")
                records += [
                    self._check(r) for r in _list(scope_logs.get("logRecords", []), "logRecords")
                ]
        kept = [r for r in records if r.get("eventName") not in self.refuse_events]
        self.record(body, kept)
        if len(kept) == len(records):
            return Reply(200, {})
        refused = len(records) - len(kept)
        message = f"{refused} log records refused by the fake (refuse_events)"
        return Reply(
            200, {"partialSuccess": {"rejectedLogRecords": str(refused), "errorMessage": message}}
        )

    def _check(self, given: Any) -> dict[str, Any]:
        record = _object(given, "logRecord")
        for field in ("timeUnixNano", "observedTimeUnixNano"):
            if field in record:
                _uint64(record[field], field)
        severity = record.get("severityNumber", 0)
        if isinstance(severity, bool) or not isinstance(severity, int) or not 0 <= severity <= 24:
            raise Refused(
                400, f"severityNumber {severity!r}: an enum is an integer (0-24) in OTLP/JSON"
            )
        _check_value(record.get("body", {}), "body")
        attributes = _check_attributes(record.get("attributes", []), "logRecord")
        if not isinstance(record.get("eventName"), str) or not record["eventName"]:
            raise Refused(400, "fake (strict): a record without eventName")
        if not isinstance(attributes.get("log.record.uid"), str):
            raise Refused(400, "fake (strict): a record without log.record.uid (its dedupe key)")
        return record


def destination() -> FakeDestination:
    """An `OtlpFake` expecting `TEST_TOKEN`, and the variables that point the provider at it."""
    fake = OtlpFake(headers={"authorization": f"Bearer {TEST_TOKEN}"})
    headers = f"authorization=Bearer%20{TEST_TOKEN}"
    return FakeDestination(
        "otlp", fake, lambda url: {"TRACKING_OTLP_ENDPOINT": url, "TRACKING_OTLP_HEADERS": headers}
    )
