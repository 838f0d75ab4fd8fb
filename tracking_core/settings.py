"""Typed reading of environment variables, with clear errors that never show a secret.

Providers and the engine read their configuration through these helpers, so that every malformed
value produces the same kind of message: the variable's name and what was wrong with it.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping

__all__ = [
    "EngineSettings",
    "SettingsError",
    "env_bool",
    "env_float",
    "env_int",
    "env_secret",
    "env_url",
]

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class SettingsError(ValueError):
    """A malformed environment variable. The message names the variable, never a secret value."""

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"{variable}: {problem}")
        self.variable = variable
        self.problem = problem


def _raw(environ: Mapping[str, str], name: str) -> str | None:
    value = environ.get(name)
    if value is None:
        return None
    value = value.strip()
    return value or None


def env_bool(environ: Mapping[str, str], name: str, default: bool = False) -> bool:
    """`1`/`true`/`yes`/`on` are true, `0`/`false`/`no`/`off`/empty false (case-insensitive)."""
    value = environ.get(name)
    if value is None:
        return default
    text = value.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise SettingsError(name, f"expected 1/true or 0/false, got {value!r}")


def env_int(environ: Mapping[str, str], name: str, default: int, *, minimum: int = 0) -> int:
    """An integer of at least `minimum`; `default` when unset or empty."""
    value = _raw(environ, name)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise SettingsError(name, f"expected a whole number, got {value!r}") from None
    if number < minimum:
        raise SettingsError(name, f"must be at least {minimum}, got {number}")
    return number


def env_float(
    environ: Mapping[str, str], name: str, default: float, *, minimum: float = 0.0
) -> float:
    """A finite number of seconds (or other quantity) of at least `minimum`."""
    value = _raw(environ, name)
    if value is None:
        return default
    try:
        number = float(value)
    except ValueError:
        raise SettingsError(name, f"expected a number, got {value!r}") from None
    if not math.isfinite(number):
        raise SettingsError(name, f"expected a finite number, got {value!r}")
    if number < minimum:
        raise SettingsError(name, f"must be at least {minimum:g}, got {number:g}")
    return number


def env_url(
    environ: Mapping[str, str],
    name: str,
    default: str | None = None,
    *,
    endpoint: bool = False,
) -> str | None:
    """An http(s) URL with a host; a trailing slash is removed so paths can be appended.

    A base URL (the default) may carry a path prefix but no query or fragment, since providers
    append their own paths to it; with ``endpoint=True`` (a full URL used as is, such as a
    webhook's) a query is allowed. Spaces and control characters are refused. The value is not
    secret, but a URL may carry credentials (``https://user:pw@host``), so the error message
    never repeats it.
    """
    value = _raw(environ, name)
    if value is None:
        return default
    import urllib.parse  # only when a URL is configured: keeps `import tracking_core` cheap

    if any(ord(char) <= 0x20 or ord(char) == 0x7F for char in value):
        raise SettingsError(name, "contains spaces or control characters")
    try:
        parts = urllib.parse.urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        raise SettingsError(name, "is not a valid URL") from None
    if parts.scheme not in ("http", "https"):
        raise SettingsError(name, "must start with http:// or https://")
    if not parts.hostname:
        raise SettingsError(name, "has no host name")
    if parts.fragment or value.endswith("#"):
        raise SettingsError(name, "must not have a #fragment")
    if not endpoint and (parts.query or "?" in value):
        raise SettingsError(name, "is a base URL and must not have a ?query")
    return value if endpoint else value.rstrip("/")


def env_secret(environ: Mapping[str, str], name: str) -> str | None:
    """A secret from `name`, or from the file named by `<name>_FILE` (Docker/Kubernetes secrets).

    The variable itself wins when both are set. The file's content is stripped of surrounding
    whitespace. An unreadable or empty file raises `SettingsError` naming `<name>_FILE`.
    """
    value = _raw(environ, name)
    if value is not None:
        return value
    file_var = f"{name}_FILE"
    path = _raw(environ, file_var)
    if path is None:
        return None
    try:
        with open(path, encoding="utf-8") as handle:
            content = handle.read().strip()
    except (OSError, UnicodeDecodeError) as exc:
        problem = f"cannot read the file it names ({exc.__class__.__name__})"
        raise SettingsError(file_var, problem) from None
    if not content:
        raise SettingsError(file_var, "names an empty file")
    return content


@dataclasses.dataclass(frozen=True)
class EngineSettings:
    """The delivery engine's tuning, read from ``TRACKING_*`` variables (see docs/configuration.md).

    A malformed value falls back to the default for that one setting, with a logged reason.
    """

    batch_size: int = 50
    flush_interval: float = 10.0
    max_queue: int = 100_000
    shutdown_timeout: float = 5.0
    flush_timeout: float = 30.0
    max_attempts: int = 6
    max_retry_time: float = 120.0
    retry_backoff: float = 0.5
    retry_backoff_max: float = 30.0
    http_timeout: float = 10.0
    circuit_threshold: int = 5
    circuit_probe_interval: float = 30.0
    debug: bool = False
    handle_signals: bool = True

    @classmethod
    def from_environ(
        cls, environ: Mapping[str, str] | None = None
    ) -> tuple[EngineSettings, list[SettingsError]]:
        """The settings plus the errors met (each error's setting keeps its default)."""
        env = os.environ if environ is None else environ
        errors: list[SettingsError] = []
        base = cls()
        values: dict[str, object] = {}
        table: list[tuple[str, str, str, float]] = [
            ("batch_size", "TRACKING_BATCH_SIZE", "int", 1),
            ("flush_interval", "TRACKING_FLUSH_INTERVAL", "float", 0.0),
            ("max_queue", "TRACKING_MAX_QUEUE", "int", 1),
            ("shutdown_timeout", "TRACKING_SHUTDOWN_TIMEOUT", "float", 0.0),
            ("flush_timeout", "TRACKING_FLUSH_TIMEOUT", "float", 0.0),
            ("max_attempts", "TRACKING_MAX_ATTEMPTS", "int", 1),
            ("max_retry_time", "TRACKING_MAX_RETRY_TIME", "float", 0.0),
            ("retry_backoff", "TRACKING_RETRY_BACKOFF", "float", 0.0),
            ("retry_backoff_max", "TRACKING_RETRY_BACKOFF_MAX", "float", 0.0),
            ("http_timeout", "TRACKING_HTTP_TIMEOUT", "float", 0.001),
            ("circuit_threshold", "TRACKING_CIRCUIT_THRESHOLD", "int", 1),
            ("circuit_probe_interval", "TRACKING_CIRCUIT_PROBE_INTERVAL", "float", 0.0),
        ]
        for field, variable, kind, minimum in table:
            default = getattr(base, field)
            try:
                if kind == "int":
                    values[field] = env_int(env, variable, default, minimum=int(minimum))
                else:
                    values[field] = env_float(env, variable, default, minimum=minimum)
            except SettingsError as exc:
                errors.append(exc)
        for field, variable in (
            ("debug", "TRACKING_DEBUG"),
            ("handle_signals", "TRACKING_HANDLE_SIGNALS"),
        ):
            try:
                values[field] = env_bool(env, variable, getattr(base, field))
            except SettingsError as exc:
                errors.append(exc)
        return dataclasses.replace(base, **values), errors  # type: ignore[arg-type]
