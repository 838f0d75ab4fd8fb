"""`tracking_stats()` as OpenTelemetry metrics: `instrument(meter_provider=None)`.

Needs the OpenTelemetry API (``pip install 'tracking-core[otel]'``); the SDK, its readers and
exporters are the application's choice. Every count is an asynchronous instrument whose
callback reads the counters when the SDK collects: nothing is recorded on `track()`'s path.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping

try:
    from opentelemetry import metrics as _otel
    from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation
except ImportError as exc:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError(
        "tracking_core.metrics.otel needs the OpenTelemetry API: pip install 'tracking-core[otel]'"
    ) from exc

from .._log import rate_limited
from .._version import __version__
from ..engine.stats import ProviderStats
from . import points

__all__ = ["METER_NAME", "instrument"]

#: The name of the Meter (the instrumentation scope) the instruments belong to.
METER_NAME = "tracking_core"


class _Snapshots:
    """One read of the counters per collection, shared by the instruments' callbacks.

    The SDK calls each callback once per collection; a callback that was already served the
    current snapshot is the first of a new collection, so it reads a fresh one. Whatever order
    the callbacks run in, a collection reads the counters once and all its values agree.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stats: Mapping[str, ProviderStats] | None = None
        self._served: set[str] = set()

    def get(self, name: str) -> Mapping[str, ProviderStats]:
        with self._lock:
            if self._stats is None or name in self._served:
                self._stats = points.snapshot()
                self._served = set()
            self._served.add(name)
            return self._stats


def _observer(
    metric: points.Metric, snapshots: _Snapshots
) -> Callable[[CallbackOptions], Iterable[Observation]]:
    def observe(options: CallbackOptions) -> Iterable[Observation]:
        try:
            stats = snapshots.get(metric.name)
            return [Observation(p.value, dict(p.labels)) for p in metric.points(stats)]
        except Exception as exc:  # never into the SDK's collection
            rate_limited.log(
                logging.WARNING,
                "metrics",
                "tracking: metric %s could not be observed (%s)",
                metric.name,
                type(exc).__name__,
            )
            return []

    return observe


def instrument(meter_provider: MeterProvider | None = None) -> None:
    """Report tracking-core's counters through OpenTelemetry.

    Registers one observable instrument per count of `ProviderStats` (see docs/metrics.md) on
    the ``tracking_core`` Meter of `meter_provider`, or of the global meter provider when None
    (set it first with ``opentelemetry.metrics.set_meter_provider``, or let the API's proxy
    forward to the one set later). Counts are observable counters, ``tracking.event.queued``
    an observable up-down counter; attributes are ``provider``, plus ``reason`` on
    ``tracking.event.dropped`` and ``kind`` on ``tracking.value.converted``.

    Each collection reads the counters once, without waiting for plugin discovery and without
    I/O; a failure is logged (rate-limited) and never raised into the SDK. Calling it again
    with the same meter provider registers nothing more.
    """
    meter = _otel.get_meter(METER_NAME, __version__, meter_provider=meter_provider)
    snapshots = _Snapshots()
    for metric in points.METRICS:
        create = (
            meter.create_observable_counter
            if metric.monotonic
            else meter.create_observable_up_down_counter
        )
        create(
            metric.name,
            callbacks=[_observer(metric, snapshots)],
            unit=metric.unit,
            description=metric.description,
        )
