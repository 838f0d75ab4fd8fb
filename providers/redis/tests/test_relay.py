"""``tracking relay`` against a real redis-server, real relay processes and the built-in
providers' fakes: each entry delivered with its id and timestamp, acknowledged once every
vendor took it or refused it for good; two relays share the work; SIGTERM stops a relay within
its budget; entries delivered too many times, or unreadable, move to the dead-letter stream;
``--stats``. Then the faults issue #14 names: a relay killed in the middle of a batch, Redis
killed and restarted (AOF on), a dead vendor while the stream reaches its bound."""

from __future__ import annotations

import contextlib
import io
import json
import time
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

import pytest
from tracking_redis.testing import RedisServer, RelayProcess
from tracking_redis.wire import decode

import tracking_core as tc
from tracking_core import cli
from tracking_core.receivers import Reply

Env = Callable[..., None]
Start = Callable[[Mapping[str, str]], RelayProcess]
RelayEnv = Callable[..., dict[str, str]]
Vendors = dict[str, Any]
STREAM = "tracking:events"


def produce(count: int, **properties: Any) -> None:
    """Track `count` events (every tenth an identify too) through the stream provider."""
    for n in range(count):
        tc.track("Signed Up", {"n": n, **properties}, user_id=f"u-{n % 7}")
        if n % 10 == 0:
            tc.identify(f"u-{n % 7}", {"n": n})
    assert tc.flush_tracking(20)


def stream_items(client: Any) -> dict[str, Any]:
    """The items in the stream now, by event id (an unreadable entry left out)."""
    found = {}
    for _, fields in client.xrange(STREAM):
        with contextlib.suppress(ValueError):
            item = decode(fields)
            found[item.event_id] = item
    return found


def wait_until(ready: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert time.monotonic() < deadline, f"not {what} after {timeout}s"
        time.sleep(0.05)


def pending(client: Any, group: str = "tracking-relays") -> int:
    return int(client.xpending(STREAM, group)["pending"])


def stats_json(env: Mapping[str, str], monkeypatch: pytest.MonkeyPatch) -> tuple[int, Any]:
    for name in ("TRACKING_REDIS_URL", "TRACKING_RELAY_GROUP"):
        if name in env:
            monkeypatch.setenv(name, env[name])
    out = io.StringIO()
    status = cli.main(["relay", "--stats", "--json"], out)
    return status, json.loads(out.getvalue())


def test_a_relay_delivers_each_entry_with_its_id_and_time_then_acknowledges_it(
    redis_env: Env,
    relay_env: RelayEnv,
    redis_client: Any,
    vendors: Vendors,
    start_relay: Start,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    redis_env()
    produce(100)
    items = stream_items(redis_client)
    assert len(items) == 110
    # The stream provider is allowed and configured here too: a relay never feeds its stream.
    env = relay_env(vendors, TRACKING_PROVIDERS="posthog,amplitude,redis")
    relay = start_relay(env)
    started = next(line for line in relay.output.splitlines() if " reads " in line)
    assert started.endswith(" for amplitude, posthog")
    wait_until(lambda: all(len(v.arrived()) >= 110 for v in vendors.values()), "delivered")
    wait_until(lambda: pending(redis_client) == 0, "acknowledged")
    code, _ = relay.terminate()
    assert code == 0
    assert redis_client.xlen(STREAM) == 110
    for vendor in vendors.values():
        arrived = vendor.arrived()
        assert sorted(arrived) == sorted(items), vendor.provider  # each once, same ids
    posthog = vendors["posthog"].fake
    sent = {event["uuid"]: event for event in [*posthog.events, *posthog.identifies]}
    for event_id, item in items.items():  # the time the application tracked it, to the µs
        assert sent[event_id]["timestamp"] == item.timestamp.isoformat()
    final = relay.final_stats()
    assert (final["read"], final["acknowledged"], final["left_pending"]) == (110, 110, {})
    assert final["providers"]["posthog"]["delivered"] == 110
    status, data = stats_json(env, monkeypatch)
    assert status == 0 and data["ok"], data["problems"]
    assert (data["acknowledged"], data["pending"], data["trimmed"]) == (110, 0, 0)
    assert [relay["state"] for relay in data["relays"]] == ["stopped"]


def test_an_entry_a_vendor_refuses_for_good_is_acknowledged_and_counted(
    redis_env: Env,
    relay_env: RelayEnv,
    redis_client: Any,
    vendors: Vendors,
    start_relay: Start,
) -> None:
    posthog = vendors["posthog"]
    posthog.fake.fail_next(400)  # refused for good: sending it again cannot help
    redis_env()
    produce(1)
    relay = start_relay(relay_env({"posthog": posthog}))
    wait_until(lambda: posthog.fake.requests, "sent")
    wait_until(lambda: pending(redis_client) == 0, "acknowledged")
    assert relay.terminate()[0] == 0
    final = relay.final_stats()
    assert final["acknowledged"] == 2 and final["left_pending"] == {}
    assert final["providers"]["posthog"]["dropped"] == {"rejected": 2}


def test_two_relays_on_one_group_deliver_each_event_once_per_vendor(
    redis_env: Env,
    relay_env: RelayEnv,
    redis_client: Any,
    vendors: Vendors,
    start_relay: Start,
) -> None:
    env = relay_env(vendors, TRACKING_RELAY_BATCH="20")
    first, second = start_relay(env), start_relay(env)
    redis_env()
    produce(600)
    items = stream_items(redis_client)
    wait_until(lambda: all(len(v.arrived()) >= 660 for v in vendors.values()), "delivered")
    wait_until(lambda: pending(redis_client) == 0, "acknowledged")
    assert first.terminate()[0] == second.terminate()[0] == 0
    for vendor in vendors.values():
        arrived = vendor.arrived()
        assert len(arrived) == len(set(arrived)) == 660, vendor.provider
        assert set(arrived) == set(items) and not vendor.fake.duplicates
    shares = [relay.final_stats()["acknowledged"] for relay in (first, second)]
    assert sum(shares) == 660 and min(shares) > 0, shares


@pytest.mark.slow
def test_entries_a_relay_is_still_delivering_are_not_claimed_by_another(
    redis_env: Env, redis_client: Any, vendors: Vendors, relay_env: RelayEnv, start_relay: Start
) -> None:
    posthog = vendors["posthog"]
    posthog.fake.fail_next(Reply(200, {"status": 1}, delay=4), ingest=True)  # slow
    env = relay_env({"posthog": posthog}, TRACKING_RELAY_CLAIM_IDLE="1.5")
    first = start_relay(env)
    redis_env()
    produce(10)
    wait_until(lambda: posthog.fake.requests, "sending")
    second = start_relay(env)  # claims what is idle longer than 1.5 s: not what is in flight
    wait_until(lambda: len(posthog.arrived()) == 11 and pending(redis_client) == 0, "delivered")
    time.sleep(1)
    assert first.terminate()[0] == second.terminate()[0] == 0
    assert sorted(posthog.arrived()) == sorted(stream_items(redis_client))  # each once
    assert second.final_stats()["claimed"] == 0


@pytest.mark.slow
def test_sigterm_stops_a_relay_within_its_budget_leaving_the_rest_pending(
    redis_env: Env,
    relay_env: RelayEnv,
    redis_client: Any,
    vendors: Vendors,
    start_relay: Start,
) -> None:
    posthog = vendors["posthog"]
    posthog.fake.fail_next(Reply(action="hang"))  # the vendor never answers the first request
    redis_env()
    produce(20)
    env = relay_env({"posthog": posthog}, TRACKING_SHUTDOWN_TIMEOUT="2")
    relay = start_relay(env)
    wait_until(lambda: posthog.fake.requests, "sending")
    code, took = relay.terminate()
    assert code == 0
    assert took < 2 + 5, took  # the budget, plus the interpreter's exit on a busy machine
    final = relay.final_stats()
    assert final["acknowledged"] == 0
    assert pending(redis_client) == 22  # not acknowledged: another relay delivers them later
    second = start_relay(relay_env({"posthog": posthog}))
    wait_until(lambda: pending(redis_client) == 0, "delivered by another relay")
    assert second.terminate()[0] == 0
    assert second.final_stats()["claimed"] == 22
    assert set(vendors["posthog"].arrived()) == set(stream_items(redis_client))


def test_unreadable_entries_and_entries_delivered_too_often_go_to_the_dead_letter_stream(
    redis_env: Env,
    relay_env: RelayEnv,
    redis_client: Any,
    vendors: Vendors,
    start_relay: Start,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    redis_client.xadd(STREAM, {"event": b"{not json"})
    redis_env()
    produce(1)
    down = "http://127.0.0.1:9"  # nothing listens: the vendor is down
    env = relay_env(
        {"posthog": vendors["posthog"]},
        POSTHOG_HOST=down,
        TRACKING_MAX_RETRY_TIME="0.2",
        TRACKING_CIRCUIT_THRESHOLD="1000",  # each delivery ends in its retry time, unpaced
        TRACKING_RELAY_CLAIM_IDLE="0.3",
        TRACKING_RELAY_MAX_DELIVERIES="3",
    )
    relay = start_relay(env)
    wait_until(lambda: redis_client.xlen(f"{STREAM}:dead") == 3, "dead-lettered")
    assert pending(redis_client) == 0
    assert relay.terminate()[0] == 0
    final = relay.final_stats()
    assert final["dead_lettered"] == 3 and final["acknowledged"] == 0
    assert final["left_pending"]["retries_exhausted"] >= 2 * 3
    dead = [fields for _, fields in redis_client.xrange(f"{STREAM}:dead")]
    assert dead[0][b"event"] == b"{not json" and dead[0][b"reason"].startswith(b"malformed")
    assert {fields[b"reason"] for fields in dead[1:]} == {b"delivered too many times"}
    assert {decode(fields).event_id for fields in dead[1:]} == set(stream_items(redis_client))
    status, data = stats_json(env, monkeypatch)
    assert status == 1 and not data["ok"]
    assert data["dead_lettered"] == data["dead_letter_length"] == 3
    assert any("dead-letter" in problem for problem in data["problems"])
    shown = io.StringIO()
    assert cli.main(["relay", "--stats"], shown) == 1
    text = shown.getvalue()
    assert f"{final['consumer']}  stopped" in text and "3 dead-lettered" in text
    assert "Problems:" in text


# -- faults ----------------------------------------------------------------------------


def test_a_relay_killed_mid_batch_loses_nothing_and_repeats_carry_the_same_id(
    redis_env: Env, redis_client: Any, vendors: Vendors, relay_env: RelayEnv, start_relay: Start
) -> None:
    posthog = vendors["posthog"]
    # The vendor takes the first batch, then answers only 30 s later: the relay dies meanwhile.
    posthog.fake.fail_next(Reply(200, {"status": 1}, delay=30), ingest=True)
    redis_env()
    produce(50)
    items = stream_items(redis_client)
    env = relay_env({"posthog": posthog})
    first = start_relay(env)
    wait_until(lambda: len(posthog.arrived()) == 55, "the first batch taken")
    first.kill()  # SIGKILL, the batch delivered and not acknowledged
    assert pending(redis_client) == 55
    second = start_relay(env)
    wait_until(lambda: pending(redis_client) == 0, "claimed and delivered again")
    assert second.terminate()[0] == 0
    arrived = Counter(posthog.arrived())
    assert set(arrived) == set(items)  # every event arrived
    assert set(arrived.values()) == {2}  # at least once: here, each twice, under its one id
    sent: dict[str, list[Any]] = {}
    for event in [*posthog.fake.events, *posthog.fake.identifies]:
        sent.setdefault(event["uuid"], []).append(event)
    for first_copy, second_copy in sent.values():
        first_copy["properties"].pop("$geoip_disable", None)
        second_copy["properties"].pop("$geoip_disable", None)
        assert first_copy == second_copy  # the same event, dedupe id and time included
    assert second.final_stats()["claimed"] == 55


def test_redis_killed_and_restarted_with_aof_loses_nothing_it_accepted(
    redis_env: Env,
    redis_server: RedisServer,
    vendors: Vendors,
    relay_env: RelayEnv,
    start_relay: Start,
) -> None:
    posthog = vendors["posthog"]
    relay = start_relay(relay_env({"posthog": posthog}, TRACKING_REDIS_TIMEOUT="1"))
    redis_env(TRACKING_MAX_ATTEMPTS="1000", TRACKING_MAX_RETRY_TIME="60")
    produce(100, phase="before")
    wait_until(lambda: len(posthog.arrived()) == 110, "delivered before the restart")
    redis_server.kill()  # SIGKILL: Redis keeps what its AOF holds
    for n in range(100):  # the producer holds these (bounded) while Redis is down
        tc.track("While down", {"n": n})
    wait_until(lambda: tc.tracking_stats()["redis"].failed > 0, "the producer failing")
    time.sleep(0.5)  # the relay fails too, and retries
    redis_server.start()  # the same port and files
    assert tc.flush_tracking(30)
    client = redis_server.client()
    items = stream_items(client)
    assert len(items) == 210  # nothing Redis had accepted was lost, nothing tracked either
    wait_until(lambda: set(posthog.arrived()) == set(items), "delivered after the restart")
    wait_until(lambda: pending(client) == 0, "acknowledged")
    assert relay.terminate()[0] == 0
    final = relay.final_stats()
    assert final["redis_errors"] >= 1 and final["left_pending"] == {}
    assert tc.tracking_stats()["redis"].dropped == {}


def test_a_dead_vendor_leaves_entries_pending_and_what_the_bound_trims_is_counted(
    redis_env: Env,
    redis_client: Any,
    vendors: Vendors,
    relay_env: RelayEnv,
    start_relay: Start,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = relay_env(
        {"posthog": vendors["posthog"]},
        POSTHOG_HOST="http://127.0.0.1:9",  # nothing listens: the vendor is dead
        TRACKING_MAX_RETRY_TIME="0.3",
        TRACKING_CIRCUIT_THRESHOLD="1000",
        TRACKING_RELAY_CLAIM_IDLE="0.5",
        TRACKING_RELAY_MAX_DELIVERIES="1000",
    )
    redis_env()
    first = start_relay(env)
    for n in range(150):
        tc.track("Early", {"n": n})
    assert tc.flush_tracking(10)
    wait_until(lambda: pending(redis_client) == 150, "read by the relay, and pending")
    assert first.terminate()[0] == 0
    redis_env(TRACKING_REDIS_MAXLEN="100")
    for n in range(1000):  # no relay reads now: the bound trims pending and unread entries
        tc.track("Late", {"n": n})
    assert tc.flush_tracking(10)
    assert redis_client.xlen(STREAM) < 300
    second = start_relay(env)

    def accounted() -> bool:
        _, data = stats_json(env, monkeypatch)
        live = {entry_id for entry_id, _ in redis_client.xrange(STREAM)}
        held = {
            p["message_id"]
            for p in redis_client.xpending_range(STREAM, "tracking-relays", "-", "+", 2000)
        }
        return held <= live and data["trimmed"] + data["pending"] == 1150

    wait_until(accounted, "every entry trimmed or pending")  # nothing silent
    assert second.terminate()[0] == 0
    status, data = stats_json(env, monkeypatch)
    assert data["acknowledged"] == 0  # nothing acknowledged while the vendor is dead
    assert data["entries_added"] == 1150 and data["trimmed"] >= 850
    assert status == 1 and any("trimmed" in problem for problem in data["problems"])
    counted = first.final_stats()["trimmed"] + second.final_stats()["trimmed"]
    assert counted == data["trimmed"]
    assert tc.tracking_stats()["redis"].delivered == 1000  # Redis took them all
