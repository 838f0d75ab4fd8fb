"""Runner: the floor, a bare ``queue.SimpleQueue.put`` of the event dict (nothing is sent).

It takes part in the caller and both asyncio measurements only: the least a non-blocking
``track()`` can cost, and the ticker's lateness when tracking costs next to nothing. The floor of
the measurements that send is ``run_floor_sender.py``.
"""

from __future__ import annotations

import queue
from typing import Any

from common import Client, Setup, main


class Floor(Client):
    label = "floor: SimpleQueue.put"
    modes = ("caller", "asyncio", "asyncio100")

    def setup(self, url: str, mode: str, events: int) -> Setup:
        intake: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()
        put = intake.put

        def track(name: str, properties: dict[str, Any], user_id: str) -> None:
            put({"name": name, "properties": properties, "user_id": user_id})

        return Setup(track, lambda timeout: True, lambda: None)


if __name__ == "__main__":
    main(Floor())
