"""OTLP: the exact OTLP/HTTP JSON sent, checked against the official OpenTelemetry Python
exporter's encoding of the same log records, over real HTTP to the strict Collector fake."""

from __future__ import annotations

import datetime as dt
import decimal
import gzip
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from google.protobuf.json_format import MessageToDict  # type: ignore[import-untyped]
from opentelemetry._logs import LogRecord, SeverityNumber
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from tracking_otlp.fake import OtlpFake, value_of

import tracking_core
from tracking_core.engine import DeliveryControl
from tracking_core.receivers import LoopbackReceiver

UTC = dt.timezone.utc
Enable = Callable[..., None]

#: Property values of every kind an attribute (an OTLP AnyValue) can hold.
PROPERTIES: dict[str, Any] = {
    "plan": "pro",
    "seats": 3,
    "negative": -(2**63),
    "ratio": 0.5,
    "whole": 2.0,
    "trial": False,
    "tags": ["a", "b"],
    "nested": {"k": 1, "deep": [1, {"x": None}], "": "empty key"},
    "none": None,
    "empty_list": [],
    "empty_map": {},
    "unicode": "caf\u00e9 \u2603",
}


def _flush() -> None:
    assert tracking_core.flush_tracking(10)


def _nanos(moment: dt.datetime) -> int:
    return (moment - dt.datetime(1970, 1, 1, tzinfo=UTC)) // dt.timedelta(microseconds=1) * 1000


def _attributes(record: Mapping[str, Any]) -> dict[str, Any]:
    return {kv["key"]: value_of(kv["value"]) for kv in record["attributes"]}


class Capture:
    """A batching provider that keeps every item the engine hands it (an identify with its id
    and timestamp too, which a `RecordingProvider` does not keep)."""

    name = "capture"

    def __init__(self) -> None:
        self.items: list[tracking_core.TrackingEvent | tracking_core.TrackingIdentify] = []

    def batch_limit(self) -> int:
        return 1000

    def deliver_batch(
        self,
        items: Sequence[tracking_core.TrackingEvent | tracking_core.TrackingIdentify],
        control: DeliveryControl,
    ) -> None:
        self.items += items
        control.delivered(len(items))


def _official(
    item: tracking_core.TrackingEvent | tracking_core.TrackingIdentify,
    resource: Mapping[str, str],
) -> ReadableLogRecord:
    """The log record the OpenTelemetry SDK would make of `item`, mapped as documented."""
    if isinstance(item, tracking_core.TrackingIdentify):
        name, attributes = "identify", dict(item.traits)
        ids: dict[str, str | None] = {"user.id": item.user_id}
    else:
        name, attributes = item.name, dict(item.properties)
        ids = {"user.id": item.user_id, "enduser.pseudo.id": item.anonymous_id}
    attributes.update({"event.name": name, "log.record.uid": item.event_id})
    attributes.update({key: value for key, value in ids.items() if value is not None})
    nanos = _nanos(item.timestamp)
    record = LogRecord(
        timestamp=nanos,
        observed_timestamp=nanos,
        severity_number=SeverityNumber.INFO,
        severity_text="INFO",
        body=name,
        attributes=attributes,
        event_name=name,
    )
    scope = InstrumentationScope("tracking-core", tracking_core.__version__)
    return ReadableLogRecord(
        log_record=record, resource=Resource(resource), instrumentation_scope=scope
    )


def test_the_request_is_what_the_official_exporter_encodes(
    enable: Enable, server: LoopbackReceiver, fake: OtlpFake
) -> None:
    enable(
        OTEL_SERVICE_NAME="checkout", OTEL_RESOURCE_ATTRIBUTES="deployment.environment.name=prod"
    )
    capture = Capture()  # gets the same items, with their ids and timestamps
    tracking_core.register_tracking_provider(capture)
    when = dt.datetime(2026, 1, 15, 10, 0, 0, 123456, tzinfo=UTC)
    tracking_core.track("Signed Up", PROPERTIES, user_id="user-12345", timestamp=when)
    tracking_core.track("Anonymous", {"n": 1}, anonymous_id="device-9")
    tracking_core.track("Both", user_id="user-1", anonymous_id="device-9")
    tracking_core.identify("user-12345", {"email": "ada@example.com", "age": 36})
    _flush()

    assert fake.rejections == []
    (request,) = server.requests
    items = capture.items
    assert [type(item).__name__ for item in items] == ["TrackingEvent"] * 3 + ["TrackingIdentify"]
    resource = {"deployment.environment.name": "prod", "service.name": "checkout"}
    official = encode_logs([_official(item, resource) for item in items])
    # Protobuf's JSON mapping as OTLP/JSON uses it: lowerCamelCase names, 64-bit integers as
    # strings, enums as integers, default values left out.
    expected = MessageToDict(official, use_integers_for_enums=True)
    assert request.json() == expected

    # And the facts the mapping promises, read from what was sent:
    records = request.json()["resourceLogs"][0]["scopeLogs"][0]["logRecords"]
    first = records[0]
    assert first["timeUnixNano"] == "1768471200123456000" == first["observedTimeUnixNano"]
    assert first["eventName"] == "Signed Up" and first["body"] == {"stringValue": "Signed Up"}
    attributes = _attributes(first)
    assert attributes["log.record.uid"] == items[0].event_id
    assert attributes["event.name"] == "Signed Up" and attributes["user.id"] == "user-12345"
    assert "enduser.pseudo.id" not in attributes
    assert {key: attributes[key] for key in PROPERTIES} == PROPERTIES
    assert _attributes(records[1])["enduser.pseudo.id"] == "device-9"
    assert "user.id" not in _attributes(records[1])
    identify = records[3]
    assert identify["eventName"] == "identify"
    assert _attributes(identify) == {
        "email": "ada@example.com",
        "age": 36,
        "event.name": "identify",
        "log.record.uid": items[3].event_id,
        "user.id": "user-12345",
    }
    assert [fake.event_id(e) for e in fake.events] == [e.event_id for e in items[:3]]
    assert [fake.user_of(i) for i in fake.identifies] == ["user-12345"]


def test_headers_path_and_content_type(
    enable: Enable, server: LoopbackReceiver, fake: OtlpFake, token: str
) -> None:
    enable(TRACKING_OTLP_ENDPOINT=f"{server.url}/otlp/")
    fake.path = "/otlp/v1/logs"
    tracking_core.track("Through a prefix", user_id="user-1")
    _flush()
    (request,) = server.requests
    assert (request.method, request.path) == ("POST", "/otlp/v1/logs")
    assert request.headers["content-type"] == "application/json"
    assert request.headers["authorization"] == f"Bearer {token}"  # percent-decoded
    assert request.headers["x-scope-orgid"] == "tenant-7"
    assert request.headers["user-agent"] == f"tracking-core/{tracking_core.__version__} (otlp)"
    assert fake.rejections == [] and len(fake.events) == 1


def test_the_resource_without_otel_variables(enable: Enable, fake: OtlpFake) -> None:
    enable()
    tracking_core.track("Plain", user_id="user-1")
    _flush()
    (body,) = fake.batches
    (resource_logs,) = body["resourceLogs"]
    assert resource_logs["resource"] == {
        "attributes": [{"key": "service.name", "value": {"stringValue": "unknown_service:python"}}]
    }
    scope = resource_logs["scopeLogs"][0]["scope"]
    assert scope == {"name": "tracking-core", "version": tracking_core.__version__}


def test_service_name_wins_over_the_resource_attribute(enable: Enable, fake: OtlpFake) -> None:
    enable(
        OTEL_SERVICE_NAME="api",
        OTEL_RESOURCE_ATTRIBUTES="service.name=ignored, team=pay%20ments ,k8s.pod.name=p-1,",
    )
    tracking_core.track("Resource", user_id="user-1")
    _flush()
    resource = fake.batches[0]["resourceLogs"][0]["resource"]
    found = {kv["key"]: value_of(kv["value"]) for kv in resource["attributes"]}
    assert found == {"service.name": "api", "team": "pay ments", "k8s.pod.name": "p-1"}


def test_reserved_attributes_win_over_properties(enable: Enable, fake: OtlpFake) -> None:
    enable()
    spoof = {"log.record.uid": "x", "user.id": "mallory", "event.name": "Other", "kept": 1}
    tracking_core.track("Real", spoof, user_id="user-1")
    _flush()
    (event,) = fake.events
    attributes = _attributes(event)
    assert attributes["user.id"] == "user-1" and attributes["event.name"] == "Real"
    assert uuid.UUID(attributes["log.record.uid"]).version == 4
    assert attributes["kept"] == 1
    assert len(event["attributes"]) == len(attributes)  # each key once, as OTLP requires


def test_values_json_cannot_carry_become_attributes(enable: Enable, fake: OtlpFake) -> None:
    enable()
    properties: dict[Any, Any] = {
        "when": dt.datetime(2026, 1, 15, 10, 0, tzinfo=UTC),
        "amount": decimal.Decimal("12.50"),
        "tags": {"b", "a"},
        "nan": float("nan"),
        "huge": 2**70,  # past int64: kept exactly, as text
        "raw": b"bytes",
        7: "int key",
    }
    tracking_core.track("Odd values", properties, user_id="user-1")
    _flush()
    assert fake.rejections == []
    (event,) = fake.events
    values = {kv["key"]: kv["value"] for kv in event["attributes"]}
    assert values["when"] == {"stringValue": "2026-01-15T10:00:00+00:00"}
    assert values["amount"] == {"doubleValue": 12.5}
    assert values["tags"] == {
        "arrayValue": {"values": [{"stringValue": "a"}, {"stringValue": "b"}]}
    }
    assert values["nan"] == {}
    assert values["huge"] == {"stringValue": str(2**70)}
    assert values["raw"] == {"stringValue": "bytes"}
    assert values["7"] == {"stringValue": "int key"}


def test_a_timestamp_before_1970_is_sent_as_unknown(enable: Enable, fake: OtlpFake) -> None:
    enable()
    old = dt.datetime(1969, 7, 20, 20, 17, tzinfo=UTC)
    tracking_core.track("Moon", user_id="user-1", timestamp=old)
    _flush()
    assert fake.rejections == []
    (event,) = fake.events
    assert "timeUnixNano" not in event  # 0: unknown (fixed64 has no negative values)


def test_large_bodies_are_gzipped(enable: Enable, server: LoopbackReceiver, fake: OtlpFake) -> None:
    enable()
    tracking_core.track("Small", user_id="user-1")
    _flush()
    tracking_core.track("Large", {"text": "lorem ipsum " * 2000}, user_id="user-1")
    _flush()
    small, large = server.requests
    assert "content-encoding" not in small.headers
    assert large.headers["content-encoding"] == "gzip"
    assert gzip.decompress(large.raw_body) == large.body
    assert [e["eventName"] for e in fake.events] == ["Small", "Large"]
