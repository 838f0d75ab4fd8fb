"""The variables of tracking-redis: the producer's (`RedisSettings`) and the relay's
(`RelaySettings`, a superset: a relay reads the same stream the producers append to), and
`RELAYING`, which discovery reads too."""

from __future__ import annotations

import dataclasses
import math
import os
import socket
import threading

from tracking_core import SettingsError
from tracking_core.kit import ProviderSettings, integer, split_url, var

__all__ = ["RELAYING", "RedisSettings", "RelaySettings", "key", "redis_url", "seconds"]

#: Set while a relay runs in this process: the relay delivers through the providers enabled
#: where it runs, and must never feed the stream it reads.
RELAYING = threading.Event()


def redis_url(variable: str, text: str) -> str:
    """A Redis URL (``redis://``, ``rediss://`` for TLS, ``unix://``); never repeated in an
    error, since it may hold a password."""
    parts = split_url(variable, text, ("redis", "rediss", "unix"))
    if parts.scheme == "unix" and not parts.path:
        raise SettingsError(variable, "names no socket path (unix:///path/to/redis.sock)")
    if parts.scheme != "unix" and not parts.hostname:
        raise SettingsError(variable, "has no host name")
    return text


def key(variable: str, text: str) -> str:
    """A Redis key or name: printable, without spaces."""
    if not text.isprintable() or " " in text:
        raise SettingsError(variable, "must be printable text without spaces")
    return text


def seconds(variable: str, text: str) -> float:
    """A positive, finite number of seconds."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise SettingsError(variable, f"expected a positive number of seconds, got {text!r:.40}")
    return value


@dataclasses.dataclass(frozen=True)
class RedisSettings(ProviderSettings):
    """Where producers append events: the Redis URL (hidden from ``repr``) and the stream."""

    url: str = var(
        "TRACKING_REDIS_URL",
        "enables the Redis stream: redis://[[user]:password@]host[:port][/db], rediss:// (TLS) "
        "or unix:///path",
        required=True,
        secret=True,
        check=redis_url,
    )
    stream: str = var(
        "TRACKING_REDIS_STREAM",
        "the stream events are appended to (and relays read)",
        default="tracking:events",
        check=key,
    )
    maxlen: int = var(
        "TRACKING_REDIS_MAXLEN",
        "the stream's bound, trimmed approximately (XADD MAXLEN ~); what is trimmed before a "
        "relay delivered it is counted by the relays",
        default="1000000",
        check=integer(1),
    )
    timeout: float = var(
        "TRACKING_REDIS_TIMEOUT",
        "seconds one Redis command may take, connecting included",
        default="5",
        check=seconds,
    )

    def secrets(self) -> tuple[str, ...]:
        """The URL, and its password on its own (as typed, and decoded): never shown."""
        import urllib.parse

        password = urllib.parse.urlsplit(self.url).password or ""
        found = (self.url, password, urllib.parse.unquote(password))
        return tuple(dict.fromkeys(value for value in found if value))


@dataclasses.dataclass(frozen=True)
class RelaySettings(RedisSettings):
    """What ``tracking relay`` reads on top of `RedisSettings`."""

    group: str = var(
        "TRACKING_RELAY_GROUP",
        "the relays' consumer group",
        default="tracking-relays",
        check=key,
    )
    consumer: str | None = var(
        "TRACKING_RELAY_CONSUMER",
        "this relay's name in the group (default: host name and process id)",
        check=key,
    )
    batch: int = var(
        "TRACKING_RELAY_BATCH",
        "entries read at once; at most four times as many are in flight",
        default="500",
        check=integer(1),
    )
    claim_idle: float = var(
        "TRACKING_RELAY_CLAIM_IDLE",
        "seconds an entry stays pending, unacknowledged, before a relay claims it again",
        default="60",
        check=seconds,
    )
    max_deliveries: int = var(
        "TRACKING_RELAY_MAX_DELIVERIES",
        "deliveries of one entry after which it moves to the dead-letter stream",
        default="10",
        check=integer(1),
    )
    dead_letter: str | None = var(
        "TRACKING_RELAY_DEAD_LETTER",
        "the dead-letter stream (default: the stream's name followed by :dead)",
        check=key,
    )

    @property
    def consumer_name(self) -> str:
        """`consumer`, or the host name and process id."""
        return self.consumer or f"{socket.gethostname()}-{os.getpid()}"

    @property
    def dead_letter_stream(self) -> str:
        """`dead_letter`, or the stream's name followed by ``:dead``."""
        return self.dead_letter or f"{self.stream}:dead"

    @property
    def in_flight(self) -> int:
        """Entries handed to the providers and not yet settled, at most."""
        return 4 * self.batch
