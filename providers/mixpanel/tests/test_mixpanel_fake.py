"""The strict fake itself: it must refuse what Mixpanel refuses, with Mixpanel's bodies."""

from __future__ import annotations

import base64
import gzip
import json
import time
import uuid
from typing import Any

import httpx
import pytest
from tracking_mixpanel.fake import MixpanelFake, destination

import tracking_core
from tracking_core.receivers import LoopbackReceiver, Reply

TOKEN = "fake-token-1"
NOW = 1_768_471_200.0  # 2026-01-15T10:00:00Z
NOW_MS = int(NOW * 1000)
SA = ("sa.user", "sa-secret", "42")


@pytest.fixture
def fake() -> MixpanelFake:
    """Overrides the conftest's: its own credentials and a clock frozen at `NOW`."""
    return MixpanelFake(TOKEN, api_secret="proj-secret", service_account=SA, clock=lambda: NOW)


@pytest.fixture
def url(receiver: LoopbackReceiver) -> str:
    """The base URL of the conftest's `receiver`, which serves this module's `fake`."""
    return receiver.url


def event(**props: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "token": TOKEN,
        "distinct_id": "user-1",
        "time": NOW_MS - 1000,
        "$insert_id": str(uuid.uuid4()),
    }
    base.update(props)
    return {"event": "Signed Up", "properties": {k: v for k, v in base.items() if v is not ...}}


def post(
    url: str,
    body: Any,
    *,
    headers: dict[str, str] | None = None,
    raw: bytes | None = None,
    gzipped: bool = False,
) -> httpx.Response:
    """POST `body` as JSON (or the `raw` bytes); `gzipped` compresses it and says so."""
    data = raw if raw is not None else json.dumps(body).encode()
    sent = {"Content-Type": "application/json", **(headers or {})}
    if gzipped:
        data = gzip.compress(data)
        sent["Content-Encoding"] = "gzip"
    return httpx.post(url, content=data, headers=sent, timeout=10)


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_track_accepts_a_valid_batch_and_empty_distinct_id(fake: MixpanelFake, url: str) -> None:
    answer = post(f"{url}/track?verbose=1", [event(), event(distinct_id="")])
    assert answer.status_code == 200
    assert answer.json() == {"status": 1, "error": None}
    assert len(fake.events) == 2


def test_track_without_verbose_answers_text(url: str) -> None:
    assert post(f"{url}/track", [event()]).text == "1"
    assert post(f"{url}/track", [event(distinct_id="anonymous")]).text == "0"


def test_track_accepts_the_form_data_field(fake: MixpanelFake, url: str) -> None:
    answer = httpx.post(
        f"{url}/track", data={"data": json.dumps(event()), "verbose": "1"}, timeout=10
    )
    assert answer.json()["status"] == 1
    assert len(fake.events) == 1


@pytest.mark.parametrize(
    "bad",
    [
        {"distinct_id": "anonymous"},
        {"distinct_id": "NULL"},
        {"distinct_id": "undefined"},
        {"distinct_id": "0"},
        {"distinct_id": "00000000-0000-0000-0000-000000000000"},
        {"distinct_id": 12345},
        {"distinct_id": ...},
        {"$user_id": "anonymous"},
        {"$device_id": ""},
        {"time": NOW_MS // 1000},  # seconds
        {"time": NOW_MS - 1000.5},  # float
        {"time": float(NOW_MS - 1000)},  # a float, even a whole one
        {"time": str(NOW_MS)},
        {"time": 20_000_000_000},  # 1970 in ms
        {"time": NOW_MS + 2 * 3_600_000},  # 2 h ahead
        {"time": NOW_MS - 6 * 86_400_000},  # older than 5 days on /track
        {"time": ...},
        {"$insert_id": "x" * 37},
        {"$insert_id": "has space"},
        {"$insert_id": "under_score"},
        {"$insert_id": "null"},
        {"$insert_id": ...},
        {"token": "other"},
        {"token": ...},
    ],
)
def test_track_refuses(fake: MixpanelFake, url: str, bad: dict[str, Any]) -> None:
    answer = post(f"{url}/track?verbose=1", [event(), event(**bad)])
    assert answer.status_code == 200
    body = answer.json()
    assert body["status"] == 0 and "event 1" in body["error"]
    assert fake.events == []  # the whole request is refused


#: The identities of one anonymous and one identified event, as each ID Merge API wants them.
SIMPLIFIED_SHAPES = [
    {"distinct_id": "$device:anon-1", "$device_id": "anon-1"},
    {"distinct_id": "user-1", "$user_id": "user-1", "$device_id": "anon-1"},
]
ORIGINAL_SHAPES = [{"distinct_id": "anon-1"}, {"distinct_id": "user-1"}]


@pytest.mark.parametrize(
    ("id_merge", "accepted", "refused"),
    [
        (None, SIMPLIFIED_SHAPES + ORIGINAL_SHAPES, []),
        (
            "simplified",
            SIMPLIFIED_SHAPES,
            [
                {"distinct_id": "anon-1", "$device_id": "anon-1"},
                {"distinct_id": "user-2", "$user_id": "user-1"},
            ],
        ),
        ("original", ORIGINAL_SHAPES, [SIMPLIFIED_SHAPES[0], {"distinct_id": "$device:x"}]),
    ],
    ids=["any", "simplified", "original"],
)
def test_the_id_merge_api_is_checked_when_given(
    id_merge: str | None,
    accepted: list[dict[str, Any]],
    refused: list[dict[str, Any]],
) -> None:
    fake = MixpanelFake(TOKEN, clock=lambda: NOW, id_merge=id_merge)
    with fake.serve() as receiver:
        for ids in accepted:
            answer = post(f"{receiver.url}/track?verbose=1", [event(**ids)])
            assert answer.json() == {"status": 1, "error": None}, ids
        for ids in refused:
            answer = post(f"{receiver.url}/track?verbose=1", [event(**ids)])
            assert answer.json()["status"] == 0, ids
    assert len(fake.events) == len(accepted)
    with pytest.raises(ValueError, match="id_merge"):
        MixpanelFake(TOKEN, id_merge="legacy")


def test_track_refuses_a_missing_event_name(url: str) -> None:
    record = event()
    record["event"] = ""
    assert post(f"{url}/track?verbose=1", [record]).json()["status"] == 0


def test_track_refuses_nan_tokens(url: str) -> None:
    raw = json.dumps([event(x=float("nan"))]).encode()
    answer = post(f"{url}/track?verbose=1", None, raw=raw)
    assert answer.status_code == 400 and "NaN" in answer.json()["error"]


def test_track_limits(fake: MixpanelFake, url: str) -> None:
    too_many = post(f"{url}/track?verbose=1", [event() for _ in range(2001)])
    assert too_many.json()["status"] == 0 and "2001" in too_many.json()["error"]
    exactly = post(f"{url}/track?verbose=1", [event() for _ in range(2000)])
    assert exactly.json()["status"] == 1
    big = [event(blob="x" * 900_000) for _ in range(12)]  # about 10.8 MB, gzipped to little
    too_big = post(f"{url}/track?verbose=1", big, gzipped=True)
    assert too_big.status_code == 413
    assert len(fake.events) == 2000


def test_track_accepts_gzip(url: str) -> None:
    answer = post(f"{url}/track?verbose=1", [event()], gzipped=True)
    assert answer.json()["status"] == 1
    broken = post(
        f"{url}/track?verbose=1", None, raw=b"not gzip", headers={"Content-Encoding": "gzip"}
    )
    assert broken.status_code == 400


def update(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"$token": TOKEN, "$distinct_id": "user-1", "$set": {"plan": "pro"}}
    base.update(fields)
    return {k: v for k, v in base.items() if v is not ...}


def test_engage_accepts_set_and_refuses_gzip(fake: MixpanelFake, url: str) -> None:
    assert post(f"{url}/engage?verbose=1", [update()]).json() == {"status": 1, "error": None}
    zipped = post(f"{url}/engage?verbose=1", [update()], gzipped=True)
    assert zipped.json()["status"] == 0 and "gzip" in zipped.json()["error"]
    assert len(fake.identifies) == 1


@pytest.mark.parametrize(
    "bad",
    [
        {"$token": "other"},
        {"$distinct_id": ""},
        {"$distinct_id": "anonymous"},
        {"$distinct_id": ...},
        {"$set": ["not", "an", "object"]},
        {"$set": ...},
        {"$set_once": {"a": 1}},  # two operations
        {"$bogus": 1},
    ],
)
def test_engage_refuses(fake: MixpanelFake, url: str, bad: dict[str, Any]) -> None:
    assert post(f"{url}/engage?verbose=1", [update(**bad)]).json()["status"] == 0
    assert fake.identifies == []


def test_import_needs_valid_basic_auth(fake: MixpanelFake, url: str) -> None:
    records = [event(token=...)]
    assert post(f"{url}/import?strict=1", records).status_code == 401
    assert post(f"{url}/import?strict=1", records, headers=basic("wrong", "")).status_code == 401
    no_project = post(f"{url}/import?strict=1", records, headers=basic("sa.user", "sa-secret"))
    assert no_project.status_code == 401
    assert no_project.json() == {
        "code": 401,
        "error": "Invalid credentials",
        "status": "Unauthorized",
    }
    ok = post(
        f"{url}/import?strict=1&project_id=42", records, headers=basic("sa.user", "sa-secret")
    )
    assert ok.json() == {"code": 200, "num_records_imported": 1, "status": "OK"}
    secret = post(f"{url}/import?strict=1", records, headers=basic("proj-secret", ""))
    assert secret.status_code == 200
    assert len(fake.events) == 2


def test_import_strict_lists_failed_records_and_keeps_the_rest(
    fake: MixpanelFake,
    url: str,
) -> None:
    old = NOW_MS - 30 * 86_400_000  # fine on /import
    records = [event(time=old), event(time=NOW_MS // 1000), event(), event(distinct_id="null")]
    answer = post(f"{url}/import?strict=1", records, headers=basic("proj-secret", ""))
    assert answer.status_code == 400
    body = answer.json()
    assert body["num_records_imported"] == 2
    assert [f["index"] for f in body["failed_records"]] == [1, 3]
    assert body["failed_records"][0]["field"] == "properties.time"
    assert body["failed_records"][0]["insert_id"] == records[1]["properties"]["$insert_id"]
    assert len(fake.events) == 2
    lenient = post(f"{url}/import", records, headers=basic("proj-secret", ""))
    assert lenient.status_code == 200 and lenient.json()["num_records_imported"] == 2


def test_import_accepts_ndjson_and_refuses_too_many(url: str) -> None:
    lines = "\n".join(json.dumps(event()) for _ in range(3)).encode()
    answer = post(
        f"{url}/import?strict=1",
        None,
        raw=lines,
        headers={**basic("proj-secret", ""), "Content-Type": "application/x-ndjson"},
    )
    assert answer.json()["num_records_imported"] == 3
    many = post(
        f"{url}/import?strict=1", [event() for _ in range(2001)], headers=basic("proj-secret", "")
    )
    assert many.status_code == 400


def test_scripted_failures_and_thread_safe_records(fake: MixpanelFake, url: str) -> None:
    fake.fail_next(503, Reply(502, {"error": "down"}), route="track")
    assert post(f"{url}/engage?verbose=1", [update()]).status_code == 200  # other route
    scripted = post(f"{url}/track?verbose=1", [event()])
    assert (scripted.status_code, scripted.json()["status"]) == (503, 0)
    assert post(f"{url}/track?verbose=1", [event()]).status_code == 502
    assert post(f"{url}/track?verbose=1", [event()]).status_code == 200
    assert post(f"{url}/track?verbose=1", [event(token="other")]).json()["status"] == 0
    assert [r.status for r in fake.rejections] == [200]  # Mixpanel says status 0 in a 200
    assert "event 0" in fake.rejections[0].message
    assert len(fake.events) == 1 and fake.event_ids() == [
        fake.events[0]["properties"]["$insert_id"]
    ]
    fake.clear()
    assert fake.events == [] and fake.identifies == [] and fake.rejections == []
    assert post(f"{url}/nowhere", []).status_code == 404
    assert "MixpanelFake" in repr(fake)


def test_the_clock_is_injectable() -> None:
    fake = MixpanelFake(TOKEN)
    with fake.serve() as receiver:
        now_ms = int(time.time() * 1000)
        assert post(f"{receiver.url}/track?verbose=1", [event(time=now_ms)]).json()["status"] == 1
        stale = post(f"{receiver.url}/track?verbose=1", [event()])  # NOW is long past
        assert stale.json()["status"] == 0


def test_destination_points_mixpanel_at_its_fake(tracking_env: Any) -> None:
    mixpanel = destination()
    with mixpanel.fake.serve() as receiver:
        variables = mixpanel.environment(receiver.url)
        tracking_env(TRACKING_PROVIDERS=mixpanel.provider, **variables)
        tracking_core.identify("user-7", {"plan": "pro"})
        tracking_core.track("Paid", {"amount": 5}, user_id="user-7")
        assert tracking_core.flush_tracking(10)
    fake = mixpanel.fake
    assert [fake.properties_of(e)["amount"] for e in fake.events] == [5]
    assert fake.event_ids() == [fake.events[0]["properties"]["$insert_id"]]
    assert [fake.user_of(update) for update in fake.identifies] == ["user-7"]
