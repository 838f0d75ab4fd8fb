"""The delivery engine: intake, dispatcher, one lane (backlog + worker thread) per provider.

How an event travels (docs/design.md draws it):

1. `track()` checks its arguments, snapshots them into a tuple and puts it on the *intake*
   (`dispatch.Dispatcher`; a `queue.SimpleQueue`). That is all the caller pays for: no lock,
   no I/O, no id generation.
2. The *dispatcher* thread (started on first use) runs plugin discovery once, then turns each
   intake tuple into a *record* (`records`: UUID4 id and UTC timestamp fixed, one flat tuple)
   and offers each lane a run of them per chunk.
3. Each *lane* (`lane.Lane`) owns a bounded backlog (`backlog.Backlog`) and one worker thread,
   which hands its provider batches: due at ``TRACKING_BATCH_SIZE`` items or ``flush_interval``
   seconds after the oldest, or at once on flush and shutdown, and then as large as the provider
   takes. A plain provider (``track``/``identify`` methods) is wrapped in
   `plain.PlainDelivery` and takes batches of one, at once. The library's threads compute one
   at a time (`turn`).

Flush and shutdown travel the same path as events (`markers`: a marker behind everything
accepted before it), so "everything accepted before the call" is exact. Workers block on
condition variables: an idle process costs no CPU. `stats` holds the counters, `life` the fork
and exit hooks, `core.Engine` the lanes by name, flush, shutdown and stats.
"""

from __future__ import annotations

from .core import Engine
from .dispatch import DISPATCH_CHUNK
from .lane import BatchingProvider, DeliveryControl, Item, Lane
from .stats import DropReason, ProviderStats

__all__ = [
    "DISPATCH_CHUNK",
    "BatchingProvider",
    "DeliveryControl",
    "DropReason",
    "Engine",
    "Item",
    "Lane",
    "ProviderStats",
]
