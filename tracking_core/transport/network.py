"""The attempt's deadline, on every network operation: httpcore's blocking backend, bounded.

A request carrying the `DEADLINE` extension (a `time.monotonic` value) fails with a timeout once
it passes, whatever the server does: every connect, TLS handshake, socket read and socket write
of the attempt waits at most until then, so a server dribbling its answer a byte at a time
cannot hold it longer. Connection failures say what they are (`.failures`).
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Iterable
from typing import Any

import httpcore

from ..engine.turn import away
from .failures import (
    _causes,
    _certificate_message,
    _CertificateError,
    _ConnectError,
    _ConnectTimeout,
    _Described,
    _ReadTimeout,
    _resolution_message,
    _WriteTimeout,
)

__all__ = ["CONNECT_TIMEOUT_MAX", "DEADLINE", "SOCKET_OPTIONS", "start_attempt"]

#: The longest wait for a TCP connection, in seconds (within the attempt's deadline).
CONNECT_TIMEOUT_MAX = 5.0

#: The request extension holding the attempt's deadline, a `time.monotonic` value.
DEADLINE = "tracking_core.deadline"

#: Set on every connection. A request goes out as headers then body; without ``TCP_NODELAY``
#: Nagle's algorithm can hold the body until the server's delayed ACK (~40 ms each time).
SOCKET_OPTIONS: tuple[tuple[int, int, int], ...] = ((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),)


#: Large writes are cut into pieces, each bounded by what is left of the deadline.
_WRITE_PIECE = 64 * 1024


class _Attempt(threading.local):
    """The deadline of the attempt this thread is sending (set by `DefaultTransport`)."""

    deadline: float | None = None
    budget: float = 0.0


_attempt = _Attempt()


def start_attempt(deadline: float | None) -> None:
    """This thread's next operations belong to an attempt ending at `deadline` (a
    `time.monotonic` value; None: no deadline)."""
    state = _attempt
    state.deadline = deadline
    if deadline is not None:
        state.budget = deadline - time.monotonic()


def _bounded(
    timeout: float | None, doing: str, where: str, timeout_class: type[_Described]
) -> tuple[float | None, bool]:
    """`timeout` cut to what is left of the deadline, and whether the deadline is what binds.
    Raises `timeout_class` when the deadline has passed."""
    deadline = _attempt.deadline
    if deadline is None:
        return timeout, False
    left = deadline - time.monotonic()
    if left <= 0:
        raise timeout_class(_deadline_message(doing, where))
    if timeout is None or left <= timeout:
        return left, True
    return timeout, False


def _deadline_message(doing: str, where: str) -> str:
    budget = _attempt.budget  # measured when the request reached the transport: round it
    shown = f"{round(budget, 1):g}" if budget >= 0.1 else f"{budget:.2g}"
    return f"the attempt's {shown}s deadline passed while {doing} {where}"


class _Stream(httpcore.NetworkStream):
    """A network stream whose every operation ends by the attempt's deadline."""

    def __init__(
        self, inner: httpcore.NetworkStream, where: str, proxy_host: str | None = None
    ) -> None:
        self._inner = inner
        self._where = where
        self._proxy_host = proxy_host  # set on a connection to a proxy

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        wait, binding = _bounded(timeout, "reading the answer from", self._where, _ReadTimeout)
        try:
            with away():  # the library's turn is free while this waits (engine/turn.py)
                return self._inner.read(max_bytes, wait)
        except httpcore.ReadTimeout as exc:
            if binding:
                raise _ReadTimeout(
                    _deadline_message("reading the answer from", self._where)
                ) from exc
            raise _ReadTimeout(f"no data from {self._where} for {wait:.3g}s") from exc

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        for start in range(0, len(buffer), _WRITE_PIECE):
            piece = buffer[start : start + _WRITE_PIECE]
            wait, binding = _bounded(timeout, "sending to", self._where, _WriteTimeout)
            try:
                with away():
                    self._inner.write(piece, wait)
            except httpcore.WriteTimeout as exc:
                if binding:
                    raise _WriteTimeout(_deadline_message("sending to", self._where)) from exc
                raise _WriteTimeout(f"{self._where} took no data for {wait:.3g}s") from exc

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        host = server_hostname or self._where
        # Through a proxy's tunnel, TLS is with the destination, not with the proxy (unless
        # this is the TLS of an https:// proxy itself).
        to_proxy = self._proxy_host is not None and host == self._proxy_host
        tunnel = self._proxy_host is not None and not to_proxy
        where = f"{host} (through {self._where})" if tunnel else self._where
        doing = "in the TLS handshake with"
        wait, binding = _bounded(timeout, doing, where, _ConnectTimeout)
        try:
            with away():
                inner = self._inner.start_tls(ssl_context, server_hostname, wait)
        except httpcore.ConnectTimeout as exc:
            if binding:
                raise _ConnectTimeout(_deadline_message(doing, where)) from exc
            raise _ConnectTimeout(f"no TLS handshake with {where} within {wait:.3g}s") from exc
        except httpcore.ConnectError as exc:
            for cause in _causes(exc):
                if isinstance(cause, ssl.SSLCertVerificationError):
                    raise _CertificateError(_certificate_message(cause, host)) from exc
                if isinstance(cause, ssl.SSLError):
                    reason = cause.reason or str(cause)
                    raise _ConnectError(f"TLS handshake with {where} failed: {reason}") from exc
            raise _ConnectError(f"TLS handshake with {where} failed: {exc}") from exc
        return _Stream(inner, where, self._proxy_host if to_proxy else None)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _Backend(httpcore.NetworkBackend):
    """httpcore's blocking backend, with the attempt's deadline on every operation and
    connection failures that say what they are. `proxy`: the ``host:port`` of the proxy this
    backend's pool connects to, or None for direct connections."""

    def __init__(self, proxy: str | None = None) -> None:
        self._inner = httpcore.SyncBackend()
        self._proxy = proxy
        self._proxy_host = proxy.rpartition(":")[0].strip("[]") if proxy else None

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        where = f"the proxy {address}" if self._proxy else address
        wait, binding = _bounded(timeout, "connecting to", where, _ConnectTimeout)
        try:
            with away():  # name resolution and the TCP handshake
                stream = self._inner.connect_tcp(host, port, wait, local_address, socket_options)
        except httpcore.ConnectTimeout as exc:
            if binding:
                raise _ConnectTimeout(_deadline_message("connecting to", where)) from exc
            raise _ConnectTimeout(f"no connection to {where} within {wait:.3g}s") from exc
        except httpcore.ConnectError as exc:
            raise _ConnectError(self._connect_message(exc, host, where)) from exc
        return _Stream(stream, where, self._proxy_host)

    def _connect_message(self, exc: BaseException, host: str, where: str) -> str:
        for cause in _causes(exc):
            if isinstance(cause, socket.gaierror):
                target = f"the proxy host {host}" if self._proxy else host
                return _resolution_message(cause, target)
            if isinstance(cause, ConnectionRefusedError):
                return f"connection refused by {where}"
            if isinstance(cause, OSError) and cause.strerror:
                return f"cannot connect to {where}: {cause.strerror}"
        return f"cannot connect to {where}: {exc}"

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        raise _ConnectError("Unix sockets are not used")

    def sleep(self, seconds: float) -> None:
        with away():
            time.sleep(seconds)
