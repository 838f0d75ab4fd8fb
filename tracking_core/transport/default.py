"""`DefaultTransport`: the httpx transport every lane sends through unless given another."""

from __future__ import annotations

import os
import ssl
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import httpcore
import httpx

from .failures import _ConfigurationError
from .network import DEADLINE, SOCKET_OPTIONS, _Backend, start_attempt
from .proxies import ProxyRules, proxy_label, proxy_pool, proxy_refusal

__all__ = ["DefaultTransport"]

#: What `httpx.HTTPTransport` uses by default.
_POOL_OPTIONS: dict[str, Any] = {
    "max_connections": 100,
    "max_keepalive_connections": 20,
    "keepalive_expiry": 5.0,
}


def _ssl_context(environ: Mapping[str, str]) -> ssl.SSLContext:
    """A verifying context, trusting ``SSL_CERT_FILE`` or ``SSL_CERT_DIR`` when set (as httpx
    does), else certifi's bundle."""
    cafile = environ.get("SSL_CERT_FILE")
    if cafile:
        return ssl.create_default_context(cafile=cafile)
    capath = environ.get("SSL_CERT_DIR")
    if capath:
        return ssl.create_default_context(capath=capath)
    import certifi

    return ssl.create_default_context(cafile=certifi.where())


_EXCEPTIONS: tuple[tuple[type[Exception], type[httpx.TransportError]], ...] = (
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.TimeoutException, httpx.TimeoutException),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.ProxyError, httpx.ProxyError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.ProtocolError, httpx.ProtocolError),
)


def _as_httpx(exc: Exception) -> Exception:
    """The httpx exception for an httpcore one (`exc` itself when it is neither)."""
    for core, mapped in _EXCEPTIONS:
        if isinstance(exc, core):
            return mapped(str(exc))
    return exc


class _ResponseStream(httpx.SyncByteStream):
    def __init__(self, stream: Iterable[bytes]) -> None:
        self._stream = stream

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self._stream
        except Exception as exc:
            mapped = _as_httpx(exc)
            if mapped is exc:
                raise
            raise mapped from exc

    def close(self) -> None:
        close = getattr(self._stream, "close", None)
        if close is not None:
            close()


_Pool = httpcore.ConnectionPool


class DefaultTransport(httpx.BaseTransport):
    """The transport every `HttpProvider` sends through unless given another (see the module
    doc). One per provider and process; not shared between threads that send at once."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        """Read the certificates and proxy variables from `environ` (default ``os.environ``)."""
        env = os.environ if environ is None else environ
        self.socket_options = SOCKET_OPTIONS
        self.rules = ProxyRules.from_environ(env)
        self._proxying = bool(self.rules)
        self._problem: str | None = None
        try:
            self.ssl_context = _ssl_context(env)
        except (OSError, ValueError) as exc:
            # An unreadable SSL_CERT_FILE: every request fails, saying so, and nothing is sent
            # unverified.
            variable = "SSL_CERT_FILE" if env.get("SSL_CERT_FILE") else "SSL_CERT_DIR"
            self._problem = f"{variable} cannot be used: {exc}"
            self.ssl_context = ssl.create_default_context()
        self._direct: _Pool | None = None
        self._proxied: dict[str, _Pool | _ConfigurationError] = {}
        self._routes: dict[tuple[str, str, int | None], str | None] = {}
        self._secrets: tuple[str, ...] = ()
        self._options: dict[str, Any] = {**_POOL_OPTIONS, "socket_options": self.socket_options}

    def __repr__(self) -> str:
        proxies = sorted({proxy_label(url) for url, _ in self.rules.proxies.values()})
        return f"<DefaultTransport proxies={proxies!r}>"

    def secrets(self) -> tuple[str, ...]:
        """The proxy credentials in use and the ``Proxy-Authorization`` values made from them,
        to mask in log lines."""
        return self._secrets

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Send `request` and return its answer with the body still to read (see
        `read_answer`). Raises an ``httpx.TransportError`` when no answer came."""
        start_attempt(request.extensions.get(DEADLINE))
        url = request.url
        try:
            pool = self._pool(url)
            response = pool.handle_request(
                httpcore.Request(
                    method=request.method,
                    url=httpcore.URL(
                        scheme=url.raw_scheme,
                        host=url.raw_host,
                        port=url.port,
                        target=url.raw_path,
                    ),
                    headers=request.headers.raw,
                    content=request.stream,
                    extensions=request.extensions,
                )
            )
        except httpcore.ProxyError as exc:
            proxy = self._routes.get((url.scheme, url.host, url.port)) or ""
            failure = proxy_refusal(exc, proxy, url)
            raise httpx.ProxyError(str(failure)) from failure
        except Exception as exc:
            mapped = _as_httpx(exc)
            if mapped is exc:
                raise
            raise mapped from exc
        assert isinstance(response.stream, Iterable)
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_ResponseStream(response.stream),
            extensions=response.extensions,
        )

    def close(self) -> None:
        """Close every connection (pools reopen on the next request)."""
        pools = [self._direct, *self._proxied.values()]
        self._direct, self._proxied = None, {}
        for pool in pools:
            if isinstance(pool, httpcore.ConnectionPool):
                pool.close()

    # -- pools ----------------------------------------------------------------------------

    def _pool(self, url: httpx.URL) -> _Pool:
        if self._problem is not None:
            raise _ConfigurationError(self._problem)
        if not self._proxying:
            return self._direct or self._make_direct()
        key = (url.scheme, url.host, url.port)
        try:
            proxy = self._routes[key]
        except KeyError:
            proxy = self._routes[key] = self.rules.route(url.scheme, url.host, url.port)
        if proxy is None:
            return self._direct or self._make_direct()
        pool = self._proxied.get(proxy)
        if pool is None:
            pool = self._proxied[proxy] = self._make_proxy(proxy)
        if isinstance(pool, _ConfigurationError):
            raise pool
        return pool

    def _make_direct(self) -> _Pool:
        self._direct = httpcore.ConnectionPool(
            ssl_context=self.ssl_context, network_backend=_Backend(), **self._options
        )
        return self._direct

    def _make_proxy(self, proxy: str) -> _Pool | _ConfigurationError:
        variable = self.rules.variable(proxy)
        pool, secrets = proxy_pool(proxy, variable, self.ssl_context, self._options)
        if secrets:
            self._secrets = tuple({*self._secrets, *secrets})
        return pool
