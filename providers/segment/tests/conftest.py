"""Fixtures shared by the Segment and RudderStack tests: each vendor's strict fake on 127.0.0.1 and
the environment that enables its provider. Tests that hold for both take the ``vendor``
fixture, parametrized over the two providers the package registers.

The fixtures of `tracking_core.testing` (``tracking_env``, ...) come from the root conftest.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator

import pytest
from tracking_segment.fake import SegmentFake

import tracking_core
from tracking_core.receivers import LoopbackReceiver

#: The write keys the tests configure and the fakes expect.
SEGMENT_KEY = "seg-Wr1teKey-0123456789abcdef"
RUDDERSTACK_KEY = "rs-Wr1teKey-0123456789abcdef"

#: Every variable the package declares, removed by each ``env(...)`` unless set again.
BASE_ENVIRONMENT: dict[str, str | None] = {
    name: None
    for name in (
        "SEGMENT_WRITE_KEY",
        "SEGMENT_WRITE_KEY_FILE",
        "SEGMENT_HOST",
        "RUDDERSTACK_WRITE_KEY",
        "RUDDERSTACK_WRITE_KEY_FILE",
        "RUDDERSTACK_DATA_PLANE_URL",
        "TRACKING_DISABLED",
        "TRACKING_DEBUG",
        "TRACKING_BATCH_SIZE",
        "TRACKING_MAX_ATTEMPTS",
    )
}


@dataclasses.dataclass(frozen=True)
class Vendor:
    """One of the two providers: its name, write key, and the variables that point it at a URL."""

    name: str
    key: str
    key_variable: str
    url_variable: str

    def variables(self, url: str) -> dict[str, str]:
        return {self.key_variable: self.key, self.url_variable: url}


SEGMENT = Vendor("segment", SEGMENT_KEY, "SEGMENT_WRITE_KEY", "SEGMENT_HOST")
RUDDERSTACK = Vendor(
    "rudderstack", RUDDERSTACK_KEY, "RUDDERSTACK_WRITE_KEY", "RUDDERSTACK_DATA_PLANE_URL"
)


@pytest.fixture(params=[SEGMENT, RUDDERSTACK], ids=lambda vendor: vendor.name)
def vendor(request: pytest.FixtureRequest) -> Vendor:
    """Each provider in turn."""
    chosen: Vendor = request.param
    return chosen


@pytest.fixture
def fake(vendor: Vendor) -> SegmentFake:
    """The vendor's strict fake, expecting its write key."""
    return SegmentFake(vendor.key, vendor=vendor.name)


@pytest.fixture
def server(fake: SegmentFake) -> Iterator[LoopbackReceiver]:
    """The fake, served on 127.0.0.1."""
    with LoopbackReceiver(fake) as receiver:
        yield receiver


@pytest.fixture
def env(tracking_env: Callable[..., None]) -> Callable[..., None]:
    """``env(**variables)``: the package's variables removed, then `variables` set, on top of
    the core's fast delivery settings; discovery runs again."""

    def configure(**variables: str | None) -> None:
        tracking_env(**{**BASE_ENVIRONMENT, **variables})

    return configure


@pytest.fixture
def enable(
    env: Callable[..., None], server: LoopbackReceiver, vendor: Vendor
) -> Callable[..., None]:
    """``enable(**variables)``: the vendor's provider on against its fake; only
    `flush_tracking` (or a full batch) sends."""

    def apply(**variables: str | None) -> None:
        defaults = {
            **vendor.variables(server.url),
            "TRACKING_PROVIDERS": vendor.name,
            "TRACKING_FLUSH_INTERVAL": "30",
        }
        env(**{**defaults, **variables})
        assert tracking_core.list_tracking_providers() == [vendor.name]

    return apply
