"""Runner: Mixpanel's SDK (``mixpanel``), pointed at the receiver through its consumer's URLs.

``--consumer buffered`` (the default here): ``BufferedConsumer`` (50 events per request, sent by
the ``track()`` call that fills the buffer). ``--consumer default``: the SDK's default
``Consumer``, one HTTP request per ``track()``, on the caller's thread. Neither has a background
thread, a flush timeout or a shutdown: ``flush()`` sends what is buffered (the runner caps it)
and stands in for shutdown too. When a request fails after the SDK's retries, the ``track()``
(or ``flush()``) call that sent it raises ``MixpanelException``; the buffer keeps the batch and
the next call that sends tries it again.
"""

from __future__ import annotations

import argparse
from typing import Any

from common import Client, Setup, main, sdk

TOKEN = "benchmark-token"


class Mixpanel(Client):
    distributions = ("mixpanel", "requests", "urllib3")
    vendors = ("mixpanel",)
    flush_has_timeout = False
    import_statement = "import mixpanel"

    def __init__(self) -> None:
        self.buffered = True
        self.label = "mixpanel (BufferedConsumer)"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--consumer", choices=("buffered", "default"), default="buffered")

    def configure(self, args: argparse.Namespace) -> None:
        self.buffered = args.consumer == "buffered"
        self.label = "mixpanel (BufferedConsumer)" if self.buffered else "mixpanel (Consumer)"
        kind = "BufferedConsumer" if self.buffered else "Consumer"
        self.configure_template = (
            f"client = mixpanel.Mixpanel({TOKEN!r}, consumer=mixpanel.{kind}("
            "events_url={url} + '/track', people_url={url} + '/engage', "
            "import_url={url} + '/import'))"
        )

    def setup(self, url: str, mode: str, events: int) -> Setup:
        mixpanel = sdk("mixpanel")

        urls = {"events_url": url + "/track", "people_url": url + "/engage"}
        urls["import_url"] = url + "/import"
        consumer: Any = (
            mixpanel.BufferedConsumer(**urls) if self.buffered else mixpanel.Consumer(**urls)
        )
        # The SDK mounts its retrying adapter (4 retries of 5xx, backoff 0.25 s) for https://
        # only; the receiver speaks http://, so mount it there too, as against the real API.
        session = (consumer._consumer if self.buffered else consumer)._session
        session.mount("http://", session.get_adapter("https://api.mixpanel.com"))
        client = mixpanel.Mixpanel(TOKEN, consumer=consumer)
        mixpanel_track = client.track

        def track(name: str, properties: dict[str, Any], user_id: str) -> None:
            mixpanel_track(user_id, name, properties)

        def flush(timeout: float) -> None:
            if self.buffered:
                consumer.flush()

        def shutdown() -> None:
            flush(0.0)

        return Setup(track, flush, shutdown, "none (no shutdown; flush() again)")


if __name__ == "__main__":
    main(Mixpanel())
