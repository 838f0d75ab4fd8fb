"""Metrics (issue #15): `tracking_stats()` exported through OpenTelemetry and Prometheus.

Real events go through real providers (a `RecordingProvider`, an HTTP provider against a
`LoopbackReceiver`), and what the exporters give is read the way monitoring reads it: the
OpenTelemetry SDK's own `InMemoryMetricReader`, and a fresh Prometheus `CollectorRegistry`.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, MetricsData, Sum
from prometheus_client import CollectorRegistry, generate_latest

import tracking_core as tc
from tracking_core.http import HttpProvider, HttpRequest, WireItem, join_json
from tracking_core.metrics import otel, points, prometheus
from tracking_core.receivers import LoopbackReceiver, ReceivedRequest, Reply
from tracking_core.testing import RecordingProvider, configure_tracking, reset_tracking

ROOT = Path(__file__).resolve().parents[1]

#: (metric name as OpenTelemetry spells it, its attributes) -> value.
Series = dict[tuple[str, frozenset[tuple[str, str]]], float]

COUNTERS = (
    "tracking.event.accepted",
    "tracking.event.delivered",
    "tracking.event.retried",
    "tracking.attempt.failed",
    "tracking.request.sent",
    "tracking.response.truncated",
)
KINDS = ("key_collision", "unconvertible")


def key(name: str, **attributes: str) -> tuple[str, frozenset[tuple[str, str]]]:
    return name, frozenset(attributes.items())


def expected_series(provider: str, **values: float) -> Series:
    """Every series one provider exports, all 0 but `values` (``delivered=2``,
    ``dropped_rejected=1``, ``converted_unconvertible=1``, ``queued=3``...)."""
    series: Series = {}
    for name in COUNTERS:
        series[key(name, provider=provider)] = values.pop(name.rsplit(".", 1)[1], 0)
    series[key("tracking.event.queued", provider=provider)] = values.pop("queued", 0)
    for reason in tc.DropReason:
        series[key("tracking.event.dropped", provider=provider, reason=reason.value)] = values.pop(
            f"dropped_{reason.value}", 0
        )
    for kind in KINDS:
        series[key("tracking.value.converted", provider=provider, kind=kind)] = values.pop(
            f"converted_{kind}", 0
        )
    assert not values, f"unknown expectations: {values}"
    return series


def of(series: Series, provider: str) -> Series:
    return {k: v for k, v in series.items() if ("provider", provider) in k[1]}


# -- reading each exporter the way monitoring does ------------------------------------------------


def otel_series(data: MetricsData | None) -> Series:
    series: Series = {}
    if data is None:  # the SDK's answer when no instrument has a point
        return series
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            if scope.scope.name != "tracking_core":
                continue
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    attributes = frozenset((k, str(v)) for k, v in (point.attributes or {}).items())
                    series[(metric.name, attributes)] = point.value  # type: ignore[union-attr]
    return series


def prometheus_name(name: str) -> str:
    """The Prometheus name of an OpenTelemetry one: as OpenTelemetry's own Prometheus translation
    writes it (dots to underscores, the ``{event}``-style unit dropped, ``_total`` on counters)."""
    return name.replace(".", "_") + ("" if name == "tracking.event.queued" else "_total")


def prometheus_series(registry: CollectorRegistry) -> Series:
    back = {prometheus_name(name): name for name in (*COUNTERS, "tracking.event.queued")}
    back.update(
        {prometheus_name(n): n for n in ("tracking.event.dropped", "tracking.value.converted")}
    )
    series: Series = {}
    for family in registry.collect():
        for sample in family.samples:
            series[(back[sample.name], frozenset(sample.labels.items()))] = sample.value
    return series


@pytest.fixture(params=["otel", "prometheus"])
def exported(request: pytest.FixtureRequest) -> Iterator[Callable[[], Series]]:
    """``collect()``: what one exporter shows now, set up the way its docs say."""
    if request.param == "otel":
        reader = InMemoryMetricReader()
        meter_provider = MeterProvider(metric_readers=[reader])
        otel.instrument(meter_provider)
        yield lambda: otel_series(reader.get_metrics_data())
        meter_provider.shutdown()
    else:
        registry = CollectorRegistry()
        prometheus.register(registry)
        yield lambda: prometheus_series(registry)


# -- providers ------------------------------------------------------------------------------------


class Loopback(HttpProvider):
    """A minimal HTTP provider: ``{"batch": [...]}`` to the receiver, every value through
    `json_safe` (as the built-in wire formats do)."""

    name = "loopback"

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url

    def encode(self, item: tc.TrackingEvent | tc.TrackingIdentify) -> WireItem:
        assert isinstance(item, tc.TrackingEvent)
        return WireItem({"id": item.event_id, "name": item.name, "props": item.properties})

    def build_request(self, route: str, items: Sequence[bytes], batch_id: str) -> HttpRequest:
        return HttpRequest(f"{self.url}/in", b'{"batch":' + join_json(items) + b"}", {})


class Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("no text")


class Gate:
    """A plain provider that holds its first event until released."""

    name = "gate"

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def track(self, event: tc.TrackingEvent) -> None:
        self.entered.set()
        self.release.wait(30)


@pytest.fixture
def engine_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Batches sent on flush, quick retries; discovery off."""
    configure_tracking(
        monkeypatch,
        {
            "TRACKING_FLUSH_INTERVAL": "30",
            "TRACKING_RETRY_BACKOFF": "0.01",
            "TRACKING_RETRY_BACKOFF_MAX": "0.05",
        },
        discover=False,
    )
    yield
    monkeypatch.undo()
    reset_tracking()


def wait_until(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


# -- what both exporters show ---------------------------------------------------------------------


def test_a_plain_provider_s_counts(clean_tracking: None, exported: Callable[[], Series]) -> None:
    recorder = RecordingProvider("recorder")
    tc.register_tracking_provider(recorder)
    tc.track("Signed Up", {"plan": "pro"}, user_id="user-1")
    tc.track("Upgraded", user_id="user-1")
    tc.identify("user-1", {"email": "ada@example.com"})
    tc.track("")  # bad input: counted as dropped by every provider
    recorder.settle()

    assert exported() == expected_series("recorder", accepted=4, delivered=3, dropped_bad_input=1)


def test_an_http_provider_s_retries_rejections_conversions_and_truncated_answers(
    engine_env: None, exported: Callable[[], Series]
) -> None:
    answered: list[int] = []

    def respond(request: ReceivedRequest) -> Reply:
        answered.append(1)  # one request at a time: the lane's worker waits for each answer
        if len(answered) == 1:
            return Reply(500, "try again")
        if b"Refused" in request.body:
            return Reply(400, {"error": "event refused"})
        return Reply(200, "x" * 70_000)  # longer than the 64 KiB the sender reads

    with LoopbackReceiver(respond) as receiver:
        recorder = RecordingProvider("recorder")
        tc.register_tracking_provider(recorder)
        tc.register_tracking_provider(Loopback(receiver.url))
        colliding: dict[Any, Any] = {"card": Unprintable(), 1: "one", "1": "uno"}
        tc.track("Signed Up", colliding)
        tc.track("Upgraded")
        assert tc.flush_tracking(30)
        tc.track("Refused")
        assert tc.flush_tracking(30)

        series = exported()
        stats = tc.tracking_stats()["loopback"]

    assert len(receiver.requests) == 3
    assert of(series, "loopback") == expected_series(
        "loopback",
        accepted=3,
        delivered=2,
        failed=1,  # the 500 (the 400 is a rejection: dropped, not failed)
        retried=2,  # both events of the first request, sent again
        sent=3,
        truncated=1,
        dropped_rejected=1,
        converted_key_collision=1,
        converted_unconvertible=1,
    )
    assert of(series, "recorder") == expected_series("recorder", accepted=3, delivered=3)
    # The same numbers tracking_stats() gives.
    assert series[key("tracking.attempt.failed", provider="loopback")] == stats.failed
    assert series[key("tracking.request.sent", provider="loopback")] == stats.batches


def test_queued_counts_the_events_waiting_or_in_flight(
    clean_tracking: None, exported: Callable[[], Series]
) -> None:
    gate = Gate()
    tc.register_tracking_provider(gate)
    for number in range(3):
        tc.track(f"Event {number}")
    assert gate.entered.wait(30)
    wait_until(lambda: tc.tracking_stats()["gate"].accepted == 3)

    assert exported() == expected_series("gate", accepted=3, queued=3)

    gate.release.set()
    assert tc.flush_tracking(30)
    assert exported() == expected_series("gate", accepted=3, delivered=3)


def test_a_provider_removed_is_no_longer_exported(
    clean_tracking: None, exported: Callable[[], Series]
) -> None:
    tc.register_tracking_provider(RecordingProvider("first"))
    tc.register_tracking_provider(RecordingProvider("second"))
    tc.track("Signed Up")
    assert tc.flush_tracking(30)
    assert of(exported(), "first") == expected_series("first", accepted=1, delivered=1)
    assert of(exported(), "second") == expected_series("second", accepted=1, delivered=1)

    tc.unregister_tracking_provider("first")
    assert of(exported(), "first") == {}
    assert of(exported(), "second") == expected_series("second", accepted=1, delivered=1)


def test_no_provider_no_series_and_a_read_that_fails_raises_nothing(
    clean_tracking: None,
    exported: Callable[[], Series],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert exported() == {}
    tc.register_tracking_provider(RecordingProvider("recorder"))

    def broken() -> dict[str, tc.ProviderStats]:
        raise RuntimeError("the counters are gone")

    monkeypatch.setattr(points, "read_stats", broken)
    with caplog.at_level(logging.WARNING):
        assert exported() == {}
    ours = [r for r in caplog.records if r.name == "tracking_core"]
    assert ours and "RuntimeError" in ours[0].getMessage()
    assert not [r for r in caplog.records if r.name.startswith("opentelemetry")]

    monkeypatch.undo()
    assert exported() == expected_series("recorder")


# -- OpenTelemetry --------------------------------------------------------------------------------


def test_otel_instruments_names_units_and_kinds(tracking_events: RecordingProvider) -> None:
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    otel.instrument(meter_provider)
    tc.track("Signed Up")
    tracking_events.settle()

    data = reader.get_metrics_data()
    assert data is not None
    (resource,) = data.resource_metrics
    (scope,) = resource.scope_metrics
    assert scope.scope.name == "tracking_core"
    assert scope.scope.version == tc.__version__
    shown = {metric.name: metric for metric in scope.metrics}
    assert sorted(shown) == sorted(
        [*COUNTERS, "tracking.event.queued", "tracking.event.dropped", "tracking.value.converted"]
    )
    units = {name: metric.unit for name, metric in shown.items()}
    assert units == {
        "tracking.event.accepted": "{event}",
        "tracking.event.delivered": "{event}",
        "tracking.event.retried": "{event}",
        "tracking.event.dropped": "{event}",
        "tracking.event.queued": "{event}",
        "tracking.attempt.failed": "{attempt}",
        "tracking.request.sent": "{request}",
        "tracking.response.truncated": "{response}",
        "tracking.value.converted": "{value}",
    }
    for name, metric in shown.items():
        assert metric.description, name
        assert isinstance(metric.data, Sum), name
        assert metric.data.is_monotonic == (name != "tracking.event.queued"), name
    meter_provider.shutdown()


def test_otel_reads_the_stats_once_per_collection(
    tracking_events: RecordingProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads = []
    real = points.read_stats

    def counted() -> Mapping[str, tc.ProviderStats]:
        reads.append(1)
        return real()

    monkeypatch.setattr(points, "read_stats", counted)
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    otel.instrument(meter_provider)
    tc.track("Signed Up")
    tracking_events.settle()

    first = otel_series(reader.get_metrics_data())
    assert len(reads) == 1
    tc.track("Upgraded")
    tracking_events.settle()
    second = otel_series(reader.get_metrics_data())
    assert len(reads) == 2
    assert first[key("tracking.event.delivered", provider="recorder")] == 1
    assert second[key("tracking.event.delivered", provider="recorder")] == 2
    meter_provider.shutdown()


def test_otel_instrumenting_twice_counts_once(
    tracking_events: RecordingProvider, caplog: pytest.LogCaptureFixture
) -> None:
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    with caplog.at_level(logging.WARNING):
        otel.instrument(meter_provider)
        otel.instrument(meter_provider)
    assert not caplog.records
    tc.track("Signed Up")
    tracking_events.settle()
    series = otel_series(reader.get_metrics_data())
    assert series == expected_series("recorder", accepted=1, delivered=1)
    meter_provider.shutdown()


GLOBAL_PROVIDER = """
from opentelemetry import metrics
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
import tracking_core as tc
from tracking_core.metrics import otel
from tracking_core.testing import RecordingProvider, reset_tracking

reset_tracking()
otel.instrument()  # before the application sets its provider: the API's proxy forwards
reader = InMemoryMetricReader()
metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
tc.register_tracking_provider(RecordingProvider("recorder"))
tc.track("Signed Up")
assert tc.flush_tracking(10)
(scope,) = reader.get_metrics_data().resource_metrics[0].scope_metrics
for metric in scope.metrics:
    if metric.name == "tracking.event.delivered":
        print([(dict(p.attributes), p.value) for p in metric.data.data_points])
"""


def test_otel_instrument_uses_the_global_provider_even_when_set_later(tmp_path: Path) -> None:
    # The global meter provider can be set once per process: in a process of its own.
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(GLOBAL_PROVIDER)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT), "TRACKING_DISABLED": "1"},
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[({'provider': 'recorder'}, 1)]"


# -- Prometheus -----------------------------------------------------------------------------------


def test_prometheus_exposition(tracking_events: RecordingProvider) -> None:
    registry = CollectorRegistry()
    collector = prometheus.register(registry)
    assert isinstance(collector, prometheus.TrackingCollector)
    tc.track("Signed Up")
    tc.track("")
    tracking_events.settle()

    text = generate_latest(registry).decode()
    assert "# TYPE tracking_event_delivered_total counter" in text
    assert 'tracking_event_delivered_total{provider="recorder"} 1.0' in text
    assert "# TYPE tracking_event_queued gauge" in text
    assert 'tracking_event_queued{provider="recorder"} 0.0' in text
    assert 'tracking_event_dropped_total{provider="recorder",reason="bad_input"} 1.0' in text
    assert "# HELP tracking_event_accepted_total " in text
    sample = registry.get_sample_value
    assert sample("tracking_event_accepted_total", {"provider": "recorder"}) == 2
    assert sample("tracking_request_sent_total", {"provider": "recorder"}) == 0
    assert (
        sample("tracking_value_converted_total", {"provider": "recorder", "kind": "unconvertible"})
        == 0
    )


def test_prometheus_register_reads_nothing_and_refuses_a_second_time(
    clean_tracking: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads = []
    real = points.read_stats

    def counted() -> Mapping[str, tc.ProviderStats]:
        reads.append(1)
        return real()

    monkeypatch.setattr(points, "read_stats", counted)
    registry = CollectorRegistry(auto_describe=True)
    prometheus.register(registry)
    assert reads == []  # registration describes, it does not collect
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        prometheus.register(registry)
    generate_latest(registry)
    assert reads == [1]


# -- the shape of it ------------------------------------------------------------------------------


def test_every_count_of_provider_stats_is_exported() -> None:
    not_counts = {"last_status", "last_error"}
    counts = {f.name for f in dataclasses.fields(tc.ProviderStats)} - not_counts
    assert {metric.field for metric in points.METRICS} == counts


def test_the_metrics_page_lists_every_metric() -> None:
    page = (ROOT / "docs" / "metrics.md").read_text(encoding="utf-8")
    for metric in points.METRICS:
        assert f"`{metric.name}`" in page, metric.name
        assert f"`{metric.prometheus_name}`" in page, metric.prometheus_name
        assert f"`{metric.unit}`" in page, metric.unit
    assert "metrics.md" in (ROOT / "mkdocs.yml").read_text(encoding="utf-8")


IMPORTS = """
import sys
import tracking_core, tracking_core.metrics, tracking_core.metrics.points
tracking_core.track("first use")
tracking_core.flush_tracking(5)
print(sorted({m.split(".")[0] for m in sys.modules} & {"opentelemetry", "prometheus_client"}))
sys.modules["opentelemetry"] = None  # as if the extra were not installed
try:
    import tracking_core.metrics.otel
except ImportError as exc:
    print(exc)
"""


def test_importing_tracking_core_loads_neither_library(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACKING_")}
    env.update(PYTHONPATH=str(ROOT), TRACKING_DISABLED="1")
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(IMPORTS)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    loaded, missing = result.stdout.splitlines()
    assert loaded == "[]"
    assert "tracking-core[otel]" in missing
