"""The public functions: `track`, `identify`, the registry calls, flush, shutdown, stats, context.

`track()` and `identify()` are on the hot path of every caller: they check their arguments,
snapshot them into a tuple and hand it to the engine's intake. Everything else (ids, timestamps,
fan-out, I/O, logging) happens on the engine's threads.
"""

from __future__ import annotations

import contextvars
import sys
import time

# The same class as collections.abc.Mapping, from the module the interpreter loads at start-up:
# importing collections.abc would load collections, for one isinstance check.
from _collections_abc import Mapping

from .process import arm_termination

# What mypy needs; nothing of it is imported when tracking_core is (it would cost milliseconds
# at every start-up of every application, for names used only in annotations).
TYPE_CHECKING = False
if TYPE_CHECKING:
    import datetime as _dt
    from collections.abc import Callable, Sequence
    from types import TracebackType
    from typing import Any

    from .discovery import PluginReport
    from .engine import BatchingProvider, ProviderStats
    from .engine.markers import Submitted
    from .engine.receipts import DeliveryReceipt
    from .event import TrackingEvent, TrackingIdentify
    from .http import HttpProvider
    from .registry import Runtime
    from .types import TrackingProvider


# (user_id, anonymous_id, properties) set by tracking_context, or None.
_context: contextvars.ContextVar[tuple[str | None, str | None, dict[str, Any]] | None] = (
    contextvars.ContextVar("tracking_core_context", default=None)
)

_now = time.time


def runtime() -> Runtime:
    """The process-wide runtime (`tracking_core.registry.runtime`), made on first use."""
    from .registry import runtime

    return runtime()


def _first_submit(item: object) -> bool:
    """The first call builds the runtime (nothing is made at import), then `track()` and
    `identify()` call the engine's intake directly (or, with ``TRACKING_SYNC``, send and wait).
    False when the intake was full."""
    global _submit
    engine = runtime().engine
    _submit = _sync_submit if engine.settings.sync else engine.submit
    return _submit(item)


def _sync_submit(item: object) -> bool:
    """``TRACKING_SYNC``: queue `item`, then wait (at most ``TRACKING_SYNC_TIMEOUT``) until it
    and everything before it was delivered or dropped. Not on the engine's own threads (a
    provider calling `track()` would wait for itself)."""
    import threading

    engine = runtime().engine
    accepted = engine.submit(item)
    if accepted and not threading.current_thread().name.startswith("tracking-"):
        engine.flush(engine.settings.sync_timeout)
    return accepted


_submit: Callable[[object], bool] = _first_submit


def _bad(reason: str) -> None:
    try:  # noqa: SIM105 - contextlib is not loaded by `import tracking_core`
        runtime().engine.report_bad_input(reason)
    except Exception:  # the intake itself failing: nothing left to do
        pass


def _type_name(value: object) -> str:
    return type(value).__name__


def track(
    name: str,
    properties: Mapping[str, Any] | None = None,
    *,
    user_id: str | None = None,
    anonymous_id: str | None = None,
    timestamp: _dt.datetime | None = None,
) -> None:
    """Send an event to every registered provider. Returns at once and never raises.

    Args:
        name: the event name, a non-empty string.
        properties: the event's properties. A shallow snapshot is taken now: changing the
            mapping after the call changes nothing that is sent. Values JSON cannot carry are
            converted by `json_safe` for the built-in wire formats.
        user_id: the identified user (a string); defaults to the `tracking_context` one.
        anonymous_id: an anonymous or device id; defaults to the `tracking_context` one.
        timestamp: when it happened; defaults to now. A naive datetime is taken as UTC.

    A bad argument (an empty or non-string name, properties that are not a mapping, an id that
    is not a string, a timestamp that is not a datetime) drops the call: it is logged (rate-
    limited) and counted under ``bad_input`` in `tracking_stats()`.
    """
    try:
        ctx = _context.get()
        if type(name) is not str:
            if not isinstance(name, str):
                _bad(f"event name must be a non-empty str, got {_type_name(name)} {name!r:.80}")
                return
            name = str.__str__(name)  # a str subclass (a StrEnum member): its plain text
        if not name:
            _bad("event name must be a non-empty str, got an empty str")
            return
        props: Mapping[str, Any] | None
        if properties is None or type(properties) is dict:
            props = properties  # snapshotted into the intake tuple below
        elif isinstance(properties, Mapping):
            props = dict(properties)
        else:
            _bad(f"properties of {name!r:.80} must be a mapping, got {_type_name(properties)}")
            return
        if ctx is not None:
            ctx_user, ctx_anon, ctx_props = ctx
            if user_id is None:
                user_id = ctx_user
            if anonymous_id is None:
                anonymous_id = ctx_anon
            if ctx_props:
                props = {**ctx_props, **props} if props else ctx_props
        if user_id is not None and type(user_id) is not str:
            _bad(f"user_id of {name!r:.80} must be a str or None, got {_type_name(user_id)}")
            return
        if anonymous_id is not None and type(anonymous_id) is not str:
            _bad(
                f"anonymous_id of {name!r:.80} must be a str or None, "
                f"got {_type_name(anonymous_id)}"
            )
            return
        # A datetime can only exist once its module is loaded: no import here.
        datetime = sys.modules.get("datetime")
        if timestamp is None:
            when: float | _dt.datetime = _now()
        elif datetime is not None and isinstance(timestamp, datetime.datetime):
            from .event import normalize_timestamp

            try:
                when = normalize_timestamp(timestamp)
            except (ValueError, OverflowError, TypeError, ArithmeticError) as exc:
                _bad(f"timestamp of {name!r:.80} cannot be taken to UTC ({type(exc).__name__})")
                return
        else:
            _bad(f"timestamp of {name!r:.80} must be a datetime, got {_type_name(timestamp)}")
            return
        # The properties go into the intake tuple itself, keys then values: one flat tuple,
        # made in C with no switch of threads between its halves (the snapshot). Of plain
        # values, the garbage collector stops tracking it the first time it looks at it, so a
        # queued burst adds nothing to what its full collections walk; a dict or a nested tuple
        # in it would keep it tracked past the young collections (docs/delivery.md).
        if props:
            _submit(
                ("t", name, user_id or None, anonymous_id or None, when, *props, *props.values())
            )
        else:
            _submit(("t", name, user_id or None, anonymous_id or None, when))
    except Exception as exc:
        _bad(f"track() could not accept the event ({type(exc).__name__})")


def identify(user_id: str, traits: Mapping[str, Any] | None = None) -> None:
    """Tell every provider that implements identify about a user's traits. Never raises.

    Args:
        user_id: the user's id, a non-empty string.
        traits: the user's properties (a shallow snapshot is taken now).
    """
    try:
        if type(user_id) is not str or not user_id:
            _bad(f"identify() user_id must be a non-empty str, got {_type_name(user_id)}")
            return
        if traits is not None and not isinstance(traits, Mapping):
            _bad(f"identify() traits must be a mapping, got {_type_name(traits)}")
            return
        snapshot = dict(traits) if traits else {}
        _submit(("i", user_id, _now(), *snapshot, *snapshot.values()))  # flat, as track()'s
    except Exception as exc:
        _bad(f"identify() could not accept the call ({type(exc).__name__})")


def submit_event(item: TrackingEvent | TrackingIdentify) -> DeliveryReceipt:
    """Send an event or identify made beforehand, and get a receipt that says what became of
    it. Returns at once and never raises.

    The item keeps its ``event_id`` and ``timestamp`` as they are (an event sent again, by a
    relay for instance, is the same event to every vendor's dedupe). It goes to every
    registered provider (an identify, to those that take identifies) through the same queues,
    batches and retries as `track()`; `tracking_context` does not apply. The receipt is done
    once each of those providers delivered it or dropped it (counted in `tracking_stats()` as
    always): ``receipt.wait(timeout)``, ``receipt.outcomes`` (provider -> ``"delivered"`` or
    the drop reason), ``receipt.add_done_callback(fn)``. A provider that reports only counts
    (a `BatchingProvider` that does not call ``control.settled``) settles its items as
    ``"uncertain"`` when part of their batch failed.

    Args:
        item: a `TrackingEvent` or `TrackingIdentify`.
    """
    submitted, receipt_type, kinds = _submit_types or _load_submit_types()
    receipt = receipt_type(str(getattr(item, "event_id", "")))
    try:
        engine = runtime().engine
        if not isinstance(item, kinds) or not receipt.event_id:
            _bad(
                f"submit_event() takes a TrackingEvent or TrackingIdentify, got {_type_name(item)}"
            )
            _settle_now(receipt, engine.names(), "bad_input")
        elif not _submit(submitted(item, receipt)):
            _settle_now(receipt, engine.names(), "queue_full")
    except Exception as exc:
        _bad(f"submit_event() could not accept the item ({type(exc).__name__})")
        _settle_now(receipt, (), "bad_input")
    return receipt


_SubmitTypes = tuple["type[Submitted]", "type[DeliveryReceipt]", tuple[type, ...]]
_submit_types: _SubmitTypes | None = None


def _load_submit_types() -> _SubmitTypes:
    """What `submit_event` needs, imported once (not at `import tracking_core`)."""
    global _submit_types
    from .engine.markers import Submitted
    from .engine.receipts import DeliveryReceipt
    from .event import TrackingEvent, TrackingIdentify

    _submit_types = (Submitted, DeliveryReceipt, (TrackingEvent, TrackingIdentify))
    return _submit_types


def _settle_now(receipt: DeliveryReceipt, providers: Sequence[str], outcome: str) -> None:
    receipt.expect(providers)
    for provider in providers:
        receipt.settle(provider, outcome)


def register_tracking_provider(
    provider: TrackingProvider | HttpProvider | BatchingProvider,
) -> None:
    """Add `provider` to the fan-out; a provider with the same name is replaced.

    `provider` is a `TrackingProvider` (``name`` and ``track``), a
    `tracking_core.http.HttpProvider` (a wire mapping: it needs no ``track``) or a batching
    provider (``batch_limit`` and ``deliver_batch``, such as a `tracking_core.http.Sender`).

    Raises:
        TypeError: the object has no str ``name``, or neither a callable ``track`` nor the
            batch methods.
        ValueError: its ``name`` is empty.
    """
    runtime().register(provider)


def unregister_tracking_provider(name: str) -> bool:
    """Remove the provider called `name`; returns whether one was registered.

    Events already handed to it are still delivered to it; new ones are not.
    """
    return runtime().engine.remove(name)


def list_tracking_providers() -> list[str]:
    """The registered providers' names, in registration order (after discovery has run)."""
    engine = runtime().engine
    engine.ensure_discovered(engine.settings.flush_timeout)
    return engine.names()


def discover_tracking_providers() -> list[PluginReport]:
    """Run plugin discovery now (it otherwise runs on first use) and return what it found.

    For applications that want to validate their configuration at start-up: each report says
    which providers a package enabled, or why it did not. Discovery runs once per process;
    later calls return the first run's reports.
    """
    state = runtime()
    state.engine.ensure_discovered(state.engine.settings.flush_timeout)
    return list(state.plugins)


def flush_tracking(timeout: float | None = None) -> bool:
    """Block until every event accepted before the call is delivered or definitively dropped,
    and every provider's own ``flush()`` has run.

    Args:
        timeout: seconds to wait at most; None means ``TRACKING_FLUSH_TIMEOUT`` (30 s by default),
            never forever.

    Returns:
        True when everything finished in time (a provider's ``flush()`` that raised makes it
        False), False on timeout.
    """
    return runtime().engine.flush(timeout)


async def aflush_tracking(timeout: float | None = None) -> bool:
    """`flush_tracking` for async code: waits in a worker thread, never blocking the loop."""
    import asyncio  # imported here: `import tracking_core` must stay cheap

    return await asyncio.to_thread(flush_tracking, timeout)


def shutdown_tracking(timeout: float | None = None) -> bool:
    """Flush, then stop the provider workers. Runs by itself at interpreter exit.

    Args:
        timeout: the whole budget in seconds; None means ``TRACKING_SHUTDOWN_TIMEOUT`` (5 s by
            default). Whatever the destinations do, it returns within the budget; events it could
            not deliver are counted as dropped (``shutdown``) and logged with counts.

    Returns:
        True when everything was delivered or definitively dropped within the budget.

    Tracking may be used again afterwards: workers restart on the next event.
    """
    return runtime().engine.shutdown(timeout)


def tracking_stats() -> dict[str, ProviderStats]:
    """Per registered provider, a snapshot of its counters (see `ProviderStats`).

    Like `list_tracking_providers()`, it first waits for plugin discovery (at most
    ``TRACKING_FLUSH_TIMEOUT``), so that the providers it enables are listed.
    """
    engine = runtime().engine
    engine.ensure_discovered(engine.settings.flush_timeout)
    return engine.stats()


class tracking_context:
    """Defaults for every `track()` inside the block (contextvars: follows asyncio tasks).

    ``with tracking_context(user_id=..., anonymous_id=..., properties=...):``. Nested contexts
    add to the outer one; explicit `track()` arguments win over both. Threads started inside the
    block see it only if the caller copies the context (``contextvars.copy_context().run``), as
    with any context variable.
    """

    def __init__(
        self,
        *,
        user_id: str | None = None,
        anonymous_id: str | None = None,
        properties: Mapping[str, Any] | None = None,
    ) -> None:
        self._values = (user_id, anonymous_id, properties)
        self._tokens: list[contextvars.Token[Any]] = []

    def __enter__(self) -> None:
        user_id, anonymous_id, properties = self._values
        outer = _context.get()
        merged_props: dict[str, Any] = dict(outer[2]) if outer else {}
        if properties:
            merged_props.update(properties)
        value = (
            user_id if user_id is not None else (outer[0] if outer else None),
            anonymous_id if anonymous_id is not None else (outer[1] if outer else None),
            merged_props,
        )
        self._tokens.append(_context.set(value))

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        _context.reset(self._tokens.pop())


# The one thing importing tracking-core does: on the main thread, put the SIGTERM handler in
# front of the one there (uvicorn imports the application inside its own signal handling, and
# calls track() from worker threads; this is the one moment the library surely runs on the main
# thread). It reads nothing, starts nothing and logs nothing; see tracking_core.process.
arm_termination()
