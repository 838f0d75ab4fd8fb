"""What both exporters export: one definition per metric, and the points a stats snapshot gives.

Each `Metric` names one count of `ProviderStats` the way OpenTelemetry's naming guidance spells
it (``tracking.event.delivered``, unit ``{event}``) and, from that, the way Prometheus does
(``tracking_event_delivered``, to which the client library adds ``_total`` for a counter): the
same translation OpenTelemetry's own Prometheus exporter applies, so a dashboard reads the same
series whichever way the numbers travel. The exporters only turn `Metric.points` into their
library's types.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from typing import NamedTuple

from .._log import rate_limited
from ..convert import KEY_COLLISION, UNCONVERTIBLE
from ..engine.stats import DropReason, ProviderStats

__all__ = ["METRICS", "Metric", "Point", "read_stats", "snapshot"]


class Point(NamedTuple):
    """One value of a metric: its labels (``provider``, and ``reason`` or ``kind``)."""

    labels: Mapping[str, str]
    value: int


@dataclasses.dataclass(frozen=True)
class Metric:
    """One count of `ProviderStats`, as a metric.

    Attributes:
        name: the OpenTelemetry name (``tracking.event.delivered``).
        unit: the OpenTelemetry unit, an annotation in braces (``{event}``).
        description: what it counts (OpenTelemetry's description, Prometheus's HELP).
        field: the `ProviderStats` field it reads.
        monotonic: a count that only grows (a counter); False for a level (``queued``).
        by: for a field that is a mapping of counts, the label its keys go in.
        known: keys always reported for such a field, at 0 until they happen, so that rates and
            alerts work from the first collection.
    """

    name: str
    unit: str
    description: str
    field: str
    monotonic: bool = True
    by: str | None = None
    known: tuple[str, ...] = ()

    @property
    def labels(self) -> tuple[str, ...]:
        """The label names, in order: ``provider``, then `by` when there is one."""
        return ("provider",) if self.by is None else ("provider", self.by)

    @property
    def prometheus_name(self) -> str:
        """The Prometheus name as exposed (``tracking_event_delivered_total``)."""
        return self.prometheus_family + ("_total" if self.monotonic else "")

    @property
    def prometheus_family(self) -> str:
        """The name a Prometheus metric family is made with (without ``_total``)."""
        return self.name.replace(".", "_")

    def points(self, stats: Mapping[str, ProviderStats]) -> list[Point]:
        """This metric's points in a `tracking_stats()` snapshot, provider by provider."""
        result: list[Point] = []
        for provider, counts in stats.items():
            value = getattr(counts, self.field)
            if self.by is None:
                result.append(Point({"provider": provider}, int(value)))
                continue
            by_key: dict[str, int] = dict.fromkeys(self.known, 0)
            by_key.update(value)
            result.extend(
                Point({"provider": provider, self.by: str(k)}, int(n)) for k, n in by_key.items()
            )
        return result


METRICS: tuple[Metric, ...] = (
    Metric(
        "tracking.event.accepted",
        "{event}",
        "Events and identify calls that reached the provider (bad input included).",
        "accepted",
    ),
    Metric(
        "tracking.event.delivered",
        "{event}",
        "Events the provider took (a plain provider returned; an HTTP one got a 2xx answer).",
        "delivered",
    ),
    Metric(
        "tracking.event.dropped",
        "{event}",
        "Events given up on, by reason (queue_full, rejected, retries_exhausted, ...).",
        "dropped",
        by="reason",
        known=tuple(reason.value for reason in DropReason),
    ),
    Metric(
        "tracking.event.retried",
        "{event}",
        "Events sent again after a failed attempt.",
        "retried",
    ),
    Metric(
        "tracking.event.queued",
        "{event}",
        "Events waiting for the provider or in flight now.",
        "queued",
        monotonic=False,
    ),
    Metric(
        "tracking.attempt.failed",
        "{attempt}",
        "Provider calls or HTTP attempts that failed (each retry counts).",
        "failed",
    ),
    Metric(
        "tracking.request.sent",
        "{request}",
        "HTTP requests (batches) sent; batching providers only.",
        "batches",
    ),
    Metric(
        "tracking.response.truncated",
        "{response}",
        "HTTP answers longer than the 64 KiB the sender reads; only their start was read.",
        "truncated_answers",
    ),
    Metric(
        "tracking.value.converted",
        "{value}",
        "Property values the wire mapping could not send as given, by kind (key_collision, "
        "unconvertible); the events were sent.",
        "conversions",
        by="kind",
        known=(KEY_COLLISION, UNCONVERTIBLE),
    ),
)


def read_stats() -> Mapping[str, ProviderStats]:
    """What `tracking_stats()` returns, without waiting for plugin discovery.

    A collection must not block: discovery is started if it has not run (as `tracking_stats()`
    does), but not waited for; the providers it enables appear in the next collection.
    """
    from ..registry import runtime

    engine = runtime().engine
    engine.ensure_discovered(0)
    return engine.stats()


def snapshot() -> Mapping[str, ProviderStats]:
    """`read_stats()`, or nothing: a failure is logged (rate-limited), never raised."""
    try:
        return read_stats()
    except Exception as exc:
        rate_limited.log(
            logging.WARNING,
            "metrics",
            "tracking: metrics could not read the counters (%s)",
            type(exc).__name__,
        )
        return {}
