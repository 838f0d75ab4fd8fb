"""The Amplitude plugin is enabled by its environment variables, as a user would set them."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pytest
import tracking_amplitude
from tracking_amplitude.fake import AmplitudeFake
from tracking_amplitude.provider import DEFAULT_HOST, AmplitudeProvider, AmplitudeSettings

import tracking_core

Configure = Callable[..., None]


def send_one() -> None:
    tracking_core.track("Signed Up", user_id="user-12345")
    assert tracking_core.flush_tracking(10)


def test_not_enabled_without_the_api_key(configure: Configure, fake: AmplitudeFake) -> None:
    configure()
    assert tracking_core.list_tracking_providers() == []
    send_one()
    assert fake.events == []


@pytest.mark.parametrize("from_file", [False, True], ids=["variable", "file"])
def test_enabled_by_the_api_key(
    configure: Configure, fake: AmplitudeFake, api_key: str, tmp_path: Path, from_file: bool
) -> None:
    if from_file:
        path = tmp_path / "amplitude-key"
        path.write_text(f"{api_key}\n", encoding="utf-8")
        configure(AMPLITUDE_API_KEY_FILE=str(path))
    else:
        configure(AMPLITUDE_API_KEY=api_key)
    assert tracking_core.list_tracking_providers() == ["amplitude"]
    send_one()
    # The fake checks the key: the variable's, or the file's stripped of its newline.
    assert [e["event_type"] for e in fake.events] == ["Signed Up"]
    assert tracking_core.tracking_stats()["amplitude"].delivered == 1


@pytest.mark.parametrize(
    ("variables", "named"),
    [
        ({"AMPLITUDE_HOST": "api2.amplitude.com"}, "AMPLITUDE_HOST"),
        ({"AMPLITUDE_HOST": "ftp://api2.amplitude.com"}, "AMPLITUDE_HOST"),
        ({"AMPLITUDE_HOST": "https://"}, "AMPLITUDE_HOST"),
        ({"AMPLITUDE_HOST": "http://host:port"}, "AMPLITUDE_HOST"),
        (
            {"AMPLITUDE_API_KEY": None, "AMPLITUDE_API_KEY_FILE": "/nonexistent/key"},
            "AMPLITUDE_API_KEY_FILE",
        ),
    ],
)
def test_a_malformed_value_disables_it_with_one_clear_line(
    configure: Configure,
    caplog: pytest.LogCaptureFixture,
    api_key: str,
    variables: dict[str, str | None],
    named: str,
) -> None:
    caplog.set_level(logging.DEBUG, logger="tracking_core")
    configure(**{"AMPLITUDE_API_KEY": api_key, **variables})
    assert tracking_core.list_tracking_providers() == []
    lines = [r.getMessage() for r in caplog.records if named in r.getMessage()]
    assert len(lines) == 1, caplog.text
    assert "amplitude" in lines[0]
    assert api_key not in caplog.text


def test_an_empty_key_file_disables_it(
    configure: Configure, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    path = tmp_path / "empty"
    path.write_text("\n", encoding="utf-8")
    configure(AMPLITUDE_API_KEY_FILE=str(path))
    assert tracking_core.list_tracking_providers() == []
    assert "AMPLITUDE_API_KEY_FILE" in caplog.text


def test_a_malformed_host_without_a_key_is_silent(
    configure: Configure, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="tracking_core")
    configure(AMPLITUDE_HOST="not a url")
    assert tracking_core.list_tracking_providers() == []
    assert "AMPLITUDE" not in caplog.text


def test_the_settings_hook_describes_every_variable() -> None:
    settings = {s.name: s for s in tracking_amplitude.plugin.tracking_provider_settings()}
    assert set(settings) == {"AMPLITUDE_API_KEY", "AMPLITUDE_HOST"}
    assert settings["AMPLITUDE_API_KEY"].secret
    assert settings["AMPLITUDE_API_KEY"].required
    assert not settings["AMPLITUDE_HOST"].secret
    assert settings["AMPLITUDE_HOST"].default == DEFAULT_HOST


def test_settings_defaults_and_no_key_in_reprs(api_key: str) -> None:
    settings = AmplitudeSettings.from_environ({"AMPLITUDE_API_KEY": api_key})
    assert settings is not None
    assert settings.host == DEFAULT_HOST
    eu = AmplitudeSettings.from_environ(
        {"AMPLITUDE_API_KEY": api_key, "AMPLITUDE_HOST": "https://api.eu.amplitude.com/"}
    )
    assert eu is not None and eu.host == "https://api.eu.amplitude.com"
    assert AmplitudeSettings.from_environ({"AMPLITUDE_HOST": DEFAULT_HOST}) is None
    provider = AmplitudeProvider(settings)
    assert api_key not in repr(settings)
    assert api_key not in repr(provider)
    assert list(provider.secrets()) == [api_key]
    request = provider.build_request("httpapi", [], "batch")
    assert request.url == "https://api2.amplitude.com/2/httpapi"
    assert not request.gzip
