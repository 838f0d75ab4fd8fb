"""JSON Lines: the settings, the line of an event or identify, appending with size rotation."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from typing import Any, BinaryIO

from tracking_core import DropReason, TrackingEvent, TrackingIdentify, json_safe
from tracking_core.engine import DeliveryControl
from tracking_core.http import dumps
from tracking_core.kit import log_limited

from .settings import JsonlSettings

__all__ = ["MAX_LINES_PER_BATCH", "JsonlProvider", "JsonlSettings", "encode"]

#: The most lines the engine hands over (and this writes) at once.
MAX_LINES_PER_BATCH = 1000
_FAILED = "tracking: jsonl could not write %d of %d lines to %s (%s); they are dropped"


def encode(item: TrackingEvent | TrackingIdentify) -> bytes:
    """The line of one event or identify: one JSON object (UTF-8) and a newline."""
    when = item.timestamp.isoformat(timespec="microseconds").replace("+00:00", "Z")
    if isinstance(item, TrackingIdentify):
        line: dict[str, Any] = {"type": "identify", "event_id": item.event_id, "timestamp": when}
        line.update(user_id=item.user_id, traits=json_safe(item.traits))
    else:
        line = {"type": "track", "event_id": item.event_id, "event": item.name, "timestamp": when}
        line.update(user_id=item.user_id, anonymous_id=item.anonymous_id)
        line.update(properties=json_safe(item.properties))
    return dumps(line) + b"\n"


class JsonlProvider:
    """A `tracking_core.engine.BatchingProvider`: the engine batches, and each batch is written
    (to the file or standard output) before `deliver_batch` returns. A line that cannot be
    written is dropped as ``provider_error``, its reason logged; nothing raises."""

    def __init__(self, settings: JsonlSettings) -> None:
        self.settings = settings
        self.name = "jsonl"

    def batch_limit(self) -> int:
        """The most items one `deliver_batch` call takes."""
        return MAX_LINES_PER_BATCH

    def deliver_batch(
        self, items: Sequence[TrackingEvent | TrackingIdentify], control: DeliveryControl
    ) -> None:
        """Write a line per item; count each as delivered or dropped."""
        lines = [encode(item) for item in items]
        written = [0]  # lines written whole, also when a later one fails
        try:
            if self.settings.path == "-":
                _print(lines, written)
            else:
                self._append(lines, written)
        except (OSError, ValueError) as exc:  # ValueError: standard output is closed
            why, failed = getattr(exc, "strerror", None) or str(exc), len(lines) - written[0]
            control.failed(why)
            control.dropped(DropReason.PROVIDER_ERROR, failed)
            path = self.settings.path
            log_limited(logging.ERROR, "jsonl:io", _FAILED, failed, len(lines), path, why)
        control.delivered(written[0], clear_error=written[0] == len(lines))

    def _append(self, lines: Sequence[bytes], written: list[int]) -> None:
        path, limit, backups = self.settings.path, self.settings.max_bytes, self.settings.backups
        out: BinaryIO = open(path, "ab", buffering=0)  # noqa: SIM115 - reopened on rotation
        try:
            size = os.fstat(out.fileno()).st_size
            for line in lines:
                if limit and backups and size and size + len(line) > limit:
                    out.close()
                    _rotate(path, backups)
                    out = open(path, "ab", buffering=0)  # noqa: SIM115
                    size = 0
                _write_whole(out, line, size)
                size += len(line)
                written[0] += 1
        finally:
            out.close()


def _write_whole(out: BinaryIO, line: bytes, size: int) -> None:
    """Write `line` whole, or take back what a short write left (the file had `size` bytes)."""
    done = 0
    try:
        while done < len(line):
            done += out.write(line[done:]) or 0
    except OSError:
        if done:
            out.truncate(size)
        raise


def _rotate(path: str, backups: int) -> None:
    """path.N-1 -> path.N, ..., path.1 -> path.2, path -> path.1 (the oldest is replaced)."""
    for number in range(backups - 1, 0, -1):
        if os.path.exists(f"{path}.{number}"):
            os.replace(f"{path}.{number}", f"{path}.{number + 1}")
    os.replace(path, f"{path}.1")


def _print(lines: Sequence[bytes], written: list[int]) -> None:
    stream = sys.stdout
    if stream is None:
        raise ValueError("there is no standard output")
    stream.write(b"".join(lines).decode("utf-8"))
    stream.flush()
    written[0] = len(lines)
