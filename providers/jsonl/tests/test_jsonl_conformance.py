"""JSON Lines against tracking-core's provider conformance suite.

The variables come from the package (its declaration and its fake's environment, a temporary
file). Two checks of the suite are about an HTTP destination (requests reach the loopback
server; the server answering 500 makes delivery fail); for a file they are replaced by the same
promises about the file: every event reaches it, and a file that cannot be written makes
delivery fail, counted, without an exception.
"""

from __future__ import annotations

import os

import pytest
from tracking_jsonl.fake import JsonlFake

import tracking_core
from tracking_core.conformance import ProviderConformance
from tracking_core.receivers import LoopbackReceiver
from tracking_core.testing import reset_tracking


class TestJsonlConformance(ProviderConformance):
    entry_point = "jsonl"

    def the_fake(self) -> JsonlFake:
        destination = self.fake_destination()
        assert destination is not None and isinstance(destination.fake, JsonlFake)
        return destination.fake

    def test_delivers_events_to_the_destination(
        self, enable: dict[str, str], conformance_server: LoopbackReceiver
    ) -> None:
        for i in range(20):
            tracking_core.track("Conformance Event", {"i": i}, user_id="conformance-user")
        tracking_core.identify("conformance-user", {"plan": "pro"})
        assert tracking_core.flush_tracking(15)
        stats = tracking_core.tracking_stats()["jsonl"]
        assert (stats.accepted, stats.delivered, dict(stats.dropped)) == (21, 21, {})
        fake = self.the_fake()
        assert enable["TRACKING_JSONL_PATH"] == fake.path
        assert [e["properties"]["i"] for e in fake.events] == list(range(20))
        assert len(fake.identifies) == 1 and fake.rejections == []
        assert conformance_server.requests == []  # a file, not HTTP

    def test_survives_a_failing_destination(
        self, enable: dict[str, str], conformance_server: LoopbackReceiver
    ) -> None:
        directory = self.the_fake().path + ".d"
        os.mkdir(directory)  # a path that is a directory cannot be appended to
        with pytest.MonkeyPatch.context() as monkeypatch:
            monkeypatch.setenv("TRACKING_JSONL_PATH", directory)
            reset_tracking(discover=True)
            for _ in range(3):
                tracking_core.track("Lost", user_id="conformance-user")
            assert tracking_core.flush_tracking(15)
        stats = tracking_core.tracking_stats()["jsonl"]
        assert stats.delivered == 0 and sum(stats.dropped.values()) == 3
