"""Runner: Mixpanel's SDK (``mixpanel``), pointed at the receiver through its consumer's URLs.

``--consumer buffered`` (the default here): ``BufferedConsumer`` (50 events per request, sent by
the ``track()`` call that fills the buffer). ``--consumer default``: the SDK's default
``Consumer``, one HTTP request per ``track()``, on the caller's thread. Neither has a background
thread, a flush timeout or a shutdown: ``flush()`` sends what is buffered (the runner caps it)
and stands in for shutdown too.
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

    def __init__(self) -> None:
        self.buffered = True
        self.label = "mixpanel (BufferedConsumer)"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--consumer", choices=("buffered", "default"), default="buffered")

    def configure(self, args: argparse.Namespace) -> None:
        self.buffered = args.consumer == "buffered"
        self.label = "mixpanel (BufferedConsumer)" if self.buffered else "mixpanel (Consumer)"

    def _consumer_code(self, url: str) -> str:
        kind = "BufferedConsumer" if self.buffered else "Consumer"
        return (
            f"mixpanel.{kind}(events_url={url + '/track'!r}, "
            f"people_url={url + '/engage'!r}, import_url={url + '/import'!r})"
        )

    def setup(self, url: str, mode: str, events: int) -> Setup:
        mixpanel = sdk("mixpanel")

        urls = {"events_url": url + "/track", "people_url": url + "/engage"}
        urls["import_url"] = url + "/import"
        consumer: Any = (
            mixpanel.BufferedConsumer(**urls) if self.buffered else mixpanel.Consumer(**urls)
        )
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

    def import_code(self, url: str) -> tuple[str, str]:
        return (
            "import mixpanel",
            f"client = mixpanel.Mixpanel({TOKEN!r}, consumer={self._consumer_code(url)})",
        )


if __name__ == "__main__":
    main(Mixpanel())
