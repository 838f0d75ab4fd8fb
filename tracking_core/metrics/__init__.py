"""tracking-core's counters as metrics, for the monitoring an application already runs.

- `tracking_core.metrics.otel`: ``instrument(meter_provider=None)`` registers observable
  instruments on an OpenTelemetry Meter (needs ``pip install 'tracking-core[otel]'``).
- `tracking_core.metrics.prometheus`: ``register(registry=REGISTRY)`` adds a
  `TrackingCollector` to a Prometheus registry (needs ``pip install 'tracking-core[prometheus]'``).
- `tracking_core.metrics.points`: the metric definitions both use (names, units, labels).

Importing this package (or ``points``) loads neither library; each exporter module imports its
own. Every value is read from `tracking_core.tracking_stats()` when the metrics are collected.
See docs/metrics.md.
"""
