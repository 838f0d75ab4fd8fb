"""Runner: Amplitude's SDK (``amplitude-analytics``), default settings,
``Config(server_url=...)`` = the receiver's ``/2/httpapi``.

The SDK sets no ``insert_id`` by itself; each event gets one (pre-generated, outside the timed
calls) so that the receiver can count distinct events exactly. ``flush()`` returns futures; the
runner waits for them with the flush timeout.
"""

from __future__ import annotations

import uuid
from typing import Any

from common import Client, Setup, main, sdk

API_KEY = "benchmark-key"


class Amplitude(Client):
    label = "amplitude"
    distributions = ("amplitude-analytics",)
    vendors = ("amplitude",)
    import_statement = "import amplitude"
    configure_template = (
        f"client = amplitude.Amplitude({API_KEY!r}, "
        "amplitude.Config(server_url={url} + '/2/httpapi'))"
    )

    def setup(self, url: str, mode: str, events: int) -> Setup:
        import concurrent.futures

        amplitude = sdk("amplitude")

        client = amplitude.Amplitude(API_KEY, amplitude.Config(server_url=url + "/2/httpapi"))
        insert_ids = iter([str(uuid.uuid4()) for _ in range(events + 10)])
        amplitude_track = client.track
        event_class = amplitude.BaseEvent

        def track(name: str, properties: dict[str, Any], user_id: str) -> None:
            amplitude_track(
                event_class(
                    event_type=name,
                    user_id=user_id,
                    event_properties=properties,
                    insert_id=next(insert_ids),
                )
            )

        def flush(timeout: float) -> bool:
            futures = [f for f in client.flush() if f is not None]
            _done, pending = concurrent.futures.wait(futures, timeout=timeout)
            return not pending

        return Setup(track, flush, client.shutdown)


if __name__ == "__main__":
    main(Amplitude())
