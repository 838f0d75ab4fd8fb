"""ASGI middleware: each HTTP or WebSocket connection runs inside its own `tracking_context`.

```python
from tracking_core.integrations.asgi import TrackingMiddleware

app = TrackingMiddleware(app, user_id=user_id_of, anonymous_id_cookie="ajs_anonymous_id")
```

The hooks get the ASGI ``scope`` (a dict: ``headers``, ``path``, and whatever an
authentication middleware placed before this one added, such as ``scope["user"]``); they may be
``async def``. The context is a context variable set in the connection's task, so concurrent
requests never see each other's ids. Lifespan events pass through untouched. Imports no
framework.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, MutableMapping
from typing import Any, Generic, TypeVar

from ._request import RequestContext, cookie_value

__all__ = [
    "ASGIApp",
    "AsgiTracking",
    "Receive",
    "Scope",
    "ScopeAccess",
    "Send",
    "TrackingMiddleware",
]

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
R = TypeVar("R")


def _header(scope: Scope, name: str) -> str | None:
    wanted = name.lower().encode("latin-1")
    values = [value for key, value in scope.get("headers", ()) if key.lower() == wanted]
    if not values:
        return None
    # HTTP/2 may split one Cookie header in several; other repeated headers: the first.
    chosen = b"; ".join(values) if wanted == b"cookie" else values[0]
    return bytes(chosen).decode("latin-1")


class ScopeAccess:
    """How a context reads an ASGI scope (headers are latin-1, as the ASGI spec sends them)."""

    def header(self, request: Scope, name: str) -> str | None:
        return _header(request, name)

    def cookie(self, request: Scope, name: str) -> str | None:
        return cookie_value(_header(request, "cookie"), name)

    def path(self, request: Scope) -> str:
        return str(request.get("path", ""))

    def method(self, request: Scope) -> str:
        return str(request.get("method", "WEBSOCKET" if request["type"] == "websocket" else ""))


class AsgiTracking(Generic[R]):
    """The middleware, for hooks that get an `R` made from the scope (see `request_of`)."""

    def __init__(self, app: ASGIApp, context: RequestContext[R]) -> None:
        self.app = app
        self._context = context

    def request_of(self, scope: Scope) -> R:
        """What the hooks get for `scope`."""
        raise NotImplementedError

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        context = await self._context.acontext(self.request_of(scope))
        with context:
            await self.app(scope, receive, send)


class TrackingMiddleware(AsgiTracking[Scope]):
    """Wraps an ASGI application: every `tracking_core.track()` made while a request is handled
    gets its user id, anonymous id and the chosen request properties.

    Args:
        app: the ASGI application.
        user_id: ``(scope) -> str | None``, plain or async; how to find the signed-in user.
            None (the default): no user id.
        anonymous_id: ``(scope) -> str | None``, plain or async; when given, it alone gives
            the anonymous id.
        anonymous_id_cookie: otherwise, the cookie holding the anonymous id (e.g.
            ``"ajs_anonymous_id"``).
        anonymous_id_header: then, the request header holding it (e.g. ``"X-Anonymous-Id"``).
        request_properties: any of ``"path"``, ``"method"``, ``"user_agent"``, added to every
            event of the request as ``request_path``, ``request_method``,
            ``request_user_agent``. None by default (they may be personal data).

    A hook that raises, or gives something other than a str (an int becomes its text), is
    logged (rate-limited) and the request goes on without that id.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        user_id: Callable[[Scope], Any] | None = None,
        anonymous_id: Callable[[Scope], Any] | None = None,
        anonymous_id_cookie: str | None = None,
        anonymous_id_header: str | None = None,
        request_properties: Collection[str] = (),
    ) -> None:
        context = RequestContext(
            ScopeAccess(),
            user_id=user_id,
            anonymous_id=anonymous_id,
            anonymous_id_cookie=anonymous_id_cookie,
            anonymous_id_header=anonymous_id_header,
            request_properties=request_properties,
        )
        super().__init__(app, context)

    def request_of(self, scope: Scope) -> Scope:
        return scope
