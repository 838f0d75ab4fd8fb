"""Flask: the ``Tracking`` extension sets `tracking_context` from each request.

```python
from tracking_core.integrations.flask import Tracking

tracking = Tracking(app, user_id=lambda request: session.get("user_id"))
# or, with an application factory:
tracking = Tracking(user_id=...)
tracking.init_app(app)
```

The hooks get `flask.request` and run inside the request context (``session``, ``g`` and
extensions such as Flask-Login's ``current_user`` work), before the application's own
``before_request`` functions. Each request runs in its own copy of the thread's context (the
extension wraps ``app.wsgi_app``), so a streamed body carries the request's ids too, and nothing
reaches the next request served by the same thread.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Collection
from typing import Any

from flask import Flask, Request, g, request

from ..api import tracking_context
from ._request import RequestContext
from .wsgi import ISOLATED, isolated

__all__ = ["EXTENSION", "FlaskAccess", "Tracking"]

#: The key of the extension in ``app.extensions``.
EXTENSION = "tracking_core"
_PENDING = "_tracking_core_context"


class FlaskAccess:
    """How a context reads a `flask.Request`."""

    def header(self, request: Request, name: str) -> str | None:
        return request.headers.get(name)

    def cookie(self, request: Request, name: str) -> str | None:
        return request.cookies.get(name)

    def path(self, request: Request) -> str:
        return request.script_root + request.path

    def method(self, request: Request) -> str:
        return request.method


class _Isolated:
    """``app.wsgi_app``, each request in its own copy of the context."""

    def __init__(self, wsgi_app: Callable[..., Any]) -> None:
        self.wsgi_app = wsgi_app

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        return isolated(self.wsgi_app, environ, start_response)


class Tracking:
    """Sets `tracking_core.tracking_context` for each request of the Flask apps it is given.

    Args:
        app: the application (or call `init_app` later, once per application).
        user_id: ``(flask.request) -> str | None``; how to find the signed-in user. None (the
            default): no user id.
        anonymous_id: ``(flask.request) -> str | None``; when given, it alone gives the
            anonymous id.
        anonymous_id_cookie: otherwise, the cookie holding the anonymous id.
        anonymous_id_header: then, the request header holding it.
        request_properties: any of ``"path"``, ``"method"``, ``"user_agent"`` (none by
            default), added as ``request_path``, ``request_method``, ``request_user_agent``.

    A hook that raises, or gives something other than a str (an int becomes its text), is
    logged (rate-limited) and the request goes on without that id.
    """

    def __init__(
        self,
        app: Flask | None = None,
        *,
        user_id: Callable[[Request], str | None] | None = None,
        anonymous_id: Callable[[Request], str | None] | None = None,
        anonymous_id_cookie: str | None = None,
        anonymous_id_header: str | None = None,
        request_properties: Collection[str] = (),
    ) -> None:
        self._context: RequestContext[Request] = RequestContext(
            FlaskAccess(),
            user_id=user_id,
            anonymous_id=anonymous_id,
            anonymous_id_cookie=anonymous_id_cookie,
            anonymous_id_header=anonymous_id_header,
            request_properties=request_properties,
        )
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Install the extension on `app`: its ``wsgi_app`` wrapped, a ``before_request``
        function first in line and a ``teardown_request`` function."""
        if EXTENSION in app.extensions:
            raise RuntimeError("tracking_core's Tracking is already installed on this app")
        app.extensions[EXTENSION] = self
        app.wsgi_app = _Isolated(app.wsgi_app)  # type: ignore[method-assign]
        app.before_request_funcs.setdefault(None, []).insert(0, self._enter)
        app.teardown_request(self._exit)

    def _enter(self) -> None:
        context = self._context.context(request._get_current_object())  # type: ignore[attr-defined]
        context.__enter__()
        if not ISOLATED.get():
            # A request run without wsgi_app (a test's test_request_context() and
            # preprocess_request()): leave with the request instead.
            setattr(g, _PENDING, context)

    def _exit(self, error: BaseException | None) -> None:
        context: tracking_context | None = g.pop(_PENDING, None)
        if context is not None:
            # entered in another context: nothing of ours is set here
            with contextlib.suppress(ValueError):
                context.__exit__(None, None, None)
