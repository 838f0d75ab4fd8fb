"""What waits in a lane: records in runs, their order and their cost to the garbage collector,
and the turn the library's threads take to compute (tracking_core/engine/turn.py)."""

from __future__ import annotations

import gc
import os
import threading
import time
from collections.abc import Callable, Iterator

import pytest

import tracking_core as tc
from tests.test_http_engine import ENGINE_SETTINGS, JsonBatch
from tracking_core.engine.backlog import Backlog
from tracking_core.engine.markers import Flush
from tracking_core.engine.records import Record, build, materialize
from tracking_core.engine.turn import away, turn
from tracking_core.receivers import LoopbackReceiver, Reply
from tracking_core.testing import configure_tracking, reset_tracking


def run_of(*names: str, **properties: object) -> tuple[Record, ...]:
    """Records as the dispatcher makes them, one per name."""
    return tuple(
        build(
            ("t", name, "user", None, time.time(), *properties, *properties.values()), f"id-{name}"
        )
        for name in names
    )


def names(records: list[Record]) -> list[str]:
    return [record[1] for record in records]


def test_batches_cross_runs_in_order_and_stop_at_a_marker() -> None:
    backlog = Backlog()
    flush = Flush()
    with backlog.cond:
        backlog.extend(run_of("a", "b", "c"))
        backlog.extend(run_of("d", "e"))
        backlog.append_marker(flush)
        backlog.extend(run_of("f"))
        assert len(backlog) == 7  # six records and a marker
        assert names(backlog.take(1, 2, 60.0)[0]) == ["a", "b"]
        assert names(backlog.take(1, 2, 60.0)[0]) == ["c", "d"]  # across two runs
        assert names(backlog.take(1, 10, 60.0)[0]) == ["e"]  # not past the marker
        assert backlog.take(1, 10, 60.0) == ([], flush)
        assert names(backlog.take(1, 10, 60.0)[0]) == ["f"]
        assert len(backlog) == 0


def test_a_batch_is_due_at_the_trigger_and_takes_up_to_the_limit() -> None:
    backlog = Backlog()
    with backlog.cond:
        backlog.extend(run_of(*(f"e{i}" for i in range(30))))
        assert backlog.take(50, 1000, 60.0, wake_in=0.01) == ([], None)  # 30 < 50: not due
        backlog.extend(run_of(*(f"f{i}" for i in range(90))))
        batch, _ = backlog.take(50, 100, 60.0)  # due at 50; takes up to the limit
        assert len(batch) == 100 and names(batch)[:2] == ["e0", "e1"]
        assert len(backlog) == 20


def test_clear_counts_records_and_returns_the_markers() -> None:
    backlog = Backlog()
    flush = Flush()
    with backlog.cond:
        backlog.extend(run_of("a", "b", "c"))
        backlog.take(1, 1, 60.0)
        backlog.append_marker(flush)
        assert backlog.clear() == (2, [flush])
        assert len(backlog) == 0


def test_queued_runs_of_plain_records_are_not_tracked_by_the_collector() -> None:
    backlog = Backlog()
    plain = run_of("a", "b", plan="pro", amount=42, ratio=0.5, ok=True, none=None)
    nested = run_of("c", tags=["x", "y"])  # a list inside: the collector must keep watching
    with backlog.cond:
        backlog.extend(plain)
        backlog.extend(nested)
    # A collection untracks the records; the run that holds them, by the next one at the latest.
    gc.collect()
    gc.collect()
    assert not gc.is_tracked(plain) and not any(gc.is_tracked(record) for record in plain)
    assert gc.is_tracked(nested)


def test_records_become_events_with_their_id_time_and_properties() -> None:
    (record,) = run_of("signup", plan="pro", seats=3)
    identify = build(("i", "user-1", time.time(), "email", "a@b.c"), "id-i")
    event, person = materialize([record, identify], read_only=True)
    assert isinstance(event, tc.TrackingEvent) and isinstance(person, tc.TrackingIdentify)
    assert (event.name, event.user_id, event.event_id) == ("signup", "user", "id-signup")
    assert dict(event.properties) == {"plan": "pro", "seats": 3}
    assert event.timestamp.tzinfo is not None
    with pytest.raises(TypeError):
        event.properties["plan"] = "free"  # type: ignore[index]  # shared: read-only
    assert (person.user_id, dict(person.traits), person.event_id) == (
        "user-1",
        {"email": "a@b.c"},
        "id-i",
    )


# -- the engine -------------------------------------------------------------------------------


@pytest.fixture
def engine_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., None]]:
    yield lambda **variables: configure_tracking(
        monkeypatch, {**ENGINE_SETTINGS, **variables}, discover=False
    )
    monkeypatch.undo()
    reset_tracking(timeout=0.5)  # the hung destinations' lanes give up at once


class Named(JsonBatch):
    def __init__(self, name: str, url: str) -> None:
        super().__init__(url)
        self.name = name


def test_a_deep_backlog_adds_next_to_nothing_to_what_the_collector_walks(
    engine_env: Callable[..., None],
) -> None:
    engine_env(TRACKING_HTTP_TIMEOUT="30")
    with LoopbackReceiver() as hung:
        hung.responder = lambda request: Reply(action="hang")
        tc.register_tracking_provider(Named("one", hung.url))
        tc.register_tracking_provider(Named("two", hung.url))

        def queue(count: int) -> int:
            for i in range(count):
                tc.track("e", {"i": i, "plan": "pro"}, user_id="u")
            tc.flush_tracking(0.2)  # everything dispatched; nothing can be delivered
            gc.collect()
            gc.collect()
            # What a full collection walks: every tracked object and what each refers to.
            tracked = gc.get_objects()
            return len(tracked) + sum(len(gc.get_referents(item)) for item in tracked)

        before = queue(2_000)
        after = queue(20_000)
        stats = tc.tracking_stats()
        assert stats["one"].queued >= 20_000  # waiting or in flight
        # 18,000 more events in each of two lanes: a tracked object, or a reference in a tracked
        # container, per event and lane would be 36,000 more. What is left: runs of up to
        # 100 records, shared by both lanes.
        assert after - before < 2_000, (before, after)
        tc.unregister_tracking_provider("one")
        tc.unregister_tracking_provider("two")


def test_a_destination_that_never_answers_keeps_no_other_provider_waiting(
    engine_env: Callable[..., None],
) -> None:
    engine_env(TRACKING_HTTP_TIMEOUT="30", TRACKING_BATCH_SIZE="10")
    with LoopbackReceiver() as hung, LoopbackReceiver() as healthy:
        hung.responder = lambda request: Reply(action="hang")
        tc.register_tracking_provider(Named("hung", hung.url))
        tc.register_tracking_provider(Named("healthy", healthy.url))
        for round_ in range(5):  # the hung lane's worker waits on the network meanwhile
            for i in range(100):
                tc.track("e", {"round": round_, "i": i})
            deadline = time.monotonic() + 10
            while tc.tracking_stats()["healthy"].delivered < 100 * (round_ + 1):
                assert time.monotonic() < deadline, "the healthy provider was kept waiting"
                time.sleep(0.01)
        assert tc.tracking_stats()["hung"].delivered == 0
        tc.unregister_tracking_provider("hung")


def test_the_turn_is_reentrant_and_free_while_its_holder_waits_away() -> None:
    inside = threading.Event()
    go_away = threading.Event()
    waiting = threading.Event()
    back = threading.Event()
    done = threading.Event()

    def holder() -> None:
        with turn(), turn():  # re-entrant: the same thread enters again
            inside.set()
            go_away.wait(10)
            with away():  # a blocking wait (a socket read): the turn is free meanwhile
                waiting.wait(10)
            back.set()
            done.wait(10)

    thread = threading.Thread(target=holder)
    thread.start()
    try:
        assert inside.wait(5)
        assert not turn().acquire(timeout=0.05)  # held
        go_away.set()
        lock = turn()
        assert lock.acquire(timeout=5)  # taken while the holder waits away
        waiting.set()
        time.sleep(0.05)
        assert not back.is_set()  # the holder takes it back before it goes on
        lock.release()
        assert back.wait(5)
        assert not turn().acquire(timeout=0.05)  # held again, until its outermost exit
        done.set()
        thread.join(5)
        assert lock.acquire(timeout=5)
        lock.release()
    finally:
        go_away.set()
        waiting.set()
        done.set()
        thread.join(5)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork")
def test_a_forked_child_gets_a_turn_of_its_own(engine_env: Callable[..., None]) -> None:
    engine_env()
    tc.track("start the engine")  # the dispatcher (and its turn) exist in this process
    tc.flush_tracking(1.0)
    held = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with turn():
            held.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert held.wait(5)
        pid = os.fork()
        if pid == 0:  # the child: the turn its parent's thread holds must not be this one's
            code = 0 if turn().acquire(timeout=5) else 3
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        release.set()
        holder.join()
    lock = turn()
    assert lock.acquire(timeout=5)  # and the parent's is free again
    lock.release()


def test_a_burst_of_calls_shortens_the_slice_until_the_intake_is_drained(
    engine_env: Callable[..., None], monkeypatch: pytest.MonkeyPatch
) -> None:
    from tracking_core.engine import dispatch
    from tracking_core.engine import turn as turn_module

    engine_env()
    tc.track("start the engine")
    assert tc.flush_tracking(5)
    told: list[bool] = []

    def tell(burst: bool) -> None:
        told.append(burst)
        turn_module.in_burst(burst)

    monkeypatch.setattr(dispatch, "in_burst", tell)
    lock = turn()
    assert lock.acquire(timeout=5)  # the dispatcher waits for the turn while the calls pile up
    try:
        for i in range(1000):
            tc.track("burst", {"i": i})
    finally:
        lock.release()
    assert tc.flush_tracking(10)
    assert True in told, "a chunk handed out with more waiting is a burst"
    assert told[-1] is False, "the burst ends when the intake is empty"
    assert turn_module._slice == turn_module.SLICE
