"""The strict Collector fake refuses what OTLP/HTTP JSON does not allow (or what a careful
sender never sends), with the Collector's statuses and a JSON ``Status`` body."""

from __future__ import annotations

import copy
import gzip
import json
import uuid
from typing import Any

import httpx
import pytest
from tracking_otlp.fake import OtlpFake, destination, value_of

from tracking_core.receivers import LoopbackReceiver


def _record(**overrides: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "timeUnixNano": "1768471200123456000",
        "observedTimeUnixNano": "1768471200123456000",
        "severityNumber": 9,
        "severityText": "INFO",
        "body": {"stringValue": "Signed Up"},
        "attributes": [
            {"key": "plan", "value": {"stringValue": "pro"}},
            {"key": "log.record.uid", "value": {"stringValue": str(uuid.uuid4())}},
            {"key": "user.id", "value": {"stringValue": "user-1"}},
        ],
        "eventName": "Signed Up",
    }
    record.update(overrides)
    return {k: v for k, v in record.items() if v is not ...}


def _body(*records: dict[str, Any]) -> dict[str, Any]:
    return {
        "resourceLogs": [
            {
                "resource": {
                    "attributes": [{"key": "service.name", "value": {"stringValue": "s"}}]
                },
                "scopeLogs": [{"scope": {"name": "tracking-core"}, "logRecords": list(records)}],
            }
        ]
    }


def _post(
    server: LoopbackReceiver,
    body: Any,
    *,
    path: str = "/v1/logs",
    headers: dict[str, str] | None = None,
    raw: bytes | None = None,
) -> httpx.Response:
    data = raw if raw is not None else json.dumps(body).encode()
    sent = {"content-type": "application/json", **(headers or {})}
    return httpx.post(server.url + path, content=data, headers=sent, timeout=10)


@pytest.fixture
def strict() -> OtlpFake:
    return OtlpFake()


@pytest.fixture
def served(strict: OtlpFake) -> Any:
    with LoopbackReceiver(strict) as server:
        yield server


def test_accepts_a_valid_request(strict: OtlpFake, served: LoopbackReceiver) -> None:
    identify = _record(eventName="identify", body={"stringValue": "identify"})
    answer = _post(served, _body(_record(), identify))
    assert answer.status_code == 200 and answer.json() == {}
    assert answer.headers["content-type"] == "application/json"
    assert len(strict.events) == 1 and len(strict.identifies) == 1
    assert strict.user_of(strict.identifies[0]) == "user-1"
    assert strict.properties_of(strict.events[0])["plan"] == "pro"


def test_gzip_and_deduplication(strict: OtlpFake, served: LoopbackReceiver) -> None:
    body = _body(_record())
    data = gzip.compress(json.dumps(body).encode())
    assert _post(served, None, raw=data, headers={"content-encoding": "gzip"}).status_code == 200
    assert _post(served, body).status_code == 200  # the same log.record.uid again
    assert len(strict.events) == 1 and len(strict.duplicates) == 1


def _without(record: dict[str, Any], key: str) -> dict[str, Any]:
    changed = copy.deepcopy(record)
    changed["attributes"] = [kv for kv in changed["attributes"] if kv["key"] != key]
    return changed


def _attribute(key: str, value: Any) -> dict[str, Any]:
    record = _record()
    record["attributes"].append({"key": key, "value": value})
    return record


@pytest.mark.parametrize(
    ("record", "problem"),
    [
        pytest.param(_record(time_unix_nano="1"), "time_unix_nano", id="snake-case-field"),
        pytest.param(
            _record(timeUnixNano=1768471200123456000), "timeUnixNano", id="int64-as-number"
        ),
        pytest.param(_record(timeUnixNano="-5"), "timeUnixNano", id="negative-time"),
        pytest.param(
            _record(severityNumber="SEVERITY_NUMBER_INFO"), "severityNumber", id="enum-name"
        ),
        pytest.param(_record(severityNumber=25), "severityNumber", id="enum-out-of-range"),
        pytest.param(_record(body="Signed Up"), "body", id="body-not-anyvalue"),
        pytest.param(_record(eventName=""), "eventName", id="no-event-name"),
        pytest.param(_without(_record(), "log.record.uid"), "log.record.uid", id="no-uid"),
        pytest.param(_attribute("", {"stringValue": "x"}), "empty key", id="empty-key"),
        pytest.param(_attribute("plan", {"stringValue": "x"}), "twice", id="repeated-key"),
        pytest.param(_attribute("n", {"intValue": 3}), "intValue", id="int-as-number"),
        pytest.param(_attribute("n", {"intValue": str(2**63)}), "intValue", id="int-past-int64"),
        pytest.param(_attribute("b", {"boolValue": "true"}), "boolValue", id="bool-as-text"),
        pytest.param(_attribute("d", {"doubleValue": "NaN"}), "doubleValue", id="nan"),
        pytest.param(
            _attribute("s", {"stringValue": "a", "intValue": "1"}), "one of", id="two-values"
        ),
        pytest.param(_attribute("s", {"string_value": "a"}), "string_value", id="snake-case-value"),
        pytest.param(_attribute("a", {"arrayValue": [1]}), "arrayValue", id="array-not-message"),
        pytest.param(
            _attribute("m", {"kvlistValue": {"values": [{"k": 1}]}}), "kvlist", id="bad-kvlist"
        ),
    ],
)
def test_refuses_bad_records(
    strict: OtlpFake, served: LoopbackReceiver, record: dict[str, Any], problem: str
) -> None:
    answer = _post(served, _body(record))
    assert answer.status_code == 400
    assert set(answer.json()) == {"code", "message"} and answer.json()["code"] == 3
    (rejection,) = strict.rejections
    assert problem in rejection.message and strict.events == []


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"resource_logs": []}, 400),
        ({"resourceLogs": {}}, 400),
        ({"resourceLogs": [{"resource": {}, "scopeLogs": [{"logRecords": {}}]}]}, 400),
        ([], 400),
    ],
)
def test_refuses_a_malformed_envelope(
    strict: OtlpFake, served: LoopbackReceiver, body: Any, status: int
) -> None:
    assert _post(served, body).status_code == status
    assert strict.events == [] and len(strict.rejections) == 1


def test_routes_media_types_and_headers(served: LoopbackReceiver) -> None:
    fake = OtlpFake(headers={"authorization": "Bearer right"})
    with LoopbackReceiver(fake) as server:
        body = _body(_record())
        assert _post(server, body, path="/v1/traces").status_code == 404
        assert _post(server, body, headers={"content-type": "text/plain"}).status_code == 415
        assert _post(server, body, headers={"authorization": "Bearer wrong"}).status_code == 401
        assert _post(server, body).status_code == 401
        assert _post(server, body, headers={"authorization": "Bearer right"}).status_code == 200
        assert fake.statuses() == [404, 415, 401, 401, 200]


def test_a_body_over_the_collectors_limit_is_413(
    strict: OtlpFake, served: LoopbackReceiver
) -> None:
    assert strict.max_body_bytes == 20 * 1024 * 1024  # the Collector's default
    strict.max_body_bytes = 1000
    big = _record(body={"stringValue": "x" * 2000})
    assert _post(served, _body(big)).status_code == 413


def test_value_of_reads_any_value() -> None:
    assert value_of({"intValue": "-7"}) == -7
    assert value_of({"kvlistValue": {"values": [{"key": "a", "value": {"arrayValue": {}}}]}}) == {
        "a": []
    }
    assert value_of({}) is None and value_of({"doubleValue": 1}) == 1.0


def test_the_destination_enables_the_provider_with_headers() -> None:
    found = destination()
    assert found.provider == "otlp" and isinstance(found.fake, OtlpFake)
    assert found.fake.served is True
    variables = found.environment("http://127.0.0.1:9")
    assert variables["TRACKING_OTLP_ENDPOINT"] == "http://127.0.0.1:9"
    assert variables["TRACKING_OTLP_HEADERS"].startswith("authorization=")
