"""Test what we ship: build every wheel, install them into a fresh venv, deliver for real.

The venv gets the wheels of tracking-core, every built-in provider package and the example
third-party package, with their dependencies from the package index, as a user would. The
fakes of the four first vendors run here, on 127.0.0.1, and the shipped providers deliver to
them.
"""

from __future__ import annotations

import email
import json
import os
import re
import subprocess
import sys
import tarfile
import textwrap
import venv
import zipfile
from collections import Counter
from collections.abc import Iterator
from email.message import Message
from pathlib import Path

import pytest

from tracking_core.receivers import LoopbackReceiver

from .harness import BUILTIN_PROVIDERS, environment, served_fakes, subprocess_environment

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = [
    ROOT,
    *sorted(path.parent for path in (ROOT / "providers").glob("*/pyproject.toml")),
    ROOT / "examples" / "tracking-acme",
]


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel and the sdist of every package, built from this checkout."""
    dist = tmp_path_factory.mktemp("dist")
    for package in PACKAGES:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "build",
                "--sdist",
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
    assert len(list(dist.glob("*.whl"))) == len(list(dist.glob("*.tar.gz"))) == len(PACKAGES)
    return dist


@pytest.fixture(scope="module")
def shipped(dist: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh venv holding the built wheels; yields its python."""
    root = tmp_path_factory.mktemp("shipped")
    wheels = sorted(dist.glob("*.whl"))
    venv.EnvBuilder(with_pip=True).create(root / "venv")
    python = root / "venv" / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", *map(str, wheels)],
        check=True,
        capture_output=True,
        text=True,
    )
    yield python


def run(python: Path, script: str, **env: str | None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(python), "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=180,
        env=subprocess_environment(environment((), {}, **env)),
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
    # The four vendor fakes, served here; the variables that point the shipped providers at them.
    with served_fakes(BUILTIN_PROVIDERS) as destinations:
        env = environment(destinations.values(), {"TRACKING_FLUSH_INTERVAL": "0.2"})
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
        for name, destination in destinations.items():
            fake = destination.fake
            assert Counter(fake.event_ids()) == expected, name
            assert sorted(fake.user_of(update) for update in fake.identifies) == users, name
            assert len(destination.server.requests) < 200, f"{name} did not batch"


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
        "ga4": "tracking-ga4",
        "jsonl": "tracking-jsonl",
        "mixpanel": "tracking-mixpanel",
        "otlp": "tracking-otlp",
        "posthog": "tracking-posthog",
        "redis": "tracking-redis",
        "rudderstack": "tracking-segment",
        "segment": "tracking-segment",
        "webhook": "tracking-webhook",
    }
    # An installed package adds its own command (tracking-redis: ``tracking relay``).
    relay = subprocess.run(
        [str(tracking), "relay", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": os.environ["PATH"]},
    )
    assert relay.returncode == 0 and "REDIS" in relay.stdout.upper(), relay.stdout + relay.stderr


# -- what each distribution says about itself ----------------------------------------------------

#: A link target a long description may hold: absolute, or an anchor on the same page.
ABSOLUTE = ("https://", "http://", "mailto:", "#")
LINK_TARGETS = [
    re.compile(r"\]\(\s*<?([^)\s>]*)"),  # [text](target), ![alt](target)
    re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?([^\s>]*)", re.M),  # [label]: target
    re.compile(r"""(?:href|src)\s*=\s*["']([^"']*)""", re.I),  # HTML
]


def link_targets(markdown: str) -> list[str]:
    return [m.group(1) for pattern in LINK_TARGETS for m in pattern.finditer(markdown)]


def member_bytes(archive: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    handle = archive.extractfile(member)
    assert handle is not None
    return handle.read()


def distributions(dist: Path) -> Iterator[tuple[str, Message, dict[str, bytes]]]:
    """(file name, core metadata, {path inside: bytes}) for every wheel and sdist in `dist`."""
    for wheel in sorted(dist.glob("*.whl")):
        with zipfile.ZipFile(wheel) as archive:
            files = {name: archive.read(name) for name in archive.namelist()}
        (info,) = {name.split("/")[0] for name in files if ".dist-info/" in name}
        metadata = email.message_from_bytes(files[f"{info}/METADATA"])
        licenses = {
            n.removeprefix(f"{info}/licenses/"): b for n, b in files.items() if "/licenses/" in n
        }
        yield wheel.name, metadata, licenses
    for sdist in sorted(dist.glob("*.tar.gz")):
        with tarfile.open(sdist) as archive:
            members = {m.name: m for m in archive.getmembers() if m.isfile()}
            top = sdist.name.removesuffix(".tar.gz")
            read = {n.removeprefix(top + "/"): member_bytes(archive, m) for n, m in members.items()}
        metadata = email.message_from_bytes(read["PKG-INFO"])
        yield sdist.name, metadata, {n: b for n, b in read.items() if n == "LICENSE"}


def test_every_distribution_ships_its_license_project_urls_and_absolute_links(dist: Path) -> None:
    license_text = (ROOT / "LICENSE").read_bytes()
    assert b"MIT License" in license_text
    core = next(m for name, m, _ in distributions(dist) if name.startswith("tracking_core-"))
    source = dict(url.split(", ", 1) for url in core.get_all("Project-URL", []))["Source"]
    assert source.startswith("https://")
    seen = links = 0
    for name, metadata, licenses in distributions(dist):
        seen += 1
        assert metadata["License-Expression"] == "MIT", name
        assert metadata.get_all("License-File") == ["LICENSE"], name
        assert licenses == {"LICENSE": license_text}, name
        urls = dict(url.split(", ", 1) for url in metadata.get_all("Project-URL", []))
        assert {"Homepage", "Documentation", "Source", "Issues"} <= set(urls), name
        for url in urls.values():
            assert url.startswith(source), (name, url)
        description = metadata.get_payload()
        assert isinstance(description, str)
        assert metadata["Description-Content-Type"] == "text/markdown", name
        targets = link_targets(description)
        links += len(targets)
        relative = [t for t in targets if not t.startswith(ABSOLUTE)]
        assert not relative, f"{name}: relative links break off the repository: {relative}"
        for target in targets:  # links into this repository name files that exist
            for kind in ("/blob/main/", "/tree/main/"):
                if target.startswith(source + kind):
                    path = target.removeprefix(source + kind).split("#")[0]
                    assert (ROOT / path).exists(), f"{name}: {target} names no file"
    assert seen == 2 * len(PACKAGES)
    assert links > 20  # the READMEs' links were found: the patterns work


def test_the_link_check_sees_every_kind_of_relative_link() -> None:
    text = (
        "See [the docs](docs/api.md), ![logo](img/logo.png) and [up](../../README.md).\n"
        "[ref]: docs/configuration.md\n"
        '<a href="design.md">design</a> [ok](https://example.com/x) [here](#use-it)\n'
    )
    targets = link_targets(text)
    assert [t for t in targets if not t.startswith(ABSOLUTE)] == [
        "docs/api.md",
        "img/logo.png",
        "../../README.md",
        "docs/configuration.md",
        "design.md",
    ]
