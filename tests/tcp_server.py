"""The base of the tests' hand-written servers: a TCP listener on 127.0.0.1 whose thread
accepts connections and serves each in a thread of its own (a proxy, a server writing answers
byte by byte, a TLS server)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from typing import TypeVar

__all__ = ["TcpServer"]

_T = TypeVar("_T", bound="TcpServer")


class TcpServer:
    """A threaded TCP server on 127.0.0.1 and a free port. Use it as a context manager.

    A subclass implements `serve(connection)`, called in a new thread for each connection
    (closing it is `serve`'s business). `connections` counts the connections accepted;
    `stopping` is set when the server closes.
    """

    def __init__(self) -> None:
        self.connections = 0
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self.port: int = self._listener.getsockname()[1]
        self._threads: list[threading.Thread] = []

    def __enter__(self: _T) -> _T:
        self._spawn(self._accept_loop)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop accepting, wait for the accepting thread, close the listener."""
        self.stopping.set()
        self._threads[0].join(5)
        self._listener.close()

    def serve(self, connection: socket.socket) -> None:
        """Serve one accepted connection (in a thread of its own)."""
        raise NotImplementedError

    def _spawn(self, target: Callable[..., None], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept_loop(self) -> None:
        while not self.stopping.is_set():
            try:
                connection, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.connections += 1
            self._spawn(self.serve, connection)
