"""A strict fake of the JSON Lines destination: the file, read back line by line.

The provider does not speak HTTP, so the fake is no server (`VendorFake.served` is False): its
`destination()` points ``TRACKING_JSONL_PATH`` at a file in a temporary directory of its own,
and whenever its records (``events``, ``identifies``, ...) are read it first reads the lines
written since (`JsonlFake.collect`), in the rotated copies too (``path.N`` ... ``path.1``,
then ``path``: oldest first). Each line is checked as strictly as the provider promises to
write it: UTF-8, strict JSON (no NaN), exactly the documented keys of its type, a UUID
``event_id``, an ISO 8601 UTC ``timestamp`` ending in ``Z``. A line that is not is refused (a
`Rejection` with status 0: there is no HTTP answer) and the next one is read.
"""

from __future__ import annotations

import datetime as _dt
import os
import shutil
import tempfile
import uuid
import weakref
from collections.abc import Hashable, Mapping
from typing import Any, Generic, TypeVar, overload

from tracking_core.fakes import FakeDestination, Refused, Rejection, VendorFake
from tracking_core.receivers import ReceivedRequest, Reply

__all__ = ["KEYS", "JsonlFake", "destination"]

#: The keys of each type of line, in the order the provider writes them.
KEYS: Mapping[str, tuple[str, ...]] = {
    "track": ("type", "event_id", "event", "timestamp", "user_id", "anonymous_id", "properties"),
    "identify": ("type", "event_id", "timestamp", "user_id", "traits"),
}

_T = TypeVar("_T")


class _ReadBack(Generic[_T]):
    """One of a `JsonlFake`'s record lists: reading it reads the file first."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.slot = "_" + name

    @overload
    def __get__(self, fake: None, owner: type) -> _ReadBack[_T]: ...
    @overload
    def __get__(self, fake: JsonlFake, owner: type) -> list[_T]: ...
    def __get__(self, fake: JsonlFake | None, owner: type) -> _ReadBack[_T] | list[_T]:
        if fake is None:
            return self
        fake.collect()
        found: list[_T] = fake.__dict__[self.slot]
        return found

    def __set__(self, fake: JsonlFake, records: list[_T]) -> None:
        fake.__dict__[self.slot] = records


class JsonlFake(VendorFake):
    """The file at `path` (and its rotated copies), read back; see the module doc."""

    served = False
    id_key, user_key, identify_when = "event_id", "user_id", ("type", "identify")
    events: _ReadBack[dict[str, Any]] = _ReadBack()
    identifies: _ReadBack[dict[str, Any]] = _ReadBack()
    batches: _ReadBack[Any] = _ReadBack()
    duplicates: _ReadBack[dict[str, Any]] = _ReadBack()
    rejections: _ReadBack[Rejection] = _ReadBack()

    def __init__(self, path: str) -> None:
        self.path = path
        #: (bytes, lines) read of each file, by its first line (kept when a file is renamed).
        self._read: dict[bytes, tuple[int, int]] = {}
        self._collecting = False
        super().__init__()

    def handle(self, request: ReceivedRequest) -> Reply:
        raise Refused(404, "the JSON Lines destination is a file, not a server")

    def dedupe_key(self, item: Mapping[str, Any]) -> Hashable | None:
        return str(item.get("event_id"))

    def properties_of(self, event: Mapping[str, Any]) -> Mapping[str, Any]:
        found = event.get("traits" if self.is_identify(event) else "properties")
        return found if isinstance(found, Mapping) else {}

    def collect(self) -> None:
        """Read the whole lines written since the last read, oldest file first."""
        with self._lock:
            if self._collecting:  # the records read while recording
                return
            self._collecting = True
            try:
                for path in self._files():
                    self._read_file(path)
            finally:
                self._collecting = False

    def _files(self) -> list[str]:
        found, number = [self.path], 1
        while os.path.exists(f"{self.path}.{number}"):
            found.append(f"{self.path}.{number}")
            number += 1
        return found[::-1]

    def _read_file(self, path: str) -> None:
        try:
            with open(path, "rb") as source:
                first = source.readline()
                if not first.endswith(b"\n"):
                    return
                start, before = self._read.get(first, (0, 0))
                source.seek(start)
                chunk = source.read()
        except FileNotFoundError:  # rotated away meanwhile: read under its new name
            return
        end = chunk.rfind(b"\n") + 1
        if end == 0:
            return
        lines = chunk[:end].splitlines()
        self._read[first] = (start + end, before + len(lines))
        kept = []
        for number, raw in enumerate(lines, before + 1):
            try:
                kept.append(self._check(raw))
            except Refused as refused:
                where = f"{os.path.basename(path)}:{number}"
                self.rejections.append(Rejection(0, f"{where}: {refused.message}"))
        if kept:
            self.record({"file": path, "lines": len(kept)}, kept)

    def _check(self, raw: bytes) -> dict[str, Any]:
        line = self.parse_json(raw)
        if not isinstance(line, dict):
            raise Refused(0, "not a JSON object")
        kind = line.get("type")
        if not isinstance(kind, str) or kind not in KEYS:
            raise Refused(0, f"type {kind!r} is neither 'track' nor 'identify'")
        if tuple(line) != KEYS[kind]:
            raise Refused(0, f"keys {list(line)}, expected {list(KEYS[kind])}")
        try:
            uuid.UUID(str(line["event_id"]))
        except ValueError:
            raise Refused(0, f"event_id {line['event_id']!r} is not a UUID") from None
        _check_time(line["timestamp"])
        if kind == "track":
            if not isinstance(line["event"], str) or not line["event"]:
                raise Refused(0, "event must be a non-empty string")
            for key in ("user_id", "anonymous_id"):
                if line[key] is not None and not isinstance(line[key], str):
                    raise Refused(0, f"{key} must be a string or null")
        elif not isinstance(line["user_id"], str) or not line["user_id"]:
            raise Refused(0, "user_id of an identify must be a non-empty string")
        values = line["properties" if kind == "track" else "traits"]
        if not isinstance(values, dict):
            raise Refused(0, f"{'properties' if kind == 'track' else 'traits'} must be an object")
        return line


def _check_time(value: Any) -> None:
    if not isinstance(value, str) or not value.endswith("Z"):
        raise Refused(0, f"timestamp {value!r} is not ISO 8601 UTC ending in Z")
    try:
        _dt.datetime.fromisoformat(value[:-1] + "+00:00")
    except ValueError:
        raise Refused(0, f"timestamp {value!r} is not ISO 8601") from None


def destination() -> FakeDestination:
    """A `JsonlFake` of a file in a temporary directory (removed with the fake), and the
    variable that points the provider at it."""
    directory = tempfile.mkdtemp(prefix="tracking-jsonl-")
    fake = JsonlFake(os.path.join(directory, "events.jsonl"))
    weakref.finalize(fake, shutil.rmtree, directory, ignore_errors=True)
    return FakeDestination("jsonl", fake, lambda url: {"TRACKING_JSONL_PATH": fake.path})
