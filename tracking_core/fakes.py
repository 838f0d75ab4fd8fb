"""The base of strict vendor fakes: loopback stand-ins of an analytics vendor's HTTP API.

A provider package tests itself against a fake of its vendor served by a
`tracking_core.receivers.LoopbackReceiver`. `VendorFake` holds what every such fake needs, so a
fake's own module holds only its vendor's rules::

    class AcmeFake(VendorFake):
        id_key = "id"  # an event's id, its dedupe key (event_ids())
        user_key = "user"  # the user of an identify (user_of())
        identify_when = ("type", "identify")  # which accepted items are identifies

        def handle(self, request: ReceivedRequest) -> Reply:
            if request.path != "/v1/events":
                raise Refused(404, f"no route for {request.path}")
            body = self.read_json(request)  # strict JSON, size cap, gzip
            if body.get("key") != "acme-test-key":
                raise Refused(401, "invalid key")
            self.record(body, body["events"])  # -> events / identifies / duplicates
            return Reply(200, {"ok": True})

The base records every request and its answer, plays scripted failures (`fail_next`), turns a
`Refused` raised by the rules into the vendor-shaped answer (`refusal`) and a `Rejection`, and
is thread-safe: the receiver calls it from one thread per connection, and each call runs under
one lock. `FakeDestination` is what a provider package's ``destination()`` returns: a fake that
expects fixed test credentials and the variables that enable the provider against it.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import http
import json
import threading
import zlib
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping
from typing import Any, ClassVar

from .receivers import LoopbackReceiver, ReceivedRequest, Reply

__all__ = ["FakeDestination", "Refused", "Rejection", "RequestReader", "VendorFake"]

_GZIP_MAGIC = b"\x1f\x8b"


@dataclasses.dataclass(frozen=True)
class Rejection:
    """A request (or part of one) the fake refused by its vendor rules: the HTTP status it
    answered and the message it gave."""

    status: int
    message: str


class Refused(Exception):
    """Raised by a fake's vendor rules to refuse a request.

    The fake records ``Rejection(status, message)`` and answers ``refusal(status, message)``,
    or `reply` when given (a vendor answer that carries more than a message).
    """

    def __init__(self, status: int, message: str, reply: Reply | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.reply = reply


@dataclasses.dataclass(frozen=True)
class _Script:
    reply: Reply
    route: str | None
    ingest: bool


def _refuse_constant(token: str) -> Any:
    raise ValueError(f"non-standard JSON token {token}")


def _phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return f"HTTP {status}"


class RequestReader:
    """Strict reading of requests, as a vendor's API does it: the media type, the route, and a
    body with a size cap, the accepted ``Content-Encoding`` values (gzip inflated, at most
    `max_body_bytes` + 1 bytes of it), UTF-8 and strict JSON. Each refusal of a body is a
    `Refused` worded by `body_errors`. `VendorFake` is one."""

    #: The largest body accepted, after decompression (`too_large_status` beyond it).
    max_body_bytes: int = 10_000_000
    too_large_status: int = 413
    #: The ``Content-Encoding`` values accepted ("" is none); ``gzip*`` ones are inflated.
    encodings: ClassVar[frozenset[str]] = frozenset({"", "identity", "gzip"})
    #: Inflate a body starting with gzip's magic bytes even without ``Content-Encoding``.
    sniff_gzip: ClassVar[bool] = False
    #: How `read_body` and `parse_json` word their refusals ({encoding}, {size}, {limit} and
    #: {error} are filled in); a fake gives its vendor's wording.
    body_errors: ClassVar[Mapping[str, str]] = {
        "encoding": "unsupported Content-Encoding {encoding!r}",
        "gzip": "invalid gzip data",
        "too_large": "body of {size} bytes exceeds {limit}",
        "utf8": "the body is not UTF-8",
        "json": "invalid JSON: {error}",
    }

    @staticmethod
    def media_type(request: ReceivedRequest) -> str:
        """The request's ``Content-Type`` without parameters, in lower case."""
        return request.headers.get("content-type", "").split(";")[0].strip().lower()

    @staticmethod
    def route_of(request: ReceivedRequest) -> str:
        """The last segment of the request's path (``"track"`` for ``/proxy/track/``)."""
        return request.path.rstrip("/").rpartition("/")[2]

    def read_body(self, request: ReceivedRequest) -> bytes:
        """The body, inflated when gzipped (at most `max_body_bytes` + 1 bytes are inflated);
        `Refused` for an encoding not in `encodings`, bad gzip data or a body too large."""
        encoding = request.headers.get("content-encoding", "").strip().lower()
        raw = request.raw_body
        if encoding not in self.encodings:
            raise Refused(400, self.body_errors["encoding"].format(encoding=encoding))
        body = raw
        if encoding.startswith("gzip") or (
            self.sniff_gzip and not encoding and raw.startswith(_GZIP_MAGIC)
        ):
            inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
            try:
                body = inflater.decompress(raw, self.max_body_bytes + 1)
            except zlib.error:
                raise Refused(400, self.body_errors["gzip"]) from None
            if not inflater.eof and len(body) <= self.max_body_bytes:
                raise Refused(400, self.body_errors["gzip"])
        if len(body) > self.max_body_bytes:
            message = self.body_errors["too_large"].format(
                size=len(body), limit=self.max_body_bytes
            )
            raise Refused(self.too_large_status, message)
        return body

    def parse_json(self, data: bytes | str) -> Any:
        """`data` as strict JSON (UTF-8; NaN and Infinity refused), or `Refused` (400)."""
        if isinstance(data, bytes):
            try:
                data = data.decode("utf-8")
            except UnicodeDecodeError:
                raise Refused(400, self.body_errors["utf8"]) from None
        try:
            return json.loads(data, parse_constant=_refuse_constant)
        except ValueError as exc:
            raise Refused(400, self.body_errors["json"].format(error=exc)) from None

    def read_json(self, request: ReceivedRequest) -> Any:
        """The body of `request` as strict JSON: `read_body`, then `parse_json`."""
        return self.parse_json(self.read_body(request))


class VendorFake(RequestReader):
    """A strict vendor fake: the responder of a `LoopbackReceiver` (call it with a request).

    A subclass implements `handle` (the vendor rules: validate, `record`, answer), names the
    fields below, and may override `refusal`, `event_id`, `user_of`, `properties_of`,
    `is_identify`, `dedupe_key` and the class settings (those of `RequestReader` too). It may
    be a dataclass (``eq=False, repr=False``) whose fields are its settings: `__post_init__`
    then sets the fake up (a subclass's own calls ``super().__post_init__()`` first).

    Attributes (appended in arrival order; read them after ``tracking_core.flush_tracking``):
        requests: every request, scripted or not; `replies` holds the answer to each.
        events: accepted events; identifies: accepted identify calls / profile updates.
        batches: the parsed bodies of accepted requests.
        duplicates: accepted items dropped because their `dedupe_key` was accepted before.
        rejections: what the vendor rules refused (not the scripted failures).
    """

    #: The fields of an accepted item read by `event_id`, `user_of` and `properties_of`.
    id_key: ClassVar[str] = "id"
    user_key: ClassVar[str] = "user_id"
    properties_key: ClassVar[str] = "properties"
    #: ``(field, value)``: an accepted item whose `field` is `value` is an identify.
    identify_when: ClassVar[tuple[str, str] | None] = None
    #: The message of an error scripted by status alone (``fail_next(503)``), by status.
    status_messages: ClassVar[Mapping[int, str]] = {}
    #: False for a destination the provider does not reach over HTTP (a file): the fake is not
    #: its server (HTTP faults cannot be played on it, and its environment ignores the URL it
    #: is given) and it reads back what arrived whenever its records are read.
    served: ClassVar[bool] = True

    def __init__(self) -> None:
        self.requests: list[ReceivedRequest] = []
        self.replies: list[Reply] = []
        self.events: list[dict[str, Any]] = []
        self.identifies: list[dict[str, Any]] = []
        self.batches: list[Any] = []
        self.duplicates: list[dict[str, Any]] = []
        self.rejections: list[Rejection] = []
        self._seen: set[Hashable] = set()
        self._script: collections.deque[_Script] = collections.deque()
        self._lock = threading.RLock()

    def __post_init__(self) -> None:
        """Where a fake declared as a dataclass (its settings as fields) starts."""
        VendorFake.__init__(self)

    def __repr__(self) -> str:
        counts = f"events={len(self.events)} identifies={len(self.identifies)}"
        return f"<{type(self).__name__} {counts} rejections={len(self.rejections)}>"

    # -- the vendor's rules (a subclass overrides these) ---------------------------------------

    def handle(self, request: ReceivedRequest) -> Reply:
        """Apply the vendor's rules to `request`: raise `Refused`, or `record` what it accepts
        and return the vendor's success answer. Runs under the fake's lock."""
        raise NotImplementedError

    def refusal(self, status: int, message: str) -> Reply:
        """The vendor's error answer for `status` and `message` (default: JSON ``error``)."""
        return Reply(status, {"error": message})

    def event_id(self, event: Mapping[str, Any]) -> str:
        """The vendor's id of an accepted event, its dedupe key (default: its `id_key`)."""
        return str(event.get(self.id_key))

    def user_of(self, identify: Mapping[str, Any]) -> str:
        """The user id of an accepted identify (default: its `user_key`)."""
        return str(identify.get(self.user_key))

    def properties_of(self, event: Mapping[str, Any]) -> Mapping[str, Any]:
        """The properties of an accepted event (default: its `properties_key` object)."""
        properties = event.get(self.properties_key)
        return properties if isinstance(properties, Mapping) else {}

    def is_identify(self, item: Mapping[str, Any]) -> bool:
        """Whether an accepted item goes to `identifies` rather than `events` (`identify_when`)."""
        rule = self.identify_when
        return rule is not None and item.get(rule[0]) == rule[1]

    def dedupe_key(self, item: Mapping[str, Any]) -> Hashable | None:
        """The key the vendor deduplicates `item` on; None (the default): no deduplication."""
        return None

    # -- the responder ---------------------------------------------------------------------------

    def __call__(self, request: ReceivedRequest) -> Reply:
        """Answer `request`: a scripted reply if one is due, else the vendor rules' answer."""
        with self._lock:
            script = self._take(request)
            if script is None or script.ingest:
                reply = self._apply_rules(request)
            if script is not None:
                reply = script.reply
            self.requests.append(request)
            self.replies.append(reply)
            return reply

    def _apply_rules(self, request: ReceivedRequest) -> Reply:
        try:
            return self.handle(request)
        except Refused as refused:
            self.rejections.append(Rejection(refused.status, refused.message))
            if refused.reply is not None:
                return refused.reply
            return self.refusal(refused.status, refused.message)

    def _take(self, request: ReceivedRequest) -> _Script | None:
        route = self.route_of(request)
        for index, script in enumerate(self._script):
            if script.route is None or script.route == route:
                del self._script[index]
                return script
        return None

    # -- scripting ---------------------------------------------------------------------------

    def fail_next(
        self, *replies: Reply | int, times: int = 1, route: str | None = None, ingest: bool = False
    ) -> None:
        """Answer the next requests with `replies`, in order, the sequence `times` over (after
        the replies already scripted).

        A reply is a `Reply` (any status, ``Reply(action="hang")``, ``Reply(action="reset")``)
        or a status code, which becomes the vendor's error answer (`error`). With `route`, only
        requests to that route (`route_of`) take them. A scripted request is recorded in
        `requests` and not looked at; with `ingest`, the vendor rules handle it first (it is
        validated and, when valid, recorded) and the scripted reply replaces their answer: a
        failure after the work was done, which the client must not be able to tell.
        """
        if not replies:
            raise TypeError("fail_next() needs at least one reply")
        for reply in replies:
            if isinstance(reply, int) and (isinstance(reply, bool) or not 100 <= reply <= 599):
                raise ValueError(f"{reply!r} is not an HTTP status (the count is times=...)")
        scripts = [
            _Script(self.error(reply) if isinstance(reply, int) else reply, route, ingest)
            for reply in replies
        ]
        with self._lock:
            self._script.extend(scripts * times)

    def error(
        self, status: int, message: str | None = None, *, retry_after: str | None = None
    ) -> Reply:
        """The vendor's error answer for `status` (`refusal`), with `message` or the vendor's
        usual text for it, and a ``Retry-After`` header when `retry_after` is given."""
        text = message if message is not None else self.status_messages.get(status)
        reply = self.refusal(status, text if text is not None else _phrase(status))
        if retry_after is not None:
            reply = dataclasses.replace(
                reply, headers={**reply.headers, "Retry-After": retry_after}
            )
        return reply

    # -- recording and reading ---------------------------------------------------------------

    def record(self, batch: Any, items: Iterable[dict[str, Any]]) -> None:
        """Keep an accepted request (called by `handle`): `batch`, its parsed body, goes to
        `batches`; each item to `identifies` or `events` (`is_identify`), or to `duplicates`
        when its `dedupe_key` was accepted before."""
        with self._lock:
            self.batches.append(batch)
            for item in items:
                key = self.dedupe_key(item)
                if key is not None:
                    if key in self._seen:
                        self.duplicates.append(item)
                        continue
                    self._seen.add(key)
                (self.identifies if self.is_identify(item) else self.events).append(item)

    def event_ids(self) -> list[str]:
        """The `event_id` of every accepted event, in arrival order (repeats included)."""
        with self._lock:
            return [self.event_id(event) for event in self.events]

    def statuses(self) -> list[int | None]:
        """The status answered to each request, in order (None when it hung or was reset)."""
        with self._lock:
            return [reply.status if reply.action == "answer" else None for reply in self.replies]

    def clear(self) -> None:
        """Forget every request, record, rejection, dedupe key and scripted reply."""
        with self._lock:
            for kept in (self.requests, self.replies, self.events, self.identifies, self.batches):
                kept.clear()
            for state in (self.duplicates, self.rejections, self._seen, self._script):
                state.clear()

    @contextlib.contextmanager
    def serve(self) -> Iterator[LoopbackReceiver]:
        """A started `LoopbackReceiver` answering through this fake; stopped on exit."""
        with LoopbackReceiver(self) as receiver:
            yield receiver


@dataclasses.dataclass(frozen=True)
class FakeDestination:
    """A provider's fake, ready for the demo and the reliability suite.

    Attributes:
        provider: the provider's (and entry point's) name.
        fake: the vendor fake, expecting fixed test credentials (serve it, e.g. `fake.serve()`).
        environment: a base URL (where `fake` is served) -> every variable that enables the
            provider against it, credentials included.
    """

    provider: str
    fake: VendorFake
    environment: Callable[[str], dict[str, str]]
