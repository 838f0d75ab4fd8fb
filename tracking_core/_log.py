"""The library's logger and its rate limiter: every drop is logged, but not every time."""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Iterable

logger = logging.getLogger("tracking_core")

#: Seconds between two log lines with the same key.
RATE_LIMIT_SECONDS = 60.0


class RateLimitedLog:
    """Logs the first line for a key at once, then at most one line per interval per key.

    A line that follows suppressed ones says how many were suppressed, so a count is never lost.
    """

    def __init__(self, interval: float = RATE_LIMIT_SECONDS) -> None:
        self._interval = interval
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def log(self, level: int, key: str, message: str, *args: object) -> bool:
        """Log `message % args` unless a line with this key was logged within the interval."""
        now = time.monotonic()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self._interval:
                self._suppressed[key] = self._suppressed.get(key, 0) + 1
                return False
            self._last[key] = now
            suppressed = self._suppressed.pop(key, 0)
        if suppressed:
            message += " (%d similar messages suppressed)"
            args = (*args, suppressed)
        logger.log(level, message, *args)
        return True

    def log_masked(
        self, level: int, key: str, forms: Iterable[str], message: str, *args: object
    ) -> bool:
        """`log`, with each of `forms` (as `secret_forms` gives them) masked in every string
        argument."""
        forms = tuple(forms)
        safe = tuple(mask(arg, forms) if isinstance(arg, str) else arg for arg in args)
        return self.log(level, key, message, *safe)

    def reset(self) -> None:
        with self._lock:
            self._last.clear()
            self._suppressed.clear()


rate_limited = RateLimitedLog()


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """`text` with every secret (of four characters or more) replaced by ``***``, in every
    form it may be sent or echoed in (see `secret_forms`)."""
    return mask(text, secret_forms(secrets))


def mask(text: str, forms: Iterable[str]) -> str:
    """`text` with each of `forms` (as `secret_forms` gives them: longest first) replaced by
    ``***``."""
    for form in forms:
        if form in text:
            text = text.replace(form, "***")
    return text


def secret_forms(secrets: Iterable[str | None]) -> tuple[str, ...]:
    """Every form in which `secrets` may be sent, or echoed back in an answer or a log line:
    as is; JSON-escaped (``"`` and ``\\`` escaped, with and without ``\\uXXXX`` for
    non-ASCII, with and without ``\\/``); percent-encoded (as in a URL's path, query or
    form body); as Python shows it in a ``repr`` of a string or of bytes. Secrets shorter
    than four characters are left out (masking them would garble every line). Longest first,
    so that a secret is masked whole before any part of it. Cached."""
    return _secret_forms(tuple(secret for secret in secrets if secret and len(secret) >= 4))


@functools.lru_cache(maxsize=256)
def _secret_forms(secrets: tuple[str, ...]) -> tuple[str, ...]:
    import json
    import urllib.parse

    forms: set[str] = set()
    for secret in secrets:
        escaped = {json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1]}
        escaped |= {form.replace("/", "\\/") for form in escaped}
        forms |= escaped
        forms.add(secret)
        forms.add(urllib.parse.quote(secret, safe=""))
        forms.add(urllib.parse.quote(secret))
        forms.add(urllib.parse.quote_plus(secret))
        forms.add(repr(secret)[1:-1])
        forms.add(repr(secret.encode("utf-8", "surrogatepass"))[2:-1])
    return tuple(sorted((form for form in forms if len(form) >= 4), key=len, reverse=True))


def enable_debug_logging() -> None:
    """For ``TRACKING_DEBUG=1``: make the library's INFO lines visible.

    When the application configured no logging at all, a stderr handler is added so that the
    debug lines show without any set-up; otherwise only the logger's level is lowered.
    """
    if logger.level == logging.NOTSET or logger.level > logging.INFO:
        logger.setLevel(logging.INFO)
    if not logger.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        logger.addHandler(handler)
