"""`PlainDelivery`: a plain provider (``track``/``identify``/``flush`` methods) behind the same
batch interface as an HTTP provider, so one lane loop serves both."""

from __future__ import annotations

import logging
import types
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from .._log import logger, rate_limited
from ..event import TrackingEvent, TrackingIdentify
from .records import Item
from .stats import DropReason

if TYPE_CHECKING:
    from .lane import DeliveryControl

__all__ = ["PlainDelivery"]


class PlainDelivery:
    """Calls a plain provider once per item, in order, on the lane's worker thread.

    An ``async def`` method runs on an event loop of this lane's own (made the first time one
    is needed), so a provider blocking inside a coroutine delays only itself. Whatever a
    method raises (``SystemExit``, ``CancelledError`` and ``KeyboardInterrupt`` included) is
    that item's failure: counted as ``provider_error``, logged by type, and the lane goes on.
    """

    #: Items go to the provider as they arrive; there is no batch to fill.
    waits_for_batch = False

    def __init__(self, provider: Any) -> None:
        self.provider = provider
        self.name: str = provider.name
        self.takes_identify = callable(getattr(provider, "identify", None))
        self._loop: Any = None

    def batch_limit(self) -> int:
        return 1

    def _call(self, method: Callable[..., Any], *args: Any) -> None:
        result = method(*args)
        if result is not None and hasattr(result, "__await__"):
            if self._loop is None:
                import asyncio  # only for providers with async methods: keeps import cheap

                self._loop = asyncio.new_event_loop()
            self._loop.run_until_complete(result)

    def deliver_batch(self, items: Sequence[Item], control: DeliveryControl) -> None:
        provider = self.provider
        for item in items:
            try:
                if type(item) is TrackingEvent:
                    self._call(provider.track, item)  # its properties a read-only view
                else:
                    assert isinstance(item, TrackingIdentify)
                    traits = types.MappingProxyType(item.traits)
                    self._call(provider.identify, item.user_id, traits)
            except BaseException as exc:
                control.failed(f"{type(exc).__name__} raised by the provider")
                control.dropped(DropReason.PROVIDER_ERROR, 1)
                control.settled((item.event_id,), DropReason.PROVIDER_ERROR)
                if rate_limited.log(
                    logging.ERROR,
                    f"provider_error:{self.name}",
                    "tracking: provider %r raised %s; the event is dropped",
                    self.name,
                    type(exc).__name__,
                ):
                    logger.debug("tracking: provider %r traceback", self.name, exc_info=True)
            else:
                control.delivered(1, clear_error=True)
                control.settled((item.event_id,), "delivered")

    def flush(self) -> None:
        flush = getattr(self.provider, "flush", None)
        if callable(flush):
            self._call(flush)

    def close(self) -> None:
        """Close the lane's event loop, if one was made (the worker is exiting)."""
        loop, self._loop = self._loop, None
        if loop is not None:
            loop.close()
