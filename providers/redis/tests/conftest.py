"""Fixtures of the tracking-redis tests: a real ``redis-server`` of the test's own (on a free
loopback port, its files in the test's temporary directory, AOF on) and the environment that
points the stream provider and the relays at it.

The fixtures of `tracking_core.testing` (``tracking_env``, ``clean_tracking``, ...) are loaded by
the repository's root conftest.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from tracking_redis.testing import RedisServer, RelayProcess, redis_server_binary

from tracking_core.discovery import installed_fakes
from tracking_core.fakes import VendorFake
from tracking_core.receivers import LoopbackReceiver

#: What every environment starts from: no Redis or relay variable from outside, and only the
#: providers a test names.
BASE_ENVIRONMENT: dict[str, str | None] = {
    "TRACKING_REDIS_URL": None,
    "TRACKING_REDIS_URL_FILE": None,
    "TRACKING_REDIS_STREAM": None,
    "TRACKING_REDIS_MAXLEN": None,
    "TRACKING_REDIS_TIMEOUT": None,
    "TRACKING_RELAY_GROUP": None,
    "TRACKING_RELAY_CONSUMER": None,
    "TRACKING_RELAY_BATCH": None,
    "TRACKING_RELAY_CLAIM_IDLE": None,
    "TRACKING_RELAY_MAX_DELIVERIES": None,
    "TRACKING_RELAY_DEAD_LETTER": None,
    "TRACKING_DISABLED": None,
    "TRACKING_BATCH_SIZE": None,
    "TRACKING_MAX_ATTEMPTS": None,
    "TRACKING_MAX_QUEUE": None,
}


@pytest.fixture
def redis_binary() -> str:
    """The path of ``redis-server``. When it is not installed the test is skipped, saying how
    to get it, or fails when ``TRACKING_TEST_REQUIRE_REDIS`` is set (.ci/run sets it: there a
    skip would hide a broken install)."""
    try:
        return redis_server_binary()
    except RuntimeError as missing:
        if os.environ.get("TRACKING_TEST_REQUIRE_REDIS"):
            pytest.fail(str(missing))
        pytest.skip(str(missing))


@pytest.fixture
def redis_server(tmp_path: Path, redis_binary: str) -> Iterator[RedisServer]:
    """A started ``redis-server`` with AOF on (``appendfsync everysec``); killed after the
    test."""
    with RedisServer(tmp_path / "redis") as server:
        yield server


@pytest.fixture
def redis_client(redis_server: RedisServer) -> Iterator[Any]:
    """A redis-py client of `redis_server`."""
    client = redis_server.client()
    yield client
    client.close()


@pytest.fixture
def redis_env(tracking_env: Callable[..., None], redis_server: RedisServer) -> Callable[..., None]:
    """``redis_env(**variables)``: the stream provider enabled against `redis_server` (and
    nothing else), plus `variables` (None removes one); discovery runs again."""

    def configure(**variables: str | None) -> None:
        tracking_env(
            **{
                **BASE_ENVIRONMENT,
                "TRACKING_PROVIDERS": "redis",
                "TRACKING_REDIS_URL": redis_server.url,
                **variables,
            }
        )

    return configure


# -- vendors and relays ------------------------------------------------------------------------


@dataclasses.dataclass
class Vendor:
    """A built-in provider's fake, served on 127.0.0.1."""

    provider: str
    fake: VendorFake
    server: LoopbackReceiver
    environment: Callable[[str], dict[str, str]]

    def variables(self) -> dict[str, str]:
        return self.environment(self.server.url)

    def arrived(self) -> list[str]:
        """The event id of every event and identify the fake accepted (repeats included)."""
        fake = self.fake
        return [fake.event_id(item) for item in [*fake.events, *fake.identifies]]


@pytest.fixture
def vendors() -> Iterator[dict[str, Vendor]]:
    """The PostHog and Amplitude fakes, served; what the relays deliver to."""
    served = {
        d.provider: Vendor(d.provider, d.fake, LoopbackReceiver(d.fake), d.environment)
        for d in installed_fakes(["posthog", "amplitude"])
    }
    for vendor in served.values():
        vendor.server.start()
    yield served
    for vendor in served.values():
        vendor.server.stop()


def _relay_environment(
    redis: RedisServer, vendors: Mapping[str, Vendor], **variables: str | None
) -> dict[str, str]:
    """``os.environ`` without any tracking or vendor variable, plus what points a relay at
    `redis` and delivers to `vendors` quickly, plus `variables` (None removes one)."""
    vendor_names = {"POSTHOG_", "AMPLITUDE_", "MIXPANEL_", "TRACKING_WEBHOOK_"}
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("TRACKING_", *vendor_names))
    }
    env.update(
        TRACKING_REDIS_URL=redis.url,
        TRACKING_PROVIDERS=",".join(vendors),
        TRACKING_FLUSH_INTERVAL="0.05",
        TRACKING_RETRY_BACKOFF="0.01",
        TRACKING_RETRY_BACKOFF_MAX="0.05",
        TRACKING_RELAY_CLAIM_IDLE="1",
        TRACKING_SHUTDOWN_TIMEOUT="5",
    )
    for vendor in vendors.values():
        env.update(vendor.variables())
    for name, value in variables.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


@pytest.fixture
def relay_env(redis_server: RedisServer) -> Callable[..., dict[str, str]]:
    """``relay_env(vendors, **variables)``: a relay's environment (see `_relay_environment`)
    against `redis_server`."""

    def build(vendors: Mapping[str, Vendor], **variables: str | None) -> dict[str, str]:
        return _relay_environment(redis_server, vendors, **variables)

    return build


@pytest.fixture
def start_relay(tmp_path: Path) -> Iterator[Callable[[Mapping[str, str]], RelayProcess]]:
    """``start_relay(env)``: a started relay (waited for until it reads); all are killed after
    the test."""
    started: list[RelayProcess] = []

    def start(env: Mapping[str, str]) -> RelayProcess:
        relay = RelayProcess(env, tmp_path / f"relay-{len(started)}.log")
        started.append(relay)
        return relay.wait_ready()

    yield start
    for relay in started:
        relay.close()
