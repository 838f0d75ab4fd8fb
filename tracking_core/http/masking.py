"""A provider's secrets, masked in every form they are sent in, in every line it causes.

`SecretMasks` (one per sender) knows the provider's `secrets()`, what the sender derived from
them while sending (URL credentials, the Basic token made from them, ``Authorization`` values)
and the transport's proxy credentials. `warn` is what `HttpProvider.warn` calls: while a sender
calls its mapping, the mapping's warnings are masked with everything the sender knows.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import weakref
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

from .._log import mask, rate_limited, secret_forms

if TYPE_CHECKING:
    from .wire import HttpProvider

__all__ = ["SecretMasks", "forms_for", "warn"]


class SecretMasks:
    """The forms to mask for one provider (see the module doc); `extra` gives the transport's
    own secrets (proxy credentials), read each time."""

    def __init__(self, provider: HttpProvider, extra: Callable[[], Sequence[str]] = tuple) -> None:
        self.provider = provider
        self._extra = extra
        #: Values derived from what was sent, masked like `HttpProvider.secrets`.
        self.derived: tuple[str, ...] = ()
        self._cache: tuple[tuple[str, ...], tuple[str, ...]] | None = None
        _httpcore_mask.senders.add(self)

    def remember(self, *values: str | None) -> None:
        """Mask `values` (derived from a secret while sending) from now on."""
        new = tuple(v for v in values if v and v not in self.derived)
        if new:
            self.derived = (*self.derived, *new)

    def forms(self) -> tuple[str, ...]:
        """Every form of every secret (as `tracking_core._log.secret_forms` gives them);
        recomputed only when one of them changes."""
        key = (*self.provider.secrets(), *self.derived, *self._extra())
        cached = self._cache
        if cached is not None and cached[0] == key:
            return cached[1]
        forms = secret_forms(key)
        self._cache = (key, forms)
        return forms

    def __call__(self, text: str) -> str:
        """`text` with every form masked as ``***``."""
        return mask(text, self.forms())

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        """While the sender calls the mapping on this thread: its warnings use these masks."""
        previous = _active.masks
        _active.masks = self
        try:
            yield
        finally:
            _active.masks = previous


class _Active(threading.local):
    masks: SecretMasks | None = None


_active = _Active()


def forms_for(provider: HttpProvider) -> tuple[str, ...]:
    """The forms to mask for `provider`: its sender's when that sender is working on this
    thread, else those of its `secrets()`."""
    masks = _active.masks
    if masks is not None and masks.provider is provider:
        return masks.forms()
    return secret_forms(provider.secrets())


def warn(provider: HttpProvider, key: str, message: str, *args: object) -> None:
    """Log a warning for `provider` through the rate limiter (one line per key a minute), its
    secrets masked in every string argument; `message` gets the prefix ``"tracking: "``."""
    rate_limited.log_masked(
        logging.WARNING,
        f"{provider.name}:{key}",
        forms_for(provider),
        "tracking: " + message,
        *args,
    )


class _HttpcoreMask(logging.Filter):
    """Masks the live senders' secrets in httpcore's DEBUG lines (they show response headers,
    where a vendor may echo a key)."""

    def __init__(self) -> None:
        super().__init__()
        self.senders: weakref.WeakSet[SecretMasks] = weakref.WeakSet()

    def filter(self, record: logging.LogRecord) -> bool:
        forms = [form for masks in list(self.senders) for form in masks.forms()]
        if forms:
            message = record.getMessage()
            masked = mask(message, sorted(forms, key=len, reverse=True))
            if masked != message:
                record.msg, record.args = masked, None
        return True


_httpcore_mask = _HttpcoreMask()
for _name in ("httpcore.http11", "httpcore.http2", "httpcore.connection", "httpcore.proxy"):
    logging.getLogger(_name).addFilter(_httpcore_mask)
