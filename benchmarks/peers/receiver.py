"""The loopback receiver every benchmarked client sends to, run in its own process.

One asyncio event loop serving hand-parsed HTTP/1.1 with keep-alive and ``TCP_NODELAY`` (without
it, Nagle's algorithm and the client's delayed ACK add ~40 ms to each answer). It speaks just
enough of each vendor's ingestion API for their SDKs and tracking-core's providers to take the
answer as success, and counts every event by its dedupe id, per vendor:

- PostHog: ``/batch/``, ``/capture/``; id ``uuid``; 200 ``{"status": 1}``
- Mixpanel: ``/track``, ``/engage``, ``/import``, ``/groups``; id ``properties.$insert_id``;
  200 ``{"status": 1, "error": null}``
- Amplitude: ``/2/httpapi``, ``/batch``; id ``insert_id``; 200 ``{"code": 200, ...}``
- Segment: ``/v1/batch``; id ``messageId``; 200 ``{}``
- the webhook (Segment's format): ``/webhook``; id ``messageId``; 200 ``{}``

Bodies may be gzipped (``Content-Encoding: gzip``), chunked, JSON or (Mixpanel's SDK)
``application/x-www-form-urlencoded`` with a ``data`` field. ``GET /__count`` answers the
counts (``{"vendors": {name: {"unique", "total", "requests"}}, "unknown": n, "cpu": s}``, where
``cpu`` is this process's CPU seconds so far); ``GET /__reset`` clears them.

Three more ports serve the same routes and counts:

- *stall*: accepts connections and reads requests but never answers;
- *slow*: answers every request after ``--answer-delay`` seconds (2 ms): a healthy destination
  a little farther away;
- *flaky*: answers after the same delay, and answers 503 (the events not counted) to a random
  ``--fail-rate`` (30 %) of the requests, drawn from ``random.Random(--seed)``, so that two runs
  fail the same sequence of requests. ``GET /__recover`` (on any port) makes it answer
  everything from then on, until the next ``/__reset``, which also restarts the random
  sequence. Requests answered 503 are counted per vendor as ``failed``.

    python benchmarks/peers/receiver.py [--answer-delay 0.002] [--fail-rate 0.3] [--seed 1]

prints one JSON line ``{"url", "stall_url", "slow_url", "flaky_url"}`` and serves until its
standard input is closed.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gzip
import json
import random
import socket
import sys
import threading
import time
import urllib.parse
from typing import Any, NamedTuple

__all__ = ["Counts", "Faults", "serve"]

_ROUTES = {
    "/batch/": "posthog",
    "/capture/": "posthog",
    "/track": "mixpanel",
    "/engage": "mixpanel",
    "/import": "mixpanel",
    "/groups": "mixpanel",
    "/2/httpapi": "amplitude",
    "/batch": "amplitude",
    "/v1/batch": "segment",
    "/webhook": "webhook",
}

_MAX_HEADER = 64 * 1024


class Counts:
    """Events seen per vendor: distinct dedupe ids, total items, requests (all of them) and
    failed requests (answered 503 by the flaky port; their events are not counted)."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.ids: dict[str, set[str]] = {}
        self.total: dict[str, int] = {}
        self.requests: dict[str, int] = {}
        self.failed: dict[str, int] = {}
        self.unknown = 0
        self.anonymous = 0

    def fail(self, vendor: str) -> None:
        self.ids.setdefault(vendor, set())
        self.requests[vendor] = self.requests.get(vendor, 0) + 1
        self.failed[vendor] = self.failed.get(vendor, 0) + 1

    def add(self, vendor: str, ids: list[str | None]) -> None:
        seen = self.ids.setdefault(vendor, set())
        for item_id in ids:
            if item_id is None:  # no dedupe id: count it as its own event
                self.anonymous += 1
            seen.add(f"anonymous-{self.anonymous}" if item_id is None else item_id)
        self.total[vendor] = self.total.get(vendor, 0) + len(ids)
        self.requests[vendor] = self.requests.get(vendor, 0) + 1

    def snapshot(self) -> dict[str, Any]:
        return {
            "vendors": {
                vendor: {
                    "unique": len(ids),
                    "total": self.total.get(vendor, 0),
                    "requests": self.requests.get(vendor, 0),
                    "failed": self.failed.get(vendor, 0),
                }
                for vendor, ids in self.ids.items()
            },
            "unknown": self.unknown,
            "cpu": time.process_time(),
        }


def _json_items(vendor: str, body: bytes, content_type: str) -> list[Any]:
    """The items (events, messages, profile updates) of one request body."""
    if vendor == "mixpanel" and (
        "x-www-form-urlencoded" in content_type or body.startswith(b"data=")
    ):
        form = urllib.parse.parse_qs(body.decode("utf-8"))
        payload: Any = json.loads(form["data"][0])
    else:
        payload = json.loads(body)
    if vendor == "posthog":
        return list(payload["batch"]) if "batch" in payload else [payload]
    if vendor in ("segment", "webhook"):
        return list(payload["batch"])
    if vendor == "amplitude":
        return list(payload["events"])
    return payload if isinstance(payload, list) else [payload]  # mixpanel


def _item_id(vendor: str, item: Any) -> str | None:
    if not isinstance(item, dict):
        return None
    if vendor == "posthog":
        value = item.get("uuid")
    elif vendor in ("segment", "webhook"):
        value = item.get("messageId")
    elif vendor == "amplitude":
        value = item.get("insert_id")
    else:
        properties = item.get("properties")
        value = properties.get("$insert_id") if isinstance(properties, dict) else None
    return str(value) if value is not None else None


def _answer(vendor: str, count: int, size: int) -> bytes:
    if vendor == "posthog":
        return b'{"status": 1}'
    if vendor == "mixpanel":
        return b'{"status": 1, "error": null}'
    if vendor == "amplitude":
        return json.dumps(
            {
                "code": 200,
                "events_ingested": count,
                "payload_size_bytes": size,
                "server_upload_time": int(time.time() * 1000),
            }
        ).encode()
    return b"{}"


def _response(status: int, body: bytes, close: bool) -> bytes:
    reason = {200: "OK", 400: "Bad Request", 404: "Not Found", 503: "Service Unavailable"}
    head = (
        f"HTTP/1.1 {status} {reason.get(status, 'OK')}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
    )
    if close:
        head += "Connection: close\r\n"
    return head.encode("ascii") + b"\r\n" + body


class Faults:
    """The flaky port's failures: a seeded random share of the requests is answered 503."""

    def __init__(self, rate: float, seed: int) -> None:
        self.configured_rate = rate
        self.seed = seed
        self.reset()

    def reset(self) -> None:
        """Fail at the configured rate again, from the start of the seeded sequence."""
        self.rate = self.configured_rate
        self.random = random.Random(self.seed)

    def recover(self) -> None:
        """Answer every request from now on (until the next `reset`)."""
        self.rate = 0.0

    def fails(self) -> bool:
        return self.rate > 0 and self.random.random() < self.rate


class Port(NamedTuple):
    """How a port answers: never (`stall`), after `delay` seconds, and with 503s (`flaky`)."""

    stall: bool = False
    delay: float = 0.0
    flaky: bool = False


class _Protocol(asyncio.Protocol):
    def __init__(self, counts: Counts, faults: Faults, port: Port) -> None:
        self.counts = counts
        self.faults = faults
        self.port = port
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while self.transport is not None and not self.transport.is_closing():
            if not self._one_request():
                break

    def _one_request(self) -> bool:
        """Handle one complete request from the buffer; False when more bytes are needed."""
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self.buffer) > _MAX_HEADER:
                self._close()
            return False
        lines = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
        method, target, _version = [*lines[0].split(" "), "", ""][:3]
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        start = end + 4
        if "chunked" in headers.get("transfer-encoding", "").lower():
            parsed = self._chunked(start)
            if parsed is None:
                return False
            body, consumed = parsed
        else:
            length = int(headers.get("content-length") or 0)
            if len(self.buffer) < start + length:
                return False
            body, consumed = bytes(self.buffer[start : start + length]), start + length
        del self.buffer[:consumed]
        if self.port.stall:
            return True  # read it, never answer
        close = headers.get("connection", "").lower() == "close"
        answer = self._handle(method, target, headers, body, close)
        if self.port.delay > 0:
            asyncio.get_running_loop().call_later(self.port.delay, self._write, answer, close)
        else:
            self._write(answer, close)
        return True

    def _write(self, answer: bytes, close: bool) -> None:
        if self.transport is None or self.transport.is_closing():
            return  # the client hung up while the answer was delayed
        self.transport.write(answer)
        if close:
            self._close()

    def _chunked(self, start: int) -> tuple[bytes, int] | None:
        body = bytearray()
        position = start
        while True:
            line_end = self.buffer.find(b"\r\n", position)
            if line_end < 0:
                return None
            size = int(bytes(self.buffer[position:line_end]).split(b";")[0], 16)
            chunk_start = line_end + 2
            if size == 0:
                trailer_end = self.buffer.find(b"\r\n\r\n", line_end)
                if trailer_end < 0:
                    return None
                return bytes(body), trailer_end + 4
            if len(self.buffer) < chunk_start + size + 2:
                return None
            body += self.buffer[chunk_start : chunk_start + size]
            position = chunk_start + size + 2

    def _handle(
        self, method: str, target: str, headers: dict[str, str], body: bytes, close: bool
    ) -> bytes:
        path = target.split("?", 1)[0]
        if method == "GET" and path == "/__count":
            return _response(200, json.dumps(self.counts.snapshot()).encode(), close)
        if method == "GET" and path == "/__reset":
            self.counts.reset()
            self.faults.reset()
            return _response(200, b"{}", close)
        if method == "GET" and path == "/__recover":
            self.faults.recover()
            return _response(200, b"{}", close)
        vendor = _ROUTES.get(path)
        if vendor is None or method != "POST":
            self.counts.unknown += 1
            return _response(404, b'{"error": "unknown path"}', close)
        if self.port.flaky and self.faults.fails():
            self.counts.fail(vendor)
            return _response(503, b'{"error": "unavailable, try again"}', close)
        try:
            if headers.get("content-encoding", "").lower() == "gzip":
                body = gzip.decompress(body)
            items = _json_items(vendor, body, headers.get("content-type", ""))
        except (ValueError, KeyError, TypeError, OSError) as exc:
            self.counts.unknown += 1
            return _response(400, json.dumps({"error": repr(exc)}).encode(), close)
        self.counts.add(vendor, [_item_id(vendor, item) for item in items])
        return _response(200, _answer(vendor, len(items), len(body)), close)

    def _close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


async def serve(
    ready: asyncio.Future[dict[str, str]],
    stop: asyncio.Event,
    answer_delay: float = 0.002,
    fail_rate: float = 0.3,
    seed: int = 1,
) -> None:
    """Serve on four free loopback ports until `stop` is set; `ready` gets their base URLs
    (``url``, ``stall_url``, ``slow_url``, ``flaky_url``)."""
    loop = asyncio.get_running_loop()
    counts = Counts()
    faults = Faults(fail_rate, seed)
    ports = {
        "url": Port(),
        "stall_url": Port(stall=True),
        "slow_url": Port(delay=answer_delay),
        "flaky_url": Port(delay=answer_delay, flaky=True),
    }
    servers = {
        name: await loop.create_server(
            functools.partial(_Protocol, counts, faults, port), "127.0.0.1", 0, backlog=1024
        )
        for name, port in ports.items()
    }
    ready.set_result(
        {
            name: f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
            for name, server in servers.items()
        }
    )
    try:
        await stop.wait()
    finally:
        for server in servers.values():
            server.close()


async def _main(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[dict[str, str]] = loop.create_future()
    stop = asyncio.Event()

    def watch_stdin() -> None:
        sys.stdin.read()
        loop.call_soon_threadsafe(stop.set)

    task = asyncio.create_task(serve(ready, stop, args.answer_delay, args.fail_rate, args.seed))
    print(json.dumps(await ready), flush=True)
    threading.Thread(target=watch_stdin, daemon=True).start()
    await task


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--answer-delay",
        type=float,
        default=0.002,
        help="seconds before the slow and flaky ports answer (0.002)",
    )
    parser.add_argument(
        "--fail-rate",
        type=float,
        default=0.3,
        help="share of the flaky port's requests answered 503 (0.3)",
    )
    parser.add_argument("--seed", type=int, default=1, help="the flaky port's random seed (1)")
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(_main(_arguments()))
