"""Plugin discovery through real installed packages: entry points, variables, broken plugins."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from .plugin_env import PluginVenv, write_package

pytestmark = pytest.mark.slow

ACME = """
import os
from tracking_core import ProviderSetting, hookimpl, SettingsError

class AcmeProvider:
    def __init__(self, out):
        self.name = "acme"
        self.out = out
    def track(self, event):
        with open(self.out, "a") as f:
            f.write(event.name + "\\n")

@hookimpl
def tracking_register_providers(register, environ):
    out = environ.get("ACME_OUT")
    if not out:
        return
    if out == "bad":
        raise SettingsError("ACME_OUT", "must be a path")
    register(AcmeProvider(out))

@hookimpl
def tracking_provider_settings():
    return [ProviderSetting("ACME_OUT", "file to append events to", required=True)]
"""

BROKEN_IMPORT = """
raise ImportError("this plugin cannot be imported")
"""

RAISING = """
from tracking_core import hookimpl

@hookimpl
def tracking_register_providers(register, environ):
    raise RuntimeError("plugin bug")
"""

# Accepts fewer arguments than the hookspec offers (pluggy allows it).
ENV_ONLY = """
from tracking_core import hookimpl

class Quiet:
    name = "quiet"
    def track(self, event):
        pass

@hookimpl
def tracking_register_providers(register):
    register(Quiet())
"""

PROBE = """
import json, logging, sys
logging.basicConfig(level=logging.INFO, stream=sys.stderr)
import tracking_core as tc
tc.track("early")  # accepted before discovery finished: still delivered to what it finds
reports = tc.discover_tracking_providers()
tc.track("late")
ok = tc.flush_tracking(10)
print(json.dumps({
    "providers": tc.list_tracking_providers(),
    "ok": ok,
    "reports": {r.name: {"dist": r.distribution, "version": r.version,
                         "providers": list(r.providers), "allowed": r.allowed,
                         "error": r.error, "settings": [s.name for s in r.settings]}
                for r in reports},
}))
"""


@pytest.fixture(scope="module")
def plugin_venv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PluginVenv]:
    root = tmp_path_factory.mktemp("plugins")
    env = PluginVenv(root / "venv")
    env.install(
        write_package(root, "tracking-acme", "tracking_acme", "acme", ACME),
        write_package(root, "tracking-broken", "tracking_broken", "broken", BROKEN_IMPORT),
        write_package(root, "tracking-raising", "tracking_raising", "raising", RAISING),
        write_package(root, "tracking-envonly", "tracking_envonly", "envonly", ENV_ONLY),
    )
    yield env


def probe(env: PluginVenv, **variables: str) -> tuple[dict, str]:  # type: ignore[type-arg]
    result = env.run(PROBE, variables)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout), result.stderr


def test_installed_but_unconfigured_plugin_enables_nothing(plugin_venv: PluginVenv) -> None:
    data, _ = probe(plugin_venv, TRACKING_PROVIDERS="acme")
    assert data["providers"] == []
    acme = data["reports"]["acme"]
    assert acme == {
        "dist": "tracking-acme",
        "version": "1.2.3",
        "providers": [],
        "allowed": True,
        "error": None,
        "settings": ["ACME_OUT"],
    }


def test_configured_plugin_is_discovered_and_broken_ones_are_skipped(
    plugin_venv: PluginVenv, tmp_path: Path
) -> None:
    out = tmp_path / "acme.txt"
    data, stderr = probe(plugin_venv, ACME_OUT=str(out))
    assert "acme" in data["providers"] and "quiet" in data["providers"]
    assert data["ok"] is True
    assert out.read_text().splitlines() == ["early", "late"]
    reports = data["reports"]
    assert reports["acme"]["providers"] == ["acme"]
    assert reports["broken"]["error"] == "ImportError: this plugin cannot be imported"
    assert reports["raising"]["error"] == "RuntimeError: plugin bug"
    assert "provider plugin 'broken' failed to load" in stderr
    assert "provider plugin 'raising' is disabled: RuntimeError: plugin bug" in stderr


def test_a_malformed_value_disables_only_that_plugin(plugin_venv: PluginVenv) -> None:
    data, stderr = probe(plugin_venv, ACME_OUT="bad", TRACKING_PROVIDERS="acme,envonly")
    assert data["providers"] == ["quiet"]
    assert data["reports"]["acme"]["error"] == "ACME_OUT: must be a path"
    assert "provider plugin 'acme' is disabled: ACME_OUT: must be a path" in stderr


def test_tracking_providers_allowlist_and_unknown_names(
    plugin_venv: PluginVenv, tmp_path: Path
) -> None:
    out = tmp_path / "acme.txt"
    data, stderr = probe(plugin_venv, ACME_OUT=str(out), TRACKING_PROVIDERS="envonly, nosuch")
    assert data["providers"] == ["quiet"]
    assert data["reports"]["acme"]["allowed"] is False
    assert not out.exists()
    assert "TRACKING_PROVIDERS names 'nosuch', which is not installed" in stderr
    for value in ("", "none"):
        data, _ = probe(plugin_venv, ACME_OUT=str(out), TRACKING_PROVIDERS=value)
        assert data["providers"] == []


def test_tracking_disabled_turns_discovery_off(plugin_venv: PluginVenv, tmp_path: Path) -> None:
    out = tmp_path / "acme.txt"
    data, stderr = probe(plugin_venv, ACME_OUT=str(out), TRACKING_DISABLED="1")
    assert data["providers"] == []
    assert "TRACKING_DISABLED is set" in stderr
    assert not out.exists()
