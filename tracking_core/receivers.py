"""Loopback HTTP receivers: real servers on 127.0.0.1 for tests, the demo and provider authors.

`LoopbackReceiver` records every request it gets (body already un-gzipped) and answers through a
*responder*: a function from `ReceivedRequest` to `Reply`. Replies can also hang (accept and never
answer) or reset the connection, so tests can script every failure a destination can show.
"""

from __future__ import annotations

import dataclasses
import gzip
import http.server
import json
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

__all__ = ["LoopbackReceiver", "ReceivedRequest", "Reply"]


@dataclasses.dataclass(frozen=True)
class ReceivedRequest:
    """One request as the receiver got it.

    Attributes:
        method: ``"POST"``, ``"GET"``...
        path: the path without the query string.
        query: the query parameters (last value wins).
        headers: the request headers, names in lower case.
        raw_body: the body exactly as sent (possibly gzipped).
        body: the body after gunzipping when ``Content-Encoding: gzip`` was set.
        received_at: `time.monotonic()` when it arrived.
    """

    method: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]
    raw_body: bytes
    body: bytes
    received_at: float

    def json(self) -> Any:
        """The body parsed as strict JSON (NaN/Infinity tokens are refused)."""

        def _refuse(token: str) -> Any:
            raise ValueError(f"non-standard JSON token {token}")

        return json.loads(self.body, parse_constant=_refuse)


@dataclasses.dataclass(frozen=True)
class Reply:
    """What the receiver answers.

    `action`: ``"answer"`` (send status/headers/body), ``"hang"`` (accept and never answer until
    the receiver stops) or ``"reset"`` (close the connection without answering). `delay` seconds
    are waited before acting.
    """

    status: int = 200
    body: bytes | str | Any = b""
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict)
    action: str = "answer"
    delay: float = 0.0

    def encoded(self) -> tuple[bytes, str]:
        if isinstance(self.body, bytes):
            return self.body, "application/octet-stream"
        if isinstance(self.body, str):
            return self.body.encode("utf-8"), "text/plain; charset=utf-8"
        return json.dumps(self.body).encode("utf-8"), "application/json"


Responder = Callable[[ReceivedRequest], Reply]


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        # Answer at once: without this, Nagle's algorithm and the client's delayed ACK add
        # ~40 ms to every response sent as headers + body.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        body = raw
        if headers.get("content-encoding", "").lower() == "gzip":
            try:
                body = gzip.decompress(raw)
            except OSError:
                body = b""
        split = urllib.parse.urlsplit(self.path)
        request = ReceivedRequest(
            method=self.command,
            path=split.path,
            query=dict(urllib.parse.parse_qsl(split.query, keep_blank_values=True)),
            headers=headers,
            raw_body=raw,
            body=body,
            received_at=time.monotonic(),
        )
        receiver = self.server.receiver
        try:
            reply = receiver.responder(request)
        except Exception as exc:  # a bug in a test's responder: answer 500, remember it
            receiver.errors.append(exc)
            reply = Reply(500, {"error": f"responder raised {type(exc).__name__}"})
        receiver._record(request)
        if reply.delay:
            receiver._stopping.wait(reply.delay)
        if reply.action == "hang":
            receiver._stopping.wait()
            self.close_connection = True
            return
        if reply.action == "reset":
            self.connection.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
            )
            self.close_connection = True
            return
        data, content_type = reply.encoded()
        self.send_response(reply.status)
        sent = {k.lower() for k in reply.headers}
        for name, value in reply.headers.items():
            self.send_header(name, value)
        if "content-type" not in sent:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_POST = _handle
    do_GET = _handle
    do_PUT = _handle


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    receiver: LoopbackReceiver


_R = TypeVar("_R", bound="LoopbackReceiver")


class LoopbackReceiver:
    """A real HTTP server on 127.0.0.1 and a free port, in a background thread.

    Use it as a context manager (or call `start`/`stop`). `url` is its base URL. Every request
    is appended to `requests`; `responder` decides each answer (200 with an empty body by
    default) and may be replaced at any time.
    """

    def __init__(self, responder: Responder | None = None) -> None:
        self.responder: Responder = responder or (lambda request: Reply(200, b""))
        self.requests: list[ReceivedRequest] = []
        self.errors: list[Exception] = []
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the receiver is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    #: The port to listen on: 0 (any free one) until the first start, then the one it got, so
    #: a receiver started again after `stop` comes back on the same port.
    port = 0

    def make_server(self, address: tuple[str, int]) -> _Server:
        """The server for `start` (a subclass may serve TLS, say)."""
        return _Server(address, _Handler)

    def start(self: _R) -> _R:
        self._stopping.clear()
        server = self.make_server(("127.0.0.1", self.port))
        server.receiver = self
        self._server = server
        self.port = int(server.server_address[1])
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self: _R) -> _R:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _record(self, request: ReceivedRequest) -> None:
        with self._arrived:
            self.requests.append(request)
            self._arrived.notify_all()

    def wait_for(self, predicate: Callable[[list[ReceivedRequest]], bool], timeout: float) -> bool:
        """Wait until `predicate(requests)` is true; False when `timeout` seconds pass first."""
        deadline = time.monotonic() + timeout
        with self._arrived:
            while not predicate(self.requests):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._arrived.wait(left)
            return True

    def clear(self) -> None:
        with self._lock:
            self.requests.clear()
