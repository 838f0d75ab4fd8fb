"""HTTP providers: a wire mapping the provider declares, and a sender the core runs for it.

A provider subclasses `HttpProvider` and writes only its wire mapping (`wire`):

- `HttpProvider.encode`: one event or identify -> a `WireItem` (a JSON-ready payload and the
  *route* it goes to; one request never mixes routes), or `SkipItem` when the vendor cannot take
  it;
- `HttpProvider.build_request`: a route and a list of encoded items -> one `HttpRequest`
  (URL, headers, body). It is called again for every attempt, so per-attempt values
  (a ``sent_at``, a signature timestamp) are fresh while the items stay byte-identical;
- `HttpProvider.read_response` (optional): the vendor's answer -> an `Outcome`;
- the limits: `max_events`, `max_request_bytes`, `max_item_bytes` (or `HttpProvider.limits`
  per route), and `HttpProvider.secrets` (by default its settings' secrets).

The engine gives each such provider's lane a `Sender` (`sender`), which does the rest:
batching by count, time and encoded size; one transport per lane
(`tracking_core.transport.DefaultTransport`: keep-alive, TLS verification on, the environment's
proxies, one deadline per attempt, answers read up to `tracking_core.transport.MAX_ANSWER_BYTES`;
`exchange`); retries with exponential backoff and full jitter on connection errors, timeouts,
408, 429 and 5xx, honouring ``Retry-After``; bounded attempts and time per batch; 413 splits;
partial rejections; a circuit that probes a dead destination slowly; 410 stops the provider;
every drop counted under its reason; the provider's secrets masked, in every form they are sent
in, in every log line and ``last_error`` (`masking`).

``httpx`` is imported the first time a request is sent, so ``import tracking_core`` stays cheap.
"""

from . import wire
from .exchange import GZIP_MIN_BYTES
from .sender import Sender
from .wire import *  # noqa: F403 - the mapping's names, as listed in wire.__all__

__all__ = ["GZIP_MIN_BYTES", "Sender"]
__all__ += wire.__all__
