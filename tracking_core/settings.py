"""Typed reading of environment variables, with clear errors that never show a secret.

Providers and the engine read their configuration through these helpers, so that every malformed
value produces the same kind of message: the variable's name and what was wrong with it.
"""

from __future__ import annotations

import dataclasses
import math
import os
import stat
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from urllib.parse import SplitResult

__all__ = [
    "EngineSettings",
    "SettingsError",
    "check_int",
    "check_url",
    "env_bool",
    "env_float",
    "env_int",
    "env_secret",
    "env_text",
    "env_url",
    "secret_source",
    "split_url",
]

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class SettingsError(ValueError):
    """A malformed environment variable. The message names the variable, never a secret value.

    Two forms::

        SettingsError("ACME_HOST", "must start with https://")  # str(): "ACME_HOST: must ..."
        SettingsError("ACME_HOST must start with https://")     # a message alone, as written

    Attributes:
        variable: the variable's name (None when only a message was given).
        problem: what is wrong with it (the whole message in the one-argument form).
    """

    variable: str | None
    problem: str

    def __init__(self, variable: str, problem: str | None = None) -> None:
        if problem is None:
            super().__init__(variable)
            self.variable = None
            self.problem = variable
        else:
            super().__init__(f"{variable}: {problem}")
            self.variable = variable
            self.problem = problem

    def __reduce__(self) -> tuple[type[SettingsError], tuple[str, ...]]:
        # Both forms survive pickling (multiprocessing, for one).
        if self.variable is None:
            return (type(self), (self.problem,))
        return (type(self), (self.variable, self.problem))


def env_text(environ: Mapping[str, str], name: str) -> str | None:
    """The variable's value stripped of surrounding whitespace; None when unset or blank."""
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
    value = env_text(environ, name)
    return default if value is None else check_int(name, value, minimum)


def check_int(name: str, value: str, minimum: int = 0) -> int:
    """`value` (the text of variable `name`) as an integer of at least `minimum`."""
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
    value = env_text(environ, name)
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
    value = env_text(environ, name)
    return default if value is None else check_url(name, value, endpoint=endpoint)


def split_url(name: str, value: str, schemes: Sequence[str] = ("http", "https")) -> SplitResult:
    """`value` (the text of variable `name`) split into its parts, once it is a URL without
    spaces or control characters, with a valid port and one of `schemes`; else `SettingsError`,
    which never repeats the value: a URL may carry credentials."""
    import urllib.parse  # only when a URL is configured: keeps `import tracking_core` cheap

    if any(ord(char) <= 0x20 or ord(char) == 0x7F for char in value):
        raise SettingsError(name, "contains spaces or control characters")
    try:
        parts = urllib.parse.urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        raise SettingsError(name, "is not a valid URL") from None
    if parts.scheme not in schemes:
        *others, last = [f"{scheme}://" for scheme in schemes]
        listed = f"{', '.join(others)} or {last}" if others else last
        raise SettingsError(name, f"must start with {listed}")
    return parts


def check_url(name: str, value: str, *, endpoint: bool = False) -> str:
    """`value` (the text of variable `name`) checked as `env_url` checks it, and never repeated
    in an error: a URL may carry credentials."""
    parts = split_url(name, value)
    if not parts.hostname:
        raise SettingsError(name, "has no host name")
    if parts.fragment or value.endswith("#"):
        raise SettingsError(name, "must not have a #fragment")
    if not endpoint and (parts.query or "?" in value):
        raise SettingsError(name, "is a base URL and must not have a ?query")
    return value if endpoint else value.rstrip("/")


#: The largest `<NAME>_FILE` read: a secret is a line of text, not a file of megabytes.
SECRET_FILE_LIMIT = 64 * 1024

_FILE_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def env_secret(environ: Mapping[str, str], name: str) -> str | None:
    """A secret from `name`, or from the file named by `<name>_FILE` (Docker/Kubernetes secrets).

    The variable itself wins when both are set. The file must be a regular file (a symbolic
    link to one is fine) of at most 64 KiB of UTF-8 text; its content is stripped of surrounding
    whitespace. Anything else (a missing or unreadable file, a directory, a FIFO or a device,
    which are refused without reading from them, a larger or empty file) raises `SettingsError`
    naming `<name>_FILE`. The path is never repeated in the message: a secret pasted into the
    ``_FILE`` variable by mistake stays out of the logs.
    """
    value = env_text(environ, name)
    if value is not None:
        return value
    file_var = f"{name}_FILE"
    path = env_text(environ, file_var)
    if path is None:
        return None
    content = _read_secret_file(file_var, path).strip()
    if not content:
        raise SettingsError(file_var, "names an empty file")
    return content


def secret_source(environ: Mapping[str, str], name: str) -> str:
    """The variable a secret is read from: `name` when it is set, else ``<name>_FILE``."""
    return name if env_text(environ, name) is not None else f"{name}_FILE"


def _read_secret_file(file_var: str, path: str) -> str:
    # O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer, for ever.
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise SettingsError(file_var, "names a file that does not exist") from None
    except PermissionError:
        raise SettingsError(file_var, "names a file this process may not read") from None
    except OSError as exc:
        problem = f"cannot open the file it names ({exc.strerror or type(exc).__name__})"
        raise SettingsError(file_var, problem) from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = next((text for test, text in _FILE_KINDS if test(mode)), None)
            problem = f"names {kind}, not a regular file" if kind else "names no regular file"
            raise SettingsError(file_var, problem)
        data = bytearray()
        while len(data) <= SECRET_FILE_LIMIT:
            chunk = os.read(fd, SECRET_FILE_LIMIT + 1 - len(data))
            if not chunk:
                break
            data += chunk
    except OSError as exc:
        problem = f"cannot read the file it names ({exc.strerror or type(exc).__name__})"
        raise SettingsError(file_var, problem) from None
    finally:
        os.close(fd)
    if len(data) > SECRET_FILE_LIMIT:
        raise SettingsError(file_var, "names a file larger than 64 KiB; expected a secret")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise SettingsError(file_var, "names a file that is not UTF-8 text") from None


#: The least value of an engine setting, where it is not 0.
_MINIMUM = {
    "batch_size": 1,
    "max_queue": 1,
    "max_attempts": 1,
    "circuit_threshold": 1,
    "http_timeout": 0.001,
}


@dataclasses.dataclass(frozen=True)
class EngineSettings:
    """The delivery engine's tuning, read from ``TRACKING_*`` variables (see docs/configuration.md).

    A malformed value falls back to the default for that one setting, with a logged reason.
    """

    batch_size: int = 50
    """TRACKING_BATCH_SIZE: events per request, the trigger of a batch (see docs/delivery.md)."""
    flush_interval: float = 10.0
    """TRACKING_FLUSH_INTERVAL: seconds after the oldest waiting event before it is sent."""
    max_queue: int = 100_000
    """TRACKING_MAX_QUEUE: events waiting per provider, and at the intake, at most; past it new
    ones are dropped (``queue_full``)."""
    shutdown_timeout: float = 5.0
    """TRACKING_SHUTDOWN_TIMEOUT: the exit flush's budget, in seconds."""
    flush_timeout: float = 30.0
    """TRACKING_FLUSH_TIMEOUT: what ``flush_tracking(None)`` waits at most, in seconds."""
    max_attempts: int = 10
    """TRACKING_MAX_ATTEMPTS: attempts of one batch before it is dropped."""
    max_retry_time: float = 120.0
    """TRACKING_MAX_RETRY_TIME: seconds one batch may spend retrying."""
    retry_backoff: float = 0.1
    """TRACKING_RETRY_BACKOFF: the first backoff ceiling in seconds; it doubles with each
    failure of the destination in a row (full jitter)."""
    retry_backoff_max: float = 30.0
    """TRACKING_RETRY_BACKOFF_MAX: the largest backoff ceiling."""
    http_timeout: float = 10.0
    """TRACKING_HTTP_TIMEOUT: one HTTP attempt's deadline, connecting and reading included."""
    circuit_threshold: int = 5
    """TRACKING_CIRCUIT_THRESHOLD: failed attempts in a row after which a destination is
    probed slowly."""
    circuit_probe_interval: float = 30.0
    """TRACKING_CIRCUIT_PROBE_INTERVAL: seconds between probes of a failing destination."""
    debug: bool = False
    """TRACKING_DEBUG: log each request sent."""
    handle_signals: bool = True
    """TRACKING_HANDLE_SIGNALS: flush on an ordinary SIGTERM (see tracking_core.process)."""
    sync: bool = False
    """TRACKING_SYNC: each `track()`/`identify()` call returns only once what it sent was
    delivered or dropped (or `sync_timeout` passed): for code frozen between calls."""
    sync_timeout: float = 5.0
    """TRACKING_SYNC_TIMEOUT: the most one call waits in sync mode, in seconds."""

    @classmethod
    def from_environ(
        cls, environ: Mapping[str, str] | None = None
    ) -> tuple[EngineSettings, list[SettingsError]]:
        """The settings plus the errors met (each error's setting keeps its default)."""
        env = os.environ if environ is None else environ
        errors: list[SettingsError] = []
        base = cls()
        values: dict[str, object] = {}
        for field in dataclasses.fields(cls):
            variable = "TRACKING_" + field.name.upper()  # each field's variable, by its name
            default = getattr(base, field.name)
            try:
                if isinstance(default, bool):
                    values[field.name] = env_bool(env, variable, default)
                elif isinstance(default, int):
                    minimum = int(_MINIMUM.get(field.name, 0))
                    values[field.name] = env_int(env, variable, default, minimum=minimum)
                else:
                    minimum_float = _MINIMUM.get(field.name, 0.0)
                    values[field.name] = env_float(env, variable, default, minimum=minimum_float)
            except SettingsError as exc:
                errors.append(exc)
        return dataclasses.replace(base, **values), errors  # type: ignore[arg-type]
