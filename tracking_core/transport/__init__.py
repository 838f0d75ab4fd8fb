"""The network under an HTTP provider's sender: the default transport, and how answers are read.

`DefaultTransport` is an ``httpx`` transport (``handle_request(httpx.Request) ->
httpx.Response``), so anything that takes one, ``httpx.MockTransport`` included, can stand in for
it. It owns everything about the network, one concern per module:

- `default`: TLS verification always on, with the certificates of ``certifi`` or of
  ``SSL_CERT_FILE`` / ``SSL_CERT_DIR``; keep-alive pools (HTTP/1.1, ``TCP_NODELAY``), one for
  direct connections and one per proxy, each made on first use;
- `proxies`: the proxies of the environment, with httpx's rules (`ProxyRules`): ``HTTPS_PROXY``
  for ``https://`` URLs (a ``CONNECT`` tunnel), ``HTTP_PROXY`` for ``http://`` URLs
  (absolute-form requests), ``ALL_PROXY`` for both when those are unset, ``NO_PROXY`` for the
  hosts to reach directly; lower-case names win over upper-case ones. They are read when the
  transport is made (a lane's first request), not at import;
- `network`: one deadline per attempt: a request carrying the `DEADLINE` extension (a
  `time.monotonic` value) fails with a ``TimeoutException`` once it passes, whatever the server
  does. Every connect, TLS handshake, socket read and socket write of the attempt waits at most
  until then, so a server dribbling its answer a byte at a time cannot hold it longer;
- `failures`: failures that say what happened (`describe_failure`): name resolution, refused
  connections, TLS certificate verification, a proxy refusing a tunnel, the deadline;
- `answers`: `read_answer` reads an answer's body up to `MAX_ANSWER_BYTES` decoded bytes: gzip
  and deflate are decoded there, never past that cap, and an answer cut at the cap closes its
  connection.

This package imports ``httpx`` and ``httpcore``: it is imported by a lane's first request,
never by ``import tracking_core``.
"""

from .answers import MAX_ANSWER_BYTES, MAX_RAW_ANSWER_BYTES, read_answer
from .default import DefaultTransport
from .failures import Failure, describe_failure
from .network import CONNECT_TIMEOUT_MAX, DEADLINE, SOCKET_OPTIONS
from .proxies import ProxyRules

__all__ = [
    "CONNECT_TIMEOUT_MAX",
    "DEADLINE",
    "MAX_ANSWER_BYTES",
    "MAX_RAW_ANSWER_BYTES",
    "SOCKET_OPTIONS",
    "DefaultTransport",
    "Failure",
    "ProxyRules",
    "describe_failure",
    "read_answer",
]
