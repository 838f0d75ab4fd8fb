"""`tracking_stats()` as Prometheus metrics: `TrackingCollector` and `register(registry)`.

Needs ``prometheus-client`` (``pip install 'tracking-core[prometheus]'``). The collector reads
the counters on each scrape and yields counter and gauge families labelled by ``provider``
(and ``reason`` or ``kind``); nothing is recorded on `track()`'s path.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

try:
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
    from prometheus_client.metrics_core import Metric as Family
    from prometheus_client.registry import REGISTRY, Collector, CollectorRegistry
except ImportError as exc:  # pragma: no cover - the extra is part of the test environment
    raise ImportError(
        "tracking_core.metrics.prometheus needs prometheus-client: "
        "pip install 'tracking-core[prometheus]'"
    ) from exc

from .._log import rate_limited
from ..engine.stats import ProviderStats
from . import points

__all__ = ["TrackingCollector", "register"]


class TrackingCollector(Collector):
    """A Prometheus collector of tracking-core's counters, one family per count of
    `ProviderStats` (names in docs/metrics.md: ``tracking_event_delivered_total``, ...).

    `collect` reads the counters once per scrape, without waiting for plugin discovery and
    without I/O, and never raises (a failure is logged, rate-limited, and the families come
    out empty). `describe` names the families without reading anything, so registering reads
    nothing and a registry can refuse a clash of names at once.
    """

    def collect(self) -> list[Family]:
        """The families with one sample per provider (and reason or kind)."""
        try:
            return _families(points.snapshot())
        except Exception as exc:
            rate_limited.log(
                logging.WARNING,
                "metrics",
                "tracking: metrics could not be collected (%s)",
                type(exc).__name__,
            )
            return _families({})

    def describe(self) -> list[Family]:
        """The families, without samples."""
        return _families({})


def _families(stats: Mapping[str, ProviderStats]) -> list[Family]:
    families: list[Family] = []
    for metric in points.METRICS:
        family: CounterMetricFamily | GaugeMetricFamily
        if metric.monotonic:
            family = CounterMetricFamily(
                metric.prometheus_family, metric.description, labels=metric.labels
            )
        else:
            family = GaugeMetricFamily(
                metric.prometheus_family, metric.description, labels=metric.labels
            )
        for point in metric.points(stats):
            family.add_metric([point.labels[label] for label in metric.labels], point.value)
        families.append(family)
    return families


def register(registry: CollectorRegistry = REGISTRY) -> TrackingCollector:
    """Add a `TrackingCollector` to `registry` (the default registry, which
    ``prometheus_client.start_http_server`` and ``make_asgi_app`` serve) and return it.

    Raises:
        ValueError: the registry already has these names (registered twice), as any
            Prometheus registration does.
    """
    collector = TrackingCollector()
    registry.register(collector)
    return collector
