"""Runner: the floor, a bare ``queue.SimpleQueue.put`` of the event dict (nothing is sent).

It takes part in the caller, both asyncio and the stalled measurements only: the least a
non-blocking ``track()`` can cost, the ticker's lateness when tracking costs next to nothing, and
the slowest of 20,000 calls that never wait for anything (this machine's own pauses). The floor of
the measurements that send is ``run_floor_sender.py``.
"""

from __future__ import annotations

import queue
from typing import Any

from common import Client, Setup, main


class Floor(Client):
    label = "floor: SimpleQueue.put"
    modes = ("caller", "asyncio", "asyncio100", "stalled")

    def setup(self, url: str, mode: str, events: int) -> Setup:
        intake: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()
        put = intake.put

        def track(name: str, properties: dict[str, Any], user_id: str) -> None:
            put({"name": name, "properties": properties, "user_id": user_id})

        return Setup(track, lambda timeout: True, lambda: None)


if __name__ == "__main__":
    main(Floor())
