"""`import tracking_core` is quiet: it reads nothing, starts nothing and logs nothing until first
use (issue #11); the only thing it does is install the SIGTERM handler on the main thread."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

QUIET_IMPORT = """
import atexit, logging, os, signal, sys, threading

read = []

class Recording(type(os.environ)):
    def __getitem__(self, key):
        read.append(key)
        return super().__getitem__(key)

os.environ = Recording(
    os.environ._data, os.environ.encodekey, os.environ.decodekey,
    os.environ.encodevalue, os.environ.decodevalue,
)
callbacks = atexit._ncallbacks()

import tracking_core

ours = [key for key in read if key.startswith(("TRACKING_", "POSTHOG_", "MIXPANEL_"))]
print("env-reads", ours)
print("threads", [t.name for t in threading.enumerate()])
print("atexit", atexit._ncallbacks() - callbacks)
print("state", "_tracking_core_process_state" in sys.modules)
print("handlers", logging.getLogger("tracking_core").handlers)
print("sigterm", type(signal.getsignal(signal.SIGTERM)).__name__)
sys.stdout.flush()
tracking_core.track("first use")
tracking_core.flush_tracking(5)
print("after", "_tracking_core_process_state" in sys.modules, atexit._ncallbacks() - callbacks)
"""


def test_import_reads_starts_registers_and_logs_nothing(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACKING_")}
    env.update(
        PYTHONPATH=str(REPO),
        TRACKING_BATCH_SIZE="not a number",  # logged on first use, not at import
        TRACKING_DISABLED="1",
    )
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(QUIET_IMPORT)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    lines = dict(line.split(" ", 1) for line in result.stdout.splitlines())
    assert lines["env-reads"] == "[]"
    assert lines["threads"] == "['MainThread']"
    assert lines["atexit"] == "0"
    assert lines["state"] == "False"
    assert lines["handlers"] == "[]"
    assert lines["sigterm"] == "TerminationHandler"
    # First use builds the runtime: the bad value is reported then, and the exit hook exists.
    assert lines["after"] == "True 1"
    assert "TRACKING_BATCH_SIZE" in result.stderr
    assert result.stderr.count("TRACKING_BATCH_SIZE") == 1
