"""Flask: the ``tracking_core.integrations.flask.Tracking`` extension with Flask's own test
client, events delivered to the PostHog and webhook fakes on loopback."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator

import flask
import pytest
from flask import Flask, Response, request, session, stream_with_context

import tracking_core as tc
from tracking_core import api
from tracking_core.integrations.flask import Tracking
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


def make_app(**options: object) -> Flask:
    """An application factory: the extension, created first, installed by ``init_app``."""
    tracking = Tracking(**options)  # type: ignore[arg-type]
    app = Flask(__name__)
    app.secret_key = "tracking-core tests"

    @app.before_request
    def sign_in() -> None:
        # The application's own sign-in, from a header (the tests' stand-in for a login form).
        if "X-Login" in request.headers:
            session["user_id"] = request.headers["X-Login"]

    @app.get("/track")
    def track() -> str:
        for seq in range(PER_REQUEST):
            tc.track(EVENT, {"tag": request.args["tag"], "seq": seq})
        return "ok"

    @app.get("/stream")
    def stream() -> Response:
        def body() -> Iterator[str]:
            for seq in range(PER_REQUEST):
                tc.track(EVENT, {"tag": "stream", "seq": seq})
                yield "chunk"

        return Response(stream_with_context(body()))

    tracking.init_app(app)
    return app


def session_user(req: flask.Request) -> str | None:
    """The hook: the user the application's session holds."""
    value = session.get("user_id")
    return str(value) if value is not None else None


def test_flask_extension_gives_each_request_its_user_across_threads(
    environment_report: EnvironmentReport,
) -> None:
    app = make_app(user_id=session_user, anonymous_id_cookie="anon")
    sent: dict[str, Sent] = {}
    errors: list[BaseException] = []

    def serve(thread: int) -> None:
        # One signed-in client and one anonymous visitor per thread, in turn: what one request
        # set must never reach the next one on the same thread.
        member, visitor = app.test_client(), app.test_client()
        visitor.set_cookie("anon", f"anon-t{thread}")
        try:
            member.get(
                "/track", query_string={"tag": f"login-{thread}"}, headers={"X-Login": f"u{thread}"}
            )
            for n in range(5):
                assert (
                    member.get("/track", query_string={"tag": f"t{thread}-m{n}"}).status_code == 200
                )
                assert (
                    visitor.get("/track", query_string={"tag": f"t{thread}-v{n}"}).status_code
                    == 200
                )
                assert api._context.get() is None
        except BaseException as exc:
            errors.append(exc)

    for thread in range(4):
        sent[f"login-{thread}"] = Sent(None)  # the session is set after the hook ran
        for n in range(5):
            sent[f"t{thread}-m{n}"] = Sent(f"u{thread}")
            sent[f"t{thread}-v{n}"] = Sent(None, f"anon-t{thread}")

    with delivering() as served:
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
                setup=f"{framework('flask')}: test_client, 4 threads x 11 requests, a session hook",
                stop=IN_PROCESS,
            )


def test_flask_streamed_body_and_request_properties(tracking_events: RecordingProvider) -> None:
    app = make_app(
        user_id=lambda req: req.headers.get("X-User"), request_properties=["path", "user_agent"]
    )
    client = app.test_client()
    answer = client.get("/stream", headers={"X-User": "streamer", "User-Agent": "Agent/2"})
    assert answer.data == b"chunk" * PER_REQUEST
    tracking_events.settle()
    events = tracking_events.find(EVENT)
    assert len(events) == PER_REQUEST
    assert {e.user_id for e in events} == {"streamer"}
    assert {tuple(sorted(e.properties)) for e in events} == {
        ("request_path", "request_user_agent", "seq", "tag")
    }
    assert events[0].properties["request_path"] == "/stream"


def test_flask_without_wsgi_app_leaves_nothing_behind(tracking_events: RecordingProvider) -> None:
    # A test that runs the request functions itself, without app.wsgi_app: the extension then
    # leaves the context when the request context is torn down.
    app = make_app(user_id=lambda req: "direct")
    with app.test_request_context("/track?tag=direct"):
        app.preprocess_request()
        tc.track(EVENT, {"tag": "direct", "seq": 0})
        assert api._context.get() is not None
    assert api._context.get() is None
    tracking_events.settle()
    assert [e.user_id for e in tracking_events.find(EVENT)] == ["direct"]


def test_flask_failing_hook_never_breaks_the_request(
    tracking_events: RecordingProvider, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(req: flask.Request) -> str | None:
        raise KeyError("user")

    app = make_app(user_id=broken, anonymous_id_header="X-Anon")
    client = app.test_client()
    with caplog.at_level(logging.WARNING, logger="tracking_core"):
        answers = [client.get("/track?tag=f", headers={"X-Anon": "anon-f"}) for _ in range(3)]
    assert [answer.status_code for answer in answers] == [200] * 3
    tracking_events.settle()
    assert {(e.user_id, e.anonymous_id) for e in tracking_events.find(EVENT)} == {(None, "anon-f")}
    assert len([r for r in caplog.records if "user_id hook" in r.getMessage()]) == 1


def test_flask_extension_is_installed_once_per_app() -> None:
    app = make_app()
    assert isinstance(app.extensions["tracking_core"], Tracking)
    with pytest.raises(RuntimeError, match="already installed"):
        Tracking(app)
