"""The `tracking` command, run as a subprocess the way users run it."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tracking_core.receivers import LoopbackReceiver, Reply

SECRET_KEY = "phc_cli_secret_value_987654"
SECRET_AUTH = "Bearer cli-secret-token-42"


def tracking(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("TRACKING_", "POSTHOG_"))}
    base.update({"TRACKING_RETRY_BACKOFF": "0.01", "TRACKING_MAX_ATTEMPTS": "2"})
    return subprocess.run(
        [sys.executable, "-m", "tracking_core", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**base, **env},
    )


@pytest.fixture
def receiver() -> Iterator[LoopbackReceiver]:
    with LoopbackReceiver() as server:
        yield server


def test_console_script_is_installed() -> None:
    exe = shutil.which("tracking", path=os.path.dirname(sys.executable))
    assert exe, "the `tracking` console script is not installed next to python"
    result = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.startswith("tracking-core ")


def test_providers_lists_installed_packages_and_how_to_enable_them() -> None:
    result = tracking("providers", POSTHOG_API_KEY=SECRET_KEY, TRACKING_WEBHOOK_AUTH=SECRET_AUTH)
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert "posthog  (tracking-posthog 0.1.0)\n  enabled as posthog" in text
    assert "mixpanel  (tracking-mixpanel" in text
    assert "disabled: set MIXPANEL_TOKEN" in text
    assert "disabled: set TRACKING_WEBHOOK_URL" in text
    assert "POSTHOG_API_KEY (required): set (hidden)" in text
    for secret in (SECRET_KEY, SECRET_AUTH, "cli-secret-token-42"):
        assert secret not in text and secret not in result.stderr


def test_providers_json_reports_errors_and_allowlist() -> None:
    result = tracking(
        "providers",
        "--json",
        POSTHOG_API_KEY=SECRET_KEY,
        POSTHOG_HOST="not a url",
        TRACKING_PROVIDERS="posthog,amplitude",
    )
    assert result.returncode == 1, result.stderr  # posthog is configured, and disabled
    data = json.loads(result.stdout)
    plugins = {p["entry_point"]: p for p in data["plugins"]}
    assert plugins["posthog"]["enabled"] is False
    assert "POSTHOG_HOST" in plugins["posthog"]["status"]
    assert plugins["mixpanel"]["status"] == "not loaded: not listed in TRACKING_PROVIDERS"
    assert plugins["amplitude"]["status"].startswith("disabled: set AMPLITUDE_API_KEY")
    assert SECRET_KEY not in result.stdout + result.stderr


def send_to_webhook(receiver: LoopbackReceiver, *args: str) -> subprocess.CompletedProcess[str]:
    """``tracking send "CLI Check" *args`` with the webhook provider alone, at `receiver`."""
    return tracking(
        "send",
        "CLI Check",
        *args,
        TRACKING_PROVIDERS="webhook",
        TRACKING_WEBHOOK_URL=receiver.url + "/in",
        TRACKING_WEBHOOK_AUTH=SECRET_AUTH,
    )


def test_send_delivers_and_reports_each_provider(receiver: LoopbackReceiver) -> None:
    result = send_to_webhook(
        receiver, "--prop", "plan=pro", "--prop", "seats=3", "--user-id", "user-12345"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "webhook" in result.stdout and "delivered" in result.stdout and "200" in result.stdout
    (request,) = receiver.requests
    (message,) = request.json()["batch"]
    assert message["event"] == "CLI Check" and message["userId"] == "user-12345"
    assert message["properties"] == {"plan": "pro", "seats": 3}
    assert SECRET_AUTH not in result.stdout + result.stderr


def test_send_exits_non_zero_when_a_provider_fails(receiver: LoopbackReceiver) -> None:
    receiver.responder = lambda request: Reply(500, {"error": "down"})
    result = send_to_webhook(receiver)
    assert result.returncode == 1, result.stdout + result.stderr
    line = next(line for line in result.stdout.splitlines() if line.startswith("webhook"))
    assert "dropped" in line and "500" in line and "retries_exhausted" in line
    assert len(receiver.requests) == 2  # TRACKING_MAX_ATTEMPTS=2
    assert SECRET_AUTH not in result.stdout + result.stderr


def test_send_without_any_enabled_provider_says_so() -> None:
    result = tracking("send", "Nothing", TRACKING_PROVIDERS="none")
    assert result.returncode == 2
    assert "No provider is enabled" in result.stdout


def test_demo_delivers_every_event_exactly_once() -> None:
    result = tracking("demo", "--events", "60")
    assert result.returncode == 0, result.stdout + result.stderr
    table = result.stdout
    assert "Every event arrived exactly once at every destination." in table
    for name in ("posthog", "mixpanel", "amplitude", "webhook"):
        row = next(line.split() for line in table.splitlines() if line.startswith(name + " "))
        events, identifies, requests, failed, resent, missing, duplicated = map(int, row[1:])
        assert events == 4 * 60 + 50 * 6
        assert identifies == 4 and missing == 0 and duplicated == 0
        assert failed >= 1 and resent >= 1  # each destination failed its first request
        assert requests >= 2
    for secret in ("phc_demo_key_0123456789", "demo-webhook-token"):
        assert secret not in result.stdout + result.stderr


# -- hardening (issue #10, items 18 and 21-23) ---------------------------------------------------


def _block(text: str, entry_point: str) -> str:
    """The lines `tracking providers` prints for one entry point."""
    blocks = text.split("\n\n")
    return next(block for block in blocks if block.startswith(f"{entry_point}  ("))


def test_providers_says_a_blank_required_variable_is_blank_and_exits_1() -> None:
    result = tracking("providers", TRACKING_PROVIDERS="posthog", POSTHOG_API_KEY="   ")
    assert result.returncode == 1, result.stdout + result.stderr
    block = _block(result.stdout, "posthog")
    assert "set (hidden)" not in block
    assert "to enable it" not in block
    assert "POSTHOG_API_KEY is blank" in block
    assert "POSTHOG_API_KEY (required): blank" in block

    result = tracking("providers", "--json", TRACKING_PROVIDERS="posthog", POSTHOG_API_KEY=" \t")
    assert result.returncode == 1
    data = json.loads(result.stdout)
    (posthog,) = [p for p in data["plugins"] if p["entry_point"] == "posthog"]
    key = next(s for s in posthog["settings"] if s["name"] == "POSTHOG_API_KEY")
    assert key["set"] is False and key["blank"] is True
    assert posthog["problem"] is True and "blank" in posthog["status"]
    assert data["ok"] is False


def test_providers_exits_1_when_a_configured_provider_is_disabled() -> None:
    env = {"POSTHOG_API_KEY": SECRET_KEY, "POSTHOG_HOST": "not a url"}
    result = tracking("providers", **env)
    assert result.returncode == 1, result.stdout + result.stderr
    block = _block(result.stdout, "posthog")
    assert "disabled: POSTHOG_HOST" in block and "to enable it" not in block
    # Installed but unconfigured packages are no problem.
    assert _block(result.stdout, "mixpanel").splitlines()[1].strip().startswith("disabled: set")
    result = tracking("providers", "--json", **env)
    assert result.returncode == 1
    data = json.loads(result.stdout)
    assert data["ok"] is False and data["problems"] == ["posthog"]
    assert SECRET_KEY not in result.stdout + result.stderr
    # The same environment without the bad value: everything fine.
    assert tracking("providers", POSTHOG_API_KEY=SECRET_KEY).returncode == 0


def test_providers_shows_the_declared_variables_and_hides_every_secret(tmp_path: Path) -> None:
    """What `tracking providers` lists comes from each package's declaration (issue #11): every
    variable with its flags; a secret set directly or through its `_FILE` is never shown."""
    from tracking_core.discovery import discover

    declared = {r.name: r.settings for r in discover(lambda provider: None, {})}
    username = tmp_path / "username"
    username.write_text("sa-user-secret-77\n", encoding="utf-8")
    env = {
        "MIXPANEL_TOKEN": "mp-token-secret-1234",
        "MIXPANEL_SERVICE_ACCOUNT_USERNAME_FILE": str(username),
        "MIXPANEL_HOST": "https://proxy-user:pw-in-host-9@mp.example.com",
    }
    result = tracking("providers", "--json", **env)
    data = json.loads(result.stdout)
    plugins = {p["entry_point"]: p for p in data["plugins"]}
    assert plugins.keys() == declared.keys()
    for name, plugin in plugins.items():
        shown = [(s["name"], s["required"], s["secret"]) for s in plugin["settings"]]
        assert shown == [(s.name, s.required, s.secret) for s in declared[name]], name
    values = {s["name"]: s["value"] for s in plugins["mixpanel"]["settings"]}
    assert values["MIXPANEL_SERVICE_ACCOUNT_USERNAME"] == (
        "set via MIXPANEL_SERVICE_ACCOUNT_USERNAME_FILE (hidden)"
    )
    assert values["MIXPANEL_TOKEN"] == "set (hidden)"
    assert values["MIXPANEL_HOST"] == "https://***@mp.example.com"
    # A service account given in part disables Mixpanel, naming what is missing.
    assert result.returncode == 1 and data["problems"] == ["mixpanel"]
    assert plugins["mixpanel"]["status"].startswith(
        "disabled: MIXPANEL_SERVICE_ACCOUNT_SECRET: is required with "
        "MIXPANEL_SERVICE_ACCOUNT_USERNAME_FILE"
    )
    text = tracking("providers", **env).stdout
    for secret in ("mp-token-secret-1234", "sa-user-secret-77", "pw-in-host-9"):
        assert secret not in result.stdout + result.stderr + text


@pytest.mark.parametrize("value", ["-1", "0", "nan", "inf", "-inf", "soon"])
def test_send_refuses_a_timeout_that_is_not_a_positive_number(
    receiver: LoopbackReceiver, value: str
) -> None:
    result = tracking(
        "send",
        "CLI Check",
        f"--timeout={value}",
        TRACKING_PROVIDERS="webhook",
        TRACKING_WEBHOOK_URL=receiver.url + "/in",
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "--timeout" in result.stderr and "positive" in result.stderr
    assert receiver.requests == []


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _budgets(text: str) -> set[float]:
    """Every "N s budget" figure in `text`."""
    return {float(n) for n in re.findall(r"(\d+(?:\.\d+)?) ?s budget", text)}


def test_send_to_a_refused_port_shows_the_error_and_stops_when_waiting_cannot_help() -> None:
    started = time.monotonic()
    result = tracking(
        "send",
        "CLI Check",
        "--timeout",
        "20",
        TRACKING_PROVIDERS="webhook",
        TRACKING_WEBHOOK_URL=f"http://127.0.0.1:{_closed_port()}/in",
        TRACKING_MAX_ATTEMPTS="6",  # the circuit (5 failures) opens before the last attempt
    )
    elapsed = time.monotonic() - started
    text = result.stdout + result.stderr
    assert result.returncode == 1, text
    # The error as it happened, before the table.
    header = result.stdout.index("provider ")
    live = result.stdout[:header]
    assert "webhook" in live and "refused" in live.lower(), result.stdout
    row = next(line for line in result.stdout[header:].splitlines() if line.startswith("webhook"))
    assert "refused" in row.lower() and "delivered" not in row
    # The next attempt could only come after the 30 s probe interval: waiting out the 20 s
    # budget cannot help, so it says so at once instead.
    assert elapsed < 15, (elapsed, text)
    assert "not finished" not in text
    assert _budgets(text) <= {20.0}


def test_send_to_a_hung_server_states_one_budget() -> None:
    with LoopbackReceiver(lambda request: Reply(action="hang")) as server:
        started = time.monotonic()
        result = tracking(
            "send",
            "CLI Check",
            "--timeout",
            "2",
            TRACKING_PROVIDERS="webhook",
            TRACKING_WEBHOOK_URL=server.url + "/in",
            TRACKING_HTTP_TIMEOUT="30",
        )
        elapsed = time.monotonic() - started
    text = result.stdout + result.stderr
    assert result.returncode == 1, text
    row = next(line for line in result.stdout.splitlines() if line.startswith("webhook"))
    assert "2s budget" in row and "delivered" not in row, text
    assert _budgets(text) == {2.0}, text
    assert "not finished" not in text
    # It returns within its budget plus start-up: no second wait at exit.
    assert elapsed < 2 + 5, (elapsed, text)


@pytest.mark.slow
def test_send_prints_each_failure_as_it_happens(receiver: LoopbackReceiver) -> None:
    answers = iter([Reply(503, "busy", {"Retry-After": "4"})])
    receiver.responder = lambda request: next(answers, Reply(200, "ok"))
    base = {k: v for k, v in os.environ.items() if not k.startswith(("TRACKING_", "POSTHOG_"))}
    env = {
        **base,
        "TRACKING_PROVIDERS": "webhook",
        "TRACKING_WEBHOOK_URL": receiver.url + "/in",
        "TRACKING_RETRY_BACKOFF": "0.01",
    }
    with subprocess.Popen(
        [sys.executable, "-m", "tracking_core", "send", "CLI Check", "--timeout", "60"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    ) as proc:
        assert proc.stdout is not None
        seen: list[str] = []
        for line in proc.stdout:
            seen.append(line)
            if "503" in line:
                break
        # The failure is on screen while the retry (4 s later, as Retry-After asks) is awaited.
        still_running = proc.poll() is None
        rest, errors = proc.communicate(timeout=60)
    output = "".join(seen) + rest
    assert seen and not seen[-1].startswith("provider "), output
    assert still_running, output
    assert proc.returncode == 0, output + errors
    row = next(line for line in output.splitlines() if line.startswith("webhook"))
    assert "delivered" in row


def test_tracking_providers_accepts_any_case_and_distribution_names() -> None:
    result = tracking(
        "providers",
        "--json",
        TRACKING_PROVIDERS="PostHog, tracking-mixpanel, Tracking_Amplitude",
        POSTHOG_API_KEY=SECRET_KEY,
        MIXPANEL_TOKEN="cli-mixpanel-token",
        AMPLITUDE_API_KEY="cli-amplitude-key",
        TRACKING_WEBHOOK_URL="http://127.0.0.1:9/in",
    )
    assert result.returncode == 0, result.stderr
    plugins = {p["entry_point"]: p for p in json.loads(result.stdout)["plugins"]}
    assert {name for name, p in plugins.items() if p["enabled"]} == {
        "posthog",
        "mixpanel",
        "amplitude",
    }
    assert plugins["webhook"]["status"].startswith("not loaded")
    assert "not installed" not in result.stderr


def test_tracking_providers_suggests_the_installed_name() -> None:
    result = tracking("providers", TRACKING_PROVIDERS="postgog", POSTHOG_API_KEY=SECRET_KEY)
    warning = "TRACKING_PROVIDERS names 'postgog', which is not installed"
    assert warning in result.stderr and "did you mean 'posthog'?" in result.stderr
    assert "did you mean 'posthog'?" in result.stdout  # the listing says it too


@pytest.mark.parametrize("value", ["", " ", " , ,"])
def test_an_empty_tracking_providers_warns_that_every_provider_is_off(value: str) -> None:
    result = tracking("providers", TRACKING_PROVIDERS=value, POSTHOG_API_KEY=SECRET_KEY)
    assert "TRACKING_PROVIDERS is empty: every provider is off" in result.stderr
    assert "enabled as" not in result.stdout
    quiet = tracking("providers", TRACKING_PROVIDERS="none", POSTHOG_API_KEY=SECRET_KEY)
    assert "every provider is off" not in quiet.stderr  # `none` says it on purpose


def _file_case(kind: str, tmp_path: Path) -> str:
    path = tmp_path / f"secret-{kind}"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "device":
        return "/dev/zero"
    elif kind == "directory":
        path.mkdir()
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "too-large":
        path.write_bytes(b"k" * (64 * 1024 + 1))
    return str(path)


FILE_PROBLEMS = {
    "fifo": "names a FIFO, not a regular file",
    "device": "names a character device, not a regular file",
    "directory": "names a directory, not a regular file",
    "missing": "names a file that does not exist",
    "empty": "names an empty file",
    "too-large": "names a file larger than 64 KiB; expected a secret",
}

#: Runs `tracking providers` and reports the process's peak memory (KiB) on stderr: VmHWM,
#: which starts afresh at exec (getrusage's ru_maxrss would carry the parent's over).
PEAK_MEMORY = """
import re, sys
from tracking_core.cli import main
status = main(["providers"])
with open("/proc/self/status") as f:
    peak = re.search(r"VmHWM:\\s*(\\d+) kB", f.read()).group(1)
sys.stderr.write(f"peak-rss-kib={peak}\\n")
sys.exit(status)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="FIFOs, /dev/zero, /proc")
@pytest.mark.parametrize("kind", list(FILE_PROBLEMS))
def test_a_secret_file_that_is_not_a_small_regular_file_is_refused_at_once(
    kind: str, tmp_path: Path
) -> None:
    import resource

    def limit_memory() -> None:  # without the fix, /dev/zero is read until memory runs out
        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))

    base = {k: v for k, v in os.environ.items() if not k.startswith(("TRACKING_", "POSTHOG_"))}
    env = {
        **base,
        "TRACKING_PROVIDERS": "posthog",
        "POSTHOG_API_KEY_FILE": _file_case(kind, tmp_path),
    }
    result = subprocess.run(
        [sys.executable, "-c", PEAK_MEMORY],
        capture_output=True,
        text=True,
        timeout=30,  # a FIFO without a writer blocked an ordinary open() for ever
        env=env,
        preexec_fn=limit_memory,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    status = _block(result.stdout, "posthog").splitlines()[1].strip()
    assert status == f"disabled: POSTHOG_API_KEY_FILE: {FILE_PROBLEMS[kind]}", result.stdout
    peak = int(re.search(r"peak-rss-kib=(\d+)", result.stderr).group(1))  # type: ignore[union-attr]
    assert peak < 200 * 1024, f"peak memory {peak} KiB"
