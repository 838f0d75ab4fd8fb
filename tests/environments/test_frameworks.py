"""The web-framework integrations (issue #13): the request sets `tracking_context`.

This module holds what the framework test modules share (a delivery to the PostHog and webhook
fakes on loopback, the check that every event arrived once carrying its request's ids) and the
tests of the framework-free parts: what importing loads, the plain ASGI and WSGI middleware
(under httpx's ASGI transport and Werkzeug's test client), the opt-in request properties and
the failing hooks. Django, Flask and FastAPI have a module each
(``test_frameworks_<name>.py``); ``test_frameworks_servers.py`` runs them under real servers.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import subprocess
import sys
import textwrap
import threading
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, MutableMapping
from pathlib import Path
from typing import Any

import httpx
import pytest
from werkzeug.test import Client

import tracking_core as tc
from tracking_core import api
from tracking_core.integrations import asgi, wsgi
from tracking_core.testing import (
    FAST_DELIVERY,
    RecordingProvider,
    configure_tracking,
    reset_tracking,
)

from ..harness import TAG, Served, Tally, assert_exactly_once, environment, served_fakes, tally
from .conftest import EnvironmentReport

REPO = Path(__file__).resolve().parents[2]

#: The destinations every delivery scenario uses: PostHog's (one id, ``distinct_id``) and the
#: webhook's (Segment's ``userId`` and ``anonymousId``, each on its own).
PROVIDERS = ("posthog", "webhook")
#: The event every test application tracks, with ``tag`` (its request) and ``seq``.
EVENT = "Request Event"
PAGE = "frameworks"
#: How the in-process scenarios end, and what the report calls each destination.
IN_PROCESS = "flush_tracking(), in process"
DESTINATIONS = {"posthog": "PostHog", "webhook": "webhook"}


def framework(name: str) -> str:
    """``"Django 5.2"``: framework `name` (its distribution) and its installed major.minor."""
    from importlib.metadata import version

    shown = {"django": "Django", "flask": "Flask", "fastapi": "FastAPI"}[name]
    return f"{shown} {'.'.join(version(name).split('.')[:2])}"


def werkzeug_client(app: Any) -> Client:
    """Werkzeug's test client, sending the Cookie headers a test gives as they are."""
    return Client(app, use_cookies=False)


# -- shared by the framework modules ---------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Sent:
    """The ids one request should give its events (None: none)."""

    user_id: str | None = None
    anonymous_id: str | None = None


@contextlib.contextmanager
def delivering(**variables: str | None) -> Iterator[dict[str, Served]]:
    """PostHog and the webhook enabled against their fakes on loopback (plus engine
    `variables`), as an application gets them from its environment; shut down after."""
    with served_fakes(PROVIDERS) as served, pytest.MonkeyPatch.context() as monkeypatch:
        env = environment([served[name] for name in PROVIDERS], FAST_DELIVERY, **variables)
        configure_tracking(monkeypatch, env, discover=True)
        try:
            assert sorted(tc.list_tracking_providers()) == sorted(PROVIDERS)
            yield served
        finally:
            tc.shutdown_tracking(2.0)
            monkeypatch.undo()
            reset_tracking(timeout=2.0)


def track_events(tag: str, count: int) -> None:
    """What the test applications' handlers do: `count` events, with no id of their own."""
    for seq in range(count):
        tc.track(EVENT, {"tag": tag, "seq": seq})


def carried(served: Served, event: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """The (user id, anonymous id) an accepted event carries at its destination. PostHog has
    one id: the user's, else the anonymous one (a random one with neither: reported as None)."""
    if served.provider == "webhook":
        return event.get("userId"), event.get("anonymousId")
    props = served.fake.properties_of(event)
    if props.get("$process_person_profile") is False:
        return None, None
    return str(event["distinct_id"]), None


def check_arrivals(
    served: Served, sent: Mapping[str, Sent], per_request: int, *, counted: bool = True
) -> Tally:
    """Every event of every request (`sent`: by tag) arrived once, counted by its dedupe id,
    and carries its own request's ids, never another's. `counted`: compare the engine's
    counters too (in this process only)."""
    wanted = {(tag, seq) for tag in sent for seq in range(per_request)}
    stats = tc.tracking_stats()[served.provider] if counted else None
    result = assert_exactly_once(tally(served, wanted, key=TAG, stats=stats))
    for event in list(served.fake.events):
        props = served.fake.properties_of(event)
        if "tag" not in props:
            continue
        want = sent[str(props["tag"])]
        user, anonymous = carried(served, event)
        if served.provider == "webhook":
            assert user == want.user_id, (props, event)
            if want.anonymous_id is not None:
                assert anonymous == want.anonymous_id, (props, event)
        else:
            assert user == (want.user_id or want.anonymous_id), (props, event)
    return result


def report(environment_report: EnvironmentReport, result: Tally, *, setup: str, stop: str) -> None:
    """One row of the frameworks page for `result`'s destination."""
    environment_report.add(
        PAGE,
        setup=setup,
        stop=stop,
        destination=f"{DESTINATIONS[result.provider]} fake",
        tracked=len(result.expected),
        delivered=result.delivered,
        counted=result.dropped,
    )


def properties_of_recorded(recorder: RecordingProvider) -> list[dict[str, Any]]:
    recorder.settle()
    return [dict(event.properties) for event in recorder.find(EVENT)]


# -- importing --------------------------------------------------------------------------------

IMPORTS = """
import json, sys
FRAMEWORKS = {"django", "flask", "werkzeug", "fastapi", "starlette", "asgiref", "pydantic"}
seen = set(sys.modules)

def step(name):
    global seen
    new = sorted(
        m for m in set(sys.modules) - seen
        if m.split(".")[0] in FRAMEWORKS or m.startswith("tracking_core.integrations")
    )
    seen = set(sys.modules)
    print(json.dumps([name, new]))

import tracking_core
tracking_core.track("first use")
step("tracking_core")
import tracking_core.integrations
step("integrations")
import tracking_core.integrations.asgi, tracking_core.integrations.wsgi
step("asgi+wsgi")
import tracking_core.integrations.flask
step("flask")
import tracking_core.integrations.fastapi
step("fastapi")
import tracking_core.integrations.django
step("django")
"""


def test_importing_tracking_core_imports_no_framework_and_no_integration(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(IMPORTS)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={"PYTHONPATH": str(REPO), "TRACKING_DISABLED": "1", "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
    steps = dict(json.loads(line) for line in result.stdout.splitlines())
    assert steps["tracking_core"] == []
    assert steps["integrations"] == ["tracking_core.integrations"]
    # The shared logic and the framework-free middleware import no framework.
    assert {m.split(".")[0] for m in steps["asgi+wsgi"]} == {"tracking_core"}
    assert "tracking_core.integrations._request" in steps["asgi+wsgi"]
    # Each framework's module loads its framework, and only when it is imported.
    assert {"flask", "tracking_core.integrations.flask"} <= set(steps["flask"])
    assert not {m for m in steps["flask"] if m.split(".")[0] in {"django", "starlette"}}
    assert {"starlette", "tracking_core.integrations.fastapi"} <= set(steps["fastapi"])
    assert not {m for m in steps["fastapi"] if m.split(".")[0] == "django"}
    assert {"django", "tracking_core.integrations.django"} <= set(steps["django"])


# -- ASGI -------------------------------------------------------------------------------------

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

PER_REQUEST = 4


async def interleaving_asgi_app(scope: Scope, receive: Receive, send: Send) -> None:
    """Tracks `PER_REQUEST` events for the ``tag`` in its query, yielding to the loop between
    them so that concurrent requests interleave."""
    assert scope["type"] == "http"
    tag = scope["query_string"].decode().removeprefix("tag=")
    for seq in range(PER_REQUEST):
        tc.track(EVENT, {"tag": tag, "seq": seq})
        await asyncio.sleep(0.001 * (seq % 3))
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def header_of(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


def users_and_visitors(count: int) -> dict[str, Sent]:
    """`count` requests: a signed-in user (every third one without an anonymous id), or an
    anonymous visitor with a cookie, or (every fifth) nobody known."""
    sent: dict[str, Sent] = {}
    for n in range(count):
        if n % 5 == 4:
            sent[f"r{n}"] = Sent()
        elif n % 2 == 0:
            sent[f"r{n}"] = Sent(f"user-{n}", None if n % 3 == 0 else f"anon-{n}")
        else:
            sent[f"r{n}"] = Sent(None, f"anon-{n}")
    return sent


def request_headers(want: Sent) -> dict[str, str]:
    headers = {"user-agent": "framework-tests/1.0"}
    if want.user_id:
        headers["x-user"] = want.user_id
    if want.anonymous_id:
        headers["cookie"] = f"theme=dark; anon={want.anonymous_id}"
    return headers


def test_asgi_middleware_gives_concurrent_requests_their_own_ids(
    environment_report: EnvironmentReport,
) -> None:
    app = asgi.TrackingMiddleware(
        interleaving_asgi_app,
        user_id=lambda scope: header_of(scope, b"x-user"),
        anonymous_id_cookie="anon",
    )
    sent = users_and_visitors(30)

    async def run() -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            answers = await asyncio.gather(
                *(client.get(f"/?tag={tag}", headers=request_headers(w)) for tag, w in sent.items())
            )
        assert [answer.status_code for answer in answers] == [200] * len(sent)

    with delivering() as served:
        asyncio.run(run())
        assert api._context.get() is None  # nothing left behind in the caller's context
        assert tc.flush_tracking(10)
        for name in PROVIDERS:
            result = check_arrivals(served[name], sent, PER_REQUEST)
            report(
                environment_report,
                result,
                setup="ASGI app + asgi.TrackingMiddleware, httpx ASGITransport, "
                "30 concurrent requests on one loop",
                stop=IN_PROCESS,
            )


def test_asgi_middleware_awaits_async_hooks_and_passes_lifespan_through(
    tracking_events: RecordingProvider,
) -> None:
    async def user_id(scope: Scope) -> str | None:
        await asyncio.sleep(0)
        return header_of(scope, b"x-user")

    lifespan: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            lifespan.append("started")
            return
        await interleaving_asgi_app(scope, receive, send)

    wrapped = asgi.TrackingMiddleware(app, user_id=user_id)

    async def run() -> None:
        async def receive() -> MutableMapping[str, Any]:
            return {"type": "lifespan.startup"}

        async def send(message: MutableMapping[str, Any]) -> None:
            return None

        await wrapped({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send)
        transport = httpx.ASGITransport(app=wrapped)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            await client.get("/?tag=a", headers={"x-user": "user-a"})

    asyncio.run(run())
    assert lifespan == ["started"]
    tracking_events.settle()
    assert {event.user_id for event in tracking_events.find(EVENT)} == {"user-a"}


# -- WSGI -------------------------------------------------------------------------------------

WSGIEnviron = dict[str, Any]
StartResponse = Callable[..., Any]


def streaming_wsgi_app(environ: WSGIEnviron, start_response: StartResponse) -> Iterable[bytes]:
    """Tracks half its events in the handler, half while its body is being sent."""
    tag = environ["QUERY_STRING"].removeprefix("tag=")
    track_events(tag, 2)
    start_response("200 OK", [("Content-Type", "text/plain")])

    def body() -> Iterator[bytes]:
        for seq in range(2, PER_REQUEST):
            tc.track(EVENT, {"tag": tag, "seq": seq})
            yield b"chunk"

    return body()


def wsgi_headers(want: Sent) -> dict[str, str]:
    headers = request_headers(want)
    return {"User-Agent" if k == "user-agent" else k: v for k, v in headers.items()}


def test_wsgi_middleware_keeps_each_request_to_itself_across_threads(
    environment_report: EnvironmentReport,
) -> None:
    app = wsgi.TrackingMiddleware(
        streaming_wsgi_app,
        user_id=lambda environ: environ.get("HTTP_X_USER"),
        anonymous_id_cookie="anon",
    )
    sent = users_and_visitors(40)
    tags = list(sent)
    errors: list[BaseException] = []

    def worker(offset: int) -> None:
        # Each thread serves requests one after another, signed in or not: what one request
        # set must never reach the next one on the same thread.
        client = werkzeug_client(app)
        try:
            for tag in tags[offset::4]:
                answer = client.get(f"/?tag={tag}", headers=wsgi_headers(sent[tag]))
                assert answer.status_code == 200 and answer.data == b"chunk" * 2
                assert api._context.get() is None
        except BaseException as exc:
            errors.append(exc)

    with delivering() as served:
        threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert not errors, errors
        assert tc.flush_tracking(10)
        for name in PROVIDERS:
            result = check_arrivals(served[name], sent, PER_REQUEST)
            report(
                environment_report,
                result,
                setup="WSGI app + wsgi.TrackingMiddleware, Werkzeug test client, "
                "4 threads x 10 requests, streamed bodies",
                stop=IN_PROCESS,
            )


# -- request properties and ids ---------------------------------------------------------------


def plain_wsgi_app(environ: WSGIEnviron, start_response: StartResponse) -> Iterable[bytes]:
    track_events("p", 1)
    start_response("200 OK", [])
    return [b"ok"]


def test_request_properties_are_added_only_when_asked_for(
    tracking_events: RecordingProvider,
) -> None:
    headers = {"User-Agent": "Mozilla/5.0 (X11) tests", "Cookie": "anon=anon-1"}
    plain = werkzeug_client(wsgi.TrackingMiddleware(plain_wsgi_app, anonymous_id_cookie="anon"))
    plain.get("/items/7?secret=query", headers=headers)
    [props] = properties_of_recorded(tracking_events)
    assert props == {"tag": "p", "seq": 0}

    tracking_events.events.clear()
    chosen = werkzeug_client(
        wsgi.TrackingMiddleware(plain_wsgi_app, request_properties=["path", "method", "user_agent"])
    )
    chosen.post("/items/7?secret=query", headers=headers, base_url="http://localhost/app")
    [props] = properties_of_recorded(tracking_events)
    assert props == {
        "tag": "p",
        "seq": 0,
        "request_path": "/app/items/7",  # never the query string
        "request_method": "POST",
        "request_user_agent": "Mozilla/5.0 (X11) tests",
    }

    tracking_events.events.clear()
    chosen.get("/", headers={"User-Agent": "A" * 600})
    [props] = properties_of_recorded(tracking_events)
    assert props["request_user_agent"] == "A" * 512  # cut to MAX_PROPERTY_LENGTH


def test_unknown_request_properties_and_hooks_that_are_not_callable_are_refused() -> None:
    with pytest.raises(ValueError, match="query"):
        wsgi.TrackingMiddleware(plain_wsgi_app, request_properties=["path", "query"])
    with pytest.raises(TypeError, match="user_id"):
        wsgi.TrackingMiddleware(plain_wsgi_app, user_id="request.user")  # type: ignore[arg-type]


def test_anonymous_id_comes_from_the_cookie_then_the_header_and_ids_are_checked(
    tracking_events: RecordingProvider,
) -> None:
    client = werkzeug_client(
        wsgi.TrackingMiddleware(
            plain_wsgi_app, anonymous_id_cookie="ajs_anonymous_id", anonymous_id_header="X-Anon"
        )
    )
    client.get("/", headers={"Cookie": 'a=1; ajs_anonymous_id="anon-quoted"; b=2'})
    client.get("/", headers={"X-Anon": "anon-header"})
    client.get("/", headers={"Cookie": "ajs_anonymous_id=anon-cookie", "X-Anon": "anon-header"})
    client.get("/", headers={"Cookie": "ajs_anonymous_id=" + "x" * 300})  # too long: ignored
    tracking_events.settle()
    assert [event.anonymous_id for event in tracking_events.find(EVENT)] == [
        "anon-quoted",
        "anon-header",
        "anon-cookie",
        None,
    ]


def test_a_failing_hook_never_breaks_the_request_and_is_logged_rate_limited(
    tracking_events: RecordingProvider, caplog: pytest.LogCaptureFixture
) -> None:
    def user_id(environ: WSGIEnviron) -> str | None:
        raise RuntimeError("database down: password=hunter2")

    def anonymous_id(environ: WSGIEnviron) -> Any:
        return {"not": "a string"}

    client = werkzeug_client(
        wsgi.TrackingMiddleware(plain_wsgi_app, user_id=user_id, anonymous_id=anonymous_id)
    )
    with caplog.at_level(logging.WARNING, logger="tracking_core"):
        answers = [client.get("/") for _ in range(5)]
    assert [answer.status_code for answer in answers] == [200] * 5
    tracking_events.settle()
    events = tracking_events.find(EVENT)
    assert len(events) == 5
    assert {(event.user_id, event.anonymous_id) for event in events} == {(None, None)}
    lines = [record.getMessage() for record in caplog.records]
    about_user = [line for line in lines if "user_id hook" in line]
    about_anonymous = [line for line in lines if "anonymous_id hook" in line]
    assert len(about_user) == 1 and len(about_anonymous) == 1, lines  # once a minute
    assert "RuntimeError" in about_user[0] and "user_id" in about_user[0]
    assert "hunter2" not in "\n".join(lines)  # the exception's text may hold anything
    assert "dict" in about_anonymous[0]


def test_a_failing_async_hook_never_breaks_an_asgi_request(
    tracking_events: RecordingProvider, caplog: pytest.LogCaptureFixture
) -> None:
    async def user_id(scope: Scope) -> str | None:
        raise LookupError("no session")

    app = asgi.TrackingMiddleware(interleaving_asgi_app, user_id=user_id, anonymous_id_cookie="a")

    async def run() -> list[int]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            answers = [await client.get("/?tag=f", headers={"cookie": "a=anon-f"}) for _ in "12"]
        return [answer.status_code for answer in answers]

    with caplog.at_level(logging.WARNING, logger="tracking_core"):
        assert asyncio.run(run()) == [200, 200]
    tracking_events.settle()
    assert {(e.user_id, e.anonymous_id) for e in tracking_events.find(EVENT)} == {(None, "anon-f")}
    assert len([r for r in caplog.records if "user_id hook" in r.getMessage()]) == 1
