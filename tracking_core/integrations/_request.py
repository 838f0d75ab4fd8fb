"""The one place a request becomes a `tracking_context`, for every web integration.

A framework's module says how to read its request (`RequestAccess`: a header, a cookie, the
path, the method) and hands the application's options to `RequestContext`, which calls the
hooks, applies the defaults (the anonymous id from a cookie, then a header) and the opt-in
request properties, and returns the `tracking_context` to enter around the request.

Nothing here may break a request: a hook that raises, returns something other than a string
or an id too long to be one is logged (rate-limited, with the exception's type, never its text)
and the request goes on without that id. Bodies are never read.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Collection, Mapping
from typing import Any, Generic, Protocol, TypeVar

from .._log import rate_limited
from ..api import tracking_context

__all__ = [
    "MAX_ID_LENGTH",
    "MAX_PROPERTY_LENGTH",
    "REQUEST_PROPERTIES",
    "RequestAccess",
    "RequestContext",
    "cookie_value",
]

R = TypeVar("R")
R_contra = TypeVar("R_contra", contravariant=True)

#: The request properties an application may opt in to: option name -> property name.
REQUEST_PROPERTIES: Mapping[str, str] = {
    "path": "request_path",
    "method": "request_method",
    "user_agent": "request_user_agent",
}
#: Longer ids (from a hook, a cookie or a header) are not used: no id is that long.
MAX_ID_LENGTH = 255
#: Longer property values (a user agent) are cut to this many characters.
MAX_PROPERTY_LENGTH = 512


class RequestAccess(Protocol[R_contra]):
    """How one framework's request gives what a context needs (never its body)."""

    def header(self, request: R_contra, name: str) -> str | None:
        """The value of header `name` (any case), or None."""

    def cookie(self, request: R_contra, name: str) -> str | None:
        """The value of cookie `name`, or None."""

    def path(self, request: R_contra) -> str:
        """The path, without the query string."""

    def method(self, request: R_contra) -> str:
        """The HTTP method (``GET``); for a WebSocket, ``WEBSOCKET``."""


def cookie_value(header: str | None, name: str) -> str | None:
    """The value of cookie `name` in a ``Cookie`` header (the first one of that name), with
    surrounding double quotes removed; None when absent."""
    if not header:
        return None
    for pair in header.split(";"):
        key, equals, value = pair.partition("=")
        if equals and key.strip() == name:
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1]
            return value
    return None


def _warn(key: str, message: str, *args: object) -> None:
    rate_limited.log(logging.WARNING, f"integration:{key}", message, *args)


def _usable_id(value: object, what: str) -> str | None:
    """`value` as an id: a non-empty str of at most `MAX_ID_LENGTH` characters (an int, such
    as a primary key, becomes its text); anything else is logged and gives None."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        _warn(
            f"{what}:type",
            "tracking: the %s gave a %s, not a str; the request goes on without it",
            what,
            type(value).__name__,
        )
        return None
    if len(value) > MAX_ID_LENGTH:
        _warn(
            f"{what}:length",
            "tracking: the %s gave an id of %d characters (more than %d); the request goes "
            "on without it",
            what,
            len(value),
            MAX_ID_LENGTH,
        )
        return None
    return str.__str__(value) or None


def _failed(what: str, exc: BaseException, hook: object = None) -> None:
    name = getattr(hook, "__qualname__", None)
    _warn(
        f"{what}:{type(exc).__name__}",
        "tracking: the %s%s raised %s; the request goes on without it",
        what,
        f" ({getattr(hook, '__module__', '?')}.{name})" if name else "",
        type(exc).__name__,
    )


class RequestContext(Generic[R]):
    """The application's options for one integration: request -> `tracking_context`.

    Args:
        access: how to read the framework's request.
        user_id: a hook ``(request) -> str | None``; None: no user id.
        anonymous_id: a hook ``(request) -> str | None``; when given, it decides alone.
            Otherwise the anonymous id is the `anonymous_id_cookie` cookie's value, else the
            `anonymous_id_header` header's.
        anonymous_id_cookie: the name of a cookie holding the anonymous id.
        anonymous_id_header: the name of a request header holding the anonymous id.
        request_properties: which of ``path``, ``method`` and ``user_agent`` to add to every
            event of the request (as ``request_path``, ``request_method``,
            ``request_user_agent``). None by default.
        offload: in `acontext`, how to call a hook that is not a coroutine function (Django
            runs them with ``sync_to_async``); by default it is called directly, and a result
            that can be awaited is awaited.

    Raises:
        TypeError: a hook is not callable.
        ValueError: an unknown request property.
    """

    def __init__(
        self,
        access: RequestAccess[R],
        *,
        user_id: Callable[[R], Any] | None = None,
        anonymous_id: Callable[[R], Any] | None = None,
        anonymous_id_cookie: str | None = None,
        anonymous_id_header: str | None = None,
        request_properties: Collection[str] = (),
        offload: Callable[[Callable[[R], Any]], Callable[[R], Awaitable[Any]]] | None = None,
    ) -> None:
        for what, hook in (("user_id", user_id), ("anonymous_id", anonymous_id)):
            if hook is not None and not callable(hook):
                raise TypeError(f"{what} must be a callable (request) -> str | None, not {hook!r}")
        if isinstance(request_properties, str):
            request_properties = [request_properties]
        unknown = sorted(set(request_properties) - set(REQUEST_PROPERTIES))
        if unknown:
            raise ValueError(
                f"unknown request properties {unknown!r}; choose among {sorted(REQUEST_PROPERTIES)}"
            )
        self._access = access
        self._user_id = user_id
        self._anonymous_id = anonymous_id
        self._cookie = anonymous_id_cookie
        self._header = anonymous_id_header
        self._properties = tuple(name for name in REQUEST_PROPERTIES if name in request_properties)
        self._offload = offload

    def context(self, request: R) -> tracking_context:
        """The context for `request`, its hooks called here (their results must not need
        awaiting: such a result is logged and not used). Never raises."""
        user = self._call(self._user_id, "user_id hook", request)
        if self._anonymous_id is not None:
            anonymous = self._call(self._anonymous_id, "anonymous_id hook", request)
        else:
            anonymous = self._default_anonymous_id(request)
        return self._make(request, user, anonymous)

    async def acontext(self, request: R) -> tracking_context:
        """`context` for async code: a hook may be a coroutine function (awaited here) or
        return an awaitable. Never raises."""
        user = await self._acall(self._user_id, "user_id hook", request)
        if self._anonymous_id is not None:
            anonymous = await self._acall(self._anonymous_id, "anonymous_id hook", request)
        else:
            anonymous = self._default_anonymous_id(request)
        return self._make(request, user, anonymous)

    # -- the steps ------------------------------------------------------------------------------

    def _call(self, hook: Callable[[R], Any] | None, what: str, request: R) -> str | None:
        if hook is None:
            return None
        try:
            value = hook(request)
        except Exception as exc:
            _failed(what, exc, hook)
            return None
        if inspect.isawaitable(value):
            if inspect.iscoroutine(value):
                value.close()  # never awaited: close it rather than leave a warning behind
            _warn(
                f"{what}:awaitable",
                "tracking: the %s returned an awaitable where the integration is synchronous; "
                "the request goes on without it",
                what,
            )
            return None
        return _usable_id(value, what)

    async def _acall(self, hook: Callable[[R], Any] | None, what: str, request: R) -> str | None:
        if hook is None:
            return None
        try:
            if self._offload is not None and not inspect.iscoroutinefunction(hook):
                value = await self._offload(hook)(request)
            else:
                value = hook(request)
                if inspect.isawaitable(value):
                    value = await value
        except Exception as exc:
            _failed(what, exc, hook)
            return None
        return _usable_id(value, what)

    def _default_anonymous_id(self, request: R) -> str | None:
        try:
            if self._cookie:
                value = self._access.cookie(request, self._cookie)
                if value:
                    return _usable_id(value, "anonymous id cookie")
            if self._header:
                return _usable_id(self._access.header(request, self._header), "anonymous id header")
        except Exception as exc:
            _failed("anonymous id lookup", exc)
        return None

    def _make(self, request: R, user: str | None, anonymous: str | None) -> tracking_context:
        properties: dict[str, str] = {}
        access = self._access
        for name in self._properties:
            try:
                if name == "path":
                    value: str | None = access.path(request)
                elif name == "method":
                    value = access.method(request)
                else:
                    value = access.header(request, "user-agent")
            except Exception as exc:
                _failed(f"request's {name}", exc)
                continue
            if value:
                properties[REQUEST_PROPERTIES[name]] = value[:MAX_PROPERTY_LENGTH]
        return tracking_context(user_id=user, anonymous_id=anonymous, properties=properties)
