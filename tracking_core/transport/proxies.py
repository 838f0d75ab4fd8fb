"""Proxies from the environment: which proxy a URL goes through, and its connection pool."""

from __future__ import annotations

import base64
import dataclasses
import ipaddress
import ssl
import urllib.parse
from collections.abc import Mapping
from typing import Any

import httpcore
import httpx

from .failures import _ConfigurationError, _Described, _ProxyAuthError, _ProxyError
from .network import _Backend

__all__ = ["ProxyRules", "proxy_label", "proxy_pool", "proxy_refusal"]

_DEFAULT_PORTS = {"http": 80, "https": 443, "socks5": 1080, "socks5h": 1080}


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


def proxy_label(proxy_url: str) -> str:
    """``host:port`` of a proxy URL, without its credentials."""
    try:
        parts = urllib.parse.urlsplit(proxy_url)
        host = parts.hostname or "?"
        port = parts.port or _DEFAULT_PORTS.get(parts.scheme.lower(), 0)
    except ValueError:
        return "?"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def proxy_pool(
    proxy: str,
    variable: str,
    ssl_context: ssl.SSLContext,
    options: Mapping[str, Any],
) -> tuple[httpcore.ConnectionPool | _ConfigurationError, tuple[str, ...]]:
    """The connection pool for requests through `proxy` (a URL read from `variable`), made
    with the pool `options`, and the credentials it sends (to mask); a `_ConfigurationError`
    saying what is wrong when the URL cannot be used."""
    try:
        parts = urllib.parse.urlsplit(proxy)
        scheme = parts.scheme.lower()
        host = parts.hostname or ""
        port = parts.port or _DEFAULT_PORTS.get(scheme, 0)
    except ValueError:
        return _ConfigurationError(f"{variable} is not a valid proxy URL"), ()
    if not host or not port:
        return _ConfigurationError(f"{variable} is not a valid proxy URL (host:port)"), ()
    label = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    auth: tuple[str, str] | None = None
    secrets: tuple[str, ...] = ()
    if parts.username is not None or parts.password is not None:
        user = urllib.parse.unquote(parts.username or "")
        password = urllib.parse.unquote(parts.password or "")
        auth = (user, password)
        token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        raw = (parts.username or "", parts.password or "")
        secrets = tuple({user, password, token, *raw} - {""})
    proxy_url = httpcore.URL(scheme=scheme, host=host, port=port, target="/")
    backend = _Backend(proxy=label)
    if scheme in ("http", "https"):
        return httpcore.HTTPProxy(
            proxy_url=proxy_url,
            proxy_auth=auth,
            ssl_context=ssl_context,
            proxy_ssl_context=ssl_context if scheme == "https" else None,
            network_backend=backend,
            **options,
        ), secrets
    if scheme in ("socks5", "socks5h"):
        import importlib.util

        if importlib.util.find_spec("socksio") is None:
            return _ConfigurationError(
                f"{variable} names a SOCKS proxy ({label}), which needs the socksio "
                "package: pip install 'httpx[socks]'"
            ), ()
        socks = {key: value for key, value in options.items() if key != "socket_options"}
        return httpcore.SOCKSProxy(
            proxy_url=proxy_url,
            proxy_auth=auth,
            ssl_context=ssl_context,
            network_backend=backend,
            **socks,
        ), secrets
    return _ConfigurationError(
        f"{variable} names a {scheme}:// proxy; http://, https:// and socks5:// are supported"
    ), ()


def proxy_refusal(exc: httpcore.ProxyError, proxy: str, url: httpx.URL) -> _Described:
    """A proxy's refusal to open a tunnel to `url` (its answer to ``CONNECT``), described."""
    if isinstance(exc, _Described):
        return exc
    port = url.port or _DEFAULT_PORTS.get(url.scheme, 0)
    message = f"the proxy {proxy_label(proxy)} refused to open a tunnel to {url.host}:{port}: {exc}"
    if str(exc).startswith("407"):
        failure: _Described = _ProxyAuthError(message)
    else:
        failure = _ProxyError(message)
    failure.__cause__ = exc
    return failure
