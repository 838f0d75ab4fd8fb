"""tracking-redis is enabled by TRACKING_REDIS_URL alone; malformed values disable it with one
line that names the variable and never shows the URL (it may hold a password)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Callable

import pytest
from tracking_redis import RedisSettings, RelaySettings
from tracking_redis.wire import decode, encode

import tracking_core as tc
from tracking_core import SettingsError, TrackingEvent, TrackingIdentify

Env = Callable[..., None]
SECRET_URL = "redis://:Pa55w0rdOfRedis99@cache.internal:6380/2"


def test_disabled_without_its_url(redis_env: Env) -> None:
    redis_env(TRACKING_REDIS_URL=None)
    assert tc.list_tracking_providers() == []


def test_enabled_by_its_url_with_the_defaults(redis_env: Env) -> None:
    redis_env()
    assert tc.list_tracking_providers() == ["redis"]
    settings = RelaySettings.from_environ({"TRACKING_REDIS_URL": SECRET_URL})
    assert settings is not None
    assert (settings.stream, settings.maxlen, settings.timeout) == ("tracking:events", 10**6, 5)
    assert (settings.group, settings.batch, settings.claim_idle) == ("tracking-relays", 500, 60)
    assert settings.max_deliveries == 10
    assert settings.dead_letter_stream == "tracking:events:dead"
    assert "Pa55w0rd" not in repr(settings)


@pytest.mark.parametrize(
    ("variable", "value", "problem"),
    [
        ("TRACKING_REDIS_URL", "http://:Pa55w0rdOfRedis99@cache:6379", "must start with redis://"),
        ("TRACKING_REDIS_URL", "redis://:Pa55w0rdOfRedis99@:6379", "has no host name"),
        ("TRACKING_REDIS_URL", "redis://cache:notaport", "is not a valid URL"),
        ("TRACKING_REDIS_MAXLEN", "0", "TRACKING_REDIS_MAXLEN"),
        ("TRACKING_REDIS_STREAM", "two words", "without spaces"),
        ("TRACKING_RELAY_CLAIM_IDLE", "-1", "positive number of seconds"),
    ],
)
def test_a_malformed_value_is_named_without_the_secret(
    variable: str, value: str, problem: str
) -> None:
    environ = {"TRACKING_REDIS_URL": SECRET_URL, variable: value}
    with pytest.raises(SettingsError) as error:
        RelaySettings.from_environ(environ)
    assert error.value.variable == variable and problem in str(error.value)
    assert "Pa55w0rd" not in str(error.value)


def test_a_malformed_url_disables_it_with_one_line(
    redis_env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "tracking_core")
    redis_env(TRACKING_REDIS_URL="https://user:Pa55w0rdOfRedis99@cache:6379")
    assert tc.list_tracking_providers() == []
    lines = [r.getMessage() for r in caplog.records if "TRACKING_REDIS_URL" in r.getMessage()]
    assert len(lines) == 1, lines
    assert "Pa55w0rd" not in caplog.text


def test_the_url_may_come_from_a_file(tmp_path: object) -> None:
    import pathlib

    path = pathlib.Path(str(tmp_path)) / "url"
    path.write_text(SECRET_URL + "\n")
    settings = RedisSettings.from_environ({"TRACKING_REDIS_URL_FILE": str(path)})
    assert settings is not None and settings.url == SECRET_URL
    assert "Pa55w0rdOfRedis99" in settings.secrets()


def test_an_entry_gives_back_the_very_event_id_and_timestamp() -> None:
    when = dt.datetime(2026, 1, 15, 10, 0, 0, 120034, tzinfo=dt.timezone.utc)
    event = TrackingEvent("Signed Up", {"plan": "pro", "n": 3}, when, "u-1", "a-1", "id-1")
    identify = TrackingIdentify("u-1", {"email": "ada@example.com"}, when, "id-2")
    for item in (event, identify):
        back = decode({b"event": encode(item)})
        assert back == item and back.timestamp == when
        assert dataclasses.asdict(back) == dataclasses.asdict(item)


@pytest.mark.parametrize(
    "raw",
    [b"not json", b"[1]", b'{"type": "track", "id": "x", "time": "2026-01-15T10:00:00"}', b"{}"],
)
def test_a_malformed_entry_is_refused_by_decode(raw: bytes) -> None:
    with pytest.raises(ValueError):
        decode({b"event": raw})
