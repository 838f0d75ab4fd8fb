"""Serverless functions: deliver what an invocation tracked before it returns.

AWS Lambda, Google Cloud Functions, Vercel and the like freeze (or end) the process as soon as
the handler returns: a batch waiting for its 10 s interval never goes out, and the next
invocation may never come. `flush_after` wraps a handler so that every event it tracked is
delivered (or counted as dropped) before it returns, within the time the invocation has left;
`invocation` does the same around a block. ``TRACKING_SYNC=1`` is the alternative for code that
cannot be wrapped: every `track()` call then waits for its own delivery.

    from tracking_core.serverless import flush_after

    @flush_after
    def handler(event, context):
        track("Order Paid", {...})
        return {"statusCode": 200}

Nothing here imports a cloud SDK: the remaining time comes from the context object the runtime
passes (AWS Lambda's ``context.get_remaining_time_in_millis()``), when there is one.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, ParamSpec, TypeVar, cast, overload

from ._log import rate_limited
from .api import aflush_tracking, flush_tracking, tracking_stats

__all__ = ["flush_after", "invocation"]

P = ParamSpec("P")
R = TypeVar("R")

#: Seconds kept back from the invocation's remaining time, for the handler's own return.
MARGIN = 0.5


def _budget(context: object, timeout: float | None, margin: float) -> float | None:
    """The flush's budget: `timeout` (None: ``TRACKING_FLUSH_TIMEOUT``), cut to what the
    invocation has left minus `margin` when `context` tells it."""
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if not callable(remaining):
        return timeout
    try:
        left = max(0.0, float(remaining()) / 1000.0 - margin)
    except Exception:  # a context that cannot say: the plain timeout
        return timeout
    return left if timeout is None else min(timeout, left)


def _report(delivered: bool) -> None:
    if delivered:
        return
    waiting = sum(stats.queued for stats in tracking_stats().values())
    rate_limited.log(
        logging.WARNING,
        "serverless:flush",
        "tracking: the invocation's flush ran out of time with %d events still waiting; they "
        "go out if the process runs again, and are lost if it does not",
        waiting,
    )


class invocation:  # lower case: used like a function, `with invocation(context):`
    """A block after which everything tracked in it is delivered: ``with invocation(context):``
    (or ``async with``). The flush waits at most `timeout` seconds (None:
    ``TRACKING_FLUSH_TIMEOUT``), and never past the invocation's remaining time less `margin`
    when `context` has ``get_remaining_time_in_millis()``. Never raises; what is still waiting
    when the time is up is logged."""

    def __init__(
        self, context: object = None, *, timeout: float | None = None, margin: float = MARGIN
    ) -> None:
        self.context = context
        self.timeout = timeout
        self.margin = margin
        #: After the block: whether everything was delivered or dropped in time.
        self.flushed: bool | None = None

    def __enter__(self) -> invocation:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.flushed = flush_tracking(_budget(self.context, self.timeout, self.margin))
        _report(self.flushed)

    async def __aenter__(self) -> invocation:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.flushed = await aflush_tracking(_budget(self.context, self.timeout, self.margin))
        _report(self.flushed)


def _context_of(args: tuple[Any, ...], kwargs: dict[str, Any]) -> object:
    """The runtime's context object: a ``context`` argument, else the second positional one
    (AWS Lambda's ``handler(event, context)``)."""
    if "context" in kwargs:
        return kwargs["context"]
    return args[1] if len(args) > 1 else None


@overload
def flush_after(handler: Callable[P, R], /) -> Callable[P, R]: ...


@overload
def flush_after(
    *, timeout: float | None = None, margin: float = MARGIN
) -> Callable[[Callable[P, R]], Callable[P, R]]: ...


def flush_after(
    handler: Callable[P, R] | None = None,
    /,
    *,
    timeout: float | None = None,
    margin: float = MARGIN,
) -> Callable[P, R] | Callable[[Callable[P, R]], Callable[P, R]]:
    """Wrap a serverless handler (plain or ``async def``) so that what it tracked is delivered
    before it returns, whether it returns or raises: ``@flush_after`` or
    ``@flush_after(timeout=2.0)``. The budget is as for `invocation`, with the context taken
    from the handler's ``context`` argument or its second positional one."""

    def wrap(function: Callable[P, R]) -> Callable[P, R]:
        if inspect.iscoroutinefunction(function):
            coroutine = cast(Callable[P, Awaitable[Any]], function)

            @functools.wraps(function)
            async def run_async(*args: P.args, **kwargs: P.kwargs) -> Any:
                async with invocation(_context_of(args, kwargs), timeout=timeout, margin=margin):
                    return await coroutine(*args, **kwargs)

            return cast(Callable[P, R], run_async)

        @functools.wraps(function)
        def run(*args: P.args, **kwargs: P.kwargs) -> R:
            with invocation(_context_of(args, kwargs), timeout=timeout, margin=margin):
                return function(*args, **kwargs)

        return run

    return wrap if handler is None else wrap(handler)
