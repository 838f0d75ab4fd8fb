"""FastAPI: ``tracking_core.integrations.fastapi`` (the ASGI middleware whose hooks get a
Starlette ``HTTPConnection``, and the dependency) with FastAPI's ``TestClient`` and httpx's
``ASGITransport``, events delivered to the PostHog and webhook fakes on loopback."""

from __future__ import annotations

import asyncio
import logging
import warnings

import httpx
import pytest
from fastapi import BackgroundTasks, Depends, FastAPI, WebSocket
from starlette.requests import HTTPConnection

import tracking_core as tc
from tracking_core.integrations.fastapi import TrackingMiddleware, tracking_dependency
from tracking_core.testing import RecordingProvider

from .conftest import EnvironmentReport
from .test_frameworks import (
    EVENT,
    IN_PROCESS,
    PROVIDERS,
    Sent,
    check_arrivals,
    delivering,
    framework,
    report,
    users_and_visitors,
)

with warnings.catch_warnings():
    # Starlette asks for httpx2 beside its test client; httpx (which it still uses) is here.
    warnings.filterwarnings("ignore", "Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

PER_REQUEST = 4


def add_routes(app: FastAPI) -> FastAPI:
    @app.get("/async")
    async def tracked_async(tag: str) -> str:
        for seq in range(PER_REQUEST):
            tc.track(EVENT, {"tag": tag, "seq": seq})
            await asyncio.sleep(0.001 * (seq % 3))  # concurrent requests interleave
        return "ok"

    @app.get("/sync")
    def tracked_sync(tag: str) -> str:  # run in Starlette's thread pool
        for seq in range(PER_REQUEST):
            tc.track(EVENT, {"tag": tag, "seq": seq})
        return "ok"

    @app.get("/later")
    async def tracked_later(tag: str, tasks: BackgroundTasks) -> str:
        def later() -> None:
            for seq in range(2):
                tc.track(EVENT, {"tag": tag, "seq": seq})

        tasks.add_task(later)
        return "ok"

    @app.websocket("/ws")
    async def socket(websocket: WebSocket) -> None:
        await websocket.accept()
        tc.track(EVENT, {"tag": await websocket.receive_text(), "seq": 0})
        await websocket.send_text("ok")
        await websocket.close()

    return app


async def header_user(connection: HTTPConnection) -> str | None:
    """The hook (async): the user an upstream gateway vouched for."""
    await asyncio.sleep(0)
    return connection.headers.get("x-user")


def request_headers(want: Sent) -> dict[str, str]:
    headers = {}
    if want.user_id:
        headers["x-user"] = want.user_id
    if want.anonymous_id:
        headers["cookie"] = f"anon={want.anonymous_id}"
    return headers


async def concurrently(app: FastAPI, sent: dict[str, Sent]) -> None:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        answers = await asyncio.gather(
            *(
                client.get(
                    "/async" if n % 2 else "/sync",
                    params={"tag": tag},
                    headers=request_headers(want),
                )
                for n, (tag, want) in enumerate(sent.items())
            )
        )
    assert [answer.status_code for answer in answers] == [200] * len(sent)


@pytest.mark.parametrize("form", ["middleware", "dependency"])
def test_fastapi_concurrent_requests_get_their_own_ids(
    form: str, environment_report: EnvironmentReport
) -> None:
    options = {"user_id": header_user, "anonymous_id_cookie": "anon"}
    if form == "middleware":
        app = add_routes(FastAPI())
        app.add_middleware(TrackingMiddleware, **options)  # type: ignore[arg-type]
        how = "TrackingMiddleware"
    else:
        app = add_routes(FastAPI(dependencies=[Depends(tracking_dependency(**options))]))  # type: ignore[arg-type]
        how = "tracking_dependency"
    sent = users_and_visitors(30)
    with delivering() as served:
        asyncio.run(concurrently(app, sent))
        assert tc.flush_tracking(10)
        for name in PROVIDERS:
            result = check_arrivals(served[name], sent, PER_REQUEST)
            report(
                environment_report,
                result,
                setup=f"{framework('fastapi')}: {how}, httpx ASGITransport, "
                "30 concurrent requests, async and sync endpoints",
                stop=IN_PROCESS,
            )


def test_fastapi_middleware_covers_background_tasks_and_websockets(
    tracking_events: RecordingProvider,
) -> None:
    app = add_routes(FastAPI())
    app.add_middleware(
        TrackingMiddleware,
        user_id=lambda connection: connection.query_params.get("user"),
        request_properties=["path", "method"],
    )
    with TestClient(app) as client:
        assert client.get("/later", params={"tag": "later", "user": "u-bg"}).status_code == 200
        with client.websocket_connect("/ws?user=u-ws") as websocket:
            websocket.send_text("ws")
            assert websocket.receive_text() == "ok"
    tracking_events.settle()
    seen = {
        (
            e.properties["tag"],
            e.user_id,
            e.properties["request_path"],
            e.properties["request_method"],
        )
        for e in tracking_events.find(EVENT)
    }
    assert seen == {("later", "u-bg", "/later", "GET"), ("ws", "u-ws", "/ws", "WEBSOCKET")}


def test_fastapi_failing_hook_never_breaks_the_request(
    tracking_events: RecordingProvider, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(connection: HTTPConnection) -> str | None:
        raise PermissionError("token expired")

    app = add_routes(
        FastAPI(
            dependencies=[
                Depends(tracking_dependency(user_id=broken, anonymous_id_header="x-anon"))
            ]
        )
    )
    with TestClient(app) as client, caplog.at_level(logging.WARNING, logger="tracking_core"):
        answers = [
            client.get(path, params={"tag": "f"}, headers={"x-anon": "anon-f"})
            for path in ("/sync", "/async")
        ]
    assert [answer.status_code for answer in answers] == [200, 200]
    tracking_events.settle()
    assert {(e.user_id, e.anonymous_id) for e in tracking_events.find(EVENT)} == {(None, "anon-f")}
    lines = [r.getMessage() for r in caplog.records if "user_id hook" in r.getMessage()]
    assert len(lines) == 1 and "PermissionError" in lines[0] and "broken" in lines[0], lines
