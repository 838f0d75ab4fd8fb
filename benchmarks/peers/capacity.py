"""How many events per second the receiver confirms, to show it is not the bottleneck.

Starts `--connections` load processes; each sends PostHog-format batches of `--batch` events
(uncompressed JSON, distinct ids) over one keep-alive connection, one request at a time, as fast
as it can for `--seconds`. The receiver's own counters give the events it confirmed. The load
processes share the machine with the receiver, so this is a lower bound of its capacity.

    python benchmarks/peers/capacity.py --url http://127.0.0.1:PORT [--batch 50]

prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid
from typing import Any

_POOL = 64  # distinct request bodies each load process cycles through


def _request(host: str, batch: int) -> bytes:
    events = [
        {
            "event": "Purchase",
            "distinct_id": f"user-{i:05d}",
            "properties": {"plan": "pro", "amount": 42, "path": "/checkout", "seq": i},
            "timestamp": "2026-01-15T10:00:00+00:00",
            "uuid": str(uuid.uuid4()),
        }
        for i in range(batch)
    ]
    body = json.dumps({"api_key": "phc_capacity", "batch": events}).encode()
    head = (
        f"POST /batch/ HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def _load(url: str, batch: int, seconds: float) -> None:
    parts = urllib.parse.urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    requests = [_request(f"{host}:{port}", batch) for _ in range(_POOL)]
    sock = socket.create_connection((host, port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sent = 0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        sock.sendall(requests[sent % _POOL])
        answer = b""
        while True:
            answer += sock.recv(65536)
            end = answer.find(b"\r\n\r\n")
            if end < 0:
                continue
            length = 0
            for line in answer[:end].split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if len(answer) >= end + 4 + length:
                break
        sent += 1
    sock.close()


def _counts(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url + "/__count", timeout=10) as answer:
        counts: dict[str, Any] = json.load(answer)
    return counts


def measure(url: str, batch: int, connections: int, seconds: float) -> dict[str, Any]:
    """Run the load and return what the receiver confirmed per second."""
    with urllib.request.urlopen(url + "/__reset", timeout=10) as answer:
        answer.read()
    before = _counts(url)
    start = time.perf_counter()
    command = [sys.executable, __file__, "--worker", "--url", url, "--batch", str(batch)]
    command += ["--seconds", str(seconds)]
    workers = [subprocess.Popen(command) for _ in range(connections)]
    for worker in workers:
        worker.wait(timeout=seconds + 60)
    wall = time.perf_counter() - start
    after = _counts(url)
    posthog = after["vendors"].get("posthog", {"total": 0, "requests": 0})
    return {
        "batch": batch,
        "connections": connections,
        "seconds": wall,
        "requests_per_s": posthog["requests"] / wall,
        "events_per_s": posthog["total"] / wall,
        "receiver_cpu_share": (after["cpu"] - before["cpu"]) / wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--connections", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _load(args.url, args.batch, args.seconds)
        return
    print(json.dumps(measure(args.url, args.batch, args.connections, args.seconds)), flush=True)


if __name__ == "__main__":
    main()
