"""`TrackingProvider`: the interface a provider implements (third parties included)."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Protocol, runtime_checkable

from .event import TrackingEvent

__all__ = ["TrackingProvider"]


@runtime_checkable
class TrackingProvider(Protocol):
    """What `register_tracking_provider` accepts.

    Only ``name`` and ``track`` are required. Two optional methods are used when present:

    - ``identify(user_id: str, traits: Mapping[str, Any] | None)``, for `identify()` calls;
    - ``flush()``, called by `flush_tracking()` after the events before it were handed over.

    Each method may be plain or ``async def``. The core calls them on the provider's own worker
    thread (an ``async`` method on that worker's own event loop), never on the caller's thread,
    one event at a time and in order. An exception is caught, logged with the provider's name
    and counted; it never reaches the code that called `track()`.

    For HTTP backends, subclass `tracking_core.http.HttpProvider` instead: the engine then
    batches, retries and limits for you.
    """

    name: str

    def track(self, event: TrackingEvent) -> Awaitable[None] | None:
        """Deliver one event."""
        ...
