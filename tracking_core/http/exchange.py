"""One attempt on the wire: an `HttpRequest` sent through an httpx transport, and its answer.

`Exchange` owns a lane's transport: the one it was given, or the default one
(`tracking_core.transport.DefaultTransport`: keep-alive, TLS verification on, the environment's
proxies, one deadline per attempt), built on the first request and again in a forked child.
``httpx`` and the transport module are imported then, under the fork guard, so that
``import tracking_core`` stays cheap.
"""

from __future__ import annotations

import base64
import logging
import os
import time
import types
import urllib.parse
import zlib
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .._log import logger, rate_limited
from .._version import __version__
from ..engine.turn import Pacer
from ..process import import_guard
from .masking import SecretMasks, warn
from .wire import HttpProvider, HttpRequest, HttpResponse, Outcome

if TYPE_CHECKING:
    import httpx

    from ..engine import DeliveryControl

__all__ = ["GZIP_MIN_BYTES", "Exchange"]

#: Bodies at least this large are gzipped when the request allows it.
GZIP_MIN_BYTES = 1024

#: A body is compressed in pieces of this size, with a chance to nap between them.
_GZIP_PIECE = 64 * 1024

#: Request headers whose values are credentials: masked in every form once sent.
_CREDENTIAL_HEADERS = frozenset({"authorization", "proxy-authorization"})

# A lane's first request imports the HTTP stack and builds its transport (SSL context, certifi)
# on a worker thread. A fork in the middle of that would leave the child with half-imported
# modules (or a held import lock), so forks wait for it (`ImportGuard`: one per process, its
# fork hooks safe whenever they are registered).
_STACK_LOCK = import_guard()

#: `tracking_core.transport`, once imported (it imports httpx and httpcore): kept here so that
#: a request pays no import statement.
_stack: types.ModuleType | None = None


def _import_stack() -> types.ModuleType:
    """`tracking_core.transport` (the caller holds `_STACK_LOCK`)."""
    global _stack
    if _stack is None:
        import encodings.idna  # noqa: F401 - else loaded by the first connection

        from .. import transport

        _stack = transport
    return _stack


class Exchange:
    """A lane's way to its destination: its transport and one attempt at a time.

    Only the lane's worker thread sends, so no lock is needed. The transport is used without an
    ``httpx.Client``: no redirect is followed, no cookie kept, no auth flow needed, and that
    layer costs about a third of each request's CPU time.
    """

    def __init__(
        self,
        provider: HttpProvider,
        masks: SecretMasks,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.provider = provider
        self.name: str = provider.name
        self.masks = masks
        self._given = transport is not None
        self._transport = transport
        self._pid = os.getpid()
        self._agent = f"tracking-core/{__version__} ({self.name})"

    @property
    def transport(self) -> httpx.BaseTransport | None:
        """The transport in use: the given one, or the default one once built."""
        return self._transport

    def secrets(self) -> Sequence[str]:
        """The transport's own secrets (proxy credentials), to mask."""
        extra = getattr(self._transport, "secrets", None)
        return extra() if callable(extra) else ()

    def _http(self) -> httpx.BaseTransport:
        transport = self._transport
        pid = os.getpid()
        if transport is None or _stack is None or (pid != self._pid and not self._given):
            with _STACK_LOCK:
                stack = _import_stack()
                if transport is None or (pid != self._pid and not self._given):
                    # After a fork the parent's connections are not ours: start afresh. The
                    # default transport reads the certificate and proxy variables now.
                    transport = self._transport = stack.DefaultTransport()
                self._pid = pid
        return transport

    def close(self) -> None:
        """Close the connections. A default transport is made anew on the next request; a
        given one is kept (closed pools reopen)."""
        transport = self._transport
        if transport is None or (not self._given and self._pid != os.getpid()):
            self._transport = None
            return
        if not self._given:
            self._transport = None
        transport.close()

    def _prepare(
        self, request: HttpRequest, url: httpx.URL
    ) -> tuple[httpx.URL, dict[str, str], bytes]:
        """The URL, headers and body that go on the wire; what is derived from credentials is
        remembered, to be masked."""
        headers = {
            "Content-Type": "application/json",
            "User-Agent": self._agent,
            **request.headers,
        }
        masks = self.masks
        for name, value in request.headers.items():
            if name.lower() in _CREDENTIAL_HEADERS and value not in masks.derived:
                masks.remember(value, value.partition(" ")[2])
        if url.userinfo:
            # Credentials in the URL become Basic auth, as an httpx.Client would do, unless
            # the provider set its own Authorization header; they never go on the wire as-is.
            # Whatever is sent is masked from now on, the Basic token included.
            masks.remember(url.username, url.password)
            if not any(name.lower() == "authorization" for name in headers):
                token = f"{url.username}:{url.password}".encode()
                basic = base64.b64encode(token).decode("ascii")
                masks.remember(basic)
                headers["Authorization"] = "Basic " + basic
            url = url.copy_with(username=None, password=None)
        body = request.body
        if request.gzip and len(body) >= GZIP_MIN_BYTES:
            body = _gzip(body)
            headers["Content-Encoding"] = "gzip"
        return url, headers, body

    def attempt(
        self,
        request: HttpRequest,
        route: str,
        items: Sequence[bytes],
        timeout: float,
        attempt: int,
        control: DeliveryControl,
    ) -> Outcome:
        """Send `request` once, within `timeout` seconds in all; what its answer (or the lack
        of one) means, as the mapping reads it. Counts the request on `control`."""
        transport = self._http()  # first: it imports httpx under the fork lock
        import httpx

        stack = _stack
        assert stack is not None  # imported by _http()
        url, headers, body = self._prepare(request, httpx.URL(request.url))
        started = time.monotonic()  # the transport's deadline is on this clock
        status: int | None = None
        try:
            # One deadline for the whole attempt (connect, TLS, sending, the answer's headers
            # and body), on top of the per-operation timeouts.
            connect = min(timeout, stack.CONNECT_TIMEOUT_MAX)
            limits = {"connect": connect, "read": timeout, "write": timeout, "pool": timeout}
            response = transport.handle_request(
                httpx.Request(
                    "POST",
                    url,
                    content=body,
                    headers=headers,
                    extensions={"timeout": limits, stack.DEADLINE: started + timeout},
                )
            )
            try:
                content, truncated = stack.read_answer(response, stack.MAX_ANSWER_BYTES)
            finally:
                response.close()
            status = response.status_code
            headers_in = {k.lower(): v for k, v in response.headers.items()}
            answer = HttpResponse(status, headers_in, content, len(items), items, truncated)
            if truncated:
                control.answer_truncated()
                warn(
                    self.provider,
                    "answer_too_long",
                    "%s: an answer (HTTP %d) was longer than %d bytes; only its start was read",
                    self.name,
                    status,
                    stack.MAX_ANSWER_BYTES,
                )
            outcome = self.provider.read_response(route, answer)
        except httpx.TransportError as exc:
            outcome = self._no_answer(exc, url, stack)
        delivered = outcome.kind == "delivered" and not outcome.rejected
        control.batch_sent(status, None if delivered else self.masks(outcome.reason))
        if control.settings.debug:
            parts = urllib.parse.urlsplit(request.url)
            logger.info(
                "tracking: %s sent %d items to %s -> %s in %.1f ms (attempt %d)",
                self.name,
                len(items),
                self.masks(f"{parts.netloc.rpartition('@')[2]}{parts.path}"),
                status if status is not None else self.masks(outcome.reason),
                (time.monotonic() - started) * 1000,
                attempt,
            )
        return outcome

    def _no_answer(
        self, exc: httpx.TransportError, url: httpx.URL, stack: types.ModuleType
    ) -> Outcome:
        port = url.port or (443 if url.scheme == "https" else 80)
        failure = stack.describe_failure(exc, f"{url.host}:{port}")
        if not failure.permanent:
            return Outcome("retry", failure.message)
        # Sending again cannot help (a certificate, proxy credentials): drop this batch now,
        # say how to fix it; later batches try again.
        rate_limited.log(
            logging.ERROR,
            f"{self.name}:transport",
            "tracking: %s: %s; the batch is dropped, not retried%s",
            self.name,
            self.masks(failure.message),
            f" ({failure.hint})" if failure.hint else "",
        )
        return Outcome("reject", failure.message)


def _gzip(body: bytes) -> bytes:
    """`body` in gzip (level 5), compressed piece by piece. zlib lets go of the GIL while it
    works, but not of the CPU: a batch of a megabyte is several milliseconds of it, and an
    application thread woken meanwhile on the same CPU waits. Between the pieces the library's
    turn naps (engine/turn.py) as it does between encoded items."""
    compressor = zlib.compressobj(5, zlib.DEFLATED, 31)  # 31: the gzip header and trailer
    pace = Pacer()
    view = memoryview(body)
    parts = []
    for start in range(0, len(body), _GZIP_PIECE):
        parts.append(compressor.compress(view[start : start + _GZIP_PIECE]))
        pace()
    parts.append(compressor.flush())
    return b"".join(parts)
