"""The default HTTP transport of `tracking_core.http.HttpProvider`, and how answers are read.

`DefaultTransport` is an ``httpx`` transport (``handle_request(httpx.Request) ->
httpx.Response``), so anything that takes one, ``httpx.MockTransport`` included, can stand in for
it. It owns everything about the network:

- TLS verification always on, with the certificates of ``certifi`` or of ``SSL_CERT_FILE`` /
  ``SSL_CERT_DIR``;
- keep-alive pools (HTTP/1.1, ``TCP_NODELAY``), one for direct connections and one per proxy,
  each made on first use;
- the proxies of the environment, with httpx's rules (`ProxyRules`): ``HTTPS_PROXY`` for
  ``https://`` URLs (a ``CONNECT`` tunnel), ``HTTP_PROXY`` for ``http://`` URLs (absolute-form
  requests), ``ALL_PROXY`` for both when those are unset, ``NO_PROXY`` for the hosts to reach
  directly; lower-case names win over upper-case ones. They are read when the transport is made
  (a provider's first request), not at import;
- one deadline per attempt: a request carrying the `DEADLINE` extension (a `time.monotonic`
  value) fails with a ``TimeoutException`` once it passes, whatever the server does. Every
  connect, TLS handshake, socket read and socket write of the attempt waits at most until then,
  so a server dribbling its answer a byte at a time cannot hold it longer;
- failures that say what happened (`describe_failure`): name resolution, refused connections,
  TLS certificate verification, a proxy refusing a tunnel, the deadline.

`read_answer` reads an answer's body up to `MAX_ANSWER_BYTES` decoded bytes: gzip and deflate are
decoded here, never past that cap, and an answer cut at the cap closes its connection.

This module imports ``httpx`` and ``httpcore``: it is imported by a provider's first request,
never by ``import tracking_core``.
"""

from __future__ import annotations

import base64
import dataclasses
import ipaddress
import os
import socket
import ssl
import threading
import time
import urllib.parse
import zlib
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import httpcore
import httpx

__all__ = [
    "CONNECT_TIMEOUT_MAX",
    "DEADLINE",
    "MAX_ANSWER_BYTES",
    "DefaultTransport",
    "Failure",
    "ProxyRules",
    "describe_failure",
    "read_answer",
]

#: The most of an answer's body that is read, in decoded bytes. A provider only needs the start
#: of an answer (a status, an error message, the ids of refused events); the rest is not read,
#: not decompressed, and its connection is closed. The status of a cut answer still counts.
MAX_ANSWER_BYTES = 64 * 1024

#: A compressed answer is also cut after this many bytes as received (its decoded size may stay
#: under the cap while the server sends on and on).
MAX_RAW_ANSWER_BYTES = 4 * MAX_ANSWER_BYTES

#: The longest wait for a TCP connection, in seconds (within the attempt's deadline).
CONNECT_TIMEOUT_MAX = 5.0

#: The request extension holding the attempt's deadline, a `time.monotonic` value.
DEADLINE = "tracking_core.deadline"

#: Set on every connection. A request goes out as headers then body; without ``TCP_NODELAY``
#: Nagle's algorithm can hold the body until the server's delayed ACK (~40 ms each time).
SOCKET_OPTIONS: tuple[tuple[int, int, int], ...] = ((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),)

#: What `httpx.HTTPTransport` uses by default.
_MAX_CONNECTIONS = 100
_MAX_KEEPALIVE = 20
_KEEPALIVE_EXPIRY = 5.0

#: Large writes are cut into pieces, each bounded by what is left of the deadline.
_WRITE_PIECE = 64 * 1024

_DEFAULT_PORTS = {"http": 80, "https": 443, "socks5": 1080, "socks5h": 1080}

_CERTIFICATE_HINT = (
    "if the destination uses a private certificate authority, point SSL_CERT_FILE "
    "(or SSL_CERT_DIR) at its certificate bundle"
)


# -- failures -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Failure:
    """Why an attempt got no answer.

    Attributes:
        message: what happened, for ``last_error`` and the log (never a credential).
        permanent: True when sending again cannot help (a certificate that does not verify,
            proxy credentials refused, a proxy variable that cannot be used).
        hint: for a permanent failure, how to fix it.
    """

    message: str
    permanent: bool = False
    hint: str = ""


class _Described(Exception):
    """A failure whose message already says what happened (raised by this module)."""

    permanent = False
    hint = ""


class _ConnectError(httpcore.ConnectError, _Described):
    pass


class _CertificateError(httpcore.ConnectError, _Described):
    permanent = True
    hint = _CERTIFICATE_HINT


class _ConfigurationError(httpcore.ConnectError, _Described):
    permanent = True


class _ProxyError(httpcore.ProxyError, _Described):
    pass


class _ProxyAuthError(httpcore.ProxyError, _Described):
    permanent = True
    hint = "put the proxy's credentials in its URL: http://user:password@host:port"


class _ConnectTimeout(httpcore.ConnectTimeout, _Described):
    pass


class _ReadTimeout(httpcore.ReadTimeout, _Described):
    pass


class _WriteTimeout(httpcore.WriteTimeout, _Described):
    pass


def _causes(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def describe_failure(exc: BaseException, where: str) -> Failure:
    """What an ``httpx.TransportError`` from any transport means; `where` is the destination's
    ``host:port``, for failures that do not name it themselves."""
    for cause in _causes(exc):
        if isinstance(cause, _Described):
            return Failure(str(cause), cause.permanent, cause.hint)
    host = where.rpartition(":")[0] or where
    for cause in _causes(exc):
        if isinstance(cause, ssl.SSLCertVerificationError):
            return Failure(_certificate_message(cause, host), True, _CERTIFICATE_HINT)
        if isinstance(cause, socket.gaierror):
            return Failure(_resolution_message(cause, host))
        if isinstance(cause, ConnectionRefusedError):
            return Failure(f"connection refused by {where}")
        if isinstance(cause, ConnectionResetError):
            return Failure(f"connection reset by {where}")
    if isinstance(exc, httpx.TimeoutException):
        return Failure(f"{type(exc).__name__}: no answer from {where} in time")
    detail = str(exc)[:200]
    return Failure(f"{type(exc).__name__} from {where}" + (f": {detail}" if detail else ""))


def _certificate_message(exc: ssl.SSLCertVerificationError, host: str) -> str:
    reason = exc.verify_message or exc.reason or str(exc)
    return f"TLS certificate verification failed for {host}: {reason}"


def _resolution_message(exc: socket.gaierror, host: str) -> str:
    detail = f" ({exc.strerror})" if exc.strerror else ""
    return f"name resolution failed for {host}{detail}"


# -- the attempt's deadline ---------------------------------------------------------------


class _Attempt(threading.local):
    """The deadline of the attempt this thread is sending (set by `DefaultTransport`)."""

    deadline: float | None = None
    budget: float = 0.0


_attempt = _Attempt()


def _bounded(
    timeout: float | None, doing: str, where: str, timeout_class: type[_Described]
) -> tuple[float | None, bool]:
    """`timeout` cut to what is left of the deadline, and whether the deadline is what binds.
    Raises `timeout_class` when the deadline has passed."""
    deadline = _attempt.deadline
    if deadline is None:
        return timeout, False
    left = deadline - time.monotonic()
    if left <= 0:
        raise timeout_class(_deadline_message(doing, where))
    if timeout is None or left <= timeout:
        return left, True
    return timeout, False


def _deadline_message(doing: str, where: str) -> str:
    budget = _attempt.budget  # measured when the request reached the transport: round it
    shown = f"{round(budget, 1):g}" if budget >= 0.1 else f"{budget:.2g}"
    return f"the attempt's {shown}s deadline passed while {doing} {where}"


class _Stream(httpcore.NetworkStream):
    """A network stream whose every operation ends by the attempt's deadline."""

    def __init__(
        self, inner: httpcore.NetworkStream, where: str, proxy_host: str | None = None
    ) -> None:
        self._inner = inner
        self._where = where
        self._proxy_host = proxy_host  # set on a connection to a proxy

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        wait, binding = _bounded(timeout, "reading the answer from", self._where, _ReadTimeout)
        try:
            return self._inner.read(max_bytes, wait)
        except httpcore.ReadTimeout as exc:
            if binding:
                raise _ReadTimeout(
                    _deadline_message("reading the answer from", self._where)
                ) from exc
            raise _ReadTimeout(f"no data from {self._where} for {wait:.3g}s") from exc

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        for start in range(0, len(buffer), _WRITE_PIECE):
            piece = buffer[start : start + _WRITE_PIECE]
            wait, binding = _bounded(timeout, "sending to", self._where, _WriteTimeout)
            try:
                self._inner.write(piece, wait)
            except httpcore.WriteTimeout as exc:
                if binding:
                    raise _WriteTimeout(_deadline_message("sending to", self._where)) from exc
                raise _WriteTimeout(f"{self._where} took no data for {wait:.3g}s") from exc

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        host = server_hostname or self._where
        # Through a proxy's tunnel, TLS is with the destination, not with the proxy (unless
        # this is the TLS of an https:// proxy itself).
        to_proxy = self._proxy_host is not None and host == self._proxy_host
        tunnel = self._proxy_host is not None and not to_proxy
        where = f"{host} (through {self._where})" if tunnel else self._where
        doing = "in the TLS handshake with"
        wait, binding = _bounded(timeout, doing, where, _ConnectTimeout)
        try:
            inner = self._inner.start_tls(ssl_context, server_hostname, wait)
        except httpcore.ConnectTimeout as exc:
            if binding:
                raise _ConnectTimeout(_deadline_message(doing, where)) from exc
            raise _ConnectTimeout(f"no TLS handshake with {where} within {wait:.3g}s") from exc
        except httpcore.ConnectError as exc:
            for cause in _causes(exc):
                if isinstance(cause, ssl.SSLCertVerificationError):
                    raise _CertificateError(_certificate_message(cause, host)) from exc
                if isinstance(cause, ssl.SSLError):
                    reason = cause.reason or str(cause)
                    raise _ConnectError(f"TLS handshake with {where} failed: {reason}") from exc
            raise _ConnectError(f"TLS handshake with {where} failed: {exc}") from exc
        return _Stream(inner, where, self._proxy_host if to_proxy else None)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _Backend(httpcore.NetworkBackend):
    """httpcore's blocking backend, with the attempt's deadline on every operation and
    connection failures that say what they are. `proxy`: the ``host:port`` of the proxy this
    backend's pool connects to, or None for direct connections."""

    def __init__(self, proxy: str | None = None) -> None:
        self._inner = httpcore.SyncBackend()
        self._proxy = proxy
        self._proxy_host = proxy.rpartition(":")[0].strip("[]") if proxy else None

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        where = f"the proxy {address}" if self._proxy else address
        wait, binding = _bounded(timeout, "connecting to", where, _ConnectTimeout)
        try:
            stream = self._inner.connect_tcp(host, port, wait, local_address, socket_options)
        except httpcore.ConnectTimeout as exc:
            if binding:
                raise _ConnectTimeout(_deadline_message("connecting to", where)) from exc
            raise _ConnectTimeout(f"no connection to {where} within {wait:.3g}s") from exc
        except httpcore.ConnectError as exc:
            raise _ConnectError(self._connect_message(exc, host, where)) from exc
        return _Stream(stream, where, self._proxy_host)

    def _connect_message(self, exc: BaseException, host: str, where: str) -> str:
        for cause in _causes(exc):
            if isinstance(cause, socket.gaierror):
                target = f"the proxy host {host}" if self._proxy else host
                return _resolution_message(cause, target)
            if isinstance(cause, ConnectionRefusedError):
                return f"connection refused by {where}"
            if isinstance(cause, OSError) and cause.strerror:
                return f"cannot connect to {where}: {cause.strerror}"
        return f"cannot connect to {where}: {exc}"

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        raise _ConnectError("Unix sockets are not used")

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


# -- proxies from the environment --------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Bypass:
    """One ``NO_PROXY`` entry."""

    scheme: str = ""  # "" for any
    host: str = ""  # "" for any host; lower case
    subdomains_only: bool = False
    exact: bool = False
    network: ipaddress.IPv4Network | ipaddress.IPv6Network | None = None
    port: int | None = None

    @classmethod
    def parse(cls, entry: str) -> _Bypass | None:
        scheme = ""
        if "://" in entry:
            scheme, _, entry = entry.partition("://")
            scheme = "" if scheme.lower() == "all" else scheme.lower()
            entry = entry.split("/", 1)[0]
        port: int | None = None
        try:
            return cls(scheme, network=ipaddress.ip_network(entry.strip("[]"), strict=False))
        except ValueError:
            pass
        head, colon, tail = entry.rpartition(":")
        if colon and tail.isdigit() and (head.startswith("[") or ":" not in head):
            entry, port = head, int(tail)
            try:
                network = ipaddress.ip_network(entry.strip("[]"), strict=False)
                return cls(scheme, network=network, port=port)
            except ValueError:
                pass
        host = entry.lower().strip()
        if host in ("", "*"):
            return cls(scheme, port=port)
        if host.startswith("*"):
            host = host[1:]
        if host.startswith("."):
            return cls(scheme, host[1:], subdomains_only=True, port=port)
        return cls(scheme, host, exact=host == "localhost", port=port)

    def matches(self, scheme: str, host: str, address: Any, port: int) -> bool:
        if self.scheme and self.scheme != scheme:
            return False
        if self.port is not None and self.port != port:
            return False
        if self.network is not None:
            return address is not None and address in self.network
        if not self.host:
            return True
        if host == self.host:
            return not self.subdomains_only
        return not self.exact and host.endswith("." + self.host)


@dataclasses.dataclass(frozen=True)
class ProxyRules:
    """Which proxy, if any, a URL goes through: the rules an ``httpx.Client`` applies
    (``trust_env``), read from the environment.

    ``HTTPS_PROXY`` serves ``https://`` URLs and ``HTTP_PROXY`` ``http://`` URLs; ``ALL_PROXY``
    serves both when the scheme's own variable is unset. Lower-case names win over upper-case
    ones, and ``HTTP_PROXY`` is ignored when ``REQUEST_METHOD`` is set (a CGI request could set
    it through a ``Proxy:`` header). A proxy without a scheme is ``http://``. ``NO_PROXY`` is a
    comma list of hosts reached directly: ``*`` (every host), ``example.com`` (it and its
    subdomains), ``.example.com`` (its subdomains only), ``localhost``, IP addresses, CIDR
    networks (``10.0.0.0/8``), each optionally with ``:port``, or a URL pattern
    (``https://example.com``).

    Attributes:
        proxies: for ``"http"`` and ``"https"``, the proxy URL and the variable it came from.
        bypass: the parsed ``NO_PROXY`` entries.
        bypass_all: ``NO_PROXY`` has ``*``.
    """

    proxies: Mapping[str, tuple[str, str]] = dataclasses.field(default_factory=dict)
    bypass: tuple[_Bypass, ...] = ()
    bypass_all: bool = False

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> ProxyRules:
        """The rules the variables in `environ` make (as ``urllib.request``'s
        ``getproxies_environment`` reads them)."""
        found: dict[str, tuple[str, str]] = {}
        for name, value in environ.items():
            key = name.lower()
            if value and key.endswith("_proxy"):
                found[key[:-6]] = (value, name)
        if "REQUEST_METHOD" in environ:
            found.pop("http", None)
        for name, value in environ.items():
            if name.endswith("_proxy"):  # lower-case names are read again, and win
                key = name.lower()[:-6]
                if value:
                    found[key] = (value, name)
                else:
                    found.pop(key, None)
        proxies: dict[str, tuple[str, str]] = {}
        for scheme in ("http", "https"):
            entry = found.get(scheme) or found.get("all")
            if entry is not None:
                value, variable = entry
                proxies[scheme] = (value if "://" in value else f"http://{value}", variable)
        entries = [entry.strip() for entry in found.get("no", ("", ""))[0].split(",")]
        bypass = tuple(b for b in (_Bypass.parse(e) for e in entries if e) if b is not None)
        return cls(proxies, bypass, "*" in entries)

    def __bool__(self) -> bool:
        return bool(self.proxies) and not self.bypass_all

    def route(self, scheme: str, host: str, port: int | None) -> str | None:
        """The proxy URL for a request to ``scheme://host:port``, or None to go direct."""
        entry = self.proxies.get(scheme)
        if entry is None or self.bypass_all:
            return None
        host = host.lower().strip("[]")
        effective = port if port is not None else _DEFAULT_PORTS.get(scheme, 0)
        try:
            address: Any = ipaddress.ip_address(host)
        except ValueError:
            address = None
        for rule in self.bypass:
            if rule.matches(scheme, host, address, effective):
                return None
        return entry[0]

    def proxy_for(self, url: str | httpx.URL) -> str | None:
        """The proxy URL for a request to `url`, or None to go direct."""
        parts = urllib.parse.urlsplit(str(url))
        return self.route(parts.scheme.lower(), parts.hostname or "", parts.port)

    def variable(self, proxy_url: str) -> str:
        """The variable a proxy URL came from (for messages)."""
        for url, variable in self.proxies.values():
            if url == proxy_url:
                return variable
        return "the proxy variable"


# -- the transport ---------------------------------------------------------------------------


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

    def __repr__(self) -> str:
        proxies = sorted({_proxy_label(url) for url, _ in self.rules.proxies.values()})
        return f"<DefaultTransport proxies={proxies!r}>"

    def secrets(self) -> tuple[str, ...]:
        """The proxy credentials in use and the ``Proxy-Authorization`` values made from them,
        to mask in log lines."""
        return self._secrets

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Send `request` and return its answer with the body still to read (see
        `read_answer`). Raises an ``httpx.TransportError`` when no answer came."""
        deadline = request.extensions.get(DEADLINE)
        state = _attempt
        state.deadline = deadline
        if deadline is not None:
            state.budget = deadline - time.monotonic()
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
            failure = self._proxy_failure(exc, url)
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
            ssl_context=self.ssl_context,
            max_connections=_MAX_CONNECTIONS,
            max_keepalive_connections=_MAX_KEEPALIVE,
            keepalive_expiry=_KEEPALIVE_EXPIRY,
            network_backend=_Backend(),
            socket_options=self.socket_options,
        )
        return self._direct

    def _make_proxy(self, proxy: str) -> _Pool | _ConfigurationError:
        variable = self.rules.variable(proxy)
        try:
            parts = urllib.parse.urlsplit(proxy)
            scheme = parts.scheme.lower()
            host = parts.hostname or ""
            port = parts.port or _DEFAULT_PORTS.get(scheme, 0)
        except ValueError:
            return _ConfigurationError(f"{variable} is not a valid proxy URL")
        if not host or not port:
            return _ConfigurationError(f"{variable} is not a valid proxy URL (host:port)")
        label = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        auth: tuple[str, str] | None = None
        if parts.username is not None or parts.password is not None:
            user = urllib.parse.unquote(parts.username or "")
            password = urllib.parse.unquote(parts.password or "")
            auth = (user, password)
            token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
            raw = (parts.username or "", parts.password or "")
            self._secrets = tuple({*self._secrets, user, password, token, *raw} - {""})
        proxy_url = httpcore.URL(scheme=scheme, host=host, port=port, target="/")
        backend = _Backend(proxy=label)
        if scheme in ("http", "https"):
            return httpcore.HTTPProxy(
                proxy_url=proxy_url,
                proxy_auth=auth,
                ssl_context=self.ssl_context,
                proxy_ssl_context=self.ssl_context if scheme == "https" else None,
                max_connections=_MAX_CONNECTIONS,
                max_keepalive_connections=_MAX_KEEPALIVE,
                keepalive_expiry=_KEEPALIVE_EXPIRY,
                network_backend=backend,
                socket_options=self.socket_options,
            )
        if scheme in ("socks5", "socks5h"):
            import importlib.util

            if importlib.util.find_spec("socksio") is None:
                return _ConfigurationError(
                    f"{variable} names a SOCKS proxy ({label}), which needs the socksio "
                    "package: pip install 'httpx[socks]'"
                )
            return httpcore.SOCKSProxy(
                proxy_url=proxy_url,
                proxy_auth=auth,
                ssl_context=self.ssl_context,
                max_connections=_MAX_CONNECTIONS,
                max_keepalive_connections=_MAX_KEEPALIVE,
                keepalive_expiry=_KEEPALIVE_EXPIRY,
                network_backend=backend,
            )
        return _ConfigurationError(
            f"{variable} names a {scheme}:// proxy; http://, https:// and socks5:// are supported"
        )

    def _proxy_failure(self, exc: httpcore.ProxyError, url: httpx.URL) -> _Described:
        """A proxy's refusal to open a tunnel (its answer to ``CONNECT``), described."""
        if isinstance(exc, _Described):
            return exc
        proxy = self._routes.get((url.scheme, url.host, url.port)) or ""
        port = url.port or _DEFAULT_PORTS.get(url.scheme, 0)
        message = (
            f"the proxy {_proxy_label(proxy)} refused to open a tunnel to {url.host}:{port}: {exc}"
        )
        if str(exc).startswith("407"):
            failure: _Described = _ProxyAuthError(message)
        else:
            failure = _ProxyError(message)
        failure.__cause__ = exc
        return failure


def _proxy_label(proxy_url: str) -> str:
    """``host:port`` of a proxy URL, without its credentials."""
    try:
        parts = urllib.parse.urlsplit(proxy_url)
        host = parts.hostname or "?"
        port = parts.port or _DEFAULT_PORTS.get(parts.scheme.lower(), 0)
    except ValueError:
        return "?"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# -- reading an answer -----------------------------------------------------------------------


class _Inflate:
    """gzip / zlib / raw-deflate decoding with a bound on each call's output."""

    def __init__(self, *, raw_fallback: bool) -> None:
        self._decoder = zlib.decompressobj(zlib.MAX_WBITS | 32)  # gzip or zlib header
        self._fallback = raw_fallback
        self._started = False

    @property
    def eof(self) -> bool:
        return self._decoder.eof

    def decompress(self, data: bytes, max_length: int) -> bytes:
        try:
            out = self._decoder.decompress(data, max_length)
        except zlib.error:
            if not self._fallback or self._started:
                raise
            # "deflate" sent without its zlib header, as some servers do.
            self._decoder = zlib.decompressobj(-zlib.MAX_WBITS)
            self._fallback = False
            out = self._decoder.decompress(data, max_length)
        self._started = True
        return out


def _decoder(content_encoding: str) -> _Inflate | None:
    encoding = content_encoding.strip().lower()
    if encoding in ("gzip", "x-gzip"):
        return _Inflate(raw_fallback=False)
    if encoding == "deflate":
        return _Inflate(raw_fallback=True)
    return None  # identity; or an encoding not decoded here (br, zstd, several): kept as sent


def read_answer(response: httpx.Response, limit: int = MAX_ANSWER_BYTES) -> tuple[bytes, bool]:
    """At most `limit` bytes of `response`'s body, decoded (gzip, deflate), and whether the
    answer was longer (cut).

    The body is streamed: nothing past `limit` decoded bytes is kept or decompressed, and a
    compressed body is also cut after `MAX_RAW_ANSWER_BYTES` received. The caller closes the
    response; one that was cut is then closed rather than kept alive. A body that does not
    decode keeps what decoded before the error.
    """
    encoding = response.headers.get("content-encoding")
    decoder = _decoder(encoding) if encoding else None
    parts: list[bytes] = []
    size = 0
    received = 0
    cut = False
    stream = response.stream
    if not isinstance(stream, httpx.SyncByteStream):
        raise TypeError("read_answer needs a response from a synchronous transport")
    for chunk in stream:
        if decoder is None:
            parts.append(chunk)
            size += len(chunk)
            if size > limit:
                cut = True
                break
            continue
        received += len(chunk)
        if received > MAX_RAW_ANSWER_BYTES:
            cut = True
            break
        if decoder.eof:
            continue  # trailing bytes after the compressed stream: read, not kept
        try:
            data = decoder.decompress(chunk, limit + 1 - size)
        except zlib.error:
            break  # not what it says it is: keep what decoded, close the connection
        parts.append(data)
        size += len(data)
        if size > limit:
            cut = True
            break
    body = b"".join(parts) if len(parts) != 1 else parts[0]
    if cut:
        body = body[:limit]
    return body, cut
