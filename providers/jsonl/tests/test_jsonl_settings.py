"""JSON Lines: which variables enable it, their defaults, their checks, and the plugin hooks."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

import pytest
import tracking_jsonl
from tracking_jsonl import JsonlProvider, JsonlSettings

import tracking_core
from tracking_core import SettingsError

Env = Callable[..., None]


def test_disabled_without_its_path(env: Env) -> None:
    env()
    assert tracking_core.list_tracking_providers() == []
    env(TRACKING_JSONL_PATH="   ")
    assert tracking_core.list_tracking_providers() == []


def test_defaults() -> None:
    settings = JsonlSettings.from_environ({"TRACKING_JSONL_PATH": "/var/log/app/events.jsonl"})
    assert settings is not None
    assert settings.path == "/var/log/app/events.jsonl"
    assert (settings.max_bytes, settings.backups) == (10_000_000, 5)
    assert JsonlSettings.from_environ({"TRACKING_JSONL_MAX_BYTES": "x"}) is None


def test_a_relative_path_is_made_absolute_once(tmp_path: Path) -> None:
    here = os.getcwd()
    os.chdir(tmp_path)
    try:
        settings = JsonlSettings.from_environ({"TRACKING_JSONL_PATH": "logs/events.jsonl"})
    finally:
        os.chdir(here)
    assert settings is not None
    assert settings.path == str(tmp_path / "logs" / "events.jsonl")  # a later chdir: no move
    home = JsonlSettings.from_environ({"TRACKING_JSONL_PATH": "~/events.jsonl"})
    assert home is not None and home.path == os.path.expanduser("~/events.jsonl")
    dash = JsonlSettings.from_environ({"TRACKING_JSONL_PATH": " - "})
    assert dash is not None and dash.path == "-"


@pytest.mark.parametrize(
    ("variable", "value"),
    [("TRACKING_JSONL_MAX_BYTES", "10MB"), ("TRACKING_JSONL_BACKUPS", "-1")],
)
def test_a_malformed_number_disables_it_with_one_line(
    env: Env, caplog: pytest.LogCaptureFixture, tmp_path: Path, variable: str, value: str
) -> None:
    caplog.set_level(logging.DEBUG)
    env(TRACKING_JSONL_PATH=str(tmp_path / "events.jsonl"), **{variable: value})
    assert tracking_core.list_tracking_providers() == []
    lines = [r.getMessage() for r in caplog.records if variable in r.getMessage()]
    assert len(lines) == 1, lines
    with pytest.raises(SettingsError) as info:
        JsonlSettings.from_environ({"TRACKING_JSONL_PATH": "/tmp/x", variable: value})
    assert info.value.variable == variable


def test_settings_hook_describes_every_variable() -> None:
    described = {s.name: s for s in tracking_jsonl.plugin.tracking_provider_settings()}
    assert list(described) == [
        "TRACKING_JSONL_PATH",
        "TRACKING_JSONL_MAX_BYTES",
        "TRACKING_JSONL_BACKUPS",
    ]
    assert described["TRACKING_JSONL_PATH"].required
    assert not any(s.secret for s in described.values())
    assert described["TRACKING_JSONL_MAX_BYTES"].default == "10000000"
    assert described["TRACKING_JSONL_BACKUPS"].default == "5"


def test_register_hook_registers_only_when_configured(tmp_path: Path) -> None:
    registered: list[object] = []
    tracking_jsonl.plugin.tracking_register_providers(registered.append, {})
    assert registered == []
    environ = {"TRACKING_JSONL_PATH": str(tmp_path / "e.jsonl")}
    tracking_jsonl.plugin.tracking_register_providers(registered.append, environ)
    (provider,) = registered
    assert isinstance(provider, JsonlProvider) and provider.name == "jsonl"
    assert provider.settings.path == str(tmp_path / "e.jsonl")


def test_it_is_a_batching_provider_not_a_plain_one() -> None:
    # The engine batches for it (TRACKING_BATCH_SIZE, the flush interval) and it writes each
    # batch at once: it has no track() to be called per event.
    from tracking_core.engine import BatchingProvider

    settings = JsonlSettings.from_environ({"TRACKING_JSONL_PATH": "/tmp/x.jsonl"})
    assert settings is not None
    provider = JsonlProvider(settings)
    assert isinstance(provider, BatchingProvider)
    assert not hasattr(provider, "track")
    assert provider.batch_limit() == 1000
