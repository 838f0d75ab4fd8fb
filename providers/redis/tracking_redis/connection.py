"""The Redis client tracking-redis uses, and what its errors mean for delivery."""

from __future__ import annotations

from typing import Any

from tracking_core.kit import mask_secrets

from .settings import RedisSettings

__all__ = ["connect", "describe", "secrets_of", "transient"]

#: Error replies that say "not now": Redis is loading, busy, out of memory, a replica, or a
#: cluster in the middle of a change. Anything else Redis refuses is refused for good.
_TRANSIENT_REPLIES = (
    "BUSY",
    "CLUSTERDOWN",
    "LOADING",
    "MASTERDOWN",
    "NOREPLICAS",
    "OOM",
    "READONLY",
    "TRYAGAIN",
)


def connect(settings: RedisSettings, name: str) -> Any:
    """A client of `settings.url`: each command bounded by `settings.timeout`, no retries of
    its own (the caller retries, within the engine's limits), reconnecting on next use."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return redis.Redis.from_url(
        settings.url,
        socket_timeout=settings.timeout,
        socket_connect_timeout=settings.timeout,
        retry=Retry(NoBackoff(), 0),
        health_check_interval=30,
        client_name=name,
    )


def transient(error: BaseException) -> bool:
    """True when trying again later may succeed (a connection, a timeout, a "not now" reply)."""
    from redis import exceptions

    if isinstance(error, (exceptions.AuthenticationError, exceptions.NoPermissionError)):
        return False
    if isinstance(error, (exceptions.ConnectionError, exceptions.TimeoutError, OSError)):
        return True
    if isinstance(error, exceptions.ResponseError):
        return str(error).split(" ", 1)[0].upper() in _TRANSIENT_REPLIES
    return False


def secrets_of(settings: RedisSettings) -> tuple[str, ...]:
    """What must never be shown: the URL, and its password on its own."""
    return settings.secrets()


def describe(error: BaseException, secrets: tuple[str, ...]) -> str:
    """One line saying what failed, without any secret."""
    text = " ".join(str(error).split())
    name = type(error).__name__
    return mask_secrets(f"{name}: {text}" if text else name, secrets)[:300]
