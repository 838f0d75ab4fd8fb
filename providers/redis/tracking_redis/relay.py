"""``tracking relay``: one consumer of the stream's consumer group, delivering each entry through
the providers enabled in its own environment.

The loop, on the relay's main thread: read new entries (and, now and then, claim those left
pending too long by any relay), hand each to the engine with `tracking_core.submit_event` (its
id and timestamp kept), and acknowledge an entry once its receipt says every provider delivered
it or dropped it for good. An entry is left pending otherwise, and delivered again later, by
whichever relay claims it: at least once. The engine's threads only put settled receipts on a
queue; Redis is spoken to from the main thread alone.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import tracking_core as tc
from tracking_core.kit import log_limited

from . import scripts
from .connection import connect, describe, secrets_of, transient
from .settings import RELAYING, RelaySettings
from .wire import decode

if TYPE_CHECKING:
    from tracking_core import DeliveryReceipt

__all__ = ["FINAL", "PUBLISH_INTERVAL", "Relay", "state_key"]

#: Outcomes after which an entry is acknowledged: delivered, or refused for good by the vendor
#: (sending it again cannot help). Any other outcome (``queue_full``, ``shutdown``,
#: ``retries_exhausted``, ``provider_error``, ``provider_stopped``, ``uncertain``) means this
#: relay could not deliver it: the entry stays pending and is delivered again later.
FINAL = frozenset({"delivered", "rejected", "too_large", "bad_input", "unsupported"})
#: Seconds between two publications of a relay's stats (``tracking relay --stats`` reads them).
PUBLISH_INTERVAL = 2.0
#: Seconds a relay waits for new entries in one call (it also checks what settled meanwhile).
WAIT_MS = 100


def state_key(settings: RelaySettings) -> str:
    """The hash of the group's counters (``position``, ``trimmed``, ``dead_lettered``,
    ``acknowledged``); its ``:relays`` hash holds each relay's latest stats."""
    return f"{settings.stream}:relay:{settings.group}"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@dataclasses.dataclass
class RelayCounters:
    """What one relay did since it started (published with its providers' `tracking_stats`)."""

    read: int = 0
    claimed: int = 0
    acknowledged: int = 0
    dead_lettered: int = 0
    trimmed: int = 0
    left_pending: Counter[str] = dataclasses.field(default_factory=Counter)
    redis_errors: int = 0
    last_error: str | None = None


class Relay:
    """One relay: `run` until `stop` (a signal handler may call it), then finish within the
    shutdown budget (``TRACKING_SHUTDOWN_TIMEOUT``)."""

    def __init__(self, settings: RelaySettings) -> None:
        self.settings = settings
        self.consumer = settings.consumer_name
        self.counters = RelayCounters()
        self.providers: list[str] = []
        self._secrets = secrets_of(settings)
        self._state = state_key(settings)
        self._stop = threading.Event()
        self._settled: queue.SimpleQueue[tuple[str, DeliveryReceipt]] = queue.SimpleQueue()
        self._in_flight: dict[str, DeliveryReceipt] = {}
        self._to_ack: list[str] = []
        self._cursor = "0-0"
        self._last_id = "$"
        self._started = time.time()
        self._client: Any = None
        self._scripts: dict[str, Any] = {}

    # -- the outside -------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop reading; `run` then finishes what it holds within the budget and returns."""
        self._stop.set()

    def prepare(self) -> list[str]:
        """Find the providers enabled here (never the stream itself), connect, create the
        group if needed. Returns the providers' names; `run` does nothing without one.

        Raises:
            RuntimeError: Redis is older than 7.0.
            redis.exceptions.RedisError: Redis cannot be reached, or refused.
        """
        if self._client is None:
            RELAYING.set()  # discovery must not enable the stream this relay reads
            if "redis" in tc.list_tracking_providers():  # enabled before this relay started
                tc.unregister_tracking_provider("redis")
            self.providers = tc.list_tracking_providers()
            self._client = connect(self.settings, f"tracking-relay-{self.consumer}")
            self._scripts = {
                name: self._client.register_script(getattr(scripts, name))
                for name in ("SETUP", "READ", "CLAIM", "HEARTBEAT", "LEAVE")
            }
            self._setup()
        return self.providers

    def run(self, budget: float | None = None) -> int:
        """Deliver until `stop`, then finish within `budget` seconds (default
        ``TRACKING_SHUTDOWN_TIMEOUT``). Returns 0 after a clean stop, 2 when no provider is
        enabled here. Raises what `prepare` raises."""
        try:
            if not self.prepare():
                return 2
            self._loop()
            self._finish(shutdown_budget() if budget is None else budget)
            return 0
        finally:
            RELAYING.clear()

    def snapshot(self, state: str = "running") -> dict[str, Any]:
        """This relay's stats: its counters and its providers' `tracking_stats()`."""
        counters = dataclasses.asdict(self.counters)
        counters["left_pending"] = dict(self.counters.left_pending)
        providers = {name: stats_dict(stats) for name, stats in tc.tracking_stats().items()}
        return {
            "consumer": self.consumer,
            "state": state,
            "started": self._started,
            "updated": time.time(),
            **counters,
            "in_flight": len(self._in_flight),
            "providers": providers,
        }

    # -- the loop ----------------------------------------------------------------------------

    def _setup(self) -> None:
        version = _text(self._client.info("server").get("redis_version", "0"))
        major = int(version.split(".")[0] or 0)
        if major < 7:
            raise RuntimeError(f"tracking relay needs Redis 7.0 or newer (this one is {version})")
        keys = [self.settings.stream, self._state]
        self._scripts["SETUP"](keys=keys, args=[self.settings.group])

    def _loop(self) -> None:
        settings = self.settings
        claim_every = min(5.0, max(0.05, settings.claim_idle / 4))
        beat_every = max(0.05, settings.claim_idle / 3)
        next_claim = next_publish = 0.0
        next_beat = time.monotonic() + beat_every
        pause = 0.0
        lost_group = False
        while not self._stop.is_set():
            try:
                if lost_group:
                    self._setup()
                    lost_group = False
                self._settle()
                now = time.monotonic()
                if now >= next_publish:
                    self._publish()
                    next_publish = now + PUBLISH_INTERVAL
                if now >= next_beat:
                    self._heartbeat()
                    next_beat = now + beat_every
                room = settings.in_flight - len(self._in_flight)
                if room > 0 and now >= next_claim:
                    room -= self._claim(room)
                    next_claim = now + claim_every
                if room <= 0:
                    self._wait_settled(WAIT_MS / 1000)
                elif not self._read(min(room, settings.batch)):
                    self._wait_for_entries()
                pause = 0.0
            except Exception as exc:
                # NOGROUP: the stream or the group was deleted; they are made anew.
                lost_group = lost_group or "NOGROUP" in str(exc)
                if not transient(exc) and not lost_group:
                    raise
                self._redis_failed(exc)
                pause = min(5.0, max(0.1, pause * 2))
                self._stop.wait(pause)

    def _read(self, count: int) -> int:
        keys = [self.settings.stream, self._state]
        args = [self.settings.group, self.consumer, count]
        skipped, last_id, entries = self._scripts["READ"](keys=keys, args=args)
        self._last_id = _text(last_id)
        if skipped:
            self._trimmed(int(skipped), "before a relay read them")
        self.counters.read += len(entries)
        self._submit((entry[0], entry[1]) for entry in entries)
        return len(entries)

    def _claim(self, room: int) -> int:
        """Claim entries pending too long (on any relay), a scan of the pending list at most
        (XAUTOCLAIM pages through it); returns how many were claimed, moved or found trimmed."""
        settings = self.settings
        keys = [settings.stream, settings.dead_letter_stream, self._state]
        idle = int(settings.claim_idle * 1000)
        done = 0
        for _ in range(10):
            count = min(room - done, settings.batch)
            if count <= 0:
                break
            args = [settings.group, self.consumer, idle, self._cursor, count]
            reply = self._scripts["CLAIM"](keys=keys, args=[*args, settings.max_deliveries])
            cursor, trimmed, dead, entries = reply
            self._cursor = _text(cursor)
            if trimmed:
                self._trimmed(int(trimmed), "while pending")
            if dead:
                self._moved(int(dead))
            self.counters.claimed += len(entries)
            self._submit((entry[0], entry[1]) for entry in entries)
            done += len(entries) + int(dead) + int(trimmed)
            if self._cursor == "0-0":
                break
        return done

    def _moved(self, count: int) -> None:
        self.counters.dead_lettered += count
        log_limited(
            logging.ERROR,
            "relay:dead_letter",
            "tracking relay: %d entries delivered more than %d times moved to %s",
            count,
            self.settings.max_deliveries,
            self.settings.dead_letter_stream,
        )

    def _submit(self, entries: Iterable[tuple[bytes, Sequence[bytes]]]) -> None:
        for raw_id, flat in entries:
            entry_id = _text(raw_id)
            if entry_id in self._in_flight:
                continue  # already ours, in flight
            fields = dict(zip(flat[::2], flat[1::2], strict=True))
            try:
                item = decode(fields)
            except (ValueError, TypeError) as exc:
                self._dead_letter(entry_id, fields, f"malformed: {exc}")
                continue
            receipt = tc.submit_event(item)
            self._in_flight[entry_id] = receipt
            receipt.add_done_callback(functools.partial(self._on_settled, entry_id))

    def _on_settled(self, entry_id: str, receipt: DeliveryReceipt) -> None:
        """On an engine thread: hand the settled receipt to the relay's thread."""
        self._settled.put((entry_id, receipt))

    def _settle(self) -> None:
        """Acknowledge what every provider delivered or refused for good; leave the rest."""
        while True:
            try:
                entry_id, receipt = self._settled.get_nowait()
            except queue.Empty:
                break
            self._in_flight.pop(entry_id, None)
            outcomes = receipt.outcomes
            unfinished = sorted({o for o in outcomes.values() if o not in FINAL})
            if outcomes and not unfinished:
                self._to_ack.append(entry_id)
            else:
                self.counters.left_pending.update(unfinished or ["no provider"])
        if self._to_ack:
            ids = self._to_ack
            pipeline = self._client.pipeline(transaction=False)
            pipeline.xack(self.settings.stream, self.settings.group, *ids)
            pipeline.hincrby(self._state, "acknowledged", len(ids))
            acknowledged, _ = pipeline.execute()
            self._to_ack = []
            self.counters.acknowledged += int(acknowledged)

    def _wait_settled(self, seconds: float) -> None:
        with contextlib.suppress(queue.Empty):
            self._settled.put(self._settled.get(timeout=seconds))

    def _wait_for_entries(self) -> None:
        """Block until an entry newer than the latest read arrives, or `WAIT_MS` passes."""
        self._client.xread({self.settings.stream: self._last_id}, count=1, block=WAIT_MS)

    def _heartbeat(self) -> None:
        ids = list(self._in_flight)
        for start in range(0, len(ids), 1000):
            args = [self.settings.group, self.consumer, *ids[start : start + 1000]]
            self._scripts["HEARTBEAT"](keys=[self.settings.stream], args=args)

    def _publish(self, state: str = "running") -> None:
        data = json.dumps(self.snapshot(state), separators=(",", ":"))
        self._client.hset(f"{self._state}:relays", self.consumer, data)

    # -- what goes wrong ---------------------------------------------------------------------

    def _trimmed(self, count: int, when: str) -> None:
        self.counters.trimmed += count
        log_limited(
            logging.ERROR,
            "relay:trimmed",
            "tracking relay: %d entries were trimmed from %s (TRACKING_REDIS_MAXLEN) %s; "
            "they are lost",
            count,
            self.settings.stream,
            when,
        )

    def _dead_letter(self, entry_id: str, fields: dict[bytes, bytes], why: str) -> None:
        settings = self.settings
        moved: dict[Any, Any] = {**fields, "source_id": entry_id, "deliveries": 1, "reason": why}
        pipeline = self._client.pipeline(transaction=True)
        pipeline.xadd(settings.dead_letter_stream, moved)
        pipeline.xack(settings.stream, settings.group, entry_id)
        pipeline.hincrby(self._state, "dead_lettered", 1)
        pipeline.execute()
        self.counters.dead_lettered += 1
        log_limited(
            logging.ERROR,
            "relay:malformed",
            "tracking relay: entry %s of %s moved to %s: %s",
            entry_id,
            settings.stream,
            settings.dead_letter_stream,
            why[:200],
        )

    def _redis_failed(self, error: BaseException) -> None:
        self.counters.redis_errors += 1
        self.counters.last_error = describe(error, self._secrets)
        log_limited(
            logging.WARNING,
            "relay:redis",
            "tracking relay: Redis failed (%s); trying again",
            self.counters.last_error,
        )

    # -- the end -----------------------------------------------------------------------------

    def _finish(self, budget: float) -> None:
        """Deliver what is in flight within `budget` (what is not stays pending, for another
        relay), acknowledge what was delivered, publish the last stats, leave the group when
        nothing is pending on this relay."""
        deadline = time.monotonic() + budget
        tc.shutdown_tracking(max(0.0, budget - min(1.0, budget / 4)))

        def last_words() -> None:
            try:
                self._settle()
                self._publish("stopped")
                args = [self.settings.group, self.consumer]
                self._scripts["LEAVE"](keys=[self.settings.stream], args=args)
            except Exception as exc:
                self._redis_failed(exc)

        closing = threading.Thread(target=last_words, name="tracking-relay-stop", daemon=True)
        closing.start()
        closing.join(max(0.0, deadline - time.monotonic()))
        if closing.is_alive():
            logging.getLogger("tracking_core").error(
                "tracking relay: Redis did not answer within the shutdown budget"
            )


def stats_dict(stats: tc.ProviderStats) -> dict[str, Any]:
    """`stats` as plain JSON values (its mappings as dicts)."""
    fields = (field.name for field in dataclasses.fields(stats))
    values = {name: getattr(stats, name) for name in fields}
    return {name: dict(v) if isinstance(v, Mapping) else v for name, v in values.items()}


def shutdown_budget() -> float:
    """The shutdown budget: ``TRACKING_SHUTDOWN_TIMEOUT`` (5 s by default)."""
    import os

    from tracking_core.settings import EngineSettings

    settings, _ = EngineSettings.from_environ(os.environ)
    return settings.shutdown_timeout
