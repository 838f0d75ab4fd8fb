"""Runner: Segment's SDK (``segment-analytics-python``), default settings, ``host`` = the
receiver.

Events go to ``POST {host}/v1/batch``. ``flush()`` takes no timeout (it waits for the queue to
drain); the runner caps it. In the e2e and flaky modes only, ``max_queue_size`` is raised to
hold the whole run (the default drops events past 10,000 queued).
"""

from __future__ import annotations

from typing import Any

from common import Client, Setup, main, sdk

WRITE_KEY = "benchmark-write-key"


class Segment(Client):
    label = "segment"
    distributions = ("segment-analytics-python", "requests", "urllib3")
    vendors = ("segment",)
    flush_has_timeout = False
    import_statement = "from segment.analytics import Client"
    configure_template = f"client = Client({WRITE_KEY!r}, host={{url}})"

    def setup(self, url: str, mode: str, events: int) -> Setup:
        segment_client = sdk("segment.analytics").Client

        options: dict[str, Any] = {"host": url}
        if mode in ("e2e", "flaky"):
            options["max_queue_size"] = 2 * events
        client = segment_client(WRITE_KEY, **options)
        segment_track = client.track

        def track(name: str, properties: dict[str, Any], user_id: str) -> None:
            segment_track(user_id=user_id, event=name, properties=properties)

        def flush(timeout: float) -> None:
            client.flush()  # no timeout in this API

        return Setup(track, flush, client.shutdown)


if __name__ == "__main__":
    main(Segment())
