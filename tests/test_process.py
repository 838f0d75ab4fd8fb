"""Process life: exit flush, exit budget, fork, reload and double import (in subprocesses)."""

from __future__ import annotations

import os
import subprocess
import textwrap
import time
from pathlib import Path

import pytest

from .harness import environment, run_python

REPO = Path(__file__).resolve().parents[1]

FILE_PROVIDER = """
import os, sys, time, threading
REPO = {repo!r}
sys.path.insert(0, REPO)
import tracking_core as tc

class FileProvider:
    name = "file"
    def __init__(self, path, delay=0.0):
        self.path, self.delay = path, delay
    def track(self, event):
        if self.delay:
            time.sleep(self.delay)
        with open(self.path, "a") as f:
            f.write(f"{{os.getpid()}} {{event.name}} {{event.event_id}}\\n")
"""


def run(
    script: str, tmp_path: Path, delay: float | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    """Run `script` after the prelude; with a `delay`, a `FileProvider` taking that long per
    event, writing to ``events.txt``, is registered first."""
    code = FILE_PROVIDER.format(repo=str(REPO))
    if delay is not None:
        code += f"tc.register_tracking_provider(FileProvider('events.txt', {delay}))\n"
    code += textwrap.dedent(script)
    return run_python(code, cwd=tmp_path, env=environment((), {}, **env), timeout=60)


def lines(tmp_path: Path) -> list[list[str]]:
    """What the `FileProvider` wrote: (pid, event name, event id) per event."""
    path = tmp_path / "events.txt"
    return [line.split() for line in path.read_text().splitlines()] if path.exists() else []


def test_pending_events_are_delivered_at_interpreter_exit(tmp_path: Path) -> None:
    script = """
        for i in range(300):
            tc.track(f"e{i}")
        # no flush: the atexit shutdown must deliver them
        """
    result = run(script, tmp_path, delay=0.002)
    assert result.returncode == 0, result.stderr
    names = [line[1] for line in lines(tmp_path)]
    assert names == [f"e{i}" for i in range(300)]


def test_exit_with_a_hung_provider_ends_within_the_budget_and_reports_losses(
    tmp_path: Path,
) -> None:
    started = time.monotonic()
    script = """
        import logging
        logging.basicConfig(level=logging.WARNING)
        class Hung:
            name = "hung"
            def track(self, event):
                threading.Event().wait()
        tc.register_tracking_provider(Hung())
        for i in range(50):
            tc.track(f"e{i}")
        """
    result = run(script, tmp_path, delay=0.0, TRACKING_SHUTDOWN_TIMEOUT="1")
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    assert elapsed < 15  # the budget is 1 s; the rest is interpreter start-up on a busy machine
    assert len(lines(tmp_path)) == 50  # the healthy provider still got everything
    assert "shutdown ran out of its 1.0s budget" in result.stderr
    assert "hung: 50" in result.stderr


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_fork_child_starts_clean_and_each_side_delivers_only_its_own(tmp_path: Path) -> None:
    result = run(
        """
        for i in range(40):
            tc.track("parent-before")
        pid = os.fork()
        if pid == 0:
            for i in range(10):
                tc.track("child")
            ok = tc.flush_tracking(20)
            stats = tc.tracking_stats()["file"]
            os._exit(0 if ok and stats.delivered == 10 and stats.accepted == 10 else 3)
        tc.track("parent-after")
        _, status = os.waitpid(pid, 0)
        assert tc.flush_tracking(20)
        print("child-status", os.waitstatus_to_exitcode(status), "parent", os.getpid())
        """,
        tmp_path,
        delay=0.005,
    )
    assert result.returncode == 0, result.stderr
    words = result.stdout.split()
    assert words[1] == "0", result.stdout
    parent_pid = words[3]
    records = lines(tmp_path)
    by_parent = [r for r in records if r[0] == parent_pid]
    by_child = [r for r in records if r[0] != parent_pid]
    assert [r[1] for r in by_child] == ["child"] * 10
    assert sorted(r[1] for r in by_parent) == ["parent-after"] + ["parent-before"] * 40
    ids = [r[2] for r in records]
    assert len(ids) == len(set(ids)) == 51  # nothing delivered twice


def test_one_registry_across_reload_and_a_second_import(tmp_path: Path) -> None:
    result = run(
        """
        import importlib, importlib.util
        reloaded = importlib.reload(tc)
        assert reloaded.list_tracking_providers() == ["file"], reloaded.list_tracking_providers()
        spec = importlib.util.spec_from_file_location(
            "tracking_core_copy",
            os.path.join(REPO, "tracking_core", "__init__.py"),
            submodule_search_locations=[os.path.join(REPO, "tracking_core")],
        )
        copy = importlib.util.module_from_spec(spec)
        sys.modules["tracking_core_copy"] = copy
        spec.loader.exec_module(copy)
        assert copy is not tc and copy.track is not tc.track
        assert copy.list_tracking_providers() == ["file"]
        copy.track("from-copy")
        reloaded.track("from-reloaded")
        assert tc.flush_tracking(5)
        import threading
        print(sum(t.name == "tracking-dispatch" for t in threading.enumerate()),
              sum(t.name == "tracking-file" for t in threading.enumerate()))
        """,
        tmp_path,
        delay=0.0,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["1", "1"]  # one dispatcher, one worker
    assert [r[1] for r in lines(tmp_path)] == ["from-copy", "from-reloaded"]


def test_import_starts_no_thread_and_idle_workers_do_not_poll(tmp_path: Path) -> None:
    result = run(
        """
        import threading, time, resource
        assert [t.name for t in threading.enumerate()] == ["MainThread"]
        class Quiet:
            name = "quiet"
            def track(self, event):
                pass
        tc.register_tracking_provider(Quiet())
        assert [t.name for t in threading.enumerate()] == ["MainThread"]  # lazy
        tc.track("wake")
        assert tc.flush_tracking(5)
        before = resource.getrusage(resource.RUSAGE_SELF)
        time.sleep(1.0)
        after = resource.getrusage(resource.RUSAGE_SELF)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        print(f"{cpu:.4f}", len(threading.enumerate()))
        """,
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    cpu, threads = result.stdout.split()
    assert int(threads) == 3  # main, dispatcher, one worker
    assert float(cpu) < 0.05  # a polling loop would burn far more in a second


def test_workers_start_with_the_dispatcher_not_at_exit(tmp_path: Path) -> None:
    # Python 3.12 cannot start a thread while the interpreter exits, so no lane may wait for its
    # first event to start its worker: that event may arrive only during the exit flush.
    result = run(
        """
        import threading
        class Quiet:
            def __init__(self, name):
                self.name = name
            def track(self, event):
                pass
        tc.register_tracking_provider(Quiet("early"))
        tc.track("first")  # starts the dispatcher, and with it every registered lane
        names = {t.name for t in threading.enumerate()}
        tc.register_tracking_provider(Quiet("late"))  # registered while running: starts at once
        later = {t.name for t in threading.enumerate()}
        print("tracking-early" in names, "tracking-late" in later)
        """,
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "True"]


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="Linux: reads /proc")
@pytest.mark.parametrize("green", ["", "gevent"])
def test_the_library_threads_block_the_process_signals_and_the_main_thread_does_not(
    tmp_path: Path, green: str
) -> None:
    # The kernel hands a signal sent to the process to any thread that does not block it, and
    # Python runs the handler (KeyboardInterrupt, SIGTERM's) only on the main thread, when it
    # next runs Python code. Taken by one of tracking-core's threads while the main thread
    # sleeps in a system call, Ctrl+C would wait for the sleep to end (seen: a script stopped
    # with SIGINT went on sleeping). So the library's threads block those signals. Under
    # gevent they are green threads on the main thread, whose mask must stay as it was.
    script = """
        import signal, threading
        for i in range(20):
            tc.track(f"e{i}")
        assert tc.flush_tracking(10)
        def blocked(native_id):
            with open(f"/proc/self/task/{native_id}/status") as status:
                mask = next(int(l.split()[1], 16) for l in status if l.startswith("SigBlk:"))
            return sorted(s.name for s in (signal.SIGINT, signal.SIGTERM) if mask >> (s - 1) & 1)
        main = threading.main_thread().native_id
        ours = {t.native_id for t in threading.enumerate() if t.name.startswith("tracking-")}
        print("main", blocked(main))
        print("ours", sorted({str(blocked(n)) for n in ours - {main}}), flush=True)
        """
    if green:
        script = f"from {green} import monkey; monkey.patch_all()\n" + textwrap.dedent(script)
    result = run(script, tmp_path, delay=0.0)
    assert result.returncode == 0, result.stderr
    assert "main []" in result.stdout, result.stdout
    expected = "ours []" if green else "ours [\"['SIGINT', 'SIGTERM']\"]"
    assert expected in result.stdout, result.stdout
    assert len(lines(tmp_path)) == 20
