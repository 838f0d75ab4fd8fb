"""PostHog: enabled by its variables only, `_FILE` secrets, malformed values, settings hook."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pytest
import tracking_posthog
from tracking_posthog.fake import PostHogFake
from tracking_posthog.provider import DEFAULT_HOST, PostHogProvider, PostHogSettings

import tracking_core
from tracking_core import SettingsError
from tracking_core.receivers import LoopbackReceiver

Env = Callable[..., None]


def _mentions(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if text in r.getMessage()]


def _disabled_with_one_line(caplog: pytest.LogCaptureFixture, variable: str) -> str:
    """Assert PostHog stayed off and exactly one log line names `variable`; that line."""
    assert tracking_core.list_tracking_providers() == []
    lines = _mentions(caplog, variable)
    assert len(lines) == 1, lines
    return lines[0]


def test_disabled_without_its_key(env: Env, server: LoopbackReceiver) -> None:
    env(POSTHOG_HOST=server.url)
    assert tracking_core.list_tracking_providers() == []
    tracking_core.track("Nobody listens", user_id="u-1")
    assert tracking_core.flush_tracking(5)
    assert server.requests == []
    (report,) = [r for r in tracking_core.discover_tracking_providers() if r.name == "posthog"]
    assert report.providers == ()
    assert report.error is None
    assert report.distribution == "tracking-posthog"


def test_empty_key_means_disabled(env: Env) -> None:
    env(POSTHOG_API_KEY="  ")
    assert tracking_core.list_tracking_providers() == []


def test_enabled_by_its_key(
    env: Env, server: LoopbackReceiver, fake: PostHogFake, api_key: str
) -> None:
    env(POSTHOG_API_KEY=api_key, POSTHOG_HOST=server.url)
    assert tracking_core.list_tracking_providers() == ["posthog"]
    tracking_core.track("Signed Up", user_id="user-1")
    assert tracking_core.flush_tracking(10)
    assert [e["event"] for e in fake.events] == ["Signed Up"]
    assert tracking_core.tracking_stats()["posthog"].delivered == 1


def test_tracking_providers_can_exclude_it(
    env: Env, server: LoopbackReceiver, api_key: str
) -> None:
    env(POSTHOG_API_KEY=api_key, POSTHOG_HOST=server.url, TRACKING_PROVIDERS="webhook")
    assert tracking_core.list_tracking_providers() == []


@pytest.mark.parametrize("variable_too", [False, True], ids=["file-only", "variable-wins"])
def test_key_from_file(
    env: Env,
    server: LoopbackReceiver,
    fake: PostHogFake,
    api_key: str,
    tmp_path: Path,
    variable_too: bool,
) -> None:
    secret = tmp_path / "posthog_key"
    secret.write_text("phc_someOtherKey" if variable_too else api_key + "\n", encoding="utf-8")
    env(
        POSTHOG_API_KEY=api_key if variable_too else None,
        POSTHOG_API_KEY_FILE=str(secret),
        POSTHOG_HOST=server.url,
    )
    assert tracking_core.list_tracking_providers() == ["posthog"]
    tracking_core.track("From a file", user_id="user-1")
    assert tracking_core.flush_tracking(10)
    assert len(fake.events) == 1
    assert fake.batches[0]["api_key"] == api_key  # the fake checks it too (401 otherwise)
    assert fake.rejections == []


@pytest.mark.parametrize(
    "host", ["us.i.posthog.com", "ftp://example.com", "http://", "http://h:x/"]
)
def test_malformed_host_disables_it_with_one_line(
    env: Env, caplog: pytest.LogCaptureFixture, api_key: str, host: str
) -> None:
    caplog.set_level(logging.DEBUG)
    env(POSTHOG_API_KEY=api_key, POSTHOG_HOST=host)
    _disabled_with_one_line(caplog, "POSTHOG_HOST")
    assert _mentions(caplog, api_key) == []
    assert _mentions(caplog, api_key[4:12]) == []


@pytest.mark.parametrize(
    "key",
    [
        "phx_PersonalKeyIsNotAProjectKey123",
        "phc_" + "x" * 80,
        "phc_caf\u00e9S3cr3t",
    ],
)
def test_key_capture_would_refuse_disables_it(
    env: Env, caplog: pytest.LogCaptureFixture, key: str
) -> None:
    caplog.set_level(logging.DEBUG)
    env(POSTHOG_API_KEY=key)
    line = _disabled_with_one_line(caplog, "POSTHOG_API_KEY")
    assert key not in line
    assert key[4:16] not in line


def test_bad_key_file_names_the_file_variable(
    env: Env, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    caplog.set_level(logging.DEBUG)
    empty = tmp_path / "empty"
    empty.write_text("\n", encoding="utf-8")
    env(POSTHOG_API_KEY_FILE=str(empty))
    _disabled_with_one_line(caplog, "POSTHOG_API_KEY_FILE")


def test_personal_key_in_file_names_the_file_variable(tmp_path: Path) -> None:
    path = tmp_path / "key"
    path.write_text("phx_personal0123456789", encoding="utf-8")
    with pytest.raises(SettingsError) as info:
        PostHogSettings.from_environ({"POSTHOG_API_KEY_FILE": str(path)})
    assert info.value.variable == "POSTHOG_API_KEY_FILE"
    assert "phx_personal" not in str(info.value)


@pytest.mark.parametrize(
    ("host", "url"),
    [
        (None, "https://us.i.posthog.com/batch/"),
        ("https://eu.i.posthog.com", "https://eu.i.posthog.com/batch/"),
        ("https://eu.i.posthog.com/", "https://eu.i.posthog.com/batch/"),
        ("https://proxy.example.com/ph/", "https://proxy.example.com/ph/batch/"),
        ("http://127.0.0.1:8000/a/b", "http://127.0.0.1:8000/a/b/batch/"),
        ("https://app.posthog.com", "https://us.i.posthog.com/batch/"),
        ("https://us.posthog.com/", "https://us.i.posthog.com/batch/"),
        ("https://EU.posthog.com", "https://eu.i.posthog.com/batch/"),
        ("https://eu.posthog.com/proxy", "https://eu.posthog.com/proxy/batch/"),
    ],
)
def test_host_resolution(api_key: str, host: str | None, url: str) -> None:
    environ = {"POSTHOG_API_KEY": api_key}
    if host is not None:
        environ["POSTHOG_HOST"] = host
    settings = PostHogSettings.from_environ(environ)
    assert settings is not None
    assert settings.batch_url == url


def test_settings_read_nothing_without_key(api_key: str) -> None:
    assert PostHogSettings.from_environ({"POSTHOG_HOST": "not a url"}) is None
    assert PostHogSettings(api_key=api_key).host == DEFAULT_HOST


def test_reprs_hide_the_key(api_key: str) -> None:
    settings = PostHogSettings.from_environ({"POSTHOG_API_KEY": api_key})
    assert settings is not None
    provider = PostHogProvider(settings)
    for text in (repr(settings), str(settings), repr(provider), str(provider)):
        assert api_key not in text
    assert list(provider.secrets()) == [api_key]
    assert provider.name == "posthog"


def test_settings_hook_describes_every_variable() -> None:
    settings = {s.name: s for s in tracking_posthog.plugin.tracking_provider_settings()}
    assert set(settings) == {"POSTHOG_API_KEY", "POSTHOG_HOST"}
    assert settings["POSTHOG_API_KEY"].secret and settings["POSTHOG_API_KEY"].required
    assert not settings["POSTHOG_HOST"].secret
    assert settings["POSTHOG_HOST"].default == DEFAULT_HOST


def test_register_hook_registers_only_when_configured(api_key: str) -> None:
    registered: list[object] = []
    tracking_posthog.plugin.tracking_register_providers(registered.append, {})
    assert registered == []
    environ = {"POSTHOG_API_KEY": api_key}
    tracking_posthog.plugin.tracking_register_providers(registered.append, environ)
    assert len(registered) == 1
    assert isinstance(registered[0], PostHogProvider)
