"""OTLP: what enables it, where it sends (the exporter spec's URL rules, checked against the
official exporter's), which headers go with it, and malformed values."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pytest
import tracking_otlp
from opentelemetry.exporter.otlp.proto.http._common import _resolve_endpoint, _resolve_headers
from tracking_otlp import OtlpProvider, OtlpSettings

import tracking_core
from tracking_core import SettingsError

#: As in conftest: a token long enough that a log line holding part of it is noticed.
TOKEN = "otlp-S3cr3tToken-0123456789abcdef"
HEADERS = f"Authorization=Bearer%20{TOKEN},x-scope-orgid=tenant-7"
Env = Callable[..., None]

OTEL = [
    "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_LOGS_HEADERS",
    "OTEL_EXPORTER_OTLP_HEADERS",
]


def _settings(**environ: str) -> OtlpSettings:
    settings = OtlpSettings.from_environ(environ)
    assert settings is not None
    return settings


def test_disabled_without_tracking_otlp_endpoint(env: Env) -> None:
    # The OpenTelemetry variables alone (an application exporting its traces) do not send
    # analytics events anywhere.
    env(OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:4318", OTEL_SERVICE_NAME="api")
    assert tracking_core.list_tracking_providers() == []
    env(TRACKING_OTLP_ENDPOINT="  ")
    assert tracking_core.list_tracking_providers() == []


@pytest.mark.parametrize(
    ("given", "url"),
    [
        ("http://collector:4318", "http://collector:4318/v1/logs"),
        ("http://collector:4318/", "http://collector:4318/v1/logs"),
        ("https://otlp.example.com/tenant-1/", "https://otlp.example.com/tenant-1/v1/logs"),
    ],
)
def test_its_own_endpoint_is_a_base_url(given: str, url: str) -> None:
    settings = _settings(
        TRACKING_OTLP_ENDPOINT=given,
        OTEL_EXPORTER_OTLP_LOGS_ENDPOINT="http://elsewhere:4318/v1/logs",
        OTEL_EXPORTER_OTLP_HEADERS="api-key=for-elsewhere-only",
    )
    assert settings.logs_url() == url  # the OpenTelemetry ones are for `otel` only
    assert settings.header_map() == {}


@pytest.mark.parametrize(
    "otel",
    [
        {},
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"},
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/"},
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "https://collector.example.com/mycollector/"},
        {"OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": "http://collector:4318/custom/path"},
        {"OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": "http://collector:4318"},  # as is: no /v1/logs
        {
            "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": "https://logs.example.com/v1/logs",
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://ignored:4318",
        },
    ],
    ids=["default", "base", "base-slash", "base-path", "logs", "logs-no-path", "logs-wins"],
)
def test_otel_takes_the_endpoint_as_the_official_exporter_does(
    otel: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in OTEL:
        monkeypatch.delenv(name, raising=False)
    for name, value in otel.items():
        monkeypatch.setenv(name, value)
    official = _resolve_endpoint("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "v1/logs")
    assert _settings(TRACKING_OTLP_ENDPOINT="otel", **otel).logs_url() == official
    assert _settings(TRACKING_OTLP_ENDPOINT="OTEL", **otel).logs_url() == official


@pytest.mark.parametrize(
    "otel",
    [
        {"OTEL_EXPORTER_OTLP_HEADERS": "Authorization=Bearer%20abc,x-a=b%3Dc, k = v "},
        {
            "OTEL_EXPORTER_OTLP_LOGS_HEADERS": "api-key=logs-key",
            "OTEL_EXPORTER_OTLP_HEADERS": "api-key=generic-key,x-other=1",  # not merged
        },
        {},
    ],
    ids=["generic", "logs-win", "none"],
)
def test_otel_headers_as_the_official_exporter_reads_them(
    otel: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in OTEL:
        monkeypatch.delenv(name, raising=False)
    for name, value in otel.items():
        monkeypatch.setenv(name, value)
    official = _resolve_headers(None, "OTEL_EXPORTER_OTLP_LOGS_HEADERS")
    official = {k: v for k, v in official.items() if k not in ("content-type", "user-agent")}
    assert _settings(TRACKING_OTLP_ENDPOINT="otel", **otel).header_map() == official


def test_its_own_headers_go_on_top_of_the_otel_ones() -> None:
    settings = _settings(
        TRACKING_OTLP_ENDPOINT="otel",
        OTEL_EXPORTER_OTLP_HEADERS="api-key=k1,x-tenant=a",
        TRACKING_OTLP_HEADERS="X-Tenant=analytics",
    )
    assert settings.header_map() == {"api-key": "k1", "x-tenant": "analytics"}


def test_headers_from_a_file(tmp_path: Path) -> None:
    secret = tmp_path / "headers"
    secret.write_text(HEADERS + "\n", encoding="utf-8")
    settings = _settings(
        TRACKING_OTLP_ENDPOINT="http://c:4318", TRACKING_OTLP_HEADERS_FILE=str(secret)
    )
    assert settings.header_map()["authorization"] == f"Bearer {TOKEN}"


def test_the_resource() -> None:
    assert _settings(TRACKING_OTLP_ENDPOINT="otel").resource() == {
        "service.name": "unknown_service:python"
    }
    found = _settings(
        TRACKING_OTLP_ENDPOINT="otel",
        OTEL_RESOURCE_ATTRIBUTES="service.name=from-attributes,service.version=1.2",
    ).resource()
    assert found == {"service.name": "from-attributes", "service.version": "1.2"}


@pytest.mark.parametrize(
    ("variables", "named"),
    [
        ({"TRACKING_OTLP_ENDPOINT": "collector:4318"}, "TRACKING_OTLP_ENDPOINT"),
        ({"TRACKING_OTLP_ENDPOINT": "http://c:4318/?a=1"}, "TRACKING_OTLP_ENDPOINT"),
        ({"TRACKING_OTLP_HEADERS": f"Bearer {TOKEN}"}, "TRACKING_OTLP_HEADERS"),
        ({"TRACKING_OTLP_HEADERS": f"bad name=Bearer {TOKEN}"}, "TRACKING_OTLP_HEADERS"),
        ({"TRACKING_OTLP_HEADERS": f"authorization=Bearer%0A{TOKEN}"}, "TRACKING_OTLP_HEADERS"),
        ({"OTEL_RESOURCE_ATTRIBUTES": "team"}, "OTEL_RESOURCE_ATTRIBUTES"),
        (
            {"TRACKING_OTLP_ENDPOINT": "otel", "OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4317"},
            "OTEL_EXPORTER_OTLP_ENDPOINT",
        ),
        (
            {"TRACKING_OTLP_ENDPOINT": "otel", "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": "c:4318"},
            "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
        ),
        (
            {"TRACKING_OTLP_ENDPOINT": "otel", "OTEL_EXPORTER_OTLP_HEADERS": f"{TOKEN}"},
            "OTEL_EXPORTER_OTLP_HEADERS",
        ),
    ],
)
def test_a_malformed_value_disables_it_with_one_line_and_no_secret(
    env: Env, caplog: pytest.LogCaptureFixture, variables: dict[str, str], named: str
) -> None:
    caplog.set_level(logging.DEBUG)
    env(**{"TRACKING_OTLP_ENDPOINT": "http://127.0.0.1:4318", **variables})
    assert tracking_core.list_tracking_providers() == []
    lines = [r.getMessage() for r in caplog.records if named in r.getMessage()]
    assert len(lines) == 1, [r.getMessage() for r in caplog.records]
    for record in caplog.records:
        assert TOKEN not in record.getMessage() and TOKEN[5:15] not in record.getMessage()
    with pytest.raises(SettingsError) as info:
        OtlpSettings.from_environ({"TRACKING_OTLP_ENDPOINT": "http://c:4318", **variables})
    assert info.value.variable == named


def test_otel_values_that_are_not_used_are_not_checked(env: Env) -> None:
    # An application may set OTEL_EXPORTER_OTLP_ENDPOINT for gRPC ("collector:4317"): with
    # its own endpoint, this provider does not use it, so it does not refuse it.
    env(TRACKING_OTLP_ENDPOINT="http://127.0.0.1:4318", OTEL_EXPORTER_OTLP_ENDPOINT="c:4317")
    assert tracking_core.list_tracking_providers() == ["otlp"]


def test_settings_hook_describes_every_variable() -> None:
    described = {s.name: s for s in tracking_otlp.plugin.tracking_provider_settings()}
    assert list(described) == [
        "TRACKING_OTLP_ENDPOINT",
        "TRACKING_OTLP_HEADERS",
        "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_LOGS_HEADERS",
        "OTEL_EXPORTER_OTLP_HEADERS",
        "OTEL_SERVICE_NAME",
        "OTEL_RESOURCE_ATTRIBUTES",
    ]
    assert [name for name, s in described.items() if s.required] == ["TRACKING_OTLP_ENDPOINT"]
    assert [name for name, s in described.items() if s.secret] == [
        "TRACKING_OTLP_HEADERS",
        "OTEL_EXPORTER_OTLP_LOGS_HEADERS",
        "OTEL_EXPORTER_OTLP_HEADERS",
    ]
    assert described["OTEL_EXPORTER_OTLP_ENDPOINT"].default == "http://localhost:4318"


def test_reprs_hide_the_headers_and_every_header_value_is_masked() -> None:
    settings = _settings(
        TRACKING_OTLP_ENDPOINT="otel",
        TRACKING_OTLP_HEADERS=HEADERS,
        OTEL_EXPORTER_OTLP_HEADERS="api-key=otel-generic-key-42",
    )
    provider = OtlpProvider(settings)
    for text in (repr(settings), str(settings), repr(provider)):
        assert TOKEN not in text and "otel-generic-key-42" not in text
    masked = set(provider.secrets())
    assert {f"Bearer {TOKEN}", "tenant-7", "otel-generic-key-42", HEADERS} <= masked
    assert provider.name == "otlp"
