"""Django: ``tracking_core.integrations.django.TrackingMiddleware`` with Django's own test
clients (``Client`` for the synchronous chain, ``AsyncClient`` for the asynchronous one),
real sessions and ``django.contrib.auth`` users in a SQLite database, events delivered to the
PostHog and webhook fakes on loopback.

Django's settings are made once per process (``settings.configure``); each test changes the
``TRACKING`` setting with ``override_settings``, and Django's clients load the middleware
(reading it) for each client.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import types
from collections.abc import AsyncIterator, Iterator
from typing import Any

import django
import pytest
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.test import AsyncClient, Client, override_settings
from django.urls import path

import tracking_core as tc
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
)

PER_REQUEST = 4


def track_view(request: HttpRequest) -> HttpResponse:
    tag = request.GET["tag"]
    for seq in range(PER_REQUEST):
        tc.track(EVENT, {"tag": tag, "seq": seq})
    return HttpResponse("ok")


async def async_track_view(request: HttpRequest) -> HttpResponse:
    tag = request.GET["tag"]
    for seq in range(PER_REQUEST):
        tc.track(EVENT, {"tag": tag, "seq": seq})
        await asyncio.sleep(0.001 * (seq % 3))  # concurrent requests interleave
    return HttpResponse("ok")


def stream_view(request: HttpRequest) -> StreamingHttpResponse:
    def body() -> Iterator[bytes]:
        for seq in range(PER_REQUEST):
            tc.track(EVENT, {"tag": "stream", "seq": seq})
            yield b"chunk"

    return StreamingHttpResponse(body())


def async_stream_view(request: HttpRequest) -> StreamingHttpResponse:
    async def body() -> AsyncIterator[bytes]:
        for seq in range(PER_REQUEST):
            tc.track(EVENT, {"tag": "astream", "seq": seq})
            await asyncio.sleep(0)
            yield b"chunk"

    return StreamingHttpResponse(body())


#: The URLconf, as a module object (Django takes one where it takes a module's name).
URLS = types.ModuleType("tracking_core_test_urls")
URLS.urlpatterns = [  # type: ignore[attr-defined]
    path("track", track_view),
    path("atrack", async_track_view),
    path("stream", stream_view),
    path("astream", async_stream_view),
]

MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "tracking_core.integrations.django.TrackingMiddleware",
]


@pytest.fixture(scope="module")
def users(tmp_path_factory: pytest.TempPathFactory) -> list[Any]:
    """Django configured once (SQLite in a file, so every thread sees the same users), migrated,
    and eight users."""
    if not settings.configured:
        database = tmp_path_factory.mktemp("django") / "db.sqlite3"
        settings.configure(
            SECRET_KEY="tracking-core tests",
            ALLOWED_HOSTS=["*"],
            ROOT_URLCONF=URLS,
            INSTALLED_APPS=["django.contrib.auth", "django.contrib.contenttypes"],
            MIDDLEWARE=MIDDLEWARE,
            DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(database)}},
            SESSION_ENGINE="django.contrib.sessions.backends.signed_cookies",
            PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"],
            USE_TZ=True,
        )
        django.setup()
        call_command("migrate", verbosity=0)
    assert settings.ROOT_URLCONF is URLS, "Django was configured by someone else"
    from django.contrib.auth.models import User

    return [User.objects.get_or_create(username=f"member-{n}")[0] for n in range(8)]


def signed_in(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_django_middleware_gives_each_request_its_user_across_threads(
    users: list[Any], environment_report: EnvironmentReport
) -> None:
    # Each thread alternates between two signed-in users and an anonymous visitor with a
    # cookie: what one request set must never reach the next one on the same thread.
    plans: list[list[tuple[Client, Sent]]] = []
    for thread in range(4):
        members = [users[thread], users[thread + 4]]
        visitor = Client()
        visitor.cookies["anon"] = f"anon-t{thread}"
        clients = [(signed_in(user), Sent(str(user.pk))) for user in members]
        plans.append([*clients, (visitor, Sent(None, f"anon-t{thread}"))] * 3)
    sent: dict[str, Sent] = {}
    for thread, plan in enumerate(plans):
        sent.update((f"t{thread}-{n}", want) for n, (_, want) in enumerate(plan))
    errors: list[BaseException] = []

    def serve(thread: int) -> None:
        try:
            for n, (client, _) in enumerate(plans[thread]):
                answer = client.get("/track", {"tag": f"t{thread}-{n}"})
                assert answer.status_code == 200, answer
        except BaseException as exc:
            errors.append(exc)

    with override_settings(TRACKING={"ANONYMOUS_ID_COOKIE": "anon"}), delivering() as served:
        workers = [threading.Thread(target=serve, args=(n,)) for n in range(4)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(60)
        assert not errors, errors
        assert tc.flush_tracking(10)
        for name in PROVIDERS:
            result = check_arrivals(served[name], sent, PER_REQUEST)
            report(
                environment_report,
                result,
                setup=f"{framework('django')}: test Client, 4 threads x 9 requests, request.user",
                stop=IN_PROCESS,
            )


def test_django_async_chain_reads_the_user_with_auser_for_concurrent_requests(
    users: list[Any], environment_report: EnvironmentReport
) -> None:
    clients: list[tuple[AsyncClient, str, Sent, dict[str, str]]] = []
    for user in users:
        client = AsyncClient()
        client.force_login(user)
        clients.append((client, f"a{user.pk}", Sent(str(user.pk)), {}))
    # (Headers given per request: AsyncClient(headers=...) mangles their names.)
    visitor = {"X-Anonymous-Id": "anon-header"}
    clients.append((AsyncClient(), "anonymous", Sent(None, "anon-header"), visitor))
    sent = {tag: want for _, tag, want, _ in clients}

    async def run() -> None:
        answers = await asyncio.gather(
            *(client.get("/atrack", {"tag": tag}, headers=h) for client, tag, _, h in clients)
        )
        assert [answer.status_code for answer in answers] == [200] * len(clients)

    tracking = {"ANONYMOUS_ID_HEADER": "X-Anonymous-Id"}
    with override_settings(TRACKING=tracking), delivering() as served:
        asyncio.run(run())
        assert tc.flush_tracking(10)
        for name in PROVIDERS:
            result = check_arrivals(served[name], sent, PER_REQUEST)
            report(
                environment_report,
                result,
                setup=f"{framework('django')}: AsyncClient, async middleware chain, "
                "9 concurrent requests, request.auser()",
                stop=IN_PROCESS,
            )


def test_django_streamed_bodies_are_tracked_in_the_request_context(
    users: list[Any], tracking_events: RecordingProvider
) -> None:
    client = signed_in(users[0])
    answer = client.get("/stream")
    assert b"".join(answer.streaming_content) == b"chunk" * PER_REQUEST  # type: ignore[attr-defined]

    async def stream() -> bytes:
        aclient = AsyncClient()
        await aclient.aforce_login(users[1])
        response = await aclient.get("/astream")
        return b"".join([chunk async for chunk in response.streaming_content])  # type: ignore[attr-defined]

    assert asyncio.run(stream()) == b"chunk" * PER_REQUEST
    tracking_events.settle()
    tags = {(e.properties["tag"], e.user_id) for e in tracking_events.find(EVENT)}
    assert tags == {("stream", str(users[0].pk)), ("astream", str(users[1].pk))}


def _who(request: HttpRequest) -> str:
    return "user-from-hook"


def test_django_tracking_setting_hooks_and_request_properties(
    users: list[Any], tracking_events: RecordingProvider
) -> None:
    tracking = {
        "USER_ID": _who,
        "ANONYMOUS_ID": "tracking_core.integrations.django.user_id_of",  # any dotted path
        "REQUEST_PROPERTIES": ["path", "method", "user_agent"],
    }
    with override_settings(TRACKING=tracking):
        signed_in(users[2]).post("/track?tag=p", headers={"user-agent": "Browser/1"})
    with override_settings(TRACKING={"USER_ID": None}):
        signed_in(users[2]).get("/track", {"tag": "none"})
    tracking_events.settle()
    seen = {
        (e.properties["tag"], e.user_id, e.anonymous_id, e.properties.get("request_path"))
        for e in tracking_events.find(EVENT)
    }
    assert seen == {("p", "user-from-hook", str(users[2].pk), "/track"), ("none", None, None, None)}
    [first] = [e for e in tracking_events.find(EVENT) if e.properties["seq"] == 0][:1]
    assert first.properties["request_method"] == "POST"
    assert first.properties["request_user_agent"] == "Browser/1"


async def _async_who(request: HttpRequest) -> str:
    await asyncio.sleep(0)
    return f"async-{request.headers['X-Who']}"


def test_django_async_chain_awaits_an_async_hook(
    users: list[Any], tracking_events: RecordingProvider
) -> None:
    async def run() -> int:
        answer = await AsyncClient().get("/atrack", {"tag": "h"}, headers={"X-Who": "7"})
        return int(answer.status_code)

    with override_settings(TRACKING={"USER_ID": _async_who}):
        assert asyncio.run(run()) == 200
    tracking_events.settle()
    assert {e.user_id for e in tracking_events.find(EVENT)} == {"async-7"}


def _broken(request: HttpRequest) -> str:
    raise ConnectionError("the user service is down")


def test_django_failing_hook_never_breaks_the_request(
    users: list[Any], tracking_events: RecordingProvider, caplog: pytest.LogCaptureFixture
) -> None:
    visitor = Client()
    visitor.cookies["anon"] = "anon-9"
    with (
        override_settings(TRACKING={"USER_ID": _broken, "ANONYMOUS_ID_COOKIE": "anon"}),
        caplog.at_level(logging.WARNING, logger="tracking_core"),
    ):
        answers: list[Any] = [visitor.get("/track", {"tag": "f"}) for _ in range(3)]
        answers.append(asyncio.run(AsyncClient().get("/track", {"tag": "f"})))
    assert [answer.status_code for answer in answers] == [200] * 4
    tracking_events.settle()
    ids = [(e.user_id, e.anonymous_id) for e in tracking_events.find(EVENT)]
    assert ids == [(None, "anon-9")] * 3 * PER_REQUEST + [(None, None)] * PER_REQUEST
    lines = [r.getMessage() for r in caplog.records if "user_id hook" in r.getMessage()]
    assert len(lines) == 1 and "ConnectionError" in lines[0], lines
    assert "service is down" not in caplog.text


@pytest.mark.parametrize(
    ("tracking", "problem"),
    [
        ({"USER": "x"}, "unknown keys"),
        ({"USER_ID": "no_such_module.user_id"}, "cannot import"),
        ({"USER_ID": 42}, "callable"),
        ({"REQUEST_PROPERTIES": ["query"]}, "query"),
        (["not", "a", "dict"], "dict"),
    ],
)
def test_django_malformed_tracking_setting_fails_when_the_middleware_loads(
    users: list[Any], tracking: object, problem: str
) -> None:
    with override_settings(TRACKING=tracking), pytest.raises(ImproperlyConfigured, match=problem):
        Client().get("/track", {"tag": "x"})
