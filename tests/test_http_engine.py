"""The batching HTTP sender, against real HTTP servers on 127.0.0.1 (no mocks of httpx)."""

from __future__ import annotations

import base64
import email.utils
import gc
import itertools
import json
import logging
import os
import subprocess
import sys
import textwrap
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

import tracking_core as tc
from tracking_core.http import (
    HttpProvider,
    HttpRequest,
    HttpResponse,
    Outcome,
    WireItem,
    default_outcome,
    join_json,
    parse_retry_after,
)
from tracking_core.receivers import LoopbackReceiver, ReceivedRequest, Reply
from tracking_core.testing import configure_tracking, reset_tracking

REPO = Path(__file__).resolve().parents[1]
SECRET = "sk_live_SUPERSECRET_123456"


class JsonBatch(HttpProvider):
    """A minimal provider: ``{"key": ..., "batch": [{id, name, ts, props}]}`` to ``/in``."""

    name = "jsonbatch"

    def __init__(
        self,
        url: str,
        *,
        max_events: int = 1000,
        max_bytes: int = 1_000_000,
        reader: Callable[[HttpResponse], Outcome] | None = None,
    ) -> None:
        self.url = url
        self.max_events = max_events
        self.max_request_bytes = max_bytes
        self.reader = reader

    def encode(self, item: tc.TrackingEvent | tc.TrackingIdentify) -> WireItem:
        if isinstance(item, tc.TrackingIdentify):
            return WireItem({"id": item.event_id, "user": item.user_id}, route="identify")
        return WireItem(
            {
                "id": item.event_id,
                "name": item.name,
                "ts": item.timestamp.isoformat(),
                "props": tc.json_safe(dict(item.properties)),
            }
        )

    def build_request(self, route: str, items: Sequence[bytes], batch_id: str) -> HttpRequest:
        body = b'{"key":"' + SECRET.encode() + b'","batch":' + join_json(items) + b"}"
        return HttpRequest(f"{self.url}/{route}", body, {"X-Batch": batch_id}, gzip=True)

    def read_response(self, route: str, response: HttpResponse) -> Outcome:
        return self.reader(response) if self.reader else default_outcome(response)

    def secrets(self) -> Sequence[str]:
        return (SECRET,)


def batch_of(request: ReceivedRequest) -> list[dict[str, Any]]:
    return request.json()["batch"]  # type: ignore[no-any-return]


def ids_in(requests: Sequence[ReceivedRequest]) -> list[str]:
    return [item["id"] for request in requests for item in batch_of(request)]


#: The engine settings these tests start from: batches sent on count or flush, quick retries.
ENGINE_SETTINGS = {
    "TRACKING_FLUSH_INTERVAL": "30",
    "TRACKING_RETRY_BACKOFF": "0.01",
    "TRACKING_RETRY_BACKOFF_MAX": "0.05",
}


@pytest.fixture
def engine_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., None]]:
    """Set TRACKING_* variables (fast retries by default) and reset tracking to read them."""
    yield lambda **variables: configure_tracking(
        monkeypatch, {**ENGINE_SETTINGS, **variables}, discover=False
    )
    monkeypatch.undo()
    reset_tracking()


@pytest.fixture
def receiver() -> Iterator[LoopbackReceiver]:
    with LoopbackReceiver() as server:
        yield server


def test_batches_by_count_without_waiting_for_the_interval(
    engine_env: Callable[..., None], receiver: LoopbackReceiver
) -> None:
    # 10 waiting events are the trigger; a due batch takes everything waiting (a backlog is
    # not sent 10 at a time), so fewer than 10 can be left for the flush.
    engine_env(TRACKING_BATCH_SIZE="10", TRACKING_FLUSH_INTERVAL="60")
    tc.register_tracking_provider(JsonBatch(receiver.url))
    for i in range(25):
        tc.track("e", {"i": i})

    def sent(requests: list[ReceivedRequest]) -> int:
        return sum(len(batch_of(r)) for r in requests)

    assert receiver.wait_for(lambda reqs: sent(reqs) >= 16, 5)  # not the 60 s interval
    time.sleep(0.2)
    before = [len(batch_of(r)) for r in receiver.requests]
    assert all(size >= 10 for size in before), before  # only the count trigger sent them
    assert tc.flush_tracking(5)
    props = [item["props"]["i"] for r in receiver.requests for item in batch_of(r)]
    assert props == list(range(25))
    stats = tc.tracking_stats()["jsonbatch"]
    assert (stats.accepted, stats.delivered, stats.queued) == (25, 25, 0)


def test_batches_by_time_after_the_oldest_waiting_event(
    engine_env: Callable[..., None], receiver: LoopbackReceiver
) -> None:
    engine_env(TRACKING_BATCH_SIZE="100", TRACKING_FLUSH_INTERVAL="0.3")
    tc.register_tracking_provider(JsonBatch(receiver.url))
    started = time.monotonic()
    for _ in range(3):
        tc.track("e")
    assert receiver.wait_for(lambda reqs: len(reqs) == 1, 10)
    waited = receiver.requests[0].received_at - started
    assert waited >= 0.25  # not before the interval
    assert len(batch_of(receiver.requests[0])) == 3


def test_batches_split_by_encoded_size_and_vendor_count_limit(
    engine_env: Callable[..., None], receiver: LoopbackReceiver
) -> None:
    engine_env(TRACKING_BATCH_SIZE="5000")
    tc.register_tracking_provider(JsonBatch(receiver.url, max_events=7, max_bytes=2000))
    for i in range(40):
        tc.track("e", {"i": i, "pad": "x" * 300})
    assert tc.flush_tracking(5)
    sizes = [len(r.body) for r in receiver.requests]
    counts = [len(batch_of(r)) for r in receiver.requests]
    assert max(sizes) <= 2000
    assert max(counts) <= 7
    assert sum(counts) == 40 and len(counts) >= 8
    assert sorted(item["props"]["i"] for r in receiver.requests for item in batch_of(r)) == list(
        range(40)
    )


def test_gzip_above_the_threshold_and_user_agent(
    engine_env: Callable[..., None], receiver: LoopbackReceiver
) -> None:
    engine_env()
    tc.register_tracking_provider(JsonBatch(receiver.url))
    tc.track("small")
    assert tc.flush_tracking(5)
    tc.track("large", {"pad": "y" * 5000})
    assert tc.flush_tracking(5)
    small, large = receiver.requests
    assert "content-encoding" not in small.headers
    assert large.headers["content-encoding"] == "gzip"
    assert len(large.raw_body) < len(large.body)
    assert small.headers["user-agent"] == f"tracking-core/{tc.__version__} (jsonbatch)"
    assert small.headers["content-type"] == "application/json"


def test_a_large_body_is_gzipped_in_pieces_that_decode_to_it(
    engine_env: Callable[..., None], receiver: LoopbackReceiver
) -> None:
    engine_env(TRACKING_BATCH_SIZE="100")
    tc.register_tracking_provider(JsonBatch(receiver.url))
    pads = [os.urandom(2000).hex() for _ in range(60)]  # 240 KB that gzip halves at best
    for i, pad in enumerate(pads):
        tc.track("large", {"i": i, "pad": pad})
    assert tc.flush_tracking(10)
    (request,) = receiver.requests  # one request of several 64 KB pieces
    assert request.headers["content-encoding"] == "gzip"
    assert len(request.body) > 3 * 64 * 1024 and len(request.raw_body) < len(request.body)
    sent = [(item["props"]["i"], item["props"]["pad"]) for item in batch_of(request)]
    assert sent == list(enumerate(pads))


def test_retries_resend_the_same_ids_and_timestamps_then_succeed(
    engine_env: Callable[..., None], receiver: LoopbackReceiver
) -> None:
    engine_env()
    answers = iter([Reply(503), Reply(action="reset"), Reply(500)])
    receiver.responder = lambda request: next(answers, Reply(200))
    tc.register_tracking_provider(JsonBatch(receiver.url))
    for i in range(5):
        tc.track("e", {"i": i})
    assert tc.flush_tracking(10)
    assert len(receiver.requests) == 4
    first = batch_of(receiver.requests[0])
    for request in receiver.requests[1:]:
        assert batch_of(request) == first  # same ids, timestamps and properties
        assert request.headers["x-batch"] == receiver.requests[0].headers["x-batch"]
    stats = tc.tracking_stats()["jsonbatch"]
    assert stats.delivered == 5 and stats.retried == 15 and stats.failed == 3
    assert stats.batches == 4 and stats.dropped == {}


def test_retry_after_seconds_and_http_date_are_honoured(
    engine_env: Callable[..., None], receiver: LoopbackReceiver
) -> None:
    engine_env()
    date = email.utils.formatdate(time.time() + 4, usegmt=True)
    answers = iter(
        [Reply(429, headers={"Retry-After": "1"}), Reply(503, headers={"Retry-After": date})]
    )
    receiver.responder = lambda request: next(answers, Reply(200))
    tc.register_tracking_provider(JsonBatch(receiver.url))
    tc.track("e")
    assert tc.flush_tracking(15)
    first, second, third = (r.received_at for r in receiver.requests)
    assert second - first >= 0.95
    assert third - second >= 1.5  # the date was 4 s ahead (whole seconds) when made


def test_parse_retry_after_clamps_and_reads_dates() -> None:
    assert parse_retry_after("5") == 5.0
    assert parse_retry_after("-3") == 0.0
    assert parse_retry_after("100000") == 60.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None
    now = 1_768_471_200.0
    assert parse_retry_after("Thu, 15 Jan 2026 10:00:30 GMT", now=now) == 30.0


def test_413_splits_the_batch_and_drops_a_single_oversized_event(
    engine_env: Callable[..., None], receiver: LoopbackReceiver
) -> None:
    engine_env()

    def responder(request: ReceivedRequest) -> Reply:
        items = batch_of(request)
        if len(items) > 3 or any(i["name"] == "huge" for i in items):
            return Reply(413, {"error": "too large"})
        return Reply(200)

    receiver.responder = responder
    tc.register_tracking_provider(JsonBatch(receiver.url))
    for i in range(10):
        tc.track("huge" if i == 4 else "e", {"i": i})
    assert tc.flush_tracking(10)
    accepted = [
        item["props"]["i"]
        for r in receiver.requests
        if len(batch_of(r)) <= 3 and all(i["name"] != "huge" for i in batch_of(r))
        for item in batch_of(r)
    ]
    assert sorted(accepted) == [0, 1, 2, 3, 5, 6, 7, 8, 9]
    stats = tc.tracking_stats()["jsonbatch"]
    assert stats.delivered == 9 and stats.dropped == {"too_large": 1}


def test_an_event_over_the_item_limit_is_dropped_before_sending(
    engine_env: Callable[..., None], receiver: LoopbackReceiver
) -> None:
    engine_env()
    provider = JsonBatch(receiver.url)
    provider.max_item_bytes = 500
    tc.register_tracking_provider(provider)
    tc.track("big", {"pad": "z" * 1000})
    tc.track("ok")
    assert tc.flush_tracking(5)
    assert [i["name"] for i in batch_of(receiver.requests[0])] == ["ok"]
    assert tc.tracking_stats()["jsonbatch"].dropped == {"too_large": 1}


@pytest.mark.parametrize(
    ("answer", "events", "resent", "dropped", "retried"),
    [
        # Items 1 and 3 invalid, the rest must be resent.
        (Outcome("retry", "invalid fields", retry_after=0, rejected=[1, 3]), 5, [0, 2, 4], 2, 3),
        # Item 0 refused, 1 and 3 taken, only 2 to be resent.
        (Outcome("retry", "throttled", retry_after=0, rejected=[0], retry_only=[2]), 4, [2], 1, 1),
    ],
    ids=["partial-rejection", "partial-success-retry-only"],
)
def test_a_partial_answer_drops_only_the_named_events_and_resends_just_those(
    engine_env: Callable[..., None],
    receiver: LoopbackReceiver,
    answer: Outcome,
    events: int,
    resent: list[int],
    dropped: int,
    retried: int,
) -> None:
    engine_env()
    # The first answer is `answer`; then all good.
    answers = iter([answer])
    provider = JsonBatch(receiver.url, reader=lambda response: next(answers, Outcome("delivered")))
    tc.register_tracking_provider(provider)
    for i in range(events):
        tc.track("e", {"i": i})
    assert tc.flush_tracking(10)
    first, second = receiver.requests
    assert [i["props"]["i"] for i in batch_of(first)] == list(range(events))
    assert [i["props"]["i"] for i in batch_of(second)] == resent
    stats = tc.tracking_stats()["jsonbatch"]
    assert stats.delivered == 3 and stats.dropped == {"rejected": dropped}
    assert stats.retried == retried


def test_other_4xx_are_not_retried(
    engine_env: Callable[..., None], receiver: LoopbackReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    engine_env()
    caplog.set_level(logging.WARNING, logger="tracking_core")
    receiver.responder = lambda request: Reply(400, {"error": "bad field"})
    tc.register_tracking_provider(JsonBatch(receiver.url))
    for _ in range(3):
        tc.track("e")
    assert tc.flush_tracking(5)
    assert len(receiver.requests) == 1
    assert tc.tracking_stats()["jsonbatch"].dropped == {"rejected": 3}
    assert any("bad field" in r.getMessage() for r in caplog.records)


def test_retries_are_bounded_then_the_batch_is_dropped_and_logged(
    engine_env: Callable[..., None], receiver: LoopbackReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    engine_env(TRACKING_MAX_ATTEMPTS="3", TRACKING_CIRCUIT_THRESHOLD="100")
    caplog.set_level(logging.WARNING, logger="tracking_core")
    receiver.responder = lambda request: Reply(500)
    tc.register_tracking_provider(JsonBatch(receiver.url))
    for _ in range(4):
        tc.track("e")
    assert tc.flush_tracking(10)
    assert len(receiver.requests) == 3
    stats = tc.tracking_stats()["jsonbatch"]
    assert stats.dropped == {"retries_exhausted": 4} and stats.delivered == 0
    assert any("after 3 attempts" in r.getMessage() for r in caplog.records)


def test_retry_time_budget_bounds_a_batch(
    engine_env: Callable[..., None], receiver: LoopbackReceiver
) -> None:
    engine_env(
        TRACKING_MAX_ATTEMPTS="100",
        TRACKING_MAX_RETRY_TIME="0.5",
        TRACKING_RETRY_BACKOFF="0.1",
        TRACKING_RETRY_BACKOFF_MAX="0.1",
        TRACKING_CIRCUIT_THRESHOLD="1000",
    )
    receiver.responder = lambda request: Reply(503)
    tc.register_tracking_provider(JsonBatch(receiver.url))
    started = time.monotonic()
    tc.track("e")
    assert tc.flush_tracking(10)
    assert time.monotonic() - started < 5
    assert tc.tracking_stats()["jsonbatch"].dropped == {"retries_exhausted": 1}
    assert 2 <= len(receiver.requests) < 100


def test_410_gone_stops_the_provider_for_good(
    engine_env: Callable[..., None], receiver: LoopbackReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    engine_env()
    caplog.set_level(logging.WARNING, logger="tracking_core")
    receiver.responder = lambda request: Reply(410, "endpoint removed")
    tc.register_tracking_provider(JsonBatch(receiver.url))
    tc.track("first")
    assert tc.flush_tracking(5)
    for _ in range(5):
        tc.track("later")
    assert tc.flush_tracking(5)
    assert len(receiver.requests) == 1
    stats = tc.tracking_stats()["jsonbatch"]
    assert stats.dropped == {"provider_stopped": 6}
    stopped = [r for r in caplog.records if "is stopped" in r.getMessage()]
    assert len(stopped) == 1 and "410" in stopped[0].getMessage()


def test_circuit_probes_a_dead_destination_slowly_and_recovers(
    engine_env: Callable[..., None], receiver: LoopbackReceiver
) -> None:
    engine_env(
        TRACKING_CIRCUIT_THRESHOLD="2",
        TRACKING_CIRCUIT_PROBE_INTERVAL="0.4",
        TRACKING_MAX_ATTEMPTS="50",
        TRACKING_MAX_RETRY_TIME="60",
        TRACKING_FLUSH_INTERVAL="0.05",
    )
    healthy = threading.Event()
    receiver.responder = lambda request: Reply(200) if healthy.is_set() else Reply(503)
    tc.register_tracking_provider(JsonBatch(receiver.url))
    tc.track("e")
    assert receiver.wait_for(lambda reqs: len(reqs) >= 4, 10)
    times = [r.received_at for r in receiver.requests]
    gaps = [b - a for a, b in itertools.pairwise(times[1:])]
    assert all(gap >= 0.35 for gap in gaps[1:])  # once open, one probe per interval
    healthy.set()
    assert tc.flush_tracking(10)
    assert tc.tracking_stats()["jsonbatch"].delivered == 1
    tc.track("after")
    started = time.monotonic()
    assert tc.flush_tracking(10)
    assert time.monotonic() - started < 0.35  # closed again: no probe wait


def test_routes_never_share_a_request(
    engine_env: Callable[..., None], receiver: LoopbackReceiver
) -> None:
    engine_env()
    tc.register_tracking_provider(JsonBatch(receiver.url))
    tc.track("a")
    tc.identify("u-1", {"plan": "pro"})
    tc.track("b")
    assert tc.flush_tracking(5)
    by_path = {r.path: batch_of(r) for r in receiver.requests}
    assert [i["name"] for i in by_path["/default"]] == ["a", "b"]
    assert [i["user"] for i in by_path["/identify"]] == ["u-1"]


def test_debug_logs_each_batch_without_secrets(
    engine_env: Callable[..., None], receiver: LoopbackReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    engine_env(TRACKING_DEBUG="1")
    caplog.set_level(logging.DEBUG)
    receiver.responder = lambda request: Reply(400, {"error": f"bad key {SECRET}"})
    tc.register_tracking_provider(JsonBatch(receiver.url))
    tc.track("e", {"password": "hunter2"})
    assert tc.flush_tracking(5)
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("tracking_core")]
    sent = [line for line in lines if "sent 1 items" in line]
    assert len(sent) == 1
    assert "jsonbatch" in sent[0] and "-> 400" in sent[0] and " ms " in sent[0]
    assert any("***" in line for line in lines)  # the echoed key was masked
    for record in caplog.records:
        assert SECRET not in record.getMessage()
    assert SECRET not in repr(JsonBatch(receiver.url))


class QuotedSecret(JsonBatch):
    """A provider whose key holds a quote, a backslash and a slash, sent in a Basic header it
    builds itself (base64 of ``key:``) and in the body (JSON-escaped)."""

    name = "quoted"
    KEY = 'sk"live\\quoted/secret-42'

    def build_request(self, route: str, items: Sequence[bytes], batch_id: str) -> HttpRequest:
        basic = base64.b64encode(f"{self.KEY}:".encode()).decode()
        body = b'{"key":' + json.dumps(self.KEY).encode() + b',"batch":' + join_json(items) + b"}"
        return HttpRequest(f"{self.url}/{route}", body, {"Authorization": f"Basic {basic}"})

    def secrets(self) -> Sequence[str]:
        return (self.KEY,)  # only the raw key: its derived forms are the sender's to mask


def test_every_form_a_secret_is_sent_in_is_masked_when_echoed(
    engine_env: Callable[..., None], receiver: LoopbackReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    engine_env(TRACKING_DEBUG="1")
    caplog.set_level(logging.DEBUG)
    key = QuotedSecret.KEY
    forms = {
        "raw": key,
        "json": json.dumps(key)[1:-1],
        "json-slash": json.dumps(key)[1:-1].replace("/", "\\/"),
        "url": urllib.parse.quote(key, safe=""),
        "basic": base64.b64encode(f"{key}:".encode()).decode(),
    }

    def echo(request: ReceivedRequest) -> Reply:
        # As a receiver may echo them: the header as received, the key JSON-escaped (also the
        # way PHP escapes slashes) and URL-encoded.
        auth = request.headers["authorization"]
        text = (
            f'{{"auth": "{auth}", "key": "{forms["json"]}", "php": "{forms["json-slash"]}", '
            f'"url": "{forms["url"]}"}}'
        )
        return Reply(400, text, {"X-Echo": auth})

    receiver.responder = echo
    provider = QuotedSecret(receiver.url)
    tc.register_tracking_provider(provider)
    tc.track("e")
    assert tc.flush_tracking(5)
    stats = tc.tracking_stats()["quoted"]
    assert stats.dropped == {"rejected": 1}
    messages = [r.getMessage() for r in caplog.records]
    shown = "\n".join([caplog.text, stats.last_error or "", repr(provider), *messages])
    assert "***" in (stats.last_error or "")
    assert [name for name, form in forms.items() if form in shown] == []


def test_queued_calls_of_plain_values_leave_the_garbage_collector_nothing_to_walk(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # What track() and identify() queue: once a collection has looked at it, the collector no
    # longer tracks it, so a queued burst does not make the full collections (pauses of every
    # thread: a caller's track(), an asyncio loop) longer or more frequent. Nested values
    # stay tracked: the collector must see them.
    from tracking_core import api

    queued: list[object] = []
    monkeypatch.setattr(api, "_submit", queued.append)
    tc.track("plain", {"plan": "pro", "amount": 42, "ratio": 0.5, "ok": True, "none": None})
    tc.track("bare")
    tc.identify("user-1", {"email": "a@b.c"})
    tc.track("nested", {"tags": ["x", "y"]})
    with tc.tracking_context(user_id="u", properties={"tenant": "acme"}):
        tc.track("in context", {"plan": "pro"})
    assert len(queued) == 5
    # One middle-generation collection, right away: what it leaves tracked it moves to the
    # oldest generation, where only a full collection would look at it again.
    gc.collect(1)
    plain, bare, person, nested, in_context = queued
    assert not any(gc.is_tracked(item) for item in (plain, bare, person, in_context))
    assert gc.is_tracked(nested)


def test_an_http_batch_makes_each_event_only_as_it_is_encoded(
    engine_env: Callable[..., None], receiver: LoopbackReceiver
) -> None:
    # A batch of hundreds must not exist as hundreds of TrackingEvent objects at once: those
    # would outlive the young collections and bring on full ones (see the test above).
    live: list[int] = []

    class Counting(JsonBatch):
        def encode(self, item: tc.TrackingEvent | tc.TrackingIdentify) -> WireItem:
            if isinstance(item, tc.TrackingEvent) and item.properties.get("i") == 150:
                live.append(sum(1 for o in gc.get_objects() if type(o) is tc.TrackingEvent))
            return super().encode(item)

    engine_env(TRACKING_BATCH_SIZE="300")
    tc.register_tracking_provider(Counting(receiver.url))
    for i in range(300):
        tc.track("e", {"i": i})
    assert tc.flush_tracking(10)
    assert len(ids_in(receiver.requests)) == 300
    assert live and live[0] <= 3, live


def test_a_hung_server_blocks_nothing_and_memory_stays_bounded(
    engine_env: Callable[..., None], receiver: LoopbackReceiver
) -> None:
    engine_env(TRACKING_MAX_QUEUE="1000", TRACKING_BATCH_SIZE="50", TRACKING_HTTP_TIMEOUT="30")
    receiver.responder = lambda request: Reply(action="hang")
    tc.register_tracking_provider(JsonBatch(receiver.url))
    started = time.perf_counter()
    for i in range(20_000):
        tc.track("e", {"i": i})
    assert time.perf_counter() - started < 10  # a blocked caller would wait 30 s per batch
    assert tc.flush_tracking(0.5) is False
    stats = tc.tracking_stats()["jsonbatch"]
    assert stats.queued <= 1000
    assert stats.accepted == 20_000
    assert stats.dropped["queue_full"] == 20_000 - stats.queued
    assert stats.delivered == 0


def run_script(script: str, **env: str) -> subprocess.CompletedProcess[str]:
    prelude = f"""
import sys, os, time, json, logging
sys.path.insert(0, {str(REPO)!r}); sys.path.insert(0, {str(REPO / "tests")!r})
logging.basicConfig(level=logging.WARNING)
import tracking_core as tc
from test_http_engine import JsonBatch
from tracking_core.receivers import LoopbackReceiver, Reply
"""
    return subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "TRACKING_RETRY_BACKOFF": "0.01", **env},
    )


def test_exit_with_a_hung_server_ends_within_the_budget_and_counts_losses() -> None:
    started = time.monotonic()
    result = run_script(
        """
        server = LoopbackReceiver(lambda request: Reply(action="hang")).start()
        tc.register_tracking_provider(JsonBatch(server.url))
        for i in range(500):
            tc.track("e")
        t0 = time.monotonic()
        ok = tc.shutdown_tracking()
        print(json.dumps({"ok": ok, "took": time.monotonic() - t0,
                          "stats": dict(tc.tracking_stats()["jsonbatch"].dropped),
                          "queued": tc.tracking_stats()["jsonbatch"].queued}))
        """,
        TRACKING_SHUTDOWN_TIMEOUT="1.5",
        TRACKING_FLUSH_INTERVAL="60",
    )
    assert result.returncode == 0, result.stderr
    import json

    data = json.loads(result.stdout)
    assert data["ok"] is False
    assert 1.0 <= data["took"] < 3.0
    # The batch in flight when the budget ran out is the worker's to count (a moment later).
    assert sum(data["stats"].values()) + data["queued"] == 500
    assert "shutdown ran out of its 1.5s budget" in result.stderr
    assert "jsonbatch: " in result.stderr
    assert time.monotonic() - started < 30


def test_exit_delivers_pending_batches_to_a_healthy_server(tmp_path: Path) -> None:
    out = tmp_path / "received.txt"
    result = run_script(
        f"""
        def record(request):
            with open({str(out)!r}, "a") as f:
                for item in request.json()["batch"]:
                    f.write(str(item["props"]["i"]) + "\\n")
            return Reply(200)
        server = LoopbackReceiver(record).start()
        tc.register_tracking_provider(JsonBatch(server.url))
        # The receiver runs in this very process and needs a thread per connection, which
        # Python 3.12 will not start at exit: open the (keep-alive) connection now.
        tc.track("warm-up", {{"i": -1}})
        assert tc.flush_tracking(10)
        for i in range(120):
            tc.track("e", {{"i": i}})
        # no flush: the exit hook must send the three pending batches
        """,
        TRACKING_FLUSH_INTERVAL="60",
        TRACKING_BATCH_SIZE="50",
    )
    assert result.returncode == 0, result.stderr
    assert sorted(int(x) for x in out.read_text().split()) == list(range(-1, 120))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_fork_gives_the_child_fresh_queues_threads_and_connections() -> None:
    result = run_script(
        """
        server = LoopbackReceiver().start()
        tc.register_tracking_provider(JsonBatch(server.url))
        tc.track("parent-1")
        assert tc.flush_tracking(5)
        for i in range(20):
            tc.track("parent-pending")
        pid = os.fork()
        if pid == 0:
            tc.track("child")
            ok = tc.flush_tracking(10)
            os._exit(0 if ok else 3)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert tc.flush_tracking(10)
        names = [item["name"] for r in server.requests for item in r.json()["batch"]]
        ids = [item["id"] for r in server.requests for item in r.json()["batch"]]
        print(json.dumps({"names": sorted(names), "unique": len(ids) == len(set(ids))}))
        """,
        TRACKING_FLUSH_INTERVAL="60",
    )
    assert result.returncode == 0, result.stderr
    import json

    data = json.loads(result.stdout)
    assert data["unique"] is True
    assert data["names"] == sorted(["parent-1", "child"] + ["parent-pending"] * 20)
