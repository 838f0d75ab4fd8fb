"""Plugin discovery through real installed packages: entry points, variables, broken plugins."""

from __future__ import annotations

import json
import re
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
    if out == "word":
        raise SettingsError("ACME_OUT must name a file, not a word")  # the message-only form
    register(AcmeProvider(out))

@hookimpl
def tracking_provider_settings():
    return [ProviderSetting("ACME_OUT", "file to append events to", required=True)]
"""

# The kit: the entry point names a `ProviderPlugin` object (``kit = "tracking_kit:plugin"``).
KIT = """
import dataclasses
from tracking_core.kit import ProviderPlugin, ProviderSettings, integer, var

@dataclasses.dataclass(frozen=True)
class KitSettings(ProviderSettings):
    out: str = var("KIT_OUT", "file to append events to", required=True)
    token: str | None = var("KIT_TOKEN", "a credential", secret=True)
    every: int = var("KIT_EVERY", "events per line", default="1", check=integer(1))

class KitProvider:
    name = "kit"
    def __init__(self, settings):
        self.settings = settings
    def track(self, event):
        with open(self.settings.out, "a") as f:
            f.write(f"{event.name} {self.settings.token} {self.settings.every}\\n")

def destination():
    return "the kit fake"

plugin = ProviderPlugin(KitProvider, KitSettings, fake="tracking_kit:destination")
"""

# A kit plugin whose fake cannot be made: `installed_fakes` skips it, with a log line.
KIT_BAD_FAKE = """
from tracking_kit import KitProvider, KitSettings
from tracking_core.kit import ProviderPlugin

plugin = ProviderPlugin(KitProvider, KitSettings, fake="tracking_kitbadfake:no_such_function")
"""

FAKES = """
import json, logging, sys
logging.basicConfig(level=logging.INFO, stream=sys.stderr)
from tracking_core.discovery import installed_fakes
names = ["kitbadfake", "acme", "broken", "kit", "typo"]
some = installed_fakes(["acme", "tracking-kit"])
print(json.dumps({"all": installed_fakes(names), "some": some}))
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

#: A plugin module's start: a plain provider class `{cls}` called `{name}` that takes every
#: event and identify and does nothing with them.
NULL_PROVIDER = """
from tracking_core import ProviderSetting, hookimpl

class {cls}:
    name = "{name}"
    def track(self, event):
        pass
    def identify(self, user_id, traits):
        pass
"""

# Accepts fewer arguments than the hookspec offers (pluggy allows it).
ENV_ONLY = (
    NULL_PROVIDER.format(cls="Quiet", name="quiet")
    + """
@hookimpl
def tracking_register_providers(register):
    register(Quiet())
"""
)

# The hook's name misspelt (singular): pluggy's own check (`check_pending`) rejects it.
TYPO = (
    NULL_PROVIDER.format(cls="Typo", name="typo")
    + """
@hookimpl
def tracking_register_provider(register, environ):
    if environ.get("TYPO_KEY"):
        register(Typo())

@hookimpl
def tracking_provider_settings():
    return [ProviderSetting("TYPO_KEY", "enables typo", required=True, secret=True)]
"""
)

# An argument the hook does not pass: pluggy refuses the plugin when it is registered.
WRONG_ARG = """
from tracking_core import hookimpl

@hookimpl
def tracking_register_providers(register, env):
    raise AssertionError("never called")
"""

# Broken in ways the conformance suite must explain: enabled without its variables, and it
# never sends anything (a plain provider that "delivers" by returning).
SLOPPY = (
    NULL_PROVIDER.format(cls="Sloppy", name="sloppy")
    + """
@hookimpl
def tracking_register_providers(register, environ):
    register(Sloppy())

@hookimpl
def tracking_provider_settings():
    return [
        ProviderSetting("SLOPPY_KEY", "enables sloppy", required=True, secret=True),
        ProviderSetting("SLOPPY_HOST", "base URL"),
    ]
"""
)

SLOPPY_CONFORMANCE = """
from tracking_core.conformance import ProviderConformance

class TestSloppyConformance(ProviderConformance):
    entry_point = "sloppy"
    provider_name = "sloppy"
    secret_variables = ("SLOPPY_KEY",)

    def enabling_environment(self, url):
        return {"SLOPPY_KEY": "sloppy-secret-key-1", "SLOPPY_HOST": url}
"""

#: `tracking providers`, run inside the plugin venv.
PROVIDERS_CLI = """
import sys
from tracking_core.cli import main
sys.exit(main(["providers"]))
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
        write_package(root, "tracking-typo", "tracking_typo", "typo", TYPO),
        write_package(root, "tracking-wrongarg", "tracking_wrongarg", "wrongarg", WRONG_ARG),
        write_package(root, "tracking-sloppy", "tracking_sloppy", "sloppy", SLOPPY),
        write_package(root, "tracking-kit", "tracking_kit", "kit", KIT, "tracking_kit:plugin"),
        write_package(
            root,
            "tracking-kitbadfake",
            "tracking_kitbadfake",
            "kitbadfake",
            KIT_BAD_FAKE,
            "tracking_kitbadfake:plugin",
        ),
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


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ("bad", "ACME_OUT: must be a path"),  # SettingsError(variable, problem)
        ("word", "ACME_OUT must name a file, not a word"),  # SettingsError(message)
    ],
    ids=["variable-and-problem", "message-alone"],
)
def test_a_malformed_value_disables_only_that_plugin(
    plugin_venv: PluginVenv, value: str, error: str
) -> None:
    data, stderr = probe(plugin_venv, ACME_OUT=value, TRACKING_PROVIDERS="acme,envonly")
    assert data["providers"] == ["quiet"]
    assert data["reports"]["acme"]["error"] == error
    assert f"provider plugin 'acme' is disabled: {error}" in stderr


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


# -- hardening (issue #10, items 19, 20 and 22) --------------------------------------------------


def test_a_misspelt_hook_is_reported_and_the_others_still_register(
    plugin_venv: PluginVenv, tmp_path: Path
) -> None:
    out = tmp_path / "acme.txt"
    data, stderr = probe(
        plugin_venv, ACME_OUT=str(out), TYPO_KEY="typo-key", TRACKING_PROVIDERS="typo,acme"
    )
    assert data["providers"] == ["acme"]
    error = data["reports"]["typo"]["error"]
    assert error is not None, data["reports"]["typo"]
    assert "tracking_register_provider is not a tracking-core hook" in error
    assert "did you mean tracking_register_providers?" in error
    assert data["reports"]["typo"]["settings"] == ["TYPO_KEY"]  # still described
    assert "provider plugin 'typo' is invalid: " in stderr

    result = plugin_venv.run(PROVIDERS_CLI, {"TYPO_KEY": "typo-key", "TRACKING_PROVIDERS": "typo"})
    assert result.returncode == 1, result.stdout + result.stderr
    block = next(b for b in result.stdout.split("\n\n") if b.startswith("typo  ("))
    assert block.startswith("typo  (tracking-typo 1.2.3)\n  disabled: @hookimpl ")
    assert "to enable it" not in block
    assert "did you mean tracking_register_providers?" in block
    assert "typo-key" not in result.stdout + result.stderr


def test_a_hook_argument_the_hook_does_not_pass_is_the_plugins_error(
    plugin_venv: PluginVenv, tmp_path: Path
) -> None:
    out = tmp_path / "acme.txt"
    data, stderr = probe(plugin_venv, ACME_OUT=str(out), TRACKING_PROVIDERS="wrongarg,acme")
    assert data["providers"] == ["acme"]
    error = data["reports"]["wrongarg"]["error"]
    assert error is not None and "\n" not in error
    assert "tracking_register_providers(register, env)" in error
    assert "no argument 'env' (it passes register, environ)" in error
    assert "provider plugin 'wrongarg' is invalid: " in stderr


def test_conformance_failures_say_what_was_expected_and_what_came(
    plugin_venv: PluginVenv, tmp_path: Path
) -> None:
    tests = tmp_path / "test_sloppy_conformance.py"
    tests.write_text(SLOPPY_CONFORMANCE)
    script = f"""
import sys, pytest
sys.exit(pytest.main(["-p", "no:cacheprovider", "-q", "--rootdir", {str(tmp_path)!r},
                      {str(tests)!r}]))
"""
    result = plugin_venv.run(script, timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "3 failed" in output, output
    assert re.search(r"^E\s+AssertionError\s*$", output, re.MULTILINE) is None, output
    assert (
        "'sloppy' is enabled without its variables (SLOPPY_KEY, SLOPPY_HOST): expected it "
        "absent from list_tracking_providers(), got ['sloppy']"
    ) in output
    assert (
        "while the destination answers HTTP 500: expected 0 events delivered and 3 dropped, "
        "got 3 delivered and 0 dropped"
    ) in output
    assert "nothing reached the destination" in output


def test_tracking_providers_matches_distribution_names_in_any_case(
    plugin_venv: PluginVenv, tmp_path: Path
) -> None:
    out = tmp_path / "acme.txt"
    for value in ("ACME", "tracking-acme", "Tracking_Acme", "tracking.acme"):
        data, stderr = probe(plugin_venv, ACME_OUT=str(out), TRACKING_PROVIDERS=value)
        assert data["providers"] == ["acme"], value
        assert data["reports"]["envonly"]["allowed"] is False
        assert "not installed" not in stderr
    data, stderr = probe(plugin_venv, ACME_OUT=str(out), TRACKING_PROVIDERS="acmee,nosuch")
    assert data["providers"] == []
    assert "'acmee' (did you mean 'acme'?)" in stderr
    assert "'nosuch'" in stderr and "which are not installed" in stderr


# -- the kit (issue #11): an entry point naming a plugin object ----------------------------------


def test_an_entry_point_naming_a_plugin_object_is_discovered(
    plugin_venv: PluginVenv, tmp_path: Path
) -> None:
    out = tmp_path / "kit.txt"
    token = tmp_path / "token"
    token.write_text("kit-token-from-file\n", encoding="utf-8")
    data, stderr = probe(
        plugin_venv, KIT_OUT=str(out), KIT_TOKEN_FILE=str(token), TRACKING_PROVIDERS="kit,acme"
    )
    assert data["providers"] == ["kit"]
    assert data["reports"]["kit"] == {
        "dist": "tracking-kit",
        "version": "1.2.3",
        "providers": ["kit"],
        "allowed": True,
        "error": None,
        "settings": ["KIT_OUT", "KIT_TOKEN", "KIT_EVERY"],
    }
    assert out.read_text().splitlines() == [
        "early kit-token-from-file 1",
        "late kit-token-from-file 1",
    ]
    # The old style (a module of @hookimpl functions) works beside it.
    assert data["reports"]["acme"]["error"] is None and data["reports"]["acme"]["settings"]

    data, stderr = probe(plugin_venv, KIT_OUT=str(out), KIT_EVERY="0", TRACKING_PROVIDERS="kit")
    assert data["providers"] == []
    assert data["reports"]["kit"]["error"] == "KIT_EVERY: must be at least 1, got 0"
    assert "provider plugin 'kit' is disabled: KIT_EVERY: must be at least 1, got 0" in stderr


def test_installed_fakes_come_from_the_plugins_that_ship_one(plugin_venv: PluginVenv) -> None:
    result = plugin_venv.run(FAKES)
    assert result.returncode == 0, result.stderr
    # Of these, only the kit ships a fake; the old-style plugins have none, a broken one is
    # skipped, and the one whose fake cannot be made is named in the log.
    assert json.loads(result.stdout) == {"all": ["the kit fake"], "some": ["the kit fake"]}
    assert "provider plugin 'kitbadfake' has no usable fake" in result.stderr
    assert "no_such_function" in result.stderr
