"""Faults at the destination, for each built-in provider against its strict fake on 127.0.0.1.

Every scenario checks the five promises of the delivery contract:

1. no exception reaches the caller (`track`, `flush_tracking` and `shutdown_tracking` are called
   directly: anything they raised would fail the test);
2. `track()` is never blocked: a burst of calls stays fast while the destination misbehaves;
3. every event is delivered exactly once after recovery, checked by event id against the ids a
   `RecordingProvider` registered alongside received, or counted as dropped under the right
   reason;
4. memory stays within its bound: ``tracking_stats()[name].queued`` never exceeds
   ``TRACKING_MAX_QUEUE`` (sampled throughout; one scenario pushes past a bound of 200);
5. shutdown returns within its budget.

Each scenario's figures go to the ``reliability_report`` (see conftest.py).
"""

from __future__ import annotations

import functools
import threading
import time

import pytest

import tracking_core as tc
from tracking_core.demo import Destination
from tracking_core.receivers import ReceivedRequest, Reply
from tracking_core.testing import RecordingProvider

from .conftest import (
    ALL_PROVIDERS,
    RECORDER,
    ProviderSwitch,
    QueueWatch,
    ReliabilityReport,
    assert_exactly_once,
    settle,
    slow_responder,
    stats_of,
    tally,
    timed_shutdown,
    track_burst,
    vendor_error,
    wait_until,
    wire_count,
)

#: Every scenario runs against each built-in provider and its fake.
EACH_PROVIDER = pytest.mark.parametrize("provider", ALL_PROVIDERS)

#: Events per scenario, and the bound a burst of them must stay under (generous: a busy CI
#: machine; `track()` itself costs about a microsecond).
EVENTS = 200
BURST_LIMIT = 2.0
#: Extra time allowed past a shutdown budget.
SHUTDOWN_MARGIN = 1.0
#: Default engine bound on each provider's queue (BASE_SETTINGS leaves TRACKING_MAX_QUEUE unset).
DEFAULT_MAX_QUEUE = 100_000


def _finish(budget: float = 2.0) -> float:
    """Shut down after a recovery: it must finish, within its budget."""
    finished, took = timed_shutdown(budget)
    assert finished, "shutdown_tracking() did not finish with a healthy destination"
    assert took < budget + SHUTDOWN_MARGIN, took
    return took


def _check_bound(watch: QueueWatch, provider: str, bound: int) -> None:
    assert watch.samples > 0
    assert watch.peak.get(provider, 0) <= bound, (watch.peak, bound)


@EACH_PROVIDER
def test_server_errors_then_recovery(
    provider: str,
    destinations: dict[str, Destination],
    enable_providers: ProviderSwitch,
    reliability_report: ReliabilityReport,
) -> None:
    destination = destinations[provider]
    recorder = enable_providers(provider)
    failures = 3
    destination.fake.fail_next(vendor_error(provider, 500), times=failures)

    with QueueWatch() as watch:
        took = track_burst(EVENTS, "http-500")
        assert took < BURST_LIMIT, took
        assert tc.flush_tracking(10)

    result = tally(destination, recorder)
    assert_exactly_once(result)
    assert result.stats.failed == failures, result.stats
    assert result.stats.retried >= failures, result.stats
    assert result.stats.last_status == 200
    _check_bound(watch, provider, DEFAULT_MAX_QUEUE)
    _finish()
    reliability_report.add(
        f"{provider}: HTTP 500 x{failures}, then recovery",
        f"{EVENTS} events, batches of 50",
        f"{result.summary()}; {result.stats.failed} failed attempts, "
        f"{result.stats.retried} events resent with the same ids",
        result.lost,
    )


@EACH_PROVIDER
def test_rate_limited_with_retry_after_then_recovery(
    provider: str,
    destinations: dict[str, Destination],
    enable_providers: ProviderSwitch,
    reliability_report: ReliabilityReport,
) -> None:
    destination = destinations[provider]
    recorder = enable_providers(provider)
    destination.fake.fail_next(vendor_error(provider, 429, retry_after="1"))

    with QueueWatch() as watch:
        took = track_burst(EVENTS, "http-429")
        assert took < BURST_LIMIT, took
        assert tc.flush_tracking(10)

    result = tally(destination, recorder)
    assert_exactly_once(result)
    assert result.stats.failed == 1, result.stats
    requests = destination.server.requests
    assert len(requests) >= 2
    # Retry-After: 1 is honoured: nothing is sent again before the second has passed (the
    # computed backoff alone is at most 0.05 s here).
    gap = requests[1].received_at - requests[0].received_at
    assert gap >= 0.9, gap
    _check_bound(watch, provider, DEFAULT_MAX_QUEUE)
    _finish()
    reliability_report.add(
        f"{provider}: HTTP 429 with Retry-After: 1, then recovery",
        f"{EVENTS} events, batches of 50",
        f"{result.summary()}; resent {gap:.1f}s later, as asked",
        result.lost,
    )


@EACH_PROVIDER
def test_connection_refused_then_server_returns_on_same_port(
    provider: str,
    destinations: dict[str, Destination],
    enable_providers: ProviderSwitch,
    reliability_report: ReliabilityReport,
) -> None:
    destination = destinations[provider]
    recorder = enable_providers(
        provider,
        MAX_ATTEMPTS="50",
        MAX_RETRY_TIME="20",
        CIRCUIT_THRESHOLD="3",
        CIRCUIT_PROBE_INTERVAL="0.2",
    )
    destination.server.stop()  # nothing listens on the port: connections are refused

    with QueueWatch() as watch:
        took = track_burst(EVENTS, "refused")
        assert took < BURST_LIMIT, took
        assert wait_until(lambda: stats_of(provider).failed >= 4, 5.0), stats_of(provider)
        outage = stats_of(provider)
        assert outage.delivered == 0 and not outage.dropped, outage
        destination.server.start()
        assert tc.flush_tracking(10)

    result = tally(destination, recorder)
    assert_exactly_once(result)
    assert result.stats.failed >= 4
    assert result.stats.last_status == 200
    _check_bound(watch, provider, DEFAULT_MAX_QUEUE)
    _finish()
    reliability_report.add(
        f"{provider}: connection refused, then the server returns on the same port",
        f"{EVENTS} events, batches of 50",
        f"{result.summary()}; {result.stats.failed} refused attempts, then probes resumed delivery",
        result.lost,
    )


@EACH_PROVIDER
def test_connection_reset_then_recovery(
    provider: str,
    destinations: dict[str, Destination],
    enable_providers: ProviderSwitch,
    reliability_report: ReliabilityReport,
) -> None:
    destination = destinations[provider]
    recorder = enable_providers(provider)
    resets = 2
    destination.fake.fail_next(Reply(action="reset"), times=resets)

    with QueueWatch() as watch:
        took = track_burst(EVENTS, "reset")
        assert took < BURST_LIMIT, took
        assert tc.flush_tracking(10)

    result = tally(destination, recorder)
    assert_exactly_once(result)
    assert result.stats.failed >= resets, result.stats
    assert result.stats.last_status == 200
    _check_bound(watch, provider, DEFAULT_MAX_QUEUE)
    _finish()
    reliability_report.add(
        f"{provider}: connection reset mid-request x{resets}, then recovery",
        f"{EVENTS} events, batches of 50",
        f"{result.summary()}; {result.stats.failed} attempts reset",
        result.lost,
    )


@EACH_PROVIDER
def test_hang_then_recovery_with_bounded_queue(
    provider: str,
    destinations: dict[str, Destination],
    enable_providers: ProviderSwitch,
    reliability_report: ReliabilityReport,
) -> None:
    destination = destinations[provider]
    bound = 200
    total = 3 * bound
    recorder = enable_providers(provider, HTTP_TIMEOUT="0.4", MAX_QUEUE=str(bound))
    hangs = 3
    destination.fake.fail_next(Reply(action="hang"), times=hangs)

    def caught_up(count: int) -> bool:
        return stats_of(RECORDER).delivered == count

    with QueueWatch() as watch:
        took = track_burst(50, "hang")
        # The first request is in the air (and will hang) before the rest is pushed.
        assert destination.server.wait_for(lambda requests: len(requests) >= 1, 5.0)
        pushed = 50
        while pushed < total:
            # Chunks smaller than the bound, each handed out before the next: the recorder (and
            # the intake) never overflow, so its ids are every event tracked.
            assert wait_until(functools.partial(caught_up, pushed), 5.0), stats_of(RECORDER)
            took += track_burst(50, "hang", start=pushed)
            pushed += 50
        assert took < BURST_LIMIT, took
        assert wait_until(functools.partial(caught_up, total), 5.0)
        during = stats_of(provider)
        assert tc.flush_tracking(10)

    result = tally(destination, recorder)
    assert len(result.expected) == total
    assert_exactly_once(result, allowed_drops={tc.DropReason.QUEUE_FULL})
    full = result.stats.dropped.get(tc.DropReason.QUEUE_FULL, 0)
    assert full > 0, f"the queue never filled while the destination hung: {during!r}"
    assert result.delivered + full == total
    assert result.delivered >= bound
    assert result.stats.failed >= hangs
    assert stats_of(RECORDER).dropped == {}
    _check_bound(watch, provider, bound)
    _finish()
    reliability_report.add(
        f"{provider}: server hangs (no answer) x{hangs}, then recovery; TRACKING_MAX_QUEUE={bound}",
        f"{total} events while the first request hung (HTTP timeout 0.4 s)",
        f"{result.summary()}; peak queue {watch.peak.get(provider, 0)} <= {bound}",
        result.lost,
    )


@EACH_PROVIDER
def test_slow_server_delivers_everything_without_blocking(
    provider: str,
    destinations: dict[str, Destination],
    enable_providers: ProviderSwitch,
    reliability_report: ReliabilityReport,
) -> None:
    destination = destinations[provider]
    delay = 1.0
    destination.server.responder = slow_responder(destination.fake, delay)
    recorder = enable_providers(provider, BATCH_SIZE="100")
    half = EVENTS // 2

    with QueueWatch() as watch:
        first = track_burst(half, "slow")
        assert destination.server.wait_for(lambda requests: len(requests) >= 1, 5.0)
        # A request is in the air for a second: the caller does not notice.
        second = track_burst(half, "slow", start=half)
        assert first < BURST_LIMIT and second < 0.5, (first, second)
        assert tc.flush_tracking(10)

    result = tally(destination, recorder)
    assert_exactly_once(result)
    assert result.stats.failed == 0 and result.stats.retried == 0, result.stats
    _check_bound(watch, provider, DEFAULT_MAX_QUEUE)
    _finish()
    reliability_report.add(
        f"{provider}: slow server ({delay:g} s per request)",
        f"{EVENTS} events, batches of 100",
        f"{result.summary()}; {half} track() calls took {second * 1000:.1f} ms while a "
        "request was in the air",
        result.lost,
    )


@EACH_PROVIDER
def test_payload_too_large_splits_batches(
    provider: str,
    destinations: dict[str, Destination],
    enable_providers: ProviderSwitch,
    reliability_report: ReliabilityReport,
) -> None:
    destination = destinations[provider]
    limit = 10
    poison = "poison-7f3a-too-large"
    answered: list[tuple[int, int]] = []  # (events carried, status) per request
    lock = threading.Lock()
    fake = destination.fake

    def respond(request: ReceivedRequest) -> Reply:
        carried = wire_count(request)
        if poison.encode() in request.body or carried > limit:
            reply = vendor_error(provider, 413)
        else:
            reply = fake(request)
        with lock:
            answered.append((carried, reply.status))
        return reply

    destination.server.responder = respond
    recorder = enable_providers(provider)

    with QueueWatch() as watch:
        took = track_burst(EVENTS // 2, "413")
        tc.track("Reliability Check", {"seq": -1, "blob": poison}, user_id="user-00413")
        took += track_burst(EVENTS // 2, "413", start=EVENTS // 2)
        assert took < BURST_LIMIT, took
        assert tc.flush_tracking(10)

    result = tally(destination, recorder)
    assert len(result.expected) == EVENTS + 1
    assert_exactly_once(result, allowed_drops={tc.DropReason.TOO_LARGE})
    assert dict(result.stats.dropped) == {tc.DropReason.TOO_LARGE: 1}
    assert result.delivered == EVENTS
    refused = sum(1 for _, status in answered if status == 413)
    assert refused > 0
    assert all(carried <= limit for carried, status in answered if status == 200), answered
    _check_bound(watch, provider, DEFAULT_MAX_QUEUE)
    _finish()
    reliability_report.add(
        f"{provider}: HTTP 413 above {limit} events a request; one event too large alone",
        f"{EVENTS + 1} events, batches of 50",
        f"{result.summary()}; {refused} answers 413, batches halved down to <= {limit}",
        result.lost,
    )


@EACH_PROVIDER
def test_destination_down_for_the_whole_run(
    provider: str,
    destinations: dict[str, Destination],
    enable_providers: ProviderSwitch,
    reliability_report: ReliabilityReport,
) -> None:
    destination = destinations[provider]
    # Three quick refusals exhaust the first batch and open the circuit; the next probe is 5 s
    # away, longer than the shutdown budget, so the batches behind it are given up at shutdown.
    recorder = enable_providers(
        provider,
        MAX_ATTEMPTS="3",
        MAX_RETRY_TIME="10",
        CIRCUIT_THRESHOLD="3",
        CIRCUIT_PROBE_INTERVAL="5",
    )
    destination.server.stop()
    budget = 1.0

    with QueueWatch() as watch:
        took = track_burst(EVENTS, "down")
        assert took < BURST_LIMIT, took
        assert wait_until(
            lambda: stats_of(provider).dropped.get(tc.DropReason.RETRIES_EXHAUSTED, 0) > 0, 5.0
        ), stats_of(provider)
        finished, spent = timed_shutdown(budget)
    assert spent < budget + SHUTDOWN_MARGIN, spent
    assert finished, "the engine should give up at once rather than wait for the next probe"

    final = settle(provider)
    result = tally(destination, recorder)
    assert_exactly_once(
        result, allowed_drops={tc.DropReason.RETRIES_EXHAUSTED, tc.DropReason.SHUTDOWN}
    )
    assert result.delivered == 0 and result.arrived == ()
    assert final.delivered == 0
    assert sum(final.dropped.values()) == EVENTS, final
    assert final.dropped.get(tc.DropReason.RETRIES_EXHAUSTED, 0) > 0, final
    assert final.dropped.get(tc.DropReason.SHUTDOWN, 0) > 0, final
    assert len(destination.server.requests) == 0
    _check_bound(watch, provider, DEFAULT_MAX_QUEUE)
    dropped = ", ".join(f"{count} {reason}" for reason, count in sorted(final.dropped.items()))
    reliability_report.add(
        f"{provider}: destination down (connection refused) for the whole run",
        f"{EVENTS} events, shutdown budget {budget:g} s",
        f"0 delivered; dropped and counted: {dropped}; shutdown returned in {spent:.2f} s",
        result.lost,
    )


# -- shutdown out of budget: regressions for two bugs this suite found in Lane.abandon() -------


def _abandon_mid_request(
    destination: Destination, enable_providers: ProviderSwitch, flush_interval: str
) -> tuple[RecordingProvider, float]:
    """One batch in the air at a server answering 200 after 1 s, and a 0.3 s shutdown budget:
    the shutdown runs out of time with the batch in flight. Returns once the answer came."""
    delay = 1.0
    destination.server.responder = slow_responder(destination.fake, delay)
    recorder = enable_providers(destination.provider, FLUSH_INTERVAL=flush_interval)
    track_burst(50, "abandon")  # a full batch: sent at once
    assert destination.server.wait_for(lambda requests: len(requests) == 1, 5.0)
    finished, spent = timed_shutdown(0.3)
    assert not finished and spent < 0.3 + SHUTDOWN_MARGIN
    assert wait_until(lambda: stats_of(destination.provider).delivered == 50, 5.0)
    return recorder, spent


def test_shutdown_out_of_budget_counts_the_batch_in_flight_once(
    destinations: dict[str, Destination], enable_providers: ProviderSwitch
) -> None:
    destination = destinations["posthog"]
    recorder, _ = _abandon_mid_request(destination, enable_providers, "0.05")
    final = settle(destination.provider)
    result = tally(destination, recorder)
    assert result.delivered == 50  # the destination did take the batch
    # Each accepted event ends as delivered or dropped, not both.
    assert final.delivered + sum(final.dropped.values()) == final.accepted == 50, final


def test_tracking_works_again_after_a_shutdown_out_of_budget(
    destinations: dict[str, Destination], enable_providers: ProviderSwitch
) -> None:
    destination = destinations["posthog"]
    _abandon_mid_request(destination, enable_providers, "30")
    settle(destination.provider)
    before = stats_of(destination.provider)
    assert len(destination.server.requests) == 1
    # api.md: "Tracking may be used again afterwards."
    tc.track("After Shutdown", user_id="user-00001")
    # The dispatcher offers each event to the lanes in registration order: once the recorder
    # (registered last) has it, PostHog's lane has it too.
    assert wait_until(lambda: stats_of(RECORDER).delivered == 51, 2.0)
    time.sleep(0.3)
    # With a 30 s flush interval and a batch size of 50, one event waits for a flush...
    assert len(destination.server.requests) == 1, "sent at once: the flush interval is ignored"
    assert stats_of(destination.provider).queued == 1, stats_of(destination.provider)
    # ...and is delivered by it, not dropped.
    assert tc.flush_tracking(5)
    after = stats_of(destination.provider)
    assert after.delivered == before.delivered + 1, after
    assert after.dropped == before.dropped, after
    assert len(destination.server.requests) == 2
