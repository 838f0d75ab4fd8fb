"""The producer: every event and identify appended to a Redis stream, a pipeline per batch.

`RedisStreamProvider` is a `tracking_core` batching provider: the engine queues and batches for
it on its own worker thread (so `track()` costs what it costs with any provider), and it reports
each item as delivered (Redis accepted it) or dropped, under the engine's reasons.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from tracking_core import DropReason
from tracking_core.engine.turn import Pacer, turn
from tracking_core.kit import log_limited

from .connection import connect, describe, secrets_of, transient
from .settings import RELAYING, RedisSettings
from .wire import FIELD, Item, encode

if TYPE_CHECKING:
    from tracking_core.engine import DeliveryControl

__all__ = ["MAX_ENTRY_BYTES", "MAX_PIPELINE", "RELAYING", "RedisStreamProvider"]

#: Entries appended in one pipeline (one round trip), at most.
MAX_PIPELINE = 1000
#: A larger event is dropped (``too_large``): no vendor takes more than 1 MB.
MAX_ENTRY_BYTES = 1_000_000


def _settle(control: DeliveryControl, event_ids: Sequence[str], outcome: str) -> None:
    """Tell the engine what became of these items (the receipts of `submit_event`)."""
    settled = getattr(control, "settled", None)
    if settled is not None and event_ids:
        settled(event_ids, outcome)


class RedisStreamProvider:
    """Appends each item to ``settings.stream`` (``XADD <stream> MAXLEN ~ <maxlen> * event
    <json>``, see `tracking_redis.wire`), pipelined: one round trip per batch.

    - Redis's reply is the outcome of each item: an entry id is delivered; an error reply that
      means "not now" (loading, busy, out of memory, read-only replica) and a lost connection
      or a timeout are retried with the engine's backoff, attempts and time limits
      (``TRACKING_RETRY_BACKOFF``, ``TRACKING_MAX_ATTEMPTS``, ``TRACKING_MAX_RETRY_TIME``), then
      dropped as ``retries_exhausted`` (``shutdown`` when the shutdown budget runs out first);
      any other error reply is ``rejected``.
    - Meanwhile new events wait in the engine's queue, bounded by ``TRACKING_MAX_QUEUE``.
    - A pipeline cut by a lost connection may have appended part of the batch: the retry
      appends those again, with the same event ids (at least once; the vendors deduplicate).
    """

    name = "redis"
    #: A pipeline costs one round trip: what waits is sent at once, and batches grow by
    #: themselves while one is in flight.
    waits_for_batch = False

    def __init__(self, settings: RedisSettings) -> None:
        self.settings = settings
        self._secrets = secrets_of(settings)
        self._client: Any = None
        self._streak = 0  # failed attempts in a row: the backoff's exponent

    def __repr__(self) -> str:
        return f"RedisStreamProvider(stream={self.settings.stream!r})"

    def secrets(self) -> tuple[str, ...]:
        """The URL and its password: never logged."""
        return self._secrets

    def batch_limit(self) -> int:
        return MAX_PIPELINE

    def deliver_batch(self, items: Sequence[Item], control: DeliveryControl) -> None:
        """Append `items`; report each as delivered or dropped through `control`."""
        entries: list[tuple[str, bytes]] = []
        large: list[str] = []
        with turn():  # the library's CPU work, one thread at a time (tracking_core.engine.turn)
            pace = Pacer()
            for item in items:
                data = encode(item)
                if len(data) > MAX_ENTRY_BYTES:
                    large.append(item.event_id)
                else:
                    entries.append((item.event_id, data))
                pace()
        if large:
            self._drop(control, large, DropReason.TOO_LARGE, f"larger than {MAX_ENTRY_BYTES} bytes")
        if entries:
            self._append(entries, control)

    def _append(self, entries: list[tuple[str, bytes]], control: DeliveryControl) -> None:
        engine = control.settings
        started = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            replies = self._send(entries)
            retry: list[tuple[str, bytes]] = []
            rejected: list[str] = []
            delivered: list[str] = []
            error: BaseException | None = None
            refused: BaseException | None = None
            for (event_id, data), reply in zip(entries, replies, strict=True):
                if not isinstance(reply, BaseException):
                    delivered.append(event_id)
                elif transient(reply):
                    retry.append((event_id, data))
                    error = error or reply
                else:
                    rejected.append(event_id)
                    refused = reply
            if delivered:
                self._streak = 0
                control.delivered(len(delivered), clear_error=not retry and not rejected)
                _settle(control, delivered, "delivered")
            if refused is not None:
                self._drop(control, rejected, DropReason.REJECTED, describe(refused, self._secrets))
            problem = error or refused
            control.batch_sent(None, None if problem is None else describe(problem, self._secrets))
            if error is None:
                return
            self._streak += 1
            reason = describe(error, self._secrets)
            control.failed(reason)
            ids = [event_id for event_id, _ in retry]
            spent = time.monotonic() - started
            if attempt >= engine.max_attempts or spent >= engine.max_retry_time:
                self._drop(control, ids, DropReason.RETRIES_EXHAUSTED, reason)
                return
            ceiling = min(engine.retry_backoff_max, engine.retry_backoff * 2 ** (self._streak - 1))
            if not control.sleep(random.uniform(0, ceiling)):
                self._drop(control, ids, DropReason.SHUTDOWN, reason)
                return
            control.retried(len(retry))
            entries = retry

    def _send(self, entries: list[tuple[str, bytes]]) -> list[Any]:
        """Redis's reply to each XADD: an entry id or an exception (all the same exception
        when the pipeline as a whole failed)."""
        try:
            if self._client is None:
                self._client = connect(self.settings, "tracking-producer")
            pipeline = self._client.pipeline(transaction=False)
            settings = self.settings
            for _, data in entries:
                pipeline.xadd(settings.stream, {FIELD: data}, maxlen=settings.maxlen)
            replies: list[Any] = pipeline.execute(raise_on_error=False)
            return replies
        except Exception as exc:  # redis errors, and whatever the socket raised
            return [exc] * len(entries)

    def _drop(
        self, control: DeliveryControl, event_ids: list[str], reason: DropReason, why: str
    ) -> None:
        control.dropped(reason, len(event_ids))
        _settle(control, event_ids, reason.value)
        log_limited(
            logging.WARNING,
            f"{reason.value}:{self.name}",
            "tracking: %s dropped %d events (%s): %s",
            self.name,
            len(event_ids),
            reason.value,
            why,
        )

    def flush(self) -> None:
        """Nothing is held between batches."""

    def close(self) -> None:
        """Close the connections (the worker is exiting)."""
        client, self._client = self._client, None
        if client is not None:
            client.close()
