"""Discovery imports only what it uses (issue #12, item 6): an installed provider package that is
not configured costs reading its settings, not importing its provider module and the HTTP stack;
`ProviderPlugin` takes the provider as ``"module:Class"`` (resolved once it is configured) or, as
before, as the class itself."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.harness import run_python
from tracking_core import SettingsError
from tracking_core.entrypoints import entry_points
from tracking_core.kit import ProviderPlugin, ProviderSettings, var

REPO = Path(__file__).resolve().parents[1]

#: The built-in provider packages and the module each keeps its wire mapping in.
BUILT_IN = {
    "posthog": "tracking_posthog",
    "mixpanel": "tracking_mixpanel",
    "amplitude": "tracking_amplitude",
    "webhook": "tracking_webhook",
    "ga4": "tracking_ga4",
    "jsonl": "tracking_jsonl",
    "otlp": "tracking_otlp",
    "segment": "tracking_segment",
    "rudderstack": "tracking_segment",
    "redis": "tracking_redis",
}

PROBE = """
import json, sys
import tracking_core
reports = tracking_core.discover_tracking_providers()
print(json.dumps({
    "modules": sorted(name for name in sys.modules if name.startswith("tracking_")),
    "providers": tracking_core.list_tracking_providers(),
    "reports": {r.name: {"providers": list(r.providers), "error": r.error,
                         "settings": [s.name for s in r.settings]} for r in reports},
}))
"""


def _installed() -> dict[str, str]:
    found = {ep.name for ep in entry_points("tracking_core")}
    return {name: package for name, package in BUILT_IN.items() if name in found}


def _probe(tmp_path: Path, **variables: str) -> dict[str, Any]:
    prefixes = ("TRACKING_", *(f"{name.upper()}_" for name in BUILT_IN), "GA4_", "OTLP_")
    env: dict[str, str | None] = {k: None for k in os.environ if k.startswith(prefixes)}
    env.update(PYTHONPATH=str(REPO), TRACKING_PROVIDERS=",".join(_installed()), **variables)
    result = run_python(PROBE, cwd=tmp_path, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def test_an_unconfigured_package_is_not_imported_beyond_its_settings(tmp_path: Path) -> None:
    installed = _installed()
    if "posthog" not in installed or len(installed) < 2:
        pytest.skip("needs tracking-posthog and another built-in provider package installed")
    data = _probe(tmp_path, POSTHOG_API_KEY="phc_lazy_probe", POSTHOG_HOST="http://127.0.0.1:9")
    assert data["providers"] == ["posthog"]
    modules = set(data["modules"])
    for name, package in installed.items():
        report = data["reports"][name]
        assert report["error"] is None, (name, report)
        assert report["settings"], name  # `tracking providers` still lists its variables
        assert package in modules, name
    assert "tracking_posthog.provider" in modules
    loaded = {f"{package}.provider" for name, package in installed.items() if name != "posthog"}
    assert loaded & modules == set(), "discovery imported unconfigured providers' modules"


def test_nothing_configured_imports_no_provider_module_and_no_http_stack(tmp_path: Path) -> None:
    installed = _installed()
    if not installed:
        pytest.skip("no built-in provider package installed")
    data = _probe(tmp_path)
    assert data["providers"] == []
    modules = set(data["modules"])
    assert {f"{package}.provider" for package in installed.values()} & modules == set()
    assert not any(m.startswith("tracking_core.http") for m in modules), modules
    for name in installed:
        assert data["reports"][name]["settings"], name


# -- ProviderPlugin's two forms ------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class LazySettings(ProviderSettings):
    key: str = var("LAZY_KEY", "enables it", required=True, secret=True)


class DirectProvider:
    """A plain provider, handed to `ProviderPlugin` as a class (the original form)."""

    name = "direct"

    def __init__(self, settings: LazySettings) -> None:
        self.settings = settings

    def track(self, event: object) -> None:
        pass


LAZY_MODULE = """
class LazyProvider:
    name = "lazy"
    def __init__(self, settings):
        self.settings = settings
    def track(self, event):
        pass
"""


def _register(plugin: ProviderPlugin[LazySettings], environ: dict[str, str]) -> list[Any]:
    registered: list[Any] = []
    plugin.tracking_register_providers(registered.append, environ)
    return registered


def test_a_provider_named_as_a_string_is_imported_only_once_configured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = "tracking_lazy_probe_provider"
    (tmp_path / f"{module}.py").write_text(LAZY_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, module, raising=False)

    plugin = ProviderPlugin(f"{module}:LazyProvider", LazySettings)
    assert repr(plugin) == "ProviderPlugin(LazyProvider, LazySettings)"
    assert [s.name for s in plugin.tracking_provider_settings()] == ["LAZY_KEY"]
    assert _register(plugin, {}) == []
    assert module not in sys.modules  # described and not configured: never imported

    (provider,) = _register(plugin, {"LAZY_KEY": "lazy-secret"})
    assert module in sys.modules
    assert type(provider).__name__ == "LazyProvider"
    assert provider.settings == LazySettings(key="lazy-secret")
    assert plugin.provider is type(provider)  # resolved: the attribute is the class


def test_a_provider_given_as_a_class_still_works() -> None:
    plugin = ProviderPlugin(DirectProvider, LazySettings)
    assert plugin.provider is DirectProvider
    assert repr(plugin) == "ProviderPlugin(DirectProvider, LazySettings)"
    (provider,) = _register(plugin, {"LAZY_KEY": "direct-secret"})
    assert isinstance(provider, DirectProvider)
    assert provider.settings.key == "direct-secret"


def test_a_malformed_or_missing_provider_name_is_an_error() -> None:
    with pytest.raises(ValueError, match="module:Class"):
        ProviderPlugin("no_colon_here", LazySettings)
    plugin = ProviderPlugin("tracking_no_such_module_here:Provider", LazySettings)
    assert _register(plugin, {}) == []  # not configured: nothing is imported, nothing fails
    with pytest.raises(ModuleNotFoundError):
        _register(plugin, {"LAZY_KEY": "some-secret"})
    plugin = ProviderPlugin(f"{__name__}:NoSuchProvider", LazySettings)
    with pytest.raises(AttributeError, match="NoSuchProvider"):
        _register(plugin, {"LAZY_KEY": "some-secret"})
    with pytest.raises(SettingsError):  # the settings are still read first
        _register(plugin, {"LAZY_KEY_FILE": "/nonexistent/secret"})
