"""Each framework integration under its real server, in a subprocess: Django under gunicorn
(the synchronous middleware) and under uvicorn (the asynchronous one), Flask under gunicorn,
FastAPI under uvicorn. Concurrent requests from signed-in users and anonymous visitors track
events with a 60 s flush interval, so they are still pending when the server is stopped with
SIGTERM; every event must then have arrived exactly once at the PostHog and webhook fakes
(served by this pytest process), counted by its dedupe id, carrying its own request's ids and
the request properties the application opted in to.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import http.client
import json
import os
import signal
import socket
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest

from ..harness import Served, Started, environment, served_fakes
from .conftest import EnvironmentReport
from .test_frameworks import (
    PROVIDERS,
    Sent,
    check_arrivals,
    framework,
    report,
    users_and_visitors,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="POSIX signals"),
]

PER_REQUEST = 5
REQUESTS = 24
#: The shutdown budget (TRACKING_SHUTDOWN_TIMEOUT), and what start-up and exit may take on top
#: of it on a busy 2-core machine.
BUDGET = 5.0
MARGIN = 40.0
USER_AGENT = "framework-servers/1.0"

# -- the applications -------------------------------------------------------------------------

DJANGO_SITE = """
import asyncio
import json

import tracking_core as tc
from django.http import HttpResponse
from django.urls import path
from django.utils.deprecation import MiddlewareMixin

SECRET_KEY = "tracking-core tests"
DEBUG = False
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "djsite"
INSTALLED_APPS = []
DATABASES = {}
USE_TZ = True
MIDDLEWARE = [
    "djsite.GatewayAuthentication",
    "tracking_core.integrations.django.TrackingMiddleware",
]
TRACKING = {
    "ANONYMOUS_ID_COOKIE": "anon",
    "REQUEST_PROPERTIES": ["path", "method", "user_agent"],
}


class GatewayUser:
    is_authenticated = True

    def __init__(self, pk):
        self.pk = pk


class Nobody:
    is_authenticated = False
    pk = None


class GatewayAuthentication(MiddlewareMixin):
    # The application's authentication: a gateway in front vouches for the user (X-User).
    def process_request(self, request):
        user = request.headers.get("X-User")
        request.user = GatewayUser(user) if user else Nobody()


def track(request):
    tag, count = request.GET["tag"], int(request.GET["n"])
    for seq in range(count):
        tc.track("Request Event", {"tag": tag, "seq": seq})
    return HttpResponse(json.dumps({"tracked": count}))


async def atrack(request):
    tag, count = request.GET["tag"], int(request.GET["n"])
    for seq in range(count):
        tc.track("Request Event", {"tag": tag, "seq": seq})
        await asyncio.sleep(0.002)
    return HttpResponse(json.dumps({"tracked": count}))


urlpatterns = [path("track", track), path("atrack", atrack)]
"""

DJANGO_WSGI = """
import os
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "djsite")
from django.core.wsgi import get_wsgi_application
application = get_wsgi_application()
"""

DJANGO_ASGI = """
import os
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "djsite")
from django.core.asgi import get_asgi_application
application = get_asgi_application()
"""

FLASK_APP = """
import json

import tracking_core as tc
from flask import Flask, request
from tracking_core.integrations.flask import Tracking

app = Flask(__name__)
Tracking(
    app,
    user_id=lambda request: request.headers.get("X-User"),
    anonymous_id_cookie="anon",
    request_properties=["path", "method", "user_agent"],
)


@app.get("/track")
def track():
    tag, count = request.args["tag"], int(request.args["n"])
    for seq in range(count):
        tc.track("Request Event", {"tag": tag, "seq": seq})
    return json.dumps({"tracked": count})
"""

FASTAPI_APP = """
import asyncio

import tracking_core as tc
from fastapi import Depends, FastAPI
from tracking_core.integrations.fastapi import tracking_dependency


async def user_id(connection):
    return connection.headers.get("x-user")


app = FastAPI(
    dependencies=[
        Depends(
            tracking_dependency(
                user_id=user_id,
                anonymous_id_cookie="anon",
                request_properties=["path", "method", "user_agent"],
            )
        )
    ]
)


@app.get("/track")
def track(tag: str, n: int):
    for seq in range(n):
        tc.track("Request Event", {"tag": tag, "seq": seq})
    return {"tracked": n}


@app.get("/atrack")
async def atrack(tag: str, n: int):
    for seq in range(n):
        tc.track("Request Event", {"tag": tag, "seq": seq})
        await asyncio.sleep(0.002)
    return {"tracked": n}
"""

FILES = {
    "djsite.py": DJANGO_SITE,
    "djwsgi.py": DJANGO_WSGI,
    "djasgi.py": DJANGO_ASGI,
    "flaskapp.py": FLASK_APP,
    "fastapp.py": FASTAPI_APP,
}


def _servers(port: int) -> dict[str, tuple[str, list[str], str]]:
    """Scenario -> (what the report calls it, the command, the path to request)."""
    python = sys.executable
    gunicorn = [python, "-m", "gunicorn", "-b", f"127.0.0.1:{port}", "--graceful-timeout", "20"]
    gthread = [*gunicorn, "-k", "gthread", "-w", "2", "--threads", "4"]
    uvicorn = [python, "-m", "uvicorn", "--port", str(port), "--no-access-log"]
    django, flask, fastapi = framework("django"), framework("flask"), framework("fastapi")
    return {
        "django-gunicorn": (
            f"{django}: gunicorn -k gthread, 2 workers x 4 threads, request.user",
            [*gthread, "djwsgi:application"],
            "/track",
        ),
        "django-uvicorn": (
            f"{django}: uvicorn, async middleware chain",
            [*uvicorn, "djasgi:application"],
            "/atrack",
        ),
        "flask-gunicorn": (
            f"{flask}: gunicorn -k gthread, 2 workers x 4 threads",
            [*gthread, "flaskapp:app"],
            "/track",
        ),
        "fastapi-uvicorn": (
            f"{fastapi}: tracking_dependency, uvicorn, async and sync endpoints",
            [*uvicorn, "fastapp:app"],
            "/atrack",
        ),
    }


# -- running one ------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _listening(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
        return True
    return False


def _request(port: int, path: str, tag: str, want: Sent) -> int:
    headers = {"User-Agent": USER_AGENT}
    if want.user_id:
        headers["X-User"] = want.user_id
    if want.anonymous_id:
        headers["Cookie"] = f"theme=dark; anon={want.anonymous_id}"
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", f"{path}?tag={tag}&n={PER_REQUEST}", headers=headers)
        answer = connection.getresponse()
        body = answer.read()
        assert answer.status == 200, (answer.status, body[:300])
        return int(json.loads(body)["tracked"])
    finally:
        connection.close()


def _check_properties(served: Served, paths: Mapping[str, str]) -> None:
    """Each event carries its request's path, method and user agent (opted in)."""
    for event in list(served.fake.events):
        props = served.fake.properties_of(event)
        assert props.get("request_path") == paths[str(props["tag"])], props
        assert props.get("request_method") == "GET", props
        assert props.get("request_user_agent") == USER_AGENT, props


@pytest.mark.parametrize("key", list(_servers(0)))
def test_a_framework_under_its_server_delivers_each_users_events_once(
    key: str, tmp_path: Path, environment_report: EnvironmentReport
) -> None:
    for name, text in FILES.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    port = _free_port()
    label, command, path = _servers(port)[key]
    sent = users_and_visitors(REQUESTS)
    # Every other request goes to the synchronous endpoint where there is one.
    paths = {tag: path if n % 2 or path == "/track" else "/track" for n, tag in enumerate(sent)}
    with served_fakes(PROVIDERS) as served:
        env: Mapping[str, str | None] = environment(
            [served[name] for name in PROVIDERS],
            {"TRACKING_FLUSH_INTERVAL": "60", "TRACKING_SHUTDOWN_TIMEOUT": str(BUDGET)},
            PYTHONPATH=os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")])),
            PYTHONUNBUFFERED="1",
        )
        with Started(command, cwd=tmp_path, env=env) as started:
            started.wait(lambda: _listening(port), 60, f"listening on port {port}")
            with concurrent.futures.ThreadPoolExecutor(8) as pool:
                tracked = sum(
                    pool.map(lambda tag: _request(port, paths[tag], tag, sent[tag]), sent)
                )
            assert tracked == REQUESTS * PER_REQUEST
            code, took = started.stop(signal.SIGTERM, BUDGET + MARGIN)
            output = started.output
        assert "Traceback" not in output, output
        assert code in (0, -signal.SIGTERM), (code, output)
        for name in PROVIDERS:
            result = check_arrivals(served[name], sent, PER_REQUEST, counted=False)
            _check_properties(served[name], paths)
            report(
                environment_report,
                result,
                setup=f"{label}; {REQUESTS} requests, 8 at a time",
                stop="SIGTERM with events queued",
            )
        assert took < BUDGET + MARGIN
