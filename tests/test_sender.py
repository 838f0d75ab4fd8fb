"""The HTTP sender's retry, split and circuit rules, on an injected transport, clock and jitter.

Every test here drives a `Sender` synchronously through a real `Lane`'s `DeliveryControl`
(the counters are the lane's own), with ``httpx.MockTransport`` standing in for the network
and a `FakeTime` standing in for the clock and the backoff sleeps: no socket is opened and
nothing really sleeps, so the whole file runs in well under a second. What the network itself
does (deadlines, proxies, TLS, capped answers) is tested against real servers in
tests/test_http_engine.py and tests/test_http_hardening.py.
"""

from __future__ import annotations

import base64
import datetime as _dt
import email.utils
import logging
import os
import socket
import ssl
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import httpx
import pytest

import tracking_core as tc
from tracking_core.engine import DeliveryControl, Lane, ProviderStats
from tracking_core.http import HttpProvider, HttpRequest, HttpResponse, Outcome, SkipItem
from tracking_core.http.sender import Sender, full_jitter
from tracking_core.http.wire import WireItem, default_outcome, join_json
from tracking_core.registry import validate_provider
from tracking_core.settings import EngineSettings

KEY = "sk_live_sender_key_0123456789"
URL = "https://collect.example/v1"
UTC = _dt.timezone.utc


class FakeTime:
    """A monotonic clock that moves only when the sender sleeps (or a handler moves it), and the
    sleeps the sender asked for, in order."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> bool:
        self.sleeps.append(seconds)
        self.now += seconds
        return True


Answer = Callable[[httpx.Request], httpx.Response]


def status(code: int, body: bytes | str = b"", headers: Mapping[str, str] | None = None) -> Answer:
    """An answer with `code`: a fresh ``httpx.Response`` for every request."""
    content = body.encode() if isinstance(body, str) else body
    return lambda request: httpx.Response(code, content=content, headers=headers)


def raises(error: Exception) -> Answer:
    def answer(request: httpx.Request) -> httpx.Response:
        raise error

    return answer


class Network:
    """The scripted destination: each request gets the next answer (the last one repeats). It
    records every request, its items and the fake time it arrived at."""

    def __init__(self, clock: FakeTime, *answers: Answer) -> None:
        self.clock = clock
        self.answers = list(answers) or [status(200)]
        self.requests: list[httpx.Request] = []
        self.times: list[float] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        self.times.append(self.clock.now)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        return answer(request)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self)

    def batches(self) -> list[list[str]]:
        """The event names each request carried."""
        import json

        return [[item["name"] for item in json.loads(r.content)["batch"]] for r in self.requests]


Reader = Callable[[HttpResponse], Outcome]


class Collector(HttpProvider):
    """A minimal wire mapping: ``{"key": ..., "batch": [{id, name}]}`` to ``<url>/<route>``."""

    name = "mapping"

    def __init__(self, url: str = URL, reader: Reader | None = None) -> None:
        self.url, self.reader = url, reader
        self.answers: list[HttpResponse] = []

    def encode(self, item: tc.TrackingEvent | tc.TrackingIdentify) -> WireItem:
        if isinstance(item, tc.TrackingIdentify):
            return WireItem({"id": item.event_id, "name": item.user_id}, route="identify")
        if item.name == "skip":
            raise SkipItem("bad_input", "a skipped event")
        return WireItem({"id": item.event_id, "name": item.name, **item.properties})

    def build_request(self, route: str, items: Sequence[bytes], batch_id: str) -> HttpRequest:
        body = b'{"key":"' + KEY.encode() + b'","batch":' + join_json(items) + b"}"
        return HttpRequest(f"{self.url}/{route}", body, {"X-Batch": batch_id})

    def read_response(self, route: str, response: HttpResponse) -> Outcome:
        self.answers.append(response)
        return self.reader(response) if self.reader else default_outcome(response)

    def secrets(self) -> Sequence[str]:
        return (KEY,)


def events(*names: str, **properties: Any) -> list[tc.TrackingEvent]:
    now = _dt.datetime.now(UTC)
    return [tc.TrackingEvent(name, dict(properties), now) for name in names]


def numbered(count: int) -> list[tc.TrackingEvent]:
    return events(*(f"e{i}" for i in range(count)))


def settings(**overrides: Any) -> EngineSettings:
    """Defaults with a circuit that stays closed unless a test lowers its threshold."""
    values: dict[str, Any] = {"circuit_threshold": 1000, **overrides}
    return EngineSettings(**values)


class Harness:
    """A sender for `provider` on `network`, with the fake clock, and a lane to count for it."""

    def __init__(
        self,
        network: Network,
        provider: HttpProvider | None = None,
        *,
        jitter: Callable[[], float] = lambda: 1.0,
        real_sleep: bool = False,
        **overrides: Any,
    ) -> None:
        self.network = network
        self.provider = provider or Collector()
        self.sender = Sender(
            self.provider,
            transport=network.transport(),
            clock=network.clock.clock,
            jitter=jitter,
            sleep=None if real_sleep else network.clock.sleep,
        )
        self.lane = Lane(self.sender, settings(**overrides))
        self.control = DeliveryControl(self.lane)

    def deliver(self, items: Sequence[tc.TrackingEvent | tc.TrackingIdentify]) -> ProviderStats:
        self.sender.deliver_batch(items, self.control)
        return self.lane.stats()


@pytest.fixture
def clock() -> FakeTime:
    return FakeTime()


@pytest.fixture
def warnings(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    from tracking_core._log import rate_limited

    rate_limited.reset()
    caplog.set_level(logging.INFO, logger="tracking_core")
    yield caplog
    rate_limited.reset()


# -- retries ----------------------------------------------------------------------------------


def test_transient_failures_are_retried_with_the_same_items_until_delivered(
    clock: FakeTime,
) -> None:
    network = Network(
        clock, status(503), raises(httpx.ReadError("reset")), status(500), status(200)
    )
    harness = Harness(network)
    stats = harness.deliver(numbered(3))
    assert len(network.requests) == 4
    bodies = {request.content for request in network.requests}
    assert len(bodies) == 1  # the same items, byte for byte
    assert len({request.headers["x-batch"] for request in network.requests}) == 1
    assert (stats.delivered, stats.failed, stats.retried, stats.batches) == (3, 3, 9, 4)
    assert stats.dropped == {} and stats.last_status == 200


def test_backoff_doubles_from_the_base_up_to_the_cap(clock: FakeTime) -> None:
    network = Network(clock, status(503))
    harness = Harness(network, retry_backoff=0.5, retry_backoff_max=5.0, max_attempts=7)
    stats = harness.deliver(numbered(1))
    assert clock.sleeps == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]
    assert len(network.requests) == 7
    assert stats.dropped == {"retries_exhausted": 1}


def test_full_jitter_scales_each_ceiling_by_the_random_fraction(clock: FakeTime) -> None:
    fractions = iter([0.0, 0.5, 0.25, 0.999])
    network = Network(clock, status(503), status(503), status(503), status(503), status(200))
    harness = Harness(network, jitter=lambda: next(fractions), retry_backoff=1.0)
    harness.deliver(numbered(1))
    # A wait of 0 s is not slept: the request is simply attempted again at once.
    assert clock.sleeps == pytest.approx([0.5 * 2.0, 0.25 * 4.0, 0.999 * 8.0])


def test_the_default_jitter_is_uniform_in_zero_one() -> None:
    samples = [full_jitter() for _ in range(4000)]
    assert all(0.0 <= sample < 1.0 for sample in samples)
    assert min(samples) < 0.05 and max(samples) > 0.95  # spread over the whole range
    assert 0.4 < sum(samples) / len(samples) < 0.6


@pytest.mark.parametrize("header, waited", [("7", 7.0), ("0", 0.0), ("3600", 60.0), ("-5", 0.0)])
def test_retry_after_in_seconds_replaces_the_backoff_and_is_clamped(
    clock: FakeTime, header: str, waited: float
) -> None:
    network = Network(clock, status(429, headers={"Retry-After": header}), status(200))
    stats = Harness(network, retry_backoff=0.5).deliver(numbered(2))
    assert clock.sleeps == ([waited] if waited else [])  # a 0 s wait is not slept
    assert stats.delivered == 2


def test_retry_after_as_an_http_date_waits_until_then(clock: FakeTime) -> None:
    date = email.utils.formatdate(time.time() + 30, usegmt=True)
    network = Network(clock, status(503, headers={"Retry-After": date}), status(200))
    Harness(network, retry_backoff=0.5).deliver(numbered(1))
    (waited,) = clock.sleeps
    assert 27.0 <= waited <= 30.0  # the date is in whole seconds


def test_attempts_are_bounded_then_the_batch_is_dropped_and_logged(
    clock: FakeTime, warnings: pytest.LogCaptureFixture
) -> None:
    network = Network(clock, status(500))
    stats = Harness(network, max_attempts=4, retry_backoff=0.1).deliver(numbered(5))
    assert len(network.requests) == 4 and len(clock.sleeps) == 3
    assert stats.dropped == {"retries_exhausted": 5} and stats.delivered == 0
    assert stats.failed == 4 and stats.retried == 15
    assert any("after 4 attempts" in record.getMessage() for record in warnings.records)


def test_retry_time_is_bounded_by_the_clock(clock: FakeTime) -> None:
    network = Network(clock, status(503))
    harness = Harness(
        network, max_attempts=100, max_retry_time=35.0, retry_backoff=10.0, retry_backoff_max=10.0
    )
    stats = harness.deliver(numbered(1))
    # Attempts at 0, 10, 20 and 30 s; a fifth would start after 40 s, past the 35 s budget.
    assert [t - network.times[0] for t in network.times] == [0.0, 10.0, 20.0, 30.0]
    assert stats.dropped == {"retries_exhausted": 1}


def test_time_spent_in_attempts_counts_toward_the_retry_time(clock: FakeTime) -> None:
    def slow(request: httpx.Request) -> httpx.Response:
        clock.now += 20.0  # a slow destination: each attempt takes 20 s of the budget
        return httpx.Response(503)

    network = Network(clock, slow)
    harness = Harness(network, max_attempts=100, max_retry_time=50.0, retry_backoff=1.0)
    stats = harness.deliver(numbered(1))
    assert len(network.requests) == 3  # 20 s, 1 s, 20 s, 2 s, 20 s: the next would pass 50 s
    assert stats.dropped == {"retries_exhausted": 1}


# -- what an answer means ---------------------------------------------------------------------


def test_413_halves_the_batch_down_to_a_single_item_which_is_dropped(clock: FakeTime) -> None:
    import json

    def answer(request: httpx.Request) -> httpx.Response:
        names = [item["name"] for item in json.loads(request.content)["batch"]]
        too_large = len(names) > 2 or "huge" in names
        return httpx.Response(413 if too_large else 200)

    network = Network(clock, answer)
    stats = Harness(network).deliver(events("a", "b", "c", "d", "e", "huge", "g", "h"))
    assert [len(batch) for batch in network.batches()] == [8, 4, 2, 2, 4, 2, 1, 1, 2]
    assert stats.delivered == 7 and stats.dropped == {"too_large": 1}
    assert stats.retried == 0 and clock.sleeps == []  # a split is not a retry


def test_a_partial_rejection_drops_only_the_named_items_and_resends_the_rest(
    clock: FakeTime,
) -> None:
    outcomes = iter([Outcome("retry", "invalid fields", retry_after=0, rejected=[1, 3, 99])])
    provider = Collector(reader=lambda response: next(outcomes, Outcome("delivered")))
    network = Network(clock, status(400))
    stats = Harness(network, provider).deliver(numbered(5))
    assert network.batches() == [["e0", "e1", "e2", "e3", "e4"], ["e0", "e2", "e4"]]
    assert stats.delivered == 3 and stats.dropped == {"rejected": 2}


def test_retry_only_resends_just_those_and_counts_the_rest_delivered(clock: FakeTime) -> None:
    outcomes = iter([Outcome("retry", "throttled", retry_after=0, rejected=[0], retry_only=[2])])
    provider = Collector(reader=lambda response: next(outcomes, Outcome("delivered")))
    network = Network(clock, status(429))
    stats = Harness(network, provider).deliver(numbered(4))
    assert network.batches() == [["e0", "e1", "e2", "e3"], ["e2"]]
    assert stats.delivered == 3 and stats.dropped == {"rejected": 1} and stats.retried == 1


def test_a_rejection_with_everything_named_is_not_resent(clock: FakeTime) -> None:
    provider = Collector(reader=lambda response: Outcome("retry", "all bad", rejected=[0, 1]))
    network = Network(clock, status(400))
    stats = Harness(network, provider).deliver(numbered(2))
    assert len(network.requests) == 1 and clock.sleeps == []
    assert stats.dropped == {"rejected": 2}


def test_other_4xx_drop_the_batch_at_once(
    clock: FakeTime, warnings: pytest.LogCaptureFixture
) -> None:
    network = Network(clock, status(400, '{"error": "bad field"}'))
    stats = Harness(network).deliver(numbered(3))
    assert len(network.requests) == 1 and stats.dropped == {"rejected": 3}
    assert "bad field" in (stats.last_error or "")
    assert any("bad field" in record.getMessage() for record in warnings.records)


def test_410_stops_the_provider_and_nothing_more_is_sent(
    clock: FakeTime, warnings: pytest.LogCaptureFixture
) -> None:
    network = Network(clock, status(410, "endpoint removed"))
    provider = Collector()
    provider.max_events = 2
    harness = Harness(network, provider)
    stats = harness.deliver(numbered(5))  # three requests' worth: only the first is sent
    assert len(network.requests) == 1
    assert stats.dropped == {"provider_stopped": 5}
    assert harness.lane.stopped_why is not None and "410" in harness.lane.stopped_why


def test_routes_are_sent_apart_and_requests_cut_by_the_limits(clock: FakeTime) -> None:
    network = Network(clock)
    items: list[tc.TrackingEvent | tc.TrackingIdentify] = [*numbered(5)]
    items.insert(2, tc.TrackingIdentify("u-1", {}, _dt.datetime.now(UTC)))
    provider = Collector()
    provider.max_events = 2
    stats = Harness(network, provider).deliver(items)
    paths = [request.url.path for request in network.requests]
    assert paths == ["/v1/default", "/v1/default", "/v1/default", "/v1/identify"]
    assert network.batches() == [["e0", "e1"], ["e2", "e3"], ["e4"], ["u-1"]]
    assert stats.delivered == 6


def test_items_the_mapping_skips_or_cannot_encode_are_counted(clock: FakeTime) -> None:
    class Oversized(Collector):
        max_item_bytes = 200

    network = Network(clock)
    items = [*events("ok", "skip"), *events("big", pad="x" * 500)]
    stats = Harness(network, Oversized()).deliver(items)
    assert network.batches() == [["ok"]]
    assert stats.delivered == 1 and stats.dropped == {"bad_input": 1, "too_large": 1}


# -- the circuit ------------------------------------------------------------------------------


def test_the_circuit_opens_after_the_threshold_paces_probes_and_closes_on_success(
    clock: FakeTime, warnings: pytest.LogCaptureFixture
) -> None:
    network = Network(clock, *[status(503)] * 5, status(200))
    harness = Harness(
        network,
        circuit_threshold=3,
        circuit_probe_interval=30.0,
        retry_backoff=1.0,
        retry_backoff_max=1.0,
        max_attempts=50,
        max_retry_time=1000.0,
    )
    stats = harness.deliver(numbered(1))
    start = network.times[0]
    # Three failures at the backoff's pace (1 s), then one probe every 30 s until one succeeds.
    assert [t - start for t in network.times] == [0.0, 1.0, 2.0, 32.0, 62.0, 92.0]
    assert stats.delivered == 1
    lines = [record.getMessage() for record in warnings.records]
    assert any("failed 3 times in a row; probing it every 30s" in line for line in lines)
    assert any("answers again" in line for line in lines)
    # Closed again: the next batch goes at once, and one failure is retried at the backoff's
    # pace, not the probe interval's.
    network.answers = [status(503), status(200)]
    before = clock.now
    harness.deliver(numbered(1))
    assert network.times[-2:] == [before, before + 1.0]


def test_an_open_circuit_paces_the_next_batch_too(clock: FakeTime) -> None:
    network = Network(clock, status(503), status(503), status(200))
    harness = Harness(network, circuit_threshold=2, circuit_probe_interval=30.0, max_attempts=2)
    stats = harness.deliver(numbered(1))  # two failures: dropped, and the circuit opens
    assert stats.dropped == {"retries_exhausted": 1}
    opened = network.times[-1]
    harness.deliver(numbered(1))
    assert network.times[-1] == opened + 30.0  # the probe waited for the interval
    assert harness.lane.stats().delivered == 1


def test_a_partial_rejection_does_not_count_toward_the_circuit(clock: FakeTime) -> None:
    outcomes = iter([Outcome("retry", "bad", retry_after=0, rejected=[0])] * 3)
    provider = Collector(reader=lambda response: next(outcomes, Outcome("delivered")))
    network = Network(clock, status(400))
    harness = Harness(network, provider, circuit_threshold=1, circuit_probe_interval=30.0)
    harness.deliver(numbered(4))
    assert clock.sleeps == []  # never a probe interval (nor any wait: Retry-After 0)


# -- the shutdown budget ----------------------------------------------------------------------


def test_a_shutdown_budget_cuts_a_backoff_short(clock: FakeTime) -> None:
    """The real `DeliveryControl.sleep`: a backoff of ours that would outlast the shutdown's
    budget is cut to fit it, so the batch is tried again within the budget (never waiting for
    the 30 s backoff), and dropped when it still fails."""
    network = Network(clock, *[status(503)] * 20)
    harness = Harness(network, real_sleep=True, retry_backoff=30.0, retry_backoff_max=30.0)
    harness.lane.backlog.deadline = time.monotonic() + 2.0
    started = time.monotonic()
    stats = harness.deliver(numbered(3))
    assert time.monotonic() - started < 3.5  # within the budget, not the 30 s backoff
    assert len(network.requests) > 1  # tried again within the budget
    assert sum(stats.dropped.values()) == 3
    assert set(stats.dropped) <= {"shutdown", "retries_exhausted"}


def test_a_retry_after_longer_than_the_shutdown_budget_drops_at_once(clock: FakeTime) -> None:
    """The destination's own Retry-After is honoured: when it asks for more than the budget
    has left, the batch is dropped as ``shutdown`` without another attempt."""
    network = Network(clock, status(503, headers={"Retry-After": "30"}))
    harness = Harness(network, real_sleep=True)
    harness.lane.backlog.deadline = time.monotonic() + 5.0
    started = time.monotonic()
    stats = harness.deliver(numbered(3))
    assert time.monotonic() - started < 4.0
    assert len(network.requests) == 1
    assert stats.dropped == {"shutdown": 3}


def test_a_spent_shutdown_budget_sends_nothing(clock: FakeTime) -> None:
    network = Network(clock)
    harness = Harness(network, real_sleep=True)
    harness.lane.backlog.deadline = time.monotonic() - 1.0
    stats = harness.deliver(numbered(2))
    assert network.requests == [] and stats.dropped == {"shutdown": 2}


def test_each_attempt_carries_its_deadline_capped_by_the_shutdown_budget(clock: FakeTime) -> None:
    from tracking_core.transport import CONNECT_TIMEOUT_MAX, DEADLINE

    network = Network(clock)
    harness = Harness(network, real_sleep=True, http_timeout=10.0)
    harness.deliver(numbered(1))
    harness.lane.backlog.deadline = time.monotonic() + 2.0
    harness.deliver(numbered(1))
    free, budgeted = network.requests
    now = time.monotonic()
    assert 8.0 < free.extensions[DEADLINE] - now <= 10.0
    assert free.extensions["timeout"]["connect"] == CONNECT_TIMEOUT_MAX
    assert budgeted.extensions[DEADLINE] - now <= 2.0
    assert budgeted.extensions["timeout"]["read"] <= 2.0


# -- transport failures -----------------------------------------------------------------------


def failure(error: httpx.TransportError, cause: BaseException) -> httpx.TransportError:
    error.__cause__ = cause
    return error


def test_a_refused_connection_is_retried_and_named(clock: FakeTime) -> None:
    refused = failure(httpx.ConnectError("boom"), ConnectionRefusedError(111, "refused"))
    network = Network(clock, raises(refused))
    stats = Harness(network, max_attempts=2).deliver(numbered(1))
    assert len(network.requests) == 2 and stats.dropped == {"retries_exhausted": 1}
    assert "connection refused by collect.example:443" in (stats.last_error or "")


def test_a_certificate_failure_is_not_retried(
    clock: FakeTime, warnings: pytest.LogCaptureFixture
) -> None:
    cause = ssl.SSLCertVerificationError(1, "certificate verify failed")
    cause.verify_message = "self-signed certificate"
    network = Network(clock, raises(failure(httpx.ConnectError("boom"), cause)))
    stats = Harness(network, max_attempts=5).deliver(numbered(2))
    assert len(network.requests) == 1 and stats.dropped == {"rejected": 2}
    assert stats.failed == 0 and stats.retried == 0
    errors = [r.getMessage() for r in warnings.records if r.levelno >= logging.ERROR]
    assert any("self-signed" in line and "SSL_CERT_FILE" in line for line in errors), errors


# -- what the sender says ---------------------------------------------------------------------


def test_secrets_and_what_is_derived_from_them_are_masked(
    clock: FakeTime, warnings: pytest.LogCaptureFixture
) -> None:
    """URL credentials become a Basic header; the key, the password and the Basic token are
    masked when a destination echoes them, in ``last_error``, the sender's lines and the
    mapping's own warnings."""
    token = base64.b64encode(b"user:url-password-42").decode()

    class Echoing(Collector):
        def read_response(self, route: str, response: HttpResponse) -> Outcome:
            self.warn("echo", "%s: the answer said %s", self.name, response.text())
            return default_outcome(response)

    def echo(request: httpx.Request) -> httpx.Response:
        said = f"{request.headers['authorization']} {KEY} url-password-42"
        return httpx.Response(401, content=said.encode())

    provider = Echoing("https://user:url-password-42@collect.example/v1")
    network = Network(clock, echo)
    stats = Harness(network, provider, debug=True).deliver(numbered(1))
    (request,) = network.requests
    assert request.headers["authorization"] == f"Basic {token}"
    assert request.url.userinfo == b""  # credentials never go on the wire as they were
    shown = "\n".join([warnings.text, stats.last_error or "", repr(Sender(provider))])
    assert "***" in (stats.last_error or "")
    assert any("the answer said" in r.getMessage() for r in warnings.records)
    for secret in (KEY, "url-password-42", token):
        assert secret not in shown


def test_the_debug_line_names_the_destination_without_credentials(
    clock: FakeTime, warnings: pytest.LogCaptureFixture
) -> None:
    provider = Collector("https://user:url-password-42@collect.example/v1")
    Harness(Network(clock), provider, debug=True).deliver(numbered(2))
    (line,) = [r.getMessage() for r in warnings.records if "sent 2 items" in r.getMessage()]
    assert "mapping sent 2 items to collect.example/v1/default -> 200 in" in line
    assert "(attempt 1)" in line and "url-password-42" not in line and "user" not in line


def test_an_answer_past_the_cap_is_counted_cut_and_still_delivers(
    clock: FakeTime, warnings: pytest.LogCaptureFixture
) -> None:
    from tracking_core.transport import MAX_ANSWER_BYTES

    network = Network(clock, status(200, b"a" * (MAX_ANSWER_BYTES + 10)))
    harness = Harness(network)
    stats = harness.deliver(numbered(1))
    assert stats.delivered == 1 and stats.truncated_answers == 1
    (answer,) = harness.provider.answers  # type: ignore[attr-defined]
    assert answer.truncated is True and len(answer.body) == MAX_ANSWER_BYTES
    assert any("longer than" in r.getMessage() for r in warnings.records)


def test_requests_are_gzipped_above_the_threshold_when_the_mapping_allows(
    clock: FakeTime,
) -> None:
    import gzip

    class Zipping(Collector):
        def build_request(self, route: str, items: Sequence[bytes], batch_id: str) -> HttpRequest:
            request = super().build_request(route, items, batch_id)
            return HttpRequest(request.url, request.body, request.headers, gzip=True)

    network = Network(clock)
    harness = Harness(network, Zipping())
    harness.deliver(numbered(1))
    harness.deliver(events("big", pad="y" * 4000))
    small, large = network.requests
    assert "content-encoding" not in small.headers
    assert large.headers["content-encoding"] == "gzip"
    assert b"y" * 4000 in gzip.decompress(large.content)
    assert small.headers["user-agent"] == f"tracking-core/{tc.__version__} (mapping)"
    assert small.headers["content-type"] == "application/json"


# -- the split: the mapping holds no sending state ----------------------------------------------


def test_the_mapping_holds_no_sending_state_and_needs_no_track_method() -> None:
    provider = Collector()
    for name in ("track", "deliver_batch", "_client", "_circuit_until", "_send"):
        assert not hasattr(provider, name), name
    validate_provider(provider)  # an HttpProvider is accepted without track()


def test_the_lane_wraps_an_http_provider_in_its_own_sender() -> None:
    provider = Collector()
    lane = Lane(provider, settings())
    assert isinstance(lane.delivery, Sender) and lane.delivery.provider is provider
    assert lane.delivery.transport is None  # built on the first request, not before
    assert Lane(provider, settings()).delivery is not lane.delivery


def test_the_default_secrets_come_from_the_settings() -> None:
    class Settings:
        def secrets(self) -> tuple[str, ...]:
            return ("from-settings-1234",)

    class WithSettings(HttpProvider):
        name = "with-settings"

        def __init__(self) -> None:
            self.settings = Settings()

        def encode(self, item: tc.TrackingEvent | tc.TrackingIdentify) -> WireItem:
            return WireItem({})

        def build_request(self, route: str, items: Sequence[bytes], batch_id: str) -> HttpRequest:
            return HttpRequest("https://x.example", join_json(items))

    class Bare(WithSettings):
        def __init__(self) -> None:
            pass

    assert tuple(WithSettings().secrets()) == ("from-settings-1234",)
    assert tuple(Bare().secrets()) == ()


def test_the_given_transport_is_used_as_is(clock: FakeTime) -> None:
    network = Network(clock)
    harness = Harness(network)
    harness.deliver(numbered(1))
    assert isinstance(harness.sender.transport, httpx.MockTransport)
    assert harness.sender.batch_limit() == harness.provider.max_events


def test_a_split_with_rejected_items_halves_only_the_rest(clock: FakeTime) -> None:
    outcomes = iter([Outcome("split", "too large", rejected=[0])])
    provider = Collector(reader=lambda response: next(outcomes, Outcome("delivered")))
    network = Network(clock)
    stats = Harness(network, provider).deliver(numbered(5))
    assert network.batches() == [["e0", "e1", "e2", "e3", "e4"], ["e1", "e2"], ["e3", "e4"]]
    assert stats.delivered == 4 and stats.dropped == {"rejected": 1}  # each item counted once


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_the_default_transport_is_built_on_first_use_and_anew_in_a_forked_child() -> None:
    """The one test here that opens a socket: a connection to a closed port, refused at once."""
    from tracking_core.transport import DefaultTransport

    with socket.create_server(("127.0.0.1", 0)) as closed:
        port = closed.getsockname()[1]
    sender = Sender(Collector(f"http://127.0.0.1:{port}"))
    lane = Lane(sender, settings(max_attempts=1))
    assert sender.transport is None
    sender.deliver_batch(numbered(1), DeliveryControl(lane))
    first = sender.transport
    assert isinstance(first, DefaultTransport)
    pid = os.fork()
    if pid == 0:  # the child: a transport of its own, not the parent's connections
        code = 1
        try:
            sender.deliver_batch(numbered(1), DeliveryControl(lane))
            mine = sender.transport
            code = 0 if isinstance(mine, DefaultTransport) and mine is not first else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    sender.deliver_batch(numbered(1), DeliveryControl(lane))
    assert sender.transport is first  # the parent keeps its own
    assert lane.stats().dropped == {"retries_exhausted": 2}


# -- held requests: retries wait beside fresh batches ------------------------------------------


def test_a_failed_request_waits_while_a_fresh_batch_goes_out(clock: FakeTime) -> None:
    network = Network(clock, status(503), status(200), status(200))
    harness = Harness(network, retry_backoff=2.0)
    harness.sender.submit(events("first"), harness.control)
    assert harness.sender.held() == 1 and harness.sender.due_in() == pytest.approx(2.0)
    harness.sender.submit(events("second"), harness.control)  # not kept behind the backoff
    assert network.batches() == [["first"], ["second"]] and harness.sender.held() == 1
    clock.now += 2.0
    harness.sender.resume(harness.control)
    assert network.batches()[-1] == ["first"] and harness.sender.held() == 0
    stats = harness.lane.stats()
    assert (stats.delivered, stats.failed, stats.retried) == (2, 1, 1)


def test_held_requests_are_bounded(clock: FakeTime) -> None:
    network = Network(clock, status(503))
    harness = Harness(network, retry_backoff=5.0)
    for number in range(Sender.MAX_HELD):
        assert not harness.sender.full()
        harness.sender.submit(events(f"e{number}"), harness.control)
    assert harness.sender.held() == Sender.MAX_HELD and harness.sender.full()


def test_drain_settles_every_held_request(clock: FakeTime) -> None:
    network = Network(clock, status(503), status(503), status(200))
    harness = Harness(network)
    harness.sender.submit(events("a"), harness.control)
    harness.sender.submit(events("b"), harness.control)
    assert harness.sender.held() == 2
    harness.sender.drain(harness.control)  # what a flush does
    assert harness.sender.held() == 0 and harness.lane.stats().delivered == 2


def test_the_backoff_follows_the_destinations_streak_not_the_requests_attempts(
    clock: FakeTime,
) -> None:
    # "a" fails, "b" succeeds (the destination answers: the streak ends), "a" fails again:
    # its second wait is the first ceiling again, not the doubled one.
    network = Network(clock, status(503), status(200), status(503), status(200))
    harness = Harness(network, retry_backoff=1.0)
    harness.sender.submit(events("a"), harness.control)
    assert harness.sender.due_in() == pytest.approx(1.0)
    harness.sender.submit(events("b"), harness.control)
    clock.now += 1.0
    harness.sender.resume(harness.control)
    assert network.batches() == [["a"], ["b"], ["a"]]
    assert harness.sender.due_in() == pytest.approx(1.0)  # a streak of one, again
    harness.sender.drain(harness.control)
    assert harness.lane.stats().delivered == 2
