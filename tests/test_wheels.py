"""Test what we ship: build every wheel, install them into a fresh venv, deliver for real.

The venv gets the wheels of tracking-core, the four built-in providers and the example
third-party package, with their dependencies from the package index, as a user would. The
fakes of the four vendors run here, on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import venv
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tracking_core.demo import DEMO_KEYS, builtin_destinations
from tracking_core.receivers import LoopbackReceiver

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = [
    ROOT,
    *(ROOT / "providers" / name for name in ("posthog", "mixpanel", "amplitude", "webhook")),
    ROOT / "examples" / "tracking-acme",
]


@pytest.fixture(scope="module")
def shipped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh venv holding the built wheels; yields its python."""
    root = tmp_path_factory.mktemp("shipped")
    dist = root / "dist"
    for package in PACKAGES:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "build",
                "--wheel",
                "--no-isolation",
                "--outdir",
                str(dist),
                str(package),
            ],
            check=True,
            capture_output=True,
            text=True,
        )
    wheels = sorted(dist.glob("*.whl"))
    assert len(wheels) == len(PACKAGES)
    venv.EnvBuilder(with_pip=True).create(root / "venv")
    python = root / "venv" / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", *map(str, wheels)],
        check=True,
        capture_output=True,
        text=True,
    )
    yield python


def run(python: Path, script: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TRACKING_", "POSTHOG_", "MIXPANEL_", "AMPLITUDE_", "ACME_"))
    }
    return subprocess.run(
        [str(python), "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=180,
        env={**clean, **env},
        cwd="/",
    )


def test_the_installed_wheels_come_from_the_venv(shipped: Path) -> None:
    result = run(
        shipped,
        """
        import tracking_core, tracking_posthog, tracking_acme
        print(tracking_core.__file__); print(tracking_acme.__file__)
    """,
    )
    assert result.returncode == 0, result.stderr
    for line in result.stdout.split():
        assert str(shipped.parents[1]) in line and "site-packages" in line


def test_all_four_providers_deliver_every_event_exactly_once(shipped: Path) -> None:
    destinations = builtin_destinations()  # the four vendor fakes, expecting DEMO_KEYS
    env = dict(DEMO_KEYS, TRACKING_FLUSH_INTERVAL="0.2")
    for destination in destinations:
        destination.server.start()
        env.update(destination.environment(destination.server.url))
    try:
        result = run(
            shipped,
            """
            import json, threading
            import tracking_core as tc

            class Ids:
                name = "zz-ids"
                def __init__(self):
                    self.ids = []
                def track(self, event):
                    self.ids.append(event.event_id)

            ids = Ids()
            tc.register_tracking_provider(ids)

            def worker(w):
                for i in range(250):
                    tc.track("Wheel Event", {"w": w, "i": i}, user_id=f"user-{w:04d}")
                for u in range(w, 10, 4):
                    tc.identify(f"user-{u:04d}", {"n": u})

            threads = [threading.Thread(target=worker, args=(w,)) for w in range(4)]
            for t in threads: t.start()
            for t in threads: t.join()
            ok = tc.flush_tracking(60)
            print(json.dumps({"ok": ok, "ids": ids.ids, "providers": tc.list_tracking_providers()}))
        """,
            **env,
        )
        assert result.returncode == 0, result.stderr
        data = json.loads(result.stdout)
        assert data["ok"] is True
        assert sorted(data["providers"]) == [
            "amplitude",
            "mixpanel",
            "posthog",
            "webhook",
            "zz-ids",
        ]
        expected = Counter(data["ids"])
        assert len(expected) == 1000
        users = sorted(f"user-{u:04d}" for u in range(10))
        for destination in destinations:
            name = destination.provider
            assert Counter(destination.event_ids()) == expected, name
            assert sorted(destination.identified_users()) == users, name
            assert len(destination.server.requests) < 200, f"{name} did not batch"
    finally:
        for destination in destinations:
            destination.server.stop()


def test_the_example_package_is_discovered_only_when_configured(shipped: Path) -> None:
    with LoopbackReceiver() as server:
        probe = """
            import json, tracking_core as tc
            tc.track("Acme Event", user_id="user-1")
            ok = tc.flush_tracking(20)
            print(json.dumps({"ok": ok, "providers": tc.list_tracking_providers()}))
        """
        off = run(shipped, probe)
        on = run(
            shipped,
            probe,
            ACME_API_KEY="acme-key-123456",
            ACME_HOST=server.url,
            TRACKING_FLUSH_INTERVAL="0.1",
        )
        assert off.returncode == 0 and on.returncode == 0, off.stderr + on.stderr
        assert json.loads(off.stdout)["providers"] == []
        assert json.loads(on.stdout) == {"ok": True, "providers": ["acme"]}
        (request,) = server.requests
        assert request.path == "/v1/events"
        assert request.headers["authorization"] == "Bearer acme-key-123456"
        assert request.json()["events"][0]["event"] == "Acme Event"


def test_the_installed_cli_lists_every_shipped_provider(shipped: Path) -> None:
    tracking = shipped.parent / "tracking"
    result = subprocess.run(
        [str(tracking), "providers", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": os.environ["PATH"]},
    )
    assert result.returncode == 0, result.stderr
    names = {p["entry_point"]: p["distribution"] for p in json.loads(result.stdout)["plugins"]}
    assert names == {
        "acme": "tracking-acme",
        "amplitude": "tracking-amplitude",
        "mixpanel": "tracking-mixpanel",
        "posthog": "tracking-posthog",
        "webhook": "tracking-webhook",
    }
