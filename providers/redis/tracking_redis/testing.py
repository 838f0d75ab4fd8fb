"""`RedisServer`: a real ``redis-server`` of its own, on a free loopback port, for tests and
benchmarks (no fake: the relay's guarantees are Redis's own).

    with RedisServer(tmp_path) as server:
        os.environ["TRACKING_REDIS_URL"] = server.url

``redis-server`` comes from the system (Debian and Ubuntu: ``apt-get install redis-server``;
macOS: ``brew install redis``), version 7.0 or newer.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

__all__ = ["RedisServer", "RelayProcess", "redis_server_binary"]


def redis_server_binary() -> str:
    """The path of ``redis-server``; RuntimeError saying how to get it when it is missing."""
    found = shutil.which("redis-server")
    if found is None:
        raise RuntimeError(
            "redis-server is not installed (Debian/Ubuntu: apt-get install redis-server; "
            "macOS: brew install redis)"
        )
    return found


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class RedisServer:
    """A ``redis-server`` process on 127.0.0.1, its files in `directory`.

    Args:
        directory: where its data, AOF and log go.
        appendonly: AOF persistence on (with ``appendfsync everysec``: what Redis accepted
            survives a kill of the process, since its writes reach the OS before it answers).
        options: more ``--name value`` options, as a mapping.

    `start` picks a free port the first time and keeps it: `kill` (SIGKILL) or `stop` then
    `start` is a restart, which clients see as refused connections in between.
    """

    def __init__(
        self, directory: Path, *, appendonly: bool = True, options: dict[str, str] | None = None
    ) -> None:
        self.directory = Path(directory)
        self.appendonly = appendonly
        self.options = dict(options or {})
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()

    def start(self, timeout: float = 20.0) -> None:
        """Start it (again, on the same port) and wait until it answers PING."""
        self.directory.mkdir(parents=True, exist_ok=True)
        for _ in range(5):
            if not self.port:
                self.port = _free_port()
            if self._launch(timeout):
                return
            self.port = 0  # taken in between: another free port
        raise RuntimeError(f"redis-server did not start; see {self.directory / 'redis.log'}")

    def _launch(self, timeout: float) -> bool:
        options = {
            "port": str(self.port),
            "bind": "127.0.0.1",
            "dir": str(self.directory),
            "logfile": "redis.log",
            "save": "",
            "appendonly": "yes" if self.appendonly else "no",
            "appendfsync": "everysec",
            "daemonize": "no",
            **self.options,
        }
        command = [redis_server_binary()]
        for name, value in options.items():
            command += [f"--{name}", value]
        self.process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            if self.ping():
                return True
            time.sleep(0.02)
        self.kill()
        return False

    def ping(self) -> bool:
        """True when it answers PING now."""
        with (
            contextlib.suppress(OSError),
            socket.create_connection(("127.0.0.1", self.port), timeout=1) as conn,
        ):
            conn.sendall(b"PING\r\n")
            return conn.recv(64).startswith((b"+PONG", b"-NOAUTH"))  # up, password or not
        return False

    def client(self, **options: Any) -> Any:
        """A redis-py client of this server."""
        import redis

        return redis.Redis.from_url(self.url, **options)

    def kill(self) -> None:
        """SIGKILL: nothing runs in Redis after it (what the AOF holds is what survives)."""
        self._end(signal.SIGKILL)

    def stop(self) -> None:
        """SIGTERM: Redis writes what it holds and exits."""
        self._end(signal.SIGTERM)

    def _end(self, how: signal.Signals) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.send_signal(how)
            process.wait(timeout=30)


class RelayProcess:
    """``tracking relay`` in a process of its own (its own session), its output in `log`.

    `wait_ready` waits for the line saying what it reads; `terminate` is SIGTERM (a clean stop
    within the budget), `kill` SIGKILL; `final_stats` parses the stats a stopped relay prints.
    """

    def __init__(self, env: Mapping[str, str], log: Path) -> None:
        self.log = log
        self._file = log.open("w+", encoding="utf-8")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tracking_core", "relay"],
            env=dict(env),
            stdout=self._file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def wait_for(self, ready: Callable[[], bool], what: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            if self.process.poll() is not None:
                raise AssertionError(
                    f"relay exited ({self.process.returncode}) before {what}:\n{self.output}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(f"not {what} after {timeout}s:\n{self.output}")
            time.sleep(0.05)

    def wait_ready(self) -> RelayProcess:
        self.wait_for(lambda: " reads " in self.output, "ready")
        return self

    def terminate(self, timeout: float = 30) -> tuple[int, float]:
        """SIGTERM; (exit status, seconds it took)."""
        sent = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=timeout)
        return code, time.monotonic() - sent

    def kill(self) -> None:
        """SIGKILL: nothing runs in the relay after it."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def final_stats(self) -> dict[str, Any]:
        line = next(x for x in self.output.splitlines() if x.startswith("tracking relay: stopped"))
        stats: dict[str, Any] = json.loads(line.partition(" stats ")[2])
        return stats

    def close(self) -> None:
        self.kill()
        self._file.close()
