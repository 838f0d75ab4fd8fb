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

A second port *stalls*: it accepts connections and reads requests but never answers.

    python benchmarks/peers/receiver.py

prints one JSON line ``{"url": ..., "stall_url": ...}`` and serves until its standard input is
closed.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import socket
import sys
import threading
import time
import urllib.parse
from typing import Any

__all__ = ["Counts", "serve"]

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
    """Events seen per vendor: distinct dedupe ids, total items and requests."""

    def __init__(self) -> None:
        self.ids: dict[str, set[str]] = {}
        self.total: dict[str, int] = {}
        self.requests: dict[str, int] = {}
        self.unknown = 0
        self.anonymous = 0

    def reset(self) -> None:
        self.ids = {}
        self.total = {}
        self.requests = {}
        self.unknown = 0
        self.anonymous = 0

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
    reason = {200: "OK", 400: "Bad Request", 404: "Not Found"}.get(status, "OK")
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
    )
    if close:
        head += "Connection: close\r\n"
    return head.encode("ascii") + b"\r\n" + body


class _Protocol(asyncio.Protocol):
    def __init__(self, counts: Counts, stall: bool) -> None:
        self.counts = counts
        self.stall = stall
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
        if self.stall:
            return True  # read it, never answer
        close = headers.get("connection", "").lower() == "close"
        assert self.transport is not None
        self.transport.write(self._handle(method, target, headers, body, close))
        if close:
            self._close()
        return True

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
            return _response(200, b"{}", close)
        vendor = _ROUTES.get(path)
        if vendor is None or method != "POST":
            self.counts.unknown += 1
            return _response(404, b'{"error": "unknown path"}', close)
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


async def serve(ready: asyncio.Future[tuple[str, str]], stop: asyncio.Event) -> None:
    """Serve on two free loopback ports until `stop` is set; `ready` gets their base URLs."""
    loop = asyncio.get_running_loop()
    counts = Counts()
    server = await loop.create_server(
        lambda: _Protocol(counts, stall=False), "127.0.0.1", 0, backlog=1024
    )
    stall = await loop.create_server(
        lambda: _Protocol(counts, stall=True), "127.0.0.1", 0, backlog=1024
    )
    urls = tuple(f"http://127.0.0.1:{s.sockets[0].getsockname()[1]}" for s in (server, stall))
    ready.set_result((urls[0], urls[1]))
    async with server, stall:
        await stop.wait()


async def _main() -> None:
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[tuple[str, str]] = loop.create_future()
    stop = asyncio.Event()

    def watch_stdin() -> None:
        sys.stdin.read()
        loop.call_soon_threadsafe(stop.set)

    task = asyncio.create_task(serve(ready, stop))
    url, stall_url = await ready
    print(json.dumps({"url": url, "stall_url": stall_url}), flush=True)
    threading.Thread(target=watch_stdin, daemon=True).start()
    await task


if __name__ == "__main__":
    asyncio.run(_main())
