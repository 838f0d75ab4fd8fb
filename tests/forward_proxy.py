"""A small forward HTTP proxy on 127.0.0.1 for tests: a real proxy speaking the real protocol.

It takes what clients behind a corporate egress proxy send:

- ``CONNECT host:port`` (HTTPS targets): answers ``200 Connection established`` and relays bytes
  both ways, untouched (the TLS session is between the client and the target);
- absolute-form requests (``POST http://host:port/path HTTP/1.1``, plain-HTTP targets): forwards
  each request to the target in origin form and relays the answer back, keeping the client's
  connection open for the next request.

Every request it sees is recorded (`ForwardProxy.seen`), with its headers, so a test can check
what went through the proxy and with which ``Proxy-Authorization``. `require_auth` makes it
answer ``407`` without the right credentials; `refuse_connect` makes it answer ``CONNECT`` with
that status instead of opening a tunnel; `tls` (a server context) makes it an ``https://`` proxy.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import io
import socket
import ssl
import threading
from collections.abc import Mapping

from .tcp_server import TcpServer

__all__ = ["ForwardProxy", "ProxiedRequest"]


@dataclasses.dataclass(frozen=True)
class ProxiedRequest:
    """One request the proxy received: ``CONNECT`` and its authority, or a method and an
    absolute URL; headers with names in lower case."""

    method: str
    target: str
    headers: Mapping[str, str]


class ForwardProxy(TcpServer):
    """A threaded forward proxy on 127.0.0.1 and a free port. Use as a context manager."""

    def __init__(
        self,
        *,
        require_auth: tuple[str, str] | None = None,
        refuse_connect: int | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__()
        self.require_auth = require_auth
        self.refuse_connect = refuse_connect
        self.tls = tls
        self.seen: list[ProxiedRequest] = []
        self._sockets: list[socket.socket] = []

    def url(self, credentials: str = "") -> str:
        """The proxy's URL, as a proxy variable would name it (``credentials``: ``user:pw``)."""
        userinfo = f"{credentials}@" if credentials else ""
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{userinfo}127.0.0.1:{self.port}"

    def close(self) -> None:
        self.stopping.set()
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()
        for thread in list(self._threads):
            thread.join(5)
        self._listener.close()

    # -- plumbing -----------------------------------------------------------------------------

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)

    def serve(self, client: socket.socket) -> None:
        client.settimeout(10)
        self._track(client)
        if self.tls is not None:
            try:
                client = self.tls.wrap_socket(client, server_side=True)
            except (ssl.SSLError, OSError):
                client.close()
                return
            self._track(client)
        reader = client.makefile("rb")
        try:
            while not self.stopping.is_set():
                head = _read_head(reader)
                if head is None:
                    return
                method, target, headers = head
                with self._lock:
                    self.seen.append(ProxiedRequest(method, target, headers))
                if self.require_auth is not None and not self._authorized(headers):
                    body = b"proxy authentication required"
                    client.sendall(
                        b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                        b'Proxy-Authenticate: Basic realm="test"\r\n'
                        + f"Content-Length: {len(body)}\r\n\r\n".encode()
                        + body
                    )
                    _skip_body(reader, headers)
                    continue
                if method == "CONNECT":
                    self._tunnel(client, reader, target)
                    return
                if not self._forward(client, reader, method, target, headers):
                    return
        except OSError:
            return
        finally:
            with contextlib.suppress(OSError):
                reader.close()
                client.close()

    def _authorized(self, headers: Mapping[str, str]) -> bool:
        assert self.require_auth is not None
        user, password = self.require_auth
        expected = base64.b64encode(f"{user}:{password}".encode()).decode()
        return headers.get("proxy-authorization", "") == f"Basic {expected}"

    def _tunnel(self, client: socket.socket, reader: io.BufferedReader, target: str) -> None:
        if self.refuse_connect is not None:
            client.sendall(
                f"HTTP/1.1 {self.refuse_connect} Refused by policy\r\n"
                "Content-Length: 0\r\n\r\n".encode()
            )
            return
        host, _, port = target.rpartition(":")
        try:
            upstream = socket.create_connection((host.strip("[]"), int(port)), timeout=10)
        except OSError:
            client.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            return
        self._track(upstream)
        client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        # Nothing was read past the CONNECT head (the client waits for our answer first).
        pump = threading.Thread(target=_pump, args=(upstream, client), daemon=True)
        pump.start()
        _pump(client, upstream)
        pump.join(10)
        upstream.close()

    def _forward(
        self,
        client: socket.socket,
        reader: io.BufferedReader,
        method: str,
        target: str,
        headers: Mapping[str, str],
    ) -> bool:
        if not target.startswith("http://"):
            client.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            return False
        rest = target.removeprefix("http://")
        authority, slash, path = rest.partition("/")
        host, _, port = authority.rpartition(":")
        body = _read_body(reader, headers)
        forwarded = {
            name: value
            for name, value in headers.items()
            if not name.startswith("proxy-") and name not in ("connection", "keep-alive")
        }
        forwarded["connection"] = "close"
        request = (
            f"{method} {slash}{path} HTTP/1.1\r\n"
            + "".join(f"{name}: {value}\r\n" for name, value in forwarded.items())
            + "\r\n"
        ).encode("latin-1") + body
        try:
            with socket.create_connection((host, int(port or 80)), timeout=10) as upstream:
                upstream.sendall(request)
                answer = b""
                while chunk := upstream.recv(65536):
                    answer += chunk
        except OSError:
            client.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            return True
        # The target answered with a Content-Length (Connection: close was asked): relay as is,
        # but keep the client's connection to the proxy open.
        head, _, rest_of_answer = answer.partition(b"\r\n\r\n")
        lines = [
            line for line in head.split(b"\r\n") if not line.lower().startswith(b"connection:")
        ]
        client.sendall(b"\r\n".join(lines) + b"\r\n\r\n" + rest_of_answer)
        return True


def _read_head(reader: io.BufferedReader) -> tuple[str, str, dict[str, str]] | None:
    readline = reader.readline
    line = readline(65537)
    if not line:
        return None
    method, target, _version = line.decode("latin-1").strip().split(" ", 2)
    headers: dict[str, str] = {}
    while True:
        line = readline(65537)
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    return method, target, headers


def _read_body(reader: io.BufferedReader, headers: Mapping[str, str]) -> bytes:
    length = int(headers.get("content-length") or 0)
    return reader.read(length) if length else b""


def _skip_body(reader: io.BufferedReader, headers: Mapping[str, str]) -> None:
    _read_body(reader, headers)


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while chunk := source.recv(65536):
            sink.sendall(chunk)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)
