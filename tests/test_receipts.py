"""`submit_event` and `DeliveryReceipt`: what became of one event, provider by provider."""

from __future__ import annotations

import datetime as _dt
import logging
import threading
from collections.abc import Callable, Iterator, Sequence

import pytest

import tracking_core as tc
from tests.test_http_engine import ENGINE_SETTINGS, JsonBatch, batch_of
from tracking_core.engine import DeliveryControl
from tracking_core.http import Outcome
from tracking_core.receivers import LoopbackReceiver, Reply
from tracking_core.testing import RecordingProvider, configure_tracking, reset_tracking

WHEN = _dt.datetime(2026, 11, 30, 12, 0, 0, 123000, tzinfo=_dt.timezone.utc)


@pytest.fixture
def engine_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., None]]:
    yield lambda **variables: configure_tracking(
        monkeypatch, {**ENGINE_SETTINGS, **variables}, discover=False
    )
    monkeypatch.undo()
    reset_tracking(timeout=0.5)


@pytest.fixture
def receiver() -> Iterator[LoopbackReceiver]:
    with LoopbackReceiver() as server:
        yield server


def event(name: str = "Signed Up", **properties: object) -> tc.TrackingEvent:
    return tc.TrackingEvent(name, dict(properties), WHEN, user_id="user-1", event_id=f"id-{name}")


def test_a_delivered_event_keeps_its_id_and_time_and_reports_each_provider(
    engine_env: Callable[..., None], receiver: LoopbackReceiver
) -> None:
    engine_env()
    recorder = RecordingProvider()
    tc.register_tracking_provider(recorder)
    tc.register_tracking_provider(JsonBatch(receiver.url))
    receipt = tc.submit_event(event(plan="pro"))
    assert not receipt.done()  # waits for a batch (30 s interval), or a flush
    tc.flush_tracking(5)
    assert receipt.wait(5)
    assert dict(receipt.outcomes) == {"recorder": "delivered", "jsonbatch": "delivered"}
    assert receipt.delivered and receipt.event_id == "id-Signed Up"
    (sent,) = batch_of(receiver.requests[0])
    assert sent["id"] == "id-Signed Up" and sent["ts"] == WHEN.isoformat()
    assert sent["props"] == {"plan": "pro"}
    assert recorder.events[0].event_id == "id-Signed Up" and recorder.events[0].timestamp == WHEN


def test_an_identify_waits_only_on_the_providers_that_take_identifies(
    engine_env: Callable[..., None],
) -> None:
    engine_env()

    class EventsOnly:
        name = "events-only"

        def track(self, item: tc.TrackingEvent) -> None:
            pass

    tc.register_tracking_provider(RecordingProvider())
    tc.register_tracking_provider(EventsOnly())
    identify = tc.TrackingIdentify("user-1", {"plan": "pro"}, WHEN, event_id="id-who")
    receipt = tc.submit_event(identify)
    assert receipt.wait(5)
    assert dict(receipt.outcomes) == {"recorder": "delivered"}


def test_the_receipt_waits_for_retries_and_names_each_rejection(
    engine_env: Callable[..., None], receiver: LoopbackReceiver
) -> None:
    engine_env()
    answers = iter(
        [Outcome("retry", "HTTP 503"), Outcome("delivered", rejected=[1])]  # then all good
    )
    tc.register_tracking_provider(
        JsonBatch(receiver.url, reader=lambda response: next(answers, Outcome("delivered")))
    )
    first, second = tc.submit_event(event("a")), tc.submit_event(event("b"))
    tc.track("plain")  # track()'s events travel beside them, without receipts
    assert tc.flush_tracking(10)
    assert first.wait(1) and second.wait(1)
    assert dict(first.outcomes) == {"jsonbatch": "delivered"}
    assert dict(second.outcomes) == {"jsonbatch": "rejected"} and not second.delivered
    assert len(receiver.requests) == 2  # the 503, then the answer naming item 1
    assert tc.tracking_stats()["jsonbatch"].dropped == {"rejected": 1}


def test_halves_of_a_413_report_each_item(
    engine_env: Callable[..., None], receiver: LoopbackReceiver
) -> None:
    engine_env()
    # Too large as a pair; "big" alone is still too large, "small" alone passes.
    receiver.responder = lambda request: (
        Reply(413) if b"id-big" in request.body else Reply(200, {"ok": True})
    )
    tc.register_tracking_provider(JsonBatch(receiver.url))
    big, small = tc.submit_event(event("big")), tc.submit_event(event("small"))
    assert tc.flush_tracking(10)
    assert dict(big.outcomes) == {"jsonbatch": "too_large"}
    assert dict(small.outcomes) == {"jsonbatch": "delivered"}


def test_what_a_shutdown_abandons_is_settled_as_shutdown(
    engine_env: Callable[..., None], receiver: LoopbackReceiver
) -> None:
    engine_env(TRACKING_HTTP_TIMEOUT="30")
    receiver.responder = lambda request: Reply(action="hang")
    tc.register_tracking_provider(JsonBatch(receiver.url))
    receipts = [tc.submit_event(event(f"e{i}")) for i in range(3)]
    assert tc.shutdown_tracking(0.5) is False
    for receipt in receipts:
        assert receipt.wait(5), receipt
        assert dict(receipt.outcomes) == {"jsonbatch": "shutdown"}


def test_a_full_queue_and_bad_input_settle_at_once(
    engine_env: Callable[..., None], receiver: LoopbackReceiver
) -> None:
    engine_env(TRACKING_MAX_QUEUE="2", TRACKING_HTTP_TIMEOUT="30", TRACKING_BATCH_SIZE="1")
    receiver.responder = lambda request: Reply(action="hang")
    tc.register_tracking_provider(JsonBatch(receiver.url))
    receipts = [tc.submit_event(event(f"e{i}")) for i in range(50)]
    tc.flush_tracking(0.5)
    full = [r for r in receipts if r.done()]
    assert full and all(dict(r.outcomes) == {"jsonbatch": "queue_full"} for r in full)
    bad = tc.submit_event("not an event")  # type: ignore[arg-type]
    assert bad.done() and dict(bad.outcomes) == {"jsonbatch": "bad_input"}


def test_with_no_provider_the_receipt_is_done_with_no_outcome(
    engine_env: Callable[..., None],
) -> None:
    engine_env()
    receipt = tc.submit_event(event())
    assert receipt.wait(5) and dict(receipt.outcomes) == {} and not receipt.delivered


def test_a_raising_plain_provider_settles_as_provider_error(
    engine_env: Callable[..., None],
) -> None:
    engine_env()

    class Broken:
        name = "broken"

        def track(self, item: tc.TrackingEvent) -> None:
            raise RuntimeError("boom")

    tc.register_tracking_provider(Broken())
    receipt = tc.submit_event(event())
    assert receipt.wait(5) and dict(receipt.outcomes) == {"broken": "provider_error"}


class CountsOnly:
    """A batching provider that reports counts only (no ``control.settled``)."""

    name = "counts-only"

    def __init__(self, fail_second: bool) -> None:
        self.fail_second = fail_second

    def batch_limit(self) -> int:
        return 10

    def deliver_batch(
        self, items: Sequence[tc.TrackingEvent | tc.TrackingIdentify], control: DeliveryControl
    ) -> None:
        if self.fail_second and len(items) > 1:
            control.delivered(len(items) - 1)
            control.dropped("rejected", 1)
        else:
            control.delivered(len(items))


@pytest.mark.parametrize("fail_second, outcome", [(False, "delivered"), (True, "uncertain")])
def test_a_provider_that_reports_counts_settles_its_batch_as_a_whole(
    engine_env: Callable[..., None], fail_second: bool, outcome: str
) -> None:
    engine_env()
    tc.register_tracking_provider(CountsOnly(fail_second))
    receipts = [tc.submit_event(event(f"e{i}")) for i in range(3)]
    assert tc.flush_tracking(5)
    assert [dict(r.outcomes) for r in receipts] == [{"counts-only": outcome}] * 3


def test_done_callbacks_run_once_and_what_they_raise_is_logged(
    engine_env: Callable[..., None], caplog: pytest.LogCaptureFixture
) -> None:
    engine_env()
    tc.register_tracking_provider(RecordingProvider())
    calls: list[str] = []
    seen = threading.Event()

    def note(receipt: tc.DeliveryReceipt) -> None:
        calls.append(receipt.event_id)
        seen.set()

    def broken(receipt: tc.DeliveryReceipt) -> None:
        raise ValueError("callback bug")

    receipt = tc.submit_event(event())
    receipt.add_done_callback(broken)
    receipt.add_done_callback(note)
    assert receipt.wait(5) and seen.wait(5)
    receipt.add_done_callback(note)  # already done: called at once
    assert calls == ["id-Signed Up", "id-Signed Up"]
    with caplog.at_level(logging.ERROR, logger="tracking_core"):
        receipt.add_done_callback(broken)
    assert any("callback raised" in record.getMessage() for record in caplog.records)
