"""The strict JSON Lines fake reads the file back and refuses what the provider must never write."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

import pytest
from tracking_jsonl.fake import JsonlFake, destination

from tracking_core.fakes import VendorFake
from tracking_core.receivers import LoopbackReceiver


def _track(**overrides: Any) -> dict[str, Any]:
    line: dict[str, Any] = {
        "type": "track",
        "event_id": str(uuid.uuid4()),
        "event": "Signed Up",
        "timestamp": "2026-01-15T10:00:00.123456Z",
        "user_id": "user-1",
        "anonymous_id": None,
        "properties": {"plan": "pro"},
    }
    line.update(overrides)
    return {k: v for k, v in line.items() if v is not ...}


def _identify(**overrides: Any) -> dict[str, Any]:
    line: dict[str, Any] = {
        "type": "identify",
        "event_id": str(uuid.uuid4()),
        "timestamp": "2026-01-15T10:00:00.000000Z",
        "user_id": "user-1",
        "traits": {"email": "ada@example.com"},
    }
    line.update(overrides)
    return {k: v for k, v in line.items() if v is not ...}


def _write(path: Path | str, *lines: dict[str, Any] | str, mode: str = "a") -> None:
    with open(path, mode, encoding="utf-8") as out:
        for line in lines:
            out.write(line if isinstance(line, str) else json.dumps(line) + "\n")


def test_reads_the_lines_back_whenever_its_records_are_read(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    fake = JsonlFake(str(path))
    assert fake.events == []  # no file yet
    first, identify = _track(), _identify()
    _write(path, first, identify)
    assert fake.events == [first] and fake.identifies == [identify]
    second = _track(properties={"demo_seq": 7})
    _write(path, second)
    assert fake.event_ids() == [first["event_id"], second["event_id"]]
    assert fake.properties_of(second) == {"demo_seq": 7}
    assert fake.user_of(identify) == "user-1"
    assert fake.properties_of(identify) == {"email": "ada@example.com"}
    assert fake.rejections == [] and fake.duplicates == []
    assert len(fake.batches) == 2  # two reads found new lines


def test_a_line_is_read_once_it_is_complete(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    fake = JsonlFake(str(path))
    line = json.dumps(_track())
    _write(path, line[:20])
    assert fake.events == [] and fake.rejections == []
    _write(path, line[20:] + "\n")
    assert len(fake.events) == 1


def test_reads_rotated_files_oldest_first_and_each_line_once(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    fake = JsonlFake(str(path))
    lines = [_track(properties={"n": n}) for n in range(6)]
    _write(path, lines[0], lines[1])
    assert len(fake.events) == 2  # read before the rotation
    os.replace(path, f"{path}.1")  # as the provider rotates: path -> path.1
    _write(f"{path}.1", lines[2])  # (a file keeps its lines whatever its name)
    _write(path, lines[3])
    os.replace(f"{path}.1", f"{path}.2")
    os.replace(path, f"{path}.1")
    _write(path, lines[4], lines[5])
    assert [e["properties"]["n"] for e in fake.events] == [0, 1, 2, 3, 4, 5]
    assert fake.duplicates == []


def test_a_repeated_event_id_is_a_duplicate(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    fake = JsonlFake(str(path))
    line = _track()
    _write(path, line, line)
    assert fake.events == [line] and fake.duplicates == [line]


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        pytest.param("not json\n", "invalid JSON", id="not-json"),
        pytest.param('{"type": "track", "n": NaN}\n', "NaN", id="nan"),
        pytest.param('["a list"]\n', "not a JSON object", id="not-an-object"),
        pytest.param(_track(type="page"), "type", id="unknown-type"),
        pytest.param(_track(event_id="e-1"), "event_id", id="not-a-uuid"),
        pytest.param(_track(event=""), "event", id="empty-name"),
        pytest.param(_track(event=...), "keys", id="no-name"),
        pytest.param(_track(extra=1), "keys", id="unknown-key"),
        pytest.param(_track(timestamp="2026-01-15T10:00:00+00:00"), "timestamp", id="not-z"),
        pytest.param(_track(timestamp="2026-01-15T10:00:00"), "timestamp", id="naive"),
        pytest.param(_track(timestamp=1768471200), "timestamp", id="number"),
        pytest.param(_track(user_id=5), "user_id", id="user-not-text"),
        pytest.param(_track(properties=[1]), "properties", id="properties-not-an-object"),
        pytest.param(_identify(user_id=None), "user_id", id="identify-without-user"),
        pytest.param(_identify(traits="x"), "traits", id="traits-not-an-object"),
        pytest.param(_identify(anonymous_id="a"), "keys", id="identify-with-anonymous-id"),
    ],
)
def test_refuses_what_the_provider_must_never_write(
    tmp_path: Path, line: dict[str, Any] | str, problem: str
) -> None:
    path = tmp_path / "events.jsonl"
    fake = JsonlFake(str(path))
    good = _track()
    _write(path, line, good)
    assert fake.events == [good]  # the bad line is refused, the next one read
    (rejection,) = fake.rejections
    assert problem in rejection.message and "events.jsonl:1" in rejection.message


def test_refuses_a_line_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(b'{"type": "track", "event": "caf\xe9"}\n')
    fake = JsonlFake(str(path))
    assert fake.events == []
    assert "UTF-8" in fake.rejections[0].message


def test_clear_forgets_what_was_read_and_reads_on(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    fake = JsonlFake(str(path))
    _write(path, _track())
    assert len(fake.events) == 1
    fake.clear()
    assert fake.events == []
    later = _track()
    _write(path, later)
    assert fake.events == [later]


def test_the_destination_is_a_file_not_a_server() -> None:
    assert VendorFake.served is True  # the vendors' fakes are served over HTTP
    found = destination()
    assert found.provider == "jsonl"
    fake = found.fake
    assert isinstance(fake, JsonlFake) and fake.served is False
    variables = found.environment("http://127.0.0.1:9")  # the URL means nothing to a file
    assert variables == {"TRACKING_JSONL_PATH": fake.path}
    assert found.environment("http://other:1") == variables
    assert Path(fake.path).parent.is_dir() and not Path(fake.path).exists()
    with LoopbackReceiver(fake) as server:  # served by mistake, it says what it is
        import httpx

        answer = httpx.post(server.url + "/v1/events", content=b"{}")
    assert answer.status_code == 404
    assert "not a server" in answer.text
    assert fake.requests and fake.events == []
