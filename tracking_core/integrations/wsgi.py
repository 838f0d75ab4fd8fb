"""WSGI middleware: each request runs inside its own `tracking_context`.

```python
from tracking_core.integrations.wsgi import TrackingMiddleware

application = TrackingMiddleware(application, user_id=lambda environ: environ.get("REMOTE_USER"))
```

The hooks get the WSGI ``environ``. Each request runs in a copy of the calling thread's
context (`contextvars.copy_context`), the response body included: a streamed body's
`track()` calls carry the request's ids too, and nothing a request sets outlives it on the
server's thread. Imports no framework.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Collection, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from ._request import RequestContext, cookie_value

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = ["ISOLATED", "EnvironAccess", "TrackingMiddleware", "isolated"]


def _text(value: str) -> str:
    """A WSGI string (bytes as latin-1) as the UTF-8 text it carries."""
    try:
        return value.encode("latin-1").decode("utf-8", "replace")
    except UnicodeEncodeError:
        return value


class EnvironAccess:
    """How a context reads a WSGI environ."""

    def header(self, request: WSGIEnvironment, name: str) -> str | None:
        key = name.upper().replace("-", "_")
        value = request.get(key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else f"HTTP_{key}")
        return _text(value) if isinstance(value, str) else None

    def cookie(self, request: WSGIEnvironment, name: str) -> str | None:
        return cookie_value(self.header(request, "cookie"), name)

    def path(self, request: WSGIEnvironment) -> str:
        return _text(str(request.get("SCRIPT_NAME", "")) + str(request.get("PATH_INFO", "")))

    def method(self, request: WSGIEnvironment) -> str:
        return str(request.get("REQUEST_METHOD", ""))


class _InContext:
    """A response body whose iteration and ``close()`` run in the request's context."""

    def __init__(self, body: Iterable[bytes], context: contextvars.Context) -> None:
        self._body = body
        self._context = context

    def __iter__(self) -> Iterator[bytes]:
        iterator = self._context.run(iter, self._body)
        while True:
            try:
                chunk = self._context.run(next, iterator)
            except StopIteration:
                return
            yield chunk

    def close(self) -> None:
        close = getattr(self._body, "close", None)
        if close is not None:
            self._context.run(close)


#: True while a request runs in its own copy of the context (see `isolated`).
ISOLATED: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "tracking_core_wsgi_isolated", default=False
)


def isolated(
    app: WSGIApplication,
    environ: WSGIEnvironment,
    start_response: StartResponse,
    prepare: Callable[[], None] | None = None,
) -> Iterable[bytes]:
    """Run `app` for one request in a copy of the current context (`prepare`, then the app,
    then its body's iteration and ``close()``), with `ISOLATED` set in it."""
    context = contextvars.copy_context()
    body = context.run(_start, app, environ, start_response, prepare)
    wrapper: Any = environ.get("wsgi.file_wrapper")
    if isinstance(body, (list, tuple)) or (isinstance(wrapper, type) and isinstance(body, wrapper)):
        return body  # no code runs while it is sent (a file may go by sendfile)
    return _InContext(body, context)


def _start(
    app: WSGIApplication,
    environ: WSGIEnvironment,
    start_response: StartResponse,
    prepare: Callable[[], None] | None,
) -> Iterable[bytes]:
    ISOLATED.set(True)
    if prepare is not None:
        prepare()
    return app(environ, start_response)


class TrackingMiddleware:
    """Wraps a WSGI application: every `tracking_core.track()` made while a request is handled
    (its body included) gets its user id, anonymous id and the chosen request properties.

    Args:
        app: the WSGI application.
        user_id: ``(environ) -> str | None``; how to find the signed-in user. None (the
            default): no user id.
        anonymous_id: ``(environ) -> str | None``; when given, it alone gives the anonymous id.
        anonymous_id_cookie: otherwise, the cookie holding the anonymous id.
        anonymous_id_header: then, the request header holding it.
        request_properties: any of ``"path"``, ``"method"``, ``"user_agent"`` (none by
            default), added as ``request_path``, ``request_method``, ``request_user_agent``.

    A hook that raises, or gives something other than a str (an int becomes its text), is
    logged (rate-limited) and the request goes on without that id.
    """

    def __init__(
        self,
        app: WSGIApplication,
        *,
        user_id: Callable[[WSGIEnvironment], str | None] | None = None,
        anonymous_id: Callable[[WSGIEnvironment], str | None] | None = None,
        anonymous_id_cookie: str | None = None,
        anonymous_id_header: str | None = None,
        request_properties: Collection[str] = (),
    ) -> None:
        self.app = app
        self._context: RequestContext[WSGIEnvironment] = RequestContext(
            EnvironAccess(),
            user_id=user_id,
            anonymous_id=anonymous_id,
            anonymous_id_cookie=anonymous_id_cookie,
            anonymous_id_header=anonymous_id_header,
            request_properties=request_properties,
        )

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        def enter() -> None:
            # Entered in the request's own copy of the context, which is dropped with the
            # response: no exit is needed, and nothing set here reaches the next request.
            self._context.context(environ).__enter__()

        return isolated(self.app, environ, start_response, enter)
