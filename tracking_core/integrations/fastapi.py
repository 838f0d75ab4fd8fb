"""FastAPI and Starlette: a dependency, or the ASGI middleware, that sets `tracking_context`.

For every route of an application (the middleware also covers what runs outside routes, such
as other middleware and background tasks)::

    from tracking_core.integrations.fastapi import TrackingMiddleware

    app.add_middleware(TrackingMiddleware, user_id=user_id_of, anonymous_id_cookie="anon")

Or as a dependency, of the application, a router or one route::

    from tracking_core.integrations.fastapi import tracking_dependency

    app = FastAPI(dependencies=[Depends(tracking_dependency(user_id=user_id_of))])

Either way the hooks get a Starlette ``HTTPConnection`` (the base of ``Request`` and
``WebSocket``: ``headers``, ``cookies``, ``url``, ``state``...) and may be ``async def``. Both
async and sync (thread-pool) endpoints see the context. Imports Starlette, not FastAPI.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Collection
from typing import Any

from starlette.requests import HTTPConnection

from ._request import RequestContext
from .asgi import ASGIApp, AsgiTracking, Scope

__all__ = ["ConnectionAccess", "TrackingMiddleware", "tracking_dependency"]

#: A hook: ``(connection) -> str | None``, plain or ``async def``.
Hook = Callable[[HTTPConnection], Any]


class ConnectionAccess:
    """How a context reads a Starlette `HTTPConnection`."""

    def header(self, request: HTTPConnection, name: str) -> str | None:
        return request.headers.get(name)

    def cookie(self, request: HTTPConnection, name: str) -> str | None:
        return request.cookies.get(name)

    def path(self, request: HTTPConnection) -> str:
        return request.url.path

    def method(self, request: HTTPConnection) -> str:
        return str(request.scope.get("method", "WEBSOCKET"))


def _context(
    user_id: Hook | None,
    anonymous_id: Hook | None,
    anonymous_id_cookie: str | None,
    anonymous_id_header: str | None,
    request_properties: Collection[str],
) -> RequestContext[HTTPConnection]:
    return RequestContext(
        ConnectionAccess(),
        user_id=user_id,
        anonymous_id=anonymous_id,
        anonymous_id_cookie=anonymous_id_cookie,
        anonymous_id_header=anonymous_id_header,
        request_properties=request_properties,
    )


class TrackingMiddleware(AsgiTracking[HTTPConnection]):
    """`tracking_core.integrations.asgi.TrackingMiddleware` whose hooks get an
    `HTTPConnection`; for ``app.add_middleware(TrackingMiddleware, ...)``.

    Args:
        app: the ASGI application (``add_middleware`` passes it).
        user_id: ``(connection) -> str | None``, plain or async. None: no user id.
        anonymous_id: ``(connection) -> str | None``; when given, it alone gives the
            anonymous id.
        anonymous_id_cookie: otherwise, the cookie holding the anonymous id.
        anonymous_id_header: then, the request header holding it.
        request_properties: any of ``"path"``, ``"method"``, ``"user_agent"`` (none by
            default), added as ``request_path``, ``request_method``, ``request_user_agent``.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        user_id: Hook | None = None,
        anonymous_id: Hook | None = None,
        anonymous_id_cookie: str | None = None,
        anonymous_id_header: str | None = None,
        request_properties: Collection[str] = (),
    ) -> None:
        context = _context(
            user_id, anonymous_id, anonymous_id_cookie, anonymous_id_header, request_properties
        )
        super().__init__(app, context)

    def request_of(self, scope: Scope) -> HTTPConnection:
        return HTTPConnection(scope)


def tracking_dependency(
    *,
    user_id: Hook | None = None,
    anonymous_id: Hook | None = None,
    anonymous_id_cookie: str | None = None,
    anonymous_id_header: str | None = None,
    request_properties: Collection[str] = (),
) -> Callable[[HTTPConnection], AsyncIterator[None]]:
    """A FastAPI dependency (``Depends(tracking_dependency(...))``) that sets the context for
    the rest of the request: the endpoint and the dependencies resolved after it. The
    arguments are those of `TrackingMiddleware`.

    A hook that raises, or gives something other than a str (an int becomes its text), is
    logged (rate-limited) and the request goes on without that id.
    """
    context_for = _context(
        user_id, anonymous_id, anonymous_id_cookie, anonymous_id_header, request_properties
    )

    async def set_tracking_context(connection: HTTPConnection) -> AsyncIterator[None]:
        context = await context_for.acontext(connection)
        context.__enter__()
        try:
            yield
        finally:
            # left in another context than it was entered in: not set here
            with contextlib.suppress(ValueError):
                context.__exit__(None, None, None)

    return set_tracking_context
