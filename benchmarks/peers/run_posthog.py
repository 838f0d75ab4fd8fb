"""Runner: the PostHog SDK (``posthog``), default settings, ``host`` = the receiver.

Events go to ``POST {host}/batch/``. In the e2e and flaky modes only, ``max_queue_size`` is
raised to hold the whole run (by default the SDK drops events past 10,000 queued, and those modes
measure throughput and what retries do, not queue drops).
"""

from __future__ import annotations

from typing import Any

from common import Client, Setup, main, sdk

API_KEY = "phc_benchmark"


class PostHog(Client):
    label = "posthog"
    distributions = ("posthog", "requests", "urllib3")
    vendors = ("posthog",)
    import_statement = "import posthog"
    configure_template = f"client = posthog.Posthog({API_KEY!r}, host={{url}})"

    def setup(self, url: str, mode: str, events: int) -> Setup:
        posthog = sdk("posthog")

        options: dict[str, Any] = {"host": url}
        if mode in ("e2e", "flaky"):
            options["max_queue_size"] = 2 * events
        client = posthog.Posthog(API_KEY, **options)
        capture = client.capture

        def track(name: str, properties: dict[str, Any], user_id: str) -> None:
            capture(name, distinct_id=user_id, properties=properties)

        def flush(timeout: float) -> None:
            client.flush(timeout_seconds=timeout)

        return Setup(track, flush, client.shutdown)


if __name__ == "__main__":
    main(PostHog())
