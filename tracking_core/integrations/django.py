"""Django: a middleware that sets `tracking_context` from each request, configured in settings.

In ``settings.py``, after Django's ``AuthenticationMiddleware``::

    MIDDLEWARE = [
        ...,
        "django.contrib.auth.middleware.AuthenticationMiddleware",
        "tracking_core.integrations.django.TrackingMiddleware",
        ...,
    ]

That alone gives every `tracking_core.track()` in a view the signed-in user's primary key as
its user id. The optional ``TRACKING`` setting says more::

    TRACKING = {
        "USER_ID": "myapp.tracking.user_id",  # or a callable; None: no user id
        "ANONYMOUS_ID": None,  # a hook, dotted path or callable
        "ANONYMOUS_ID_COOKIE": "ajs_anonymous_id",
        "ANONYMOUS_ID_HEADER": "X-Anonymous-Id",
        "REQUEST_PROPERTIES": ["path", "method", "user_agent"],
    }

The middleware works in both of Django's modes: under WSGI it is synchronous, under ASGI with
an async middleware chain it is asynchronous (the default user comes from ``request.auser()``,
and a plain hook runs through ``sync_to_async``, so it may use the ORM).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from typing import Any, TypeVar

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.http import FileResponse, HttpRequest, HttpResponseBase, StreamingHttpResponse
from django.utils.module_loading import import_string

from ..api import tracking_context
from ._request import RequestContext

__all__ = ["SETTING", "TrackingMiddleware", "auser_id_of", "user_id_of"]

#: The name of the optional settings dict.
SETTING = "TRACKING"
_KEYS = (
    "USER_ID",
    "ANONYMOUS_ID",
    "ANONYMOUS_ID_COOKIE",
    "ANONYMOUS_ID_HEADER",
    "REQUEST_PROPERTIES",
)
_DEFAULT = object()

R = TypeVar("R")


def user_id_of(request: HttpRequest) -> str | None:
    """The default ``USER_ID``: the primary key of ``request.user`` (as text) when it is
    authenticated; None without ``AuthenticationMiddleware`` (placed before this one)."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return None
    return str(user.pk)


async def auser_id_of(request: HttpRequest) -> str | None:
    """`user_id_of` for the async chain: through ``request.auser()`` (Django 5.0 and later),
    else `user_id_of` in ``sync_to_async``."""
    auser = getattr(request, "auser", None)
    if auser is None:
        return await sync_to_async(user_id_of)(request)
    user = await auser()
    return str(user.pk) if user is not None and user.is_authenticated else None


class DjangoAccess:
    """How a context reads a Django `HttpRequest`."""

    def header(self, request: HttpRequest, name: str) -> str | None:
        return request.headers.get(name)

    def cookie(self, request: HttpRequest, name: str) -> str | None:
        return request.COOKIES.get(name)

    def path(self, request: HttpRequest) -> str:
        return request.path

    def method(self, request: HttpRequest) -> str:
        return request.method or ""


def _hook(config: Mapping[str, Any], key: str) -> object:
    value: object = config.get(key, _DEFAULT)
    if value is _DEFAULT or value is None or callable(value):
        return value
    if isinstance(value, str):
        try:
            found: object = import_string(value)
        except ImportError as exc:
            raise ImproperlyConfigured(
                f"{SETTING}[{key!r}]: cannot import {value!r}: {exc}"
            ) from exc
        if callable(found):
            return found
    raise ImproperlyConfigured(f"{SETTING}[{key!r}] must be a callable or its dotted path")


def _options() -> tuple[object, dict[str, Any]]:
    """The ``USER_ID`` hook (or `_DEFAULT`) and the other `RequestContext` options."""
    config = getattr(settings, SETTING, None) or {}
    if not isinstance(config, Mapping):
        raise ImproperlyConfigured(f"{SETTING} must be a dict")
    unknown = sorted(set(config) - set(_KEYS))
    if unknown:
        raise ImproperlyConfigured(f"{SETTING}: unknown keys {unknown}; known: {list(_KEYS)}")
    anonymous = _hook(config, "ANONYMOUS_ID")
    options = {
        "anonymous_id": None if anonymous is _DEFAULT else anonymous,
        "anonymous_id_cookie": config.get("ANONYMOUS_ID_COOKIE"),
        "anonymous_id_header": config.get("ANONYMOUS_ID_HEADER"),
        "request_properties": config.get("REQUEST_PROPERTIES", ()),
    }
    return _hook(config, "USER_ID"), options


def _sync_stream(context: tracking_context, content: Iterable[Any]) -> Iterator[Any]:
    iterator = iter(content)
    while True:
        with context:
            try:
                chunk = next(iterator)
            except StopIteration:
                return
        yield chunk


async def _async_stream(
    context: tracking_context, content: AsyncIterator[Any]
) -> AsyncIterator[Any]:
    iterator = aiter(content)
    while True:
        with context:
            try:
                chunk = await anext(iterator)
            except StopAsyncIteration:
                return
        yield chunk


class TrackingMiddleware:
    """Sets `tracking_core.tracking_context` for each request: the user id (by default the
    authenticated ``request.user``'s primary key), the anonymous id and the request properties
    the ``TRACKING`` setting asks for. A streamed response's body is produced in it too.

    A hook that raises (or gives something other than a str or an int) is logged
    (rate-limited) and the request goes on without that id. A malformed ``TRACKING`` setting
    raises ``ImproperlyConfigured`` when Django loads the middleware.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self._async = iscoroutinefunction(get_response)
        user_id, options = _options()
        try:
            if self._async:
                markcoroutinefunction(self)
                self._context = RequestContext(
                    DjangoAccess(),
                    user_id=auser_id_of if user_id is _DEFAULT else user_id,  # type: ignore[arg-type]
                    offload=sync_to_async,
                    **options,
                )
            else:
                self._context = RequestContext(
                    DjangoAccess(),
                    user_id=user_id_of if user_id is _DEFAULT else user_id,  # type: ignore[arg-type]
                    **options,
                )
        except (TypeError, ValueError) as exc:
            raise ImproperlyConfigured(f"{SETTING}: {exc}") from exc

    def __call__(self, request: HttpRequest) -> Any:
        if self._async:
            return self.__acall__(request)
        context = self._context.context(request)
        with context:
            response = self.get_response(request)
        return _streamed_in(context, response)

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        context = await self._context.acontext(request)
        with context:
            response: HttpResponseBase = await self.get_response(request)
        return _streamed_in(context, response)


def _streamed_in(context: tracking_context, response: R) -> R:
    """`response`, its streamed body (if any, and not a file) produced inside `context`."""
    if isinstance(response, StreamingHttpResponse) and not isinstance(response, FileResponse):
        content: Any = response.streaming_content
        if response.is_async:
            response.streaming_content = _async_stream(context, content)
        else:
            response.streaming_content = _sync_stream(context, content)
    return response
