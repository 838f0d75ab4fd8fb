"""Serverless: the process is frozen the moment the handler returns.

Each scenario runs a handler in a subprocess against PostHog's strict fake, with the default
batching (50 events or 10 s). The handler tracks fewer events than a batch; right after it
returns, the process prints ``RETURNED`` and this test freezes it (SIGSTOP), as AWS Lambda does
between invocations. Whatever had not arrived by then would only go out if the process ran
again. With `flush_after`, `invocation` or ``TRACKING_SYNC``, everything is at the fake already;
without them (the control) nothing is.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import TAG, Served, Started, environment, served_fakes, tally
from tracking_core.receivers import ReceivedRequest, Reply

from .conftest import EnvironmentReport

pytestmark = [
    pytest.mark.skipif(not hasattr(signal, "SIGSTOP"), reason="POSIX signals"),
]

#: Events each invocation tracks: fewer than a batch, so nothing leaves without a flush.
EVENTS = 30

HANDLERS = {
    "flush_after": """
        from tracking_core.serverless import flush_after

        @flush_after
        def handler(event, context):
            for seq in range(event["n"]):
                track("invoked", {"tag": "lambda", "seq": seq})
            return {"statusCode": 200}

        handler({"n": N}, Context(remaining_ms=30_000))
    """,
    "flush_after, async handler": """
        import asyncio
        from tracking_core.serverless import flush_after

        @flush_after
        async def handler(event, context):
            for seq in range(event["n"]):
                track("invoked", {"tag": "lambda", "seq": seq})
                await asyncio.sleep(0)
            return {"statusCode": 200}

        asyncio.run(handler({"n": N}, Context(remaining_ms=30_000)))
    """,
    "with invocation()": """
        from tracking_core.serverless import invocation

        with invocation():
            for seq in range(N):
                track("invoked", {"tag": "lambda", "seq": seq})
    """,
    "TRACKING_SYNC=1": """
        for seq in range(N):
            track("invoked", {"tag": "lambda", "seq": seq})
    """,
    "nothing (the control)": """
        for seq in range(N):
            track("invoked", {"tag": "lambda", "seq": seq})
    """,
}

SCRIPT = """
import json, sys, time
from tracking_core import track, tracking_stats

class Context:
    # AWS Lambda's context object, as far as tracking-core reads it.
    def __init__(self, remaining_ms):
        self.deadline = time.monotonic() + remaining_ms / 1000

    def get_remaining_time_in_millis(self):
        return int((self.deadline - time.monotonic()) * 1000)

N = {events}
started = time.monotonic()
{handler}
stats = tracking_stats()["posthog"]
print("RETURNED", json.dumps({{"took": time.monotonic() - started,
      "delivered": stats.delivered, "dropped": sum(stats.dropped.values())}}), flush=True)
time.sleep(120)  # frozen here, until the next invocation that never comes
"""


@pytest.fixture
def posthog() -> Iterator[Served]:
    with served_fakes(["posthog"]) as served:
        yield served["posthog"]


def _frozen_after_return(
    handler: str, posthog: Served, workdir: Path, **variables: str
) -> tuple[dict[str, float], int]:
    """Run `handler`; freeze the process as it prints RETURNED. What it printed, and how many
    of its events the fake holds while it is frozen."""
    script = SCRIPT.format(events=EVENTS, handler=_indented(handler))
    (workdir / "handler.py").write_text(script, encoding="utf-8")
    env = environment([posthog], {"TRACKING_HANDLE_SIGNALS": "0"}, **variables)
    with Started([sys.executable, "handler.py"], cwd=workdir, env=env) as run:
        line = run.wait_for_line("RETURNED", timeout=60)
        os.kill(run.process.pid, signal.SIGSTOP)
        try:
            arrived = tally(posthog, [("lambda", seq) for seq in range(EVENTS)], key=TAG)
            return json.loads(line.split(" ", 1)[1]), arrived.delivered
        finally:
            os.kill(run.process.pid, signal.SIGCONT)


def _indented(code: str) -> str:
    return textwrap.dedent(code).strip()


@pytest.mark.parametrize("how", list(HANDLERS))
def test_what_the_handler_tracked_arrived_before_it_returned(
    how: str, posthog: Served, tmp_path: Path, environment_report: EnvironmentReport
) -> None:
    variables = {"TRACKING_SYNC": "1"} if how == "TRACKING_SYNC=1" else {}
    printed, arrived = _frozen_after_return(HANDLERS[how], posthog, tmp_path, **variables)
    environment_report.add(
        "serverless",
        setup=how,
        stop="SIGSTOP as the handler returns",
        destination="healthy",
        tracked=EVENTS,
        delivered=arrived,
        counted=int(printed["dropped"]),
    )
    if how == "nothing (the control)":
        assert arrived == 0  # still waiting for a full batch or the 10 s interval
    else:
        assert arrived == EVENTS and printed["delivered"] == EVENTS


def test_a_flaky_destination_is_retried_within_the_invocation(
    posthog: Served, tmp_path: Path, environment_report: EnvironmentReport
) -> None:
    fake = posthog.fake
    answers = iter(range(1_000_000))

    def flaky(request: ReceivedRequest) -> Reply:
        if next(answers) % 3 == 0:  # every third request fails
            return Reply(503, {"error": "try again"})
        return fake(request)

    posthog.server.responder = flaky
    printed, arrived = _frozen_after_return(
        HANDLERS["flush_after"], posthog, tmp_path, TRACKING_BATCH_SIZE="5"
    )
    environment_report.add(
        "serverless",
        setup="flush_after",
        stop="SIGSTOP as the handler returns",
        destination="every third request 503",
        tracked=EVENTS,
        delivered=arrived,
        counted=int(printed["dropped"]),
    )
    assert arrived == EVENTS


def test_the_flush_stops_at_the_invocations_remaining_time(
    posthog: Served, tmp_path: Path, environment_report: EnvironmentReport
) -> None:
    posthog.server.responder = lambda request: Reply(action="hang")  # never answers
    handler = HANDLERS["flush_after"].replace("remaining_ms=30_000", "remaining_ms=1_500")
    started = time.monotonic()
    printed, arrived = _frozen_after_return(
        handler, posthog, tmp_path, TRACKING_FLUSH_TIMEOUT="60", TRACKING_HTTP_TIMEOUT="60"
    )
    environment_report.add(
        "serverless",
        setup="flush_after, 1.5 s left in the invocation",
        stop="SIGSTOP as the handler returns",
        destination="never answers",
        tracked=EVENTS,
        delivered=arrived,
        counted=int(printed["dropped"]),
    )
    # 1.5 s left, 0.5 s kept back for the handler's return: the flush gives up after ~1 s.
    assert printed["took"] < 1.4
    assert time.monotonic() - started < 30
    assert arrived == 0
