"""JSON Lines: the exact line format, the batches, standard output, rotation and file errors."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import logging
import os
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from tracking_jsonl.fake import JsonlFake

import tracking_core
from tracking_core import ProviderStats
from tracking_core.testing import RecordingProvider

UTC = dt.timezone.utc
Enable = Callable[..., None]


def _flush() -> ProviderStats:
    assert tracking_core.flush_tracking(10)
    return tracking_core.tracking_stats()["jsonl"]


def _lines(path: Path) -> list[dict[str, Any]]:
    text = path.read_text(encoding="utf-8")
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def _track(count: int, start: int = 0, **properties: Any) -> None:
    for n in range(start, start + count):
        tracking_core.track(f"Event {n}", {"n": n, **properties}, user_id="user-1")


def test_one_line_per_event_and_identify(enable: Enable, path: Path, fake: JsonlFake) -> None:
    enable()
    recorder = RecordingProvider()  # sees the same events, with their ids and timestamps
    tracking_core.register_tracking_provider(recorder)
    when = dt.datetime(2026, 1, 15, 10, 0, 0, 123456, tzinfo=UTC)
    tracking_core.track("Signed Up", {"plan": "pro"}, user_id="user-12345", timestamp=when)
    tracking_core.track("Anonymous", anonymous_id="device-9")
    tracking_core.identify("user-12345", {"email": "ada@example.com"})
    stats = _flush()

    signed_up, anonymous, identify = _lines(path)
    recorded = recorder.settle()
    assert signed_up == {
        "type": "track",
        "event_id": recorded.events[0].event_id,
        "event": "Signed Up",
        "timestamp": "2026-01-15T10:00:00.123456Z",
        "user_id": "user-12345",
        "anonymous_id": None,
        "properties": {"plan": "pro"},
    }
    assert list(signed_up) == [  # the order a reader sees
        "type",
        "event_id",
        "event",
        "timestamp",
        "user_id",
        "anonymous_id",
        "properties",
    ]
    assert anonymous["user_id"] is None and anonymous["anonymous_id"] == "device-9"
    assert anonymous["event_id"] == recorded.events[1].event_id
    moment = dt.datetime.fromisoformat(anonymous["timestamp"].replace("Z", "+00:00"))
    assert moment == recorded.events[1].timestamp
    assert identify == {
        "type": "identify",
        "event_id": identify["event_id"],
        "timestamp": identify["timestamp"],
        "user_id": "user-12345",
        "traits": {"email": "ada@example.com"},
    }
    assert uuid.UUID(identify["event_id"]).version == 4
    assert identify["timestamp"].endswith("Z")
    assert fake.rejections == [] and len(fake.events) == 2 and len(fake.identifies) == 1
    assert (stats.delivered, dict(stats.dropped)) == (3, {})


def test_values_json_cannot_carry_are_converted(enable: Enable, path: Path) -> None:
    enable()
    cyclic: list[Any] = [1]
    cyclic.append(cyclic)
    properties: dict[Any, Any] = {
        "when": dt.datetime(2026, 1, 15, 10, 0, tzinfo=UTC),
        "amount": decimal.Decimal("12.50"),
        "tags": {"b", "a"},
        "nan": float("nan"),
        "raw": b"\xff\x00",
        "cycle": cyclic,
        "text": "caf\u00e9 \u2603 x\ud800y",  # a lone surrogate cannot be UTF-8
        7: "int key",
    }
    tracking_core.track("Odd values", properties, user_id="user-1")
    stats = _flush()
    (line,) = _lines(path)  # strict JSON, valid UTF-8
    assert line["properties"] == {
        "when": "2026-01-15T10:00:00+00:00",
        "amount": 12.5,
        "tags": ["a", "b"],
        "nan": None,
        "raw": "base64:/wA=",
        "cycle": [1, "<cycle>"],
        "text": "caf\u00e9 \u2603 x?y",
        "7": "int key",
    }
    assert "caf\u00e9" in path.read_text(encoding="utf-8")  # not escaped: readable
    assert stats.delivered == 1


def test_a_batch_is_written_when_due_and_nothing_before(
    enable: Enable, path: Path, fake: JsonlFake
) -> None:
    enable(TRACKING_BATCH_SIZE="4", TRACKING_FLUSH_INTERVAL="60")
    _track(3)
    time.sleep(0.3)
    assert not path.exists()  # 3 events wait for a fourth (or a flush)
    _track(1, start=3)
    deadline = time.monotonic() + 10
    while len(fake.events) < 4 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert [e["properties"]["n"] for e in fake.events] == [0, 1, 2, 3]  # whole lines, flushed
    _track(2, start=4)
    _flush()
    assert [line["properties"]["n"] for line in _lines(path)] == list(range(6))


def test_dash_writes_to_standard_output(
    enable: Enable, path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    enable(TRACKING_JSONL_PATH="-")
    _track(2)
    tracking_core.identify("user-1", {"plan": "pro"})
    stats = _flush()
    out = capsys.readouterr().out
    lines = [json.loads(line) for line in out.splitlines()]
    assert [line["type"] for line in lines] == ["track", "track", "identify"]
    assert [line.get("event") for line in lines] == ["Event 0", "Event 1", None]
    assert not path.exists() and not Path("-").exists()
    assert stats.delivered == 3


def test_files_are_rotated_by_size_like_logging(
    enable: Enable, path: Path, fake: JsonlFake
) -> None:
    enable(TRACKING_JSONL_MAX_BYTES="1000", TRACKING_JSONL_BACKUPS="2")
    for round_ in range(4):  # rotations inside batches and between them
        _track(10, start=10 * round_, pad="x" * 60)
        _flush()
    names = sorted(p.name for p in path.parent.iterdir())
    assert names == ["events.jsonl", "events.jsonl.1", "events.jsonl.2"]
    sizes = [os.path.getsize(f"{path}{suffix}") for suffix in ("", ".1", ".2")]
    assert all(0 < size <= 1000 for size in sizes), sizes
    kept = [
        line["properties"]["n"]
        for suffix in (".2", ".1", "")
        for line in _lines(Path(f"{path}{suffix}"))
    ]
    assert kept == list(range(40 - len(kept), 40))  # the newest lines, in order
    assert [e["properties"]["n"] for e in fake.events] == kept
    stats = tracking_core.tracking_stats()["jsonl"]
    assert (stats.delivered, dict(stats.dropped)) == (40, {})  # rotation is not a drop


@pytest.mark.parametrize(
    ("max_bytes", "backups"), [("0", "3"), ("500", "0")], ids=["no-size", "no-backups"]
)
def test_no_rotation_without_both_a_size_and_backups(
    enable: Enable, path: Path, max_bytes: str, backups: str
) -> None:
    enable(TRACKING_JSONL_MAX_BYTES=max_bytes, TRACKING_JSONL_BACKUPS=backups)
    _track(30, pad="x" * 60)
    _flush()
    assert [p.name for p in path.parent.iterdir()] == ["events.jsonl"]
    assert len(_lines(path)) == 30


def test_appends_to_an_existing_file(enable: Enable, path: Path) -> None:
    path.write_text('{"kept": true}\n', encoding="utf-8")
    enable()
    _track(1)
    _flush()
    first, second = _lines(path)
    assert first == {"kept": True} and second["event"] == "Event 0"


@pytest.mark.parametrize(
    ("where", "reason"),
    [
        ("missing/events.jsonl", "No such file or directory"),
        ("a-directory", "Is a directory"),
        ("/dev/full", "No space left on device"),  # a disk that is full
    ],
)
def test_file_errors_are_counted_drops_with_a_logged_reason(
    enable: Enable,
    path: Path,
    caplog: pytest.LogCaptureFixture,
    where: str,
    reason: str,
) -> None:
    target = where if where.startswith("/") else str(path.parent / where)
    (path.parent / "a-directory").mkdir()
    caplog.set_level(logging.DEBUG)
    enable(TRACKING_JSONL_PATH=target)
    _track(3)  # no exception reaches the caller
    tracking_core.identify("user-1")
    stats = _flush()
    assert stats.delivered == 0
    assert dict(stats.dropped) == {"provider_error": 4}
    assert stats.failed == 1 and reason in (stats.last_error or "")
    lines = [r.getMessage() for r in caplog.records if "jsonl" in r.getMessage()]
    assert len([line for line in lines if reason in line]) == 1, lines
    _track(2)  # still working, still counting; the next line about it is rate-limited
    stats = _flush()
    assert dict(stats.dropped) == {"provider_error": 6}


def test_a_line_is_written_whole_or_not_at_all(tmp_path: Path) -> None:
    # A real short write: the file size limit (RLIMIT_FSIZE) stops a write in the middle of a
    # line. The part that was written is taken back, so the file holds whole lines only, and
    # every line is counted once, as delivered or dropped.
    script = textwrap.dedent(
        """
        import json, os, resource, signal, sys
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (5000, 5000))
        import tracking_core
        for n in range(40):
            tracking_core.track("Padded", {"n": n, "pad": "x" * 100}, user_id="user-1")
        assert tracking_core.flush_tracking(10)
        stats = tracking_core.tracking_stats()["jsonl"]
        print(json.dumps({"delivered": stats.delivered, "dropped": dict(stats.dropped)}))
        """
    )
    path = tmp_path / "events.jsonl"
    environment = {
        **{k: v for k, v in os.environ.items() if not k.startswith("TRACKING_")},
        "TRACKING_PROVIDERS": "jsonl",
        "TRACKING_JSONL_PATH": str(path),
    }
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env=environment,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout.splitlines()[-1])
    data = path.read_bytes()
    assert 0 < len(data) <= 5000 and data.endswith(b"\n")
    written = [json.loads(line)["properties"]["n"] for line in data.splitlines()]
    assert written == list(range(len(written)))
    assert outcome == {"delivered": len(written), "dropped": {"provider_error": 40 - len(written)}}
    assert "File too large" in result.stderr  # the logged reason (EFBIG)
