"""Faults at the destination, for each provider against its strict fake on 127.0.0.1.

Every scenario checks the five promises of the delivery contract:

1. no exception reaches the caller (`track`, `flush_tracking` and `shutdown_tracking` are called
   directly: anything they raised would fail the test);
2. `track()` is never blocked: a burst of calls stays fast while the destination misbehaves;
3. every event is delivered exactly once after recovery, checked by event id against the ids a
   `RecordingProvider` registered alongside received, or counted as dropped under the right
   reason;
4. memory stays within its bound: in the scenario that pushes past a ``TRACKING_MAX_QUEUE`` of
   200, ``tracking_stats()[name].queued`` (sampled throughout) never exceeds it;
5. shutdown returns within its budget.

Each scenario's figures go to the ``reliability_report`` (see conftest.py).
"""

from __future__ import annotations

import dataclasses
import functools
import threading
import time
from collections.abc import Collection

import pytest

import tracking_core as tc
from tracking_core.fakes import VendorFake
from tracking_core.receivers import ReceivedRequest, Reply
from tracking_core.testing import RecordingProvider

from ..harness import RestartableReceiver, Served, Tally, assert_exactly_once
from .conftest import (
    PROVIDERS,
    RECORDER,
    ProviderSwitch,
    QueueWatch,
    ReliabilityReport,
    recorded,
    settle,
    slow_responder,
    stats_of,
    timed_shutdown,
    track_burst,
    wait_until,
)

#: Events per scenario, and the bound a burst of them must stay under (generous: a busy CI
#: machine; `track()` itself costs about a microsecond).
EVENTS = 200
BURST_LIMIT = 2.0
#: Extra time allowed past a shutdown budget.
SHUTDOWN_MARGIN = 1.0
#: How late a slow server answers (seconds).
SLOW_ANSWER = 1.0
#: The queue bound (TRACKING_MAX_QUEUE) of the scenario that fills it.
QUEUE_BOUND = 200


@dataclasses.dataclass
class Fault:
    """One scenario against one provider: its served fake, the switch that enables it, the
    report."""

    provider: str
    destination: Served
    enable: ProviderSwitch
    report: ReliabilityReport
    #: What the scenario tracks, for the report.
    load: str = f"{EVENTS} events, batches of 50"

    @property
    def fake(self) -> VendorFake:
        return self.destination.fake

    @property
    def server(self) -> RestartableReceiver:
        return self.destination.server

    def burst(
        self, recorder: RecordingProvider, scenario: str, allowed_drops: Collection[str] = ()
    ) -> Tally:
        """`EVENTS` quick `track()` calls, a flush, and the exactly-once check."""
        took = track_burst(EVENTS, scenario)
        assert took < BURST_LIMIT, took
        assert tc.flush_tracking(10)
        return assert_exactly_once(recorded(self.destination, recorder), allowed_drops)

    def refused(
        self, scenario: str, attempts: str, retry_time: str, probe_interval: str
    ) -> RecordingProvider:
        """Enable the provider (the circuit opening after 3 failures), stop its server (nothing
        listens on the port: connections are refused) and track `EVENTS` quick calls."""
        recorder = self.enable(
            self.provider,
            MAX_ATTEMPTS=attempts,
            MAX_RETRY_TIME=retry_time,
            CIRCUIT_THRESHOLD="3",
            CIRCUIT_PROBE_INTERVAL=probe_interval,
        )
        self.server.stop()
        took = track_burst(EVENTS, scenario)
        assert took < BURST_LIMIT, took
        return recorder

    def finish(self, what: str, happened: str, result: Tally) -> None:
        """Shut down after a recovery (it must finish, within its budget); report the row."""
        budget = 2.0
        finished, took = timed_shutdown(budget)
        assert finished, "shutdown_tracking() did not finish with a healthy destination"
        assert took < budget + SHUTDOWN_MARGIN, took
        row = f"{result.summary()}; {happened}"
        self.report.add(f"{self.provider}: {what}", self.load, row, result.lost)


@pytest.fixture(params=PROVIDERS)
def fault(
    request: pytest.FixtureRequest,
    destinations: dict[str, Served],
    enable_providers: ProviderSwitch,
    reliability_report: ReliabilityReport,
) -> Fault:
    """Each provider whose plugin ships a fake, in turn."""
    provider: str = request.param
    return Fault(provider, destinations[provider], enable_providers, reliability_report)


def test_server_errors_then_recovery(fault: Fault) -> None:
    recorder = fault.enable(fault.provider)
    failures = 3
    # 503: every provider retries it (OTLP's spec retries 429, 502, 503 and 504 only).
    fault.fake.fail_next(503, times=failures)
    result = fault.burst(recorder, "http-503")
    assert result.counters.failed == failures, result.stats
    assert result.counters.retried >= failures, result.stats
    assert 200 <= (result.counters.last_status or 0) < 300  # GA4 answers 204
    fault.finish(
        f"HTTP 503 x{failures}, then recovery",
        f"{result.counters.failed} failed attempts, "
        f"{result.counters.retried} events resent with the same ids",
        result,
    )


def test_rate_limited_with_retry_after_then_recovery(fault: Fault) -> None:
    recorder = fault.enable(fault.provider)
    fault.fake.fail_next(fault.fake.error(429, retry_after="1"))
    result = fault.burst(recorder, "http-429")
    assert result.counters.failed == 1, result.stats
    requests = fault.server.requests
    assert len(requests) >= 2
    # Retry-After: 1 is honoured: nothing is sent again before the second has passed (the
    # computed backoff alone is at most 0.05 s here).
    gap = requests[1].received_at - requests[0].received_at
    assert gap >= 0.9, gap
    fault.finish(
        "HTTP 429 with Retry-After: 1, then recovery",
        f"resent {gap:.1f}s later, as asked",
        result,
    )


def test_connection_refused_then_server_returns_on_same_port(fault: Fault) -> None:
    recorder = fault.refused("refused", attempts="50", retry_time="20", probe_interval="0.2")
    assert wait_until(lambda: stats_of(fault.provider).failed >= 4, 5.0), stats_of(fault.provider)
    outage = stats_of(fault.provider)
    assert outage.delivered == 0 and not outage.dropped, outage
    fault.server.start()
    assert tc.flush_tracking(10)

    result = assert_exactly_once(recorded(fault.destination, recorder))
    assert result.counters.failed >= 4
    assert 200 <= (result.counters.last_status or 0) < 300  # GA4 answers 204
    fault.finish(
        "connection refused, then the server returns on the same port",
        f"{result.counters.failed} refused attempts, then probes resumed delivery",
        result,
    )


def test_connection_reset_then_recovery(fault: Fault) -> None:
    recorder = fault.enable(fault.provider)
    resets = 2
    fault.fake.fail_next(Reply(action="reset"), times=resets)
    result = fault.burst(recorder, "reset")
    assert result.counters.failed >= resets, result.stats
    assert 200 <= (result.counters.last_status or 0) < 300  # GA4 answers 204
    fault.finish(
        f"connection reset mid-request x{resets}, then recovery",
        f"{result.counters.failed} attempts reset",
        result,
    )


def test_hang_then_recovery_with_bounded_queue(fault: Fault) -> None:
    recorder = fault.enable(fault.provider, HTTP_TIMEOUT="0.4", MAX_QUEUE=str(QUEUE_BOUND))
    total = 3 * QUEUE_BOUND
    fault.load = f"{total} events while the first request hung (HTTP timeout 0.4 s)"
    hangs = 3
    fault.fake.fail_next(Reply(action="hang"), times=hangs)

    def caught_up(count: int) -> bool:
        return stats_of(RECORDER).delivered == count

    with QueueWatch() as watch:
        took = track_burst(50, "hang")
        # The first request is in the air (and will hang) before the rest is pushed.
        assert fault.server.wait_for(lambda requests: len(requests) >= 1, 5.0)
        pushed = 50
        while pushed < total:
            # Chunks smaller than the bound, each handed out before the next: the recorder (and
            # the intake) never overflow, so its ids are every event tracked.
            assert wait_until(functools.partial(caught_up, pushed), 5.0), stats_of(RECORDER)
            took += track_burst(50, "hang", start=pushed)
            pushed += 50
        assert took < BURST_LIMIT, took
        assert wait_until(functools.partial(caught_up, total), 5.0)
        during = stats_of(fault.provider)
        assert tc.flush_tracking(10)

    result = recorded(fault.destination, recorder)
    assert len(result.expected) == total
    assert_exactly_once(result, allowed_drops={tc.DropReason.QUEUE_FULL})
    full = result.counters.dropped.get(tc.DropReason.QUEUE_FULL, 0)
    assert full > 0, f"the queue never filled while the destination hung: {during!r}"
    assert result.delivered + full == total
    assert result.delivered >= QUEUE_BOUND
    assert result.counters.failed >= hangs
    assert stats_of(RECORDER).dropped == {}
    # The bound held: sampled throughout, the queue never held more than TRACKING_MAX_QUEUE.
    assert watch.samples > 0
    assert watch.peak.get(fault.provider, 0) <= QUEUE_BOUND, (watch.peak, QUEUE_BOUND)
    fault.finish(
        f"server hangs (no answer) x{hangs}, then recovery; TRACKING_MAX_QUEUE={QUEUE_BOUND}",
        f"peak queue {watch.peak.get(fault.provider, 0)} <= {QUEUE_BOUND}",
        result,
    )


def test_slow_server_delivers_everything_without_blocking(fault: Fault) -> None:
    recorder = fault.enable(fault.provider, BATCH_SIZE="100")
    fault.load = f"{EVENTS} events, batches of 100"
    fault.server.responder = slow_responder(fault.fake, SLOW_ANSWER)
    half = EVENTS // 2

    # One user: a vendor that sends each user's events apart (GA4) then needs as few
    # requests as the others, each a second long here.
    first = track_burst(half, "slow", users=1)
    assert fault.server.wait_for(lambda requests: len(requests) >= 1, 5.0)
    # A request is in the air for a second: the caller does not notice.
    second = track_burst(half, "slow", start=half, users=1)
    assert first < BURST_LIMIT and second < 0.5, (first, second)
    assert tc.flush_tracking(30)

    result = assert_exactly_once(recorded(fault.destination, recorder))
    assert result.counters.failed == 0 and result.counters.retried == 0, result.stats
    fault.finish(
        f"slow server ({SLOW_ANSWER:g} s per request)",
        f"{half} track() calls took {second * 1000:.1f} ms while a request was in the air",
        result,
    )


def test_payload_too_large_splits_batches(fault: Fault) -> None:
    # Each event of the burst carries the scenario's name as a property value, verbatim in
    # any JSON body: counting it counts the events a request carries.
    scenario, poison, limit = "split-by-413-c0ffee", "poison-7f3a-too-large", 10
    answered: list[tuple[int, int]] = []  # (events carried, status) per request
    lock = threading.Lock()
    fake = fault.fake

    def respond(request: ReceivedRequest) -> Reply:
        carried = request.body.count(scenario.encode())
        if poison.encode() in request.body or carried > limit:
            reply = fake.error(413)
        else:
            reply = fake(request)
        with lock:
            answered.append((carried, reply.status))
        return reply

    fault.server.responder = respond
    recorder = fault.enable(fault.provider)
    fault.load = f"{EVENTS + 1} events, batches of 50"

    took = track_burst(EVENTS // 2, scenario)
    tc.track("Reliability Check", {"seq": -1, "blob": poison}, user_id="user-00413")
    took += track_burst(EVENTS // 2, scenario, start=EVENTS // 2)
    assert took < BURST_LIMIT, took
    assert tc.flush_tracking(10)

    result = recorded(fault.destination, recorder)
    assert len(result.expected) == EVENTS + 1
    assert_exactly_once(result, allowed_drops={tc.DropReason.TOO_LARGE})
    assert dict(result.counters.dropped) == {tc.DropReason.TOO_LARGE: 1}
    assert result.delivered == EVENTS
    refused = sum(1 for _, status in answered if status == 413)
    assert refused > 0
    assert all(carried <= limit for carried, status in answered if status < 300), answered
    fault.finish(
        f"HTTP 413 above {limit} events a request; one event too large alone",
        f"{refused} answers 413, batches halved down to <= {limit}",
        result,
    )


def test_destination_down_for_the_whole_run(fault: Fault) -> None:
    # Every batch is refused at once and the circuit opens: the next probe is 5 s away, longer
    # than the shutdown budget. The shutdown does not drop what its budget can still try: it
    # probes within the budget, and what still fails is dropped and counted.
    recorder = fault.refused("down", attempts="3", retry_time="10", probe_interval="5")
    budget = 1.0
    assert wait_until(lambda: stats_of(fault.provider).failed >= 3, 5.0), stats_of(fault.provider)
    finished, spent = timed_shutdown(budget)
    assert spent < budget + SHUTDOWN_MARGIN, spent
    assert finished, "the engine should end within the budget, not wait for the next probe"

    final = settle(fault.provider)
    result = recorded(fault.destination, recorder)
    assert_exactly_once(
        result, allowed_drops={tc.DropReason.RETRIES_EXHAUSTED, tc.DropReason.SHUTDOWN}
    )
    assert result.delivered == 0 and result.arrived == ()
    assert final.delivered == 0
    assert sum(final.dropped.values()) == EVENTS, final
    assert set(final.dropped) <= {tc.DropReason.RETRIES_EXHAUSTED, tc.DropReason.SHUTDOWN}, final
    assert len(fault.server.requests) == 0
    dropped = ", ".join(f"{count} {reason}" for reason, count in sorted(final.dropped.items()))
    fault.report.add(
        f"{fault.provider}: destination down (connection refused) for the whole run",
        f"{EVENTS} events, shutdown budget {budget:g} s",
        f"0 delivered; dropped and counted: {dropped}; shutdown returned in {spent:.2f} s",
        result.lost,
    )


# -- shutdown out of budget: regressions for two bugs this suite found in Lane.abandon() -------


def _abandon_mid_request(
    destination: Served, enable_providers: ProviderSwitch, flush_interval: str
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
    destinations: dict[str, Served], enable_providers: ProviderSwitch
) -> None:
    destination = destinations["posthog"]
    recorder, _ = _abandon_mid_request(destination, enable_providers, "0.05")
    final = settle(destination.provider)
    result = recorded(destination, recorder)
    assert result.delivered == 50  # the destination did take the batch
    # Each accepted event ends as delivered or dropped, not both.
    assert final.delivered + sum(final.dropped.values()) == final.accepted == 50, final


def test_tracking_works_again_after_a_shutdown_out_of_budget(
    destinations: dict[str, Served], enable_providers: ProviderSwitch
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
