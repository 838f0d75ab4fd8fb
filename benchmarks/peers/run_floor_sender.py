"""Runner: the floor sender, the least a sender that actually sends can cost (stdlib only).

`FloorSender` is the whole client, about 40 lines: ``track()`` puts the event dict on a
``queue.SimpleQueue``; one thread takes up to 50 events (or what is there after a 5 ms wait),
gives each a UUID4 and an ISO timestamp, and sends them as one PostHog ``/batch/`` JSON request
with ``http.client`` over one keep-alive connection, then reads the answer. No retries and no
gzip: a request that fails loses its batch. ``flush()`` waits until the queue is drained and the
last answer read. It takes part in end to end, both asyncio shapes and the flaky destination
(where it loses what was answered 503: the cost of having no retries).
"""

from __future__ import annotations

import datetime
import http.client
import json
import queue
import threading
import time
import urllib.parse
import uuid
from typing import Any

from common import Client, Setup, main

UTC = datetime.timezone.utc


class FloorSender:
    """Batches of up to 50 events, one request at a time, no retries."""

    def __init__(self, url: str, api_key: str = "phc_floor") -> None:
        parts = urllib.parse.urlsplit(url)
        self.connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
        self.prefix = f'{{"api_key": {json.dumps(api_key)}, "batch": '
        self.queue: queue.SimpleQueue[dict[str, Any] | threading.Event] = queue.SimpleQueue()
        threading.Thread(target=self._send_forever, daemon=True).start()

    def track(self, name: str, properties: dict[str, Any], user_id: str) -> None:
        self.queue.put(
            {
                "event": name,
                "distinct_id": user_id,
                "properties": dict(properties),
                "t": time.time(),
            }
        )

    def flush(self, timeout: float) -> bool:
        marker = threading.Event()
        self.queue.put(marker)
        return marker.wait(timeout)

    def _send_forever(self) -> None:
        while True:
            item: dict[str, Any] | threading.Event | None = self.queue.get()
            batch, wait_until = [], time.monotonic() + 0.005  # and what comes within 5 ms
            while isinstance(item, dict):
                item["uuid"] = str(uuid.uuid4())
                item["timestamp"] = datetime.datetime.fromtimestamp(item.pop("t"), UTC).isoformat()
                batch.append(item)
                try:
                    wait = max(0.0, wait_until - time.monotonic())
                    item = self.queue.get(timeout=wait) if len(batch) < 50 else None
                except queue.Empty:
                    item = None
            if batch:
                self._send((self.prefix + json.dumps(batch) + "}").encode())
            if item is not None:  # a flush's marker: everything before it was sent
                item.set()

    def _send(self, body: bytes) -> None:
        try:
            self.connection.request("POST", "/batch/", body, {"Content-Type": "application/json"})
            self.connection.getresponse().read()  # 2xx or not, the batch is done with
        except (OSError, http.client.HTTPException):
            self.connection.close()  # no retries: the batch is lost; reconnect for the next


class FloorSenderClient(Client):
    label = "floor sender (stdlib, no retries)"
    vendors = ("posthog",)
    modes = ("e2e", "asyncio", "asyncio100", "flaky")

    def setup(self, url: str, mode: str, events: int) -> Setup:
        sender = FloorSender(url)
        return Setup(sender.track, sender.flush, lambda: sender.flush(30.0))


if __name__ == "__main__":
    main(FloorSenderClient())
