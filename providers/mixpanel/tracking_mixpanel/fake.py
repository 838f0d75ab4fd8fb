"""A strict loopback fake of Mixpanel's ingestion API, for tests and the ``tracking demo`` command.

`MixpanelFake` is a responder for `tracking_core.receivers.LoopbackReceiver`::

    fake = MixpanelFake(token="test-token")
    with LoopbackReceiver(fake) as receiver:     # or: with fake.serve() as receiver:
        os.environ["MIXPANEL_HOST"] = receiver.url
        ...
    fake.events        # the event records Mixpanel would have kept
    fake.identifies    # the profile updates it would have applied

It validates the way Mixpanel documents (and a little more strictly, so that a sloppy client
fails loudly):

``POST .../track`` (``verbose=1`` in the query or the form body gives JSON answers)
    Body: a JSON array or object, as ``application/json`` or as the form field ``data=``
    (gzip allowed). Each event needs a non-empty ``event`` and ``properties`` with the project
    ``token``; a string ``distinct_id`` that is not a placeholder (``"anonymous"``, ``"null"``,
    ``"undefined"``, ``"0"``... see `PLACEHOLDER_IDS`; the empty string is allowed and means "no
    user"); ``time`` an integer in **milliseconds** (floats, strings and seconds are refused),
    not before 1971, not more than 1 h in the future and, on ``/track``, not older than 5 days;
    ``$insert_id`` of 1-36 characters of ``[A-Za-z0-9-]`` (required here, although Mixpanel makes
    it optional on ``/track``); ``$user_id``/``$device_id`` when present are non-empty,
    non-placeholder strings. Given ``id_merge``, the identities must also be consistent with the
    project's ID Merge API (see `MixpanelFake`). At most 2000 events and 10 MB (after gunzip) per
    request.
    Any invalid event refuses the whole request (real Mixpanel may keep the valid ones): the
    answer is HTTP 200 with ``{"status": 0, "error": "..."}`` (``verbose=1``) or the text ``0``;
    success is ``{"status": 1, "error": null}`` or ``1``. A body over 10 MB gets a 413.

``POST .../engage``
    Like ``/track`` for the framing, but **gzip is refused**. Each update needs ``$token``, a
    non-empty, non-placeholder ``$distinct_id`` and exactly one operation (``$set`` etc.;
    ``$set``/``$set_once`` must be objects).

``POST .../import`` (when the fake is given ``api_secret`` or ``service_account``)
    HTTP Basic auth (``secret:`` or ``username:secret`` plus ``?project_id=``), else 401 with
    Mixpanel's JSON. JSON array or NDJSON, gzip allowed. Same per-event rules (no token needed,
    no 5-day window). With ``strict=1`` invalid events are listed in a 400
    (``failed_records`` with ``index``, ``insert_id``, ``field``, ``message``) while the valid
    ones are kept; without it they are skipped silently. Success is
    ``{"code": 200, "num_records_imported": N, "status": "OK"}``.

Failures can be scripted (`fail_next`) and specific events made invalid (`reject_events`);
everything is thread-safe.
"""

from __future__ import annotations

import base64
import binascii
import collections
import contextlib
import json
import re
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from tracking_core.receivers import LoopbackReceiver, ReceivedRequest, Reply

from .provider import PLACEHOLDER_IDS

__all__ = ["MixpanelFake"]

_INSERT_ID = re.compile(r"[A-Za-z0-9-]{1,36}")
_MIN_TIME_MS = 31_536_000_000  # 1971-01-01T00:00:00Z
_SECONDS_BELOW = 100_000_000_000  # an integer below this is seconds (it would be 1973 in ms)
_HOUR_MS = 3_600_000
_FIVE_DAYS_MS = 5 * 24 * _HOUR_MS
_OPERATIONS = frozenset(
    {"$set", "$set_once", "$add", "$union", "$append", "$remove", "$unset", "$delete"}
)


class _Invalid(Exception):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def _is_placeholder(value: str) -> bool:
    return value.strip().lower() in PLACEHOLDER_IDS


class MixpanelFake:
    """A strict Mixpanel ingestion double; see the module docstring for every rule.

    Args:
        token: the project token the fake accepts.
        api_secret: enables ``/import`` with Basic auth ``<secret>:``.
        service_account: ``(username, secret, project_id)``: enables ``/import`` with Basic auth
            ``username:secret`` and ``?project_id=``.
        clock: the current time in seconds (injectable for the time-window rules).
        max_events: events or updates per request.
        max_body_bytes: body size per request, after gunzip.
        require_insert_id: refuse ``/track`` events without ``$insert_id``.
        id_merge: the project's ID Merge API, checked on every event's identities. None (the
            default) accepts the shapes of both. ``"simplified"``: a ``distinct_id`` next to a
            ``$user_id`` must equal it, and next to only a ``$device_id`` must be
            ``$device:<that id>`` (what Mixpanel derives). ``"original"``: a ``distinct_id`` of
            the ``$device:<id>`` form is refused, since Original ID Merge never derives those
            and would count each as a user of its own (real Mixpanel keeps such events).

    Attributes (read them as properties; each returns a copy):
        events: accepted event records (``{"event", "properties"}``), in arrival order.
        identifies: accepted ``/engage`` updates.
        refusals: one text per refused request or event, for assertions and debugging.
    """

    def __init__(
        self,
        token: str = "test-token",
        *,
        api_secret: str | None = None,
        service_account: tuple[str, str, str] | None = None,
        clock: Callable[[], float] = time.time,
        max_events: int = 2000,
        max_body_bytes: int = 10_000_000,
        require_insert_id: bool = True,
        id_merge: str | None = None,
    ) -> None:
        if id_merge not in (None, "simplified", "original"):
            raise ValueError(f"id_merge must be None, 'simplified' or 'original', not {id_merge!r}")
        self.token = token
        self.api_secret = api_secret
        self.service_account = service_account
        self.clock = clock
        self.max_events = max_events
        self.max_body_bytes = max_body_bytes
        self.require_insert_id = require_insert_id
        self.id_merge = id_merge
        #: A function of one event record returning an error text to make it invalid, or None.
        self.reject_events: Callable[[Mapping[str, Any]], str | None] | None = None
        self._lock = threading.Lock()
        self._events: list[dict[str, Any]] = []
        self._identifies: list[dict[str, Any]] = []
        self._refusals: list[str] = []
        self._scripted: collections.deque[tuple[Reply, str | None]] = collections.deque()

    def __repr__(self) -> str:
        return f"<MixpanelFake events={len(self._events)} identifies={len(self._identifies)}>"

    # -- what tests read ------------------------------------------------------------------

    @property
    def events(self) -> list[dict[str, Any]]:
        """The accepted event records, in order."""
        with self._lock:
            return list(self._events)

    @property
    def identifies(self) -> list[dict[str, Any]]:
        """The accepted profile updates, in order."""
        with self._lock:
            return list(self._identifies)

    @property
    def refusals(self) -> list[str]:
        """Why requests or events were refused, in order."""
        with self._lock:
            return list(self._refusals)

    def clear(self) -> None:
        """Forget the recorded events, updates, refusals and scripted replies."""
        with self._lock:
            self._events.clear()
            self._identifies.clear()
            self._refusals.clear()
            self._scripted.clear()

    # -- scripting ------------------------------------------------------------------------

    def fail_next(self, reply: Reply, times: int = 1, route: str | None = None) -> None:
        """Answer the next `times` requests (to `route`: ``"track"``, ``"engage"`` or
        ``"import"``; None: any) with `reply` instead of validating them. Nothing is recorded."""
        with self._lock:
            for _ in range(times):
                self._scripted.append((reply, route))

    @contextlib.contextmanager
    def serve(self) -> Iterator[LoopbackReceiver]:
        """A started `LoopbackReceiver` answering through this fake; stopped on exit."""
        with LoopbackReceiver(self) as receiver:
            yield receiver

    # -- the responder --------------------------------------------------------------------

    def __call__(self, request: ReceivedRequest) -> Reply:
        """Validate `request` as Mixpanel would and answer with its real bodies."""
        route = request.path.rstrip("/").rpartition("/")[2]
        scripted = self._take_script(route)
        if scripted is not None:
            return scripted
        if request.method != "POST":
            return Reply(405, {"error": "POST only", "status": 0})
        if route == "track":
            return self._track(request)
        if route == "engage":
            return self._engage(request)
        if route == "import":
            return self._import(request)
        return Reply(404, {"error": f"unknown endpoint {request.path}", "status": 0})

    def _take_script(self, route: str) -> Reply | None:
        with self._lock:
            for index, (reply, wanted) in enumerate(self._scripted):
                if wanted is None or wanted == route:
                    del self._scripted[index]
                    return reply
        return None

    def _refuse(self, text: str) -> None:
        with self._lock:
            self._refusals.append(text)

    # -- /track and /engage ---------------------------------------------------------------

    def _status_reply(self, verbose: bool, error: str | None) -> Reply:
        if error is not None:
            self._refuse(error)
        if verbose:
            return Reply(200, {"status": 0 if error else 1, "error": error})
        return Reply(200, "0" if error else "1")

    def _track(self, request: ReceivedRequest) -> Reply:
        framing = self._read(request, allow_ndjson=False)
        if isinstance(framing, Reply):
            return framing
        records, verbose = framing
        if len(records) > self.max_events:
            return self._status_reply(
                verbose, f"too many events: {len(records)} (at most {self.max_events})"
            )
        now_ms = int(self.clock() * 1000)
        for index, record in enumerate(records):
            try:
                self._check_event(record, now_ms, track=True)
            except _Invalid as exc:
                return self._status_reply(verbose, f"event {index}: {exc.message}")
        with self._lock:
            self._events.extend(records)
        return self._status_reply(verbose, None)

    def _engage(self, request: ReceivedRequest) -> Reply:
        encoding = request.headers.get("content-encoding", "").strip().lower()
        if encoding:
            verbose = request.query.get("verbose") == "1"
            return self._status_reply(
                verbose, f"this API does not support {encoding} encoding (Content-Encoding)"
            )
        framing = self._read(request, allow_ndjson=False)
        if isinstance(framing, Reply):
            return framing
        records, verbose = framing
        if len(records) > self.max_events:
            return self._status_reply(
                verbose, f"too many updates: {len(records)} (at most {self.max_events})"
            )
        for index, record in enumerate(records):
            try:
                self._check_update(record)
            except _Invalid as exc:
                return self._status_reply(verbose, f"update {index}: {exc.message}")
        with self._lock:
            self._identifies.extend(records)
        return self._status_reply(verbose, None)

    # -- /import ----------------------------------------------------------------------------

    def _import(self, request: ReceivedRequest) -> Reply:
        if not self._authorized(request):
            self._refuse("/import: invalid credentials")
            return Reply(
                401, {"code": 401, "error": "Invalid credentials", "status": "Unauthorized"}
            )
        framing = self._read(request, allow_ndjson=True)
        if isinstance(framing, Reply):
            return framing
        records, _verbose = framing
        if len(records) > self.max_events:
            error = f"request contains {len(records)} events, the maximum is {self.max_events}"
            self._refuse(error)
            return Reply(400, {"code": 400, "error": error, "status": "Bad Request"})
        now_ms = int(self.clock() * 1000)
        kept: list[dict[str, Any]] = []
        failed: list[dict[str, Any]] = []
        for index, record in enumerate(records):
            try:
                self._check_event(record, now_ms, track=False)
            except _Invalid as exc:
                props = record.get("properties") if isinstance(record, dict) else None
                insert_id = props.get("$insert_id") if isinstance(props, dict) else None
                failed.append(
                    {
                        "index": index,
                        "insert_id": insert_id,
                        "field": exc.field,
                        "message": exc.message,
                    }
                )
                self._refuse(f"/import event {index}: {exc.message}")
            else:
                kept.append(record)
        with self._lock:
            self._events.extend(kept)
        if failed and request.query.get("strict") == "1":
            return Reply(
                400,
                {
                    "code": 400,
                    "error": "some data points in the request failed validation",
                    "status": "Bad Request",
                    "num_records_imported": len(kept),
                    "failed_records": failed,
                },
            )
        return Reply(200, {"code": 200, "num_records_imported": len(kept), "status": "OK"})

    def _authorized(self, request: ReceivedRequest) -> bool:
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(value, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        if self.service_account is not None:
            name, secret, project_id = self.service_account
            if (user, password) == (name, secret):
                return request.query.get("project_id") == project_id
        return self.api_secret is not None and (user, password) == (self.api_secret, "")

    # -- framing ----------------------------------------------------------------------------

    def _read(
        self, request: ReceivedRequest, *, allow_ndjson: bool
    ) -> tuple[list[Any], bool] | Reply:
        """The records of a request and whether a verbose answer was asked; or an error reply."""
        verbose = request.query.get("verbose") == "1"
        encoding = request.headers.get("content-encoding", "").strip().lower()
        if encoding not in ("", "gzip"):
            return self._bad(f"unsupported Content-Encoding {encoding!r}")
        if encoding == "gzip" and request.raw_body and not request.body:
            return self._bad("invalid gzip data")
        if len(request.body) > self.max_body_bytes:
            error = f"request exceeds max limit of {self.max_body_bytes} bytes"
            self._refuse(error)
            return Reply(413, {"code": 413, "error": error, "status": "Request Entity Too Large"})
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        text: str
        try:
            if content_type == "application/x-www-form-urlencoded":
                form = dict(
                    urllib.parse.parse_qsl(request.body.decode("utf-8"), keep_blank_values=True)
                )
                verbose = verbose or form.get("verbose") == "1"
                text = form.get("data", "")
            elif content_type == "application/json" or (
                allow_ndjson and content_type == "application/x-ndjson"
            ):
                text = request.body.decode("utf-8")
            else:
                return self._bad(f"unsupported Content-Type {content_type!r}", verbose)
        except UnicodeDecodeError:
            return self._bad("the body is not UTF-8", verbose)
        try:
            if allow_ndjson and content_type == "application/x-ndjson":
                data: Any = [_strict_json(line) for line in text.splitlines() if line.strip()]
            else:
                data = _strict_json(text)
        except ValueError as exc:
            return self._bad(f"invalid JSON: {exc}", verbose)
        records = data if isinstance(data, list) else [data]
        if not records:
            return self._bad("no data", verbose)
        return records, verbose

    def _bad(self, error: str, verbose: bool = True) -> Reply:
        self._refuse(error)
        if verbose:
            return Reply(400, {"code": 400, "error": error, "status": 0})
        return Reply(400, "0")

    # -- records ----------------------------------------------------------------------------

    def _check_event(self, record: Any, now_ms: int, *, track: bool) -> None:
        if not isinstance(record, dict):
            raise _Invalid("event", "an event must be a JSON object")
        name = record.get("event")
        if not isinstance(name, str) or not name:
            raise _Invalid("event", "'event' must be a non-empty string")
        props = record.get("properties")
        if not isinstance(props, dict):
            raise _Invalid("properties", "'properties' must be an object")
        if track and props.get("token") != self.token:
            raise _Invalid("properties.token", "missing or invalid project token")
        if "distinct_id" not in props:
            raise _Invalid("properties.distinct_id", "'properties.distinct_id' is required")
        distinct_id = props["distinct_id"]
        if not isinstance(distinct_id, str):
            raise _Invalid("properties.distinct_id", "'distinct_id' must be a string")
        if distinct_id and _is_placeholder(distinct_id):
            raise _Invalid(
                "properties.distinct_id", f"'distinct_id' is an invalid value: {distinct_id!r}"
            )
        for key in ("$user_id", "$device_id"):
            if key in props:
                value = props[key]
                if not isinstance(value, str) or not value.strip() or _is_placeholder(value):
                    raise _Invalid(f"properties.{key}", f"{key!r} is an invalid value: {value!r}")
        self._check_id_merge(props, distinct_id)
        self._check_time(props, now_ms, track=track)
        if "$insert_id" in props or not track or self.require_insert_id:
            insert_id = props.get("$insert_id")
            if (
                not isinstance(insert_id, str)
                or not _INSERT_ID.fullmatch(insert_id)
                or _is_placeholder(insert_id)
            ):
                raise _Invalid(
                    "properties.$insert_id",
                    f"'$insert_id' must be 1-36 characters of [A-Za-z0-9-], got {insert_id!r:.60}",
                )
        if self.reject_events is not None:
            error = self.reject_events(record)
            if error:
                raise _Invalid("properties", error)

    def _check_id_merge(self, props: Mapping[str, Any], distinct_id: str) -> None:
        if self.id_merge == "original":
            if distinct_id.startswith("$device:"):
                raise _Invalid(
                    "properties.distinct_id",
                    f"{distinct_id!r:.60}: a $device: id is derived by Simplified ID Merge only; "
                    "this project uses Original ID Merge",
                )
        elif self.id_merge == "simplified" and distinct_id:
            user_id, device_id = props.get("$user_id"), props.get("$device_id")
            if user_id is not None and distinct_id != user_id:
                raise _Invalid(
                    "properties.distinct_id",
                    "'distinct_id' must equal '$user_id' when both are set",
                )
            if user_id is None and device_id is not None and distinct_id != f"$device:{device_id}":
                raise _Invalid(
                    "properties.distinct_id",
                    "'distinct_id' must be '$device:<$device_id>' for an anonymous event",
                )

    @staticmethod
    def _check_time(props: Mapping[str, Any], now_ms: int, *, track: bool) -> None:
        if "time" not in props:
            raise _Invalid("properties.time", "'properties.time' is required")
        value = props["time"]
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Invalid(
                "properties.time",
                f"'properties.time' must be an integer number of milliseconds, got {value!r}",
            )
        if 0 <= value < _SECONDS_BELOW:
            raise _Invalid(
                "properties.time",
                f"'properties.time' looks like seconds ({value}); milliseconds are expected",
            )
        if value < _MIN_TIME_MS:
            raise _Invalid("properties.time", "'properties.time' is before 1971-01-01")
        if value > now_ms + _HOUR_MS:
            raise _Invalid("properties.time", "'properties.time' is more than 1 hour ahead")
        if track and value < now_ms - _FIVE_DAYS_MS:
            raise _Invalid(
                "properties.time", "/track only accepts events from the last 5 days; use /import"
            )

    def _check_update(self, record: Any) -> None:
        if not isinstance(record, dict):
            raise _Invalid("update", "an update must be a JSON object")
        if record.get("$token") != self.token:
            raise _Invalid("$token", "missing or invalid project token")
        distinct_id = record.get("$distinct_id")
        if not isinstance(distinct_id, str) or not distinct_id or _is_placeholder(distinct_id):
            raise _Invalid("$distinct_id", f"'$distinct_id' is invalid: {distinct_id!r}")
        operations = [key for key in record if key in _OPERATIONS]
        if len(operations) != 1:
            raise _Invalid("operation", f"exactly one operation is required, got {operations}")
        operation = operations[0]
        if operation in ("$set", "$set_once", "$add") and not isinstance(record[operation], dict):
            raise _Invalid(operation, f"{operation!r} must be an object")
        allowed = {"$token", "$distinct_id", "$ip", "$time", "$ignore_time", "$ignore_alias"}
        extra = [key for key in record if key not in allowed and key not in _OPERATIONS]
        if extra:
            raise _Invalid("update", f"unknown keys {extra}")


def _strict_json(text: str) -> Any:
    def refuse(token: str) -> Any:
        raise ValueError(f"non-standard JSON token {token}")

    return json.loads(text, parse_constant=refuse)
