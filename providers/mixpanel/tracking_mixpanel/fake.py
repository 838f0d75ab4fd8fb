"""A strict loopback fake of Mixpanel's ingestion API (a `VendorFake`): stricter than Mixpanel
where a sloppy client should fail loudly.

- ``/track`` (JSON, or the form field ``data=``; gzip allowed) and ``/engage`` (no gzip): at most
  2000 records and 10 MB (413). An event needs ``event``, ``properties.token``, a string
  ``distinct_id`` that is no placeholder (``""``: no user), ``time`` in integer milliseconds
  (1971 on, at most 1 h ahead, 5 days old on ``/track``), a ``$insert_id`` of 1-36
  ``[A-Za-z0-9-]``, real ``$user_id``/``$device_id`` if any, identities that fit `id_merge`.
  An update needs ``$token``, a real ``$distinct_id`` and one operation. One bad record refuses
  the request: HTTP 200 ``{"status": 0, "error": ...}`` (``verbose=1``) or ``0``.
- ``/import`` (given ``api_secret`` or ``service_account``): Basic auth, else 401; JSON array or
  NDJSON, gzip allowed; the event rules without token and window. Bad events are skipped, or
  with ``strict=1`` listed in a 400 (``failed_records``) while the valid ones are kept.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import re
import time
import urllib.parse
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, TypeGuard

from tracking_core.fakes import FakeDestination, Refused, Rejection, VendorFake
from tracking_core.receivers import ReceivedRequest, Reply

__all__ = ["MixpanelFake", "destination"]

#: The project token `destination()` expects.
TEST_TOKEN = "demo-mixpanel-token"
_INSERT_ID = re.compile(r"[A-Za-z0-9-]{1,36}")
_MIN_TIME_MS = 31_536_000_000  # 1971-01-01T00:00:00Z
_SECONDS_BELOW = 100_000_000_000  # an integer below this is seconds (it would be 1973 in ms)
_HOUR_MS = 3_600_000
_OBJECT_OPERATIONS = ("$set", "$set_once", "$add")
_OPERATIONS = frozenset({*_OBJECT_OPERATIONS, "$union", "$append", "$remove", "$unset", "$delete"})
_UPDATE_KEYS = {"$token", "$distinct_id", "$ip", "$time", "$ignore_time", "$ignore_alias"}
_FORM = "application/x-www-form-urlencoded"
_NDJSON = "application/x-ndjson"
_STATUS_TEXT = {401: "Unauthorized", 413: "Request Entity Too Large"}
#: Ids Mixpanel refuses as a ``distinct_id`` or ``$insert_id`` (compared case-insensitively).
PLACEHOLDER_IDS = frozenset(
    "anon anonymous nil none null n/a na undefined unknown <nil> 0 -1 true false [] {} "
    "00000000-0000-0000-0000-000000000000".split()
)
_NOT_IDS = PLACEHOLDER_IDS | {""}


class _Invalid(ValueError):  # an invalid event or update: the field at fault, the message
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def _real_id(value: Any) -> TypeGuard[str]:
    return isinstance(value, str) and value.strip().lower() not in _NOT_IDS


def _verbose(request: ReceivedRequest) -> bool:
    form = (
        request.body.decode("utf-8", "replace") if VendorFake.media_type(request) == _FORM else ""
    )
    return "1" in (request.query.get("verbose"), *urllib.parse.parse_qs(form).get("verbose", []))


def _check_time(value: Any, now_ms: int, *, track: bool) -> None:
    if value is None:
        problem = "is required"
    elif isinstance(value, bool) or not isinstance(value, int):
        problem = f"must be an integer number of milliseconds, got {value!r}"
    elif 0 <= value < _SECONDS_BELOW:
        problem = f"looks like seconds ({value}); milliseconds are expected"
    elif value < _MIN_TIME_MS:
        problem = "is before 1971-01-01"
    elif value > now_ms + _HOUR_MS:
        problem = "is more than 1 hour ahead"
    elif track and value < now_ms - 120 * _HOUR_MS:
        problem = "is older than 5 days (the /track window); use /import"
    else:
        return
    raise _Invalid("properties.time", f"'properties.time' {problem}")


@dataclasses.dataclass(eq=False, repr=False)
class MixpanelFake(VendorFake):
    """Mixpanel's ``/track``, ``/engage`` and ``/import``. `api_secret` enables ``/import`` with
    Basic auth ``<secret>:``, `service_account` ``(username, secret, project_id)`` with
    ``username:secret`` and ``?project_id=``. `clock` gives the time in seconds. `id_merge`: the
    ID Merge API (None: either); ``"simplified"`` wants ``distinct_id`` equal to ``$user_id`` or
    else ``$device:<$device_id>``, ``"original"`` refuses ``$device:`` ids (it never makes them).
    `max_events`, `max_body_bytes`, `require_insert_id` (on ``/track``) and `reject_events` (a
    function of an event returning an error text to make it invalid, or None) may be changed."""

    user_key = "$distinct_id"
    max_events = 2000
    require_insert_id = True
    body_errors: ClassVar[Mapping[str, str]] = {
        **VendorFake.body_errors,
        "too_large": "request exceeds max limit of {limit} bytes",
    }

    token: str = "test-token"
    _: dataclasses.KW_ONLY
    api_secret: str | None = None
    service_account: tuple[str, str, str] | None = None
    clock: Callable[[], float] = time.time
    id_merge: str | None = None
    reject_events: Callable[[Mapping[str, Any]], str | None] | None = None

    def __post_init__(self) -> None:
        if self.id_merge not in (None, "simplified", "original"):
            raise ValueError(
                f"id_merge must be None, 'simplified' or 'original': {self.id_merge!r}"
            )
        super().__post_init__()

    def refusal(self, status: int, message: str) -> Reply:
        """HTTP 200 with ``status: 0`` (``/track``, ``/engage``), else ``code``, ``error``..."""
        answer = {"error": message, "status": _STATUS_TEXT.get(status, 0)}
        return Reply(status, answer if status == 200 else {"code": status, **answer})

    def event_id(self, event: Mapping[str, Any]) -> str:
        return str(event["properties"]["$insert_id"])

    def is_identify(self, item: Mapping[str, Any]) -> bool:
        return "$distinct_id" in item

    def handle(self, request: ReceivedRequest) -> Reply:
        if request.method != "POST":
            raise Refused(405, "POST only")
        route = self.route_of(request)
        if route == "import":
            return self._import(request)
        if route not in ("track", "engage"):
            raise Refused(404, f"unknown endpoint {request.path}")
        verbose = _verbose(request)
        noun = "event" if route == "track" else "update"
        try:
            encoding = request.headers.get("content-encoding", "").strip().lower()
            if route == "engage" and encoding:
                raise Refused(200, f"this API does not support {encoding} encoding")
            records = self._records(request, ndjson=False)
            check = self._check_event if route == "track" else self._check_update
            for index, record in enumerate(records):
                try:
                    check(record)
                except _Invalid as exc:
                    raise Refused(200, f"{noun} {index}: {exc}") from None
        except Refused as refused:
            if verbose or refused.status not in (200, 400) or refused.reply is not None:
                raise
            raise Refused(refused.status, refused.message, Reply(refused.status, "0")) from None
        self.record(records, records)
        return Reply(200, {"status": 1, "error": None} if verbose else "1")

    def _import(self, request: ReceivedRequest) -> Reply:
        if not self._authorized(request):
            raise Refused(401, "Invalid credentials")
        records = self._records(request, ndjson=True)
        strict = request.query.get("strict") == "1"
        kept: list[dict[str, Any]] = []
        failed: list[dict[str, Any]] = []
        for index, record in enumerate(records):
            try:
                self._check_event(record, track=False)
            except _Invalid as exc:
                props = record.get("properties") if isinstance(record, dict) else None
                ids = {"insert_id": props.get("$insert_id") if isinstance(props, dict) else None}
                failed.append({"index": index, **ids, "field": exc.field, "message": str(exc)})
                self.rejections.append(Rejection(400 if strict else 200, f"/import {index}: {exc}"))
            else:
                kept.append(record)
        self.record(records, kept)
        status = 400 if failed and strict else 200
        answer: dict[str, Any] = {"code": status, "num_records_imported": len(kept), "status": "OK"}
        if status == 400:
            error = "some data points in the request failed validation"
            answer |= {"error": error, "status": "Bad Request", "failed_records": failed}
        return Reply(status, answer)

    def _authorized(self, request: ReceivedRequest) -> bool:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(value, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        if self.service_account is not None and (user, password) == self.service_account[:2]:
            return request.query.get("project_id") == self.service_account[2]
        return self.api_secret is not None and (user, password) == (self.api_secret, "")

    def _records(self, request: ReceivedRequest, *, ndjson: bool) -> list[Any]:
        body = self.read_body(request)
        kind = self.media_type(request)
        if kind == _FORM:
            form = urllib.parse.parse_qs(body.decode("utf-8", "surrogateescape"))
            body = form.get("data", [""])[0].encode("utf-8", "surrogateescape")
        elif kind != "application/json" and not (ndjson and kind == _NDJSON):
            raise Refused(400, f"unsupported Content-Type {kind!r}")
        if ndjson and kind == _NDJSON:
            data: Any = [self.parse_json(line) for line in body.splitlines() if line.strip()]
        else:
            data = self.parse_json(body)
        records = data if isinstance(data, list) else [data]
        if not records:
            raise Refused(400, "no data")
        if len(records) > self.max_events:  # /import answers 400, the others status 0
            raise Refused(400 if ndjson else 200, f"{len(records)} records (max {self.max_events})")
        return records

    def _check_event(self, record: Any, *, track: bool = True) -> None:
        if not isinstance(record, dict):
            raise _Invalid("event", "an event must be a JSON object")
        if not isinstance(record.get("event"), str) or not record["event"]:
            raise _Invalid("event", "'event' must be a non-empty string")
        props = record.get("properties")
        if not isinstance(props, dict):
            raise _Invalid("properties", "'properties' must be an object")
        if track and props.get("token") != self.token:
            raise _Invalid("properties.token", "missing or invalid project token")
        distinct_id = props.get("distinct_id")
        if not isinstance(distinct_id, str) or (distinct_id and not _real_id(distinct_id)):
            raise _Invalid("properties.distinct_id", f"invalid 'distinct_id': {distinct_id!r}")
        for key in ("$user_id", "$device_id"):
            if key in props and not _real_id(props[key]):
                raise _Invalid(f"properties.{key}", f"{key!r} is an invalid value: {props[key]!r}")
        self._check_id_merge(props, distinct_id)
        _check_time(props.get("time"), int(self.clock() * 1000), track=track)
        insert_id = props.get("$insert_id")
        wanted = "$insert_id" in props or not track or self.require_insert_id
        if wanted and not (_real_id(insert_id) and _INSERT_ID.fullmatch(insert_id)):
            message = f"'$insert_id' must be 1-36 of [A-Za-z0-9-], got {insert_id!r:.60}"
            raise _Invalid("properties.$insert_id", message)
        error = self.reject_events(record) if self.reject_events is not None else None
        if error:
            raise _Invalid("properties", error)

    def _check_id_merge(self, props: Mapping[str, Any], distinct_id: str) -> None:
        user_id, device_id = props.get("$user_id"), props.get("$device_id")
        if self.id_merge == "original" and distinct_id.startswith("$device:"):
            problem = "a $device: id, which only Simplified ID Merge derives (project: Original)"
        elif self.id_merge != "simplified" or not distinct_id:
            return
        elif user_id is not None and distinct_id != user_id:
            problem = "not equal to '$user_id'"
        elif user_id is None and device_id is not None and distinct_id != f"$device:{device_id}":
            problem = "not '$device:<$device_id>' for an anonymous event"
        else:
            return
        raise _Invalid("properties.distinct_id", f"'distinct_id' {distinct_id!r:.60} is {problem}")

    def _check_update(self, record: Any) -> None:
        if not isinstance(record, dict):
            raise _Invalid("update", "an update must be a JSON object")
        if record.get("$token") != self.token:
            raise _Invalid("$token", "missing or invalid project token")
        if not _real_id(record.get("$distinct_id")):
            raise _Invalid("$distinct_id", f"bad '$distinct_id': {record.get('$distinct_id')!r}")
        operations = [key for key in record if key in _OPERATIONS]
        if len(operations) != 1:
            raise _Invalid("operation", f"exactly one operation is required, got {operations}")
        if operations[0] in _OBJECT_OPERATIONS and not isinstance(record[operations[0]], dict):
            raise _Invalid(operations[0], f"{operations[0]!r} must be an object")
        extra = [key for key in record if key not in _UPDATE_KEYS and key not in _OPERATIONS]
        if extra:
            raise _Invalid("update", f"unknown keys {extra}")


def destination() -> FakeDestination:
    """A `MixpanelFake` expecting `TEST_TOKEN`, and the variables that point Mixpanel at it."""
    return FakeDestination(
        "mixpanel",
        MixpanelFake(TEST_TOKEN),
        lambda url: {"MIXPANEL_TOKEN": TEST_TOKEN, "MIXPANEL_HOST": url},
    )
