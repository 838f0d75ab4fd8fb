"""What an attempt that got no answer means: `Failure` and `describe_failure`.

The deadline backend and the default transport raise the `_Described` errors below, whose
message already says what happened; `describe_failure` reads those, or the causes of any other
httpx transport's error (a refused connection, a certificate that does not verify, ...).
"""

from __future__ import annotations

import dataclasses
import socket
import ssl
from collections.abc import Iterator

import httpcore
import httpx

__all__ = ["CERTIFICATE_HINT", "Failure", "describe_failure"]

CERTIFICATE_HINT = (
    "if the destination uses a private certificate authority, point SSL_CERT_FILE "
    "(or SSL_CERT_DIR) at its certificate bundle"
)


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
    hint = CERTIFICATE_HINT


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
            return Failure(_certificate_message(cause, host), True, CERTIFICATE_HINT)
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
