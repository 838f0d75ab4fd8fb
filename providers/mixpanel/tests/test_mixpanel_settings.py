"""Enabling the Mixpanel provider from the environment, and malformed settings."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pytest
import tracking_mixpanel
from tracking_mixpanel.fake import MixpanelFake
from tracking_mixpanel.provider import DEFAULT_HOST, MixpanelProvider, MixpanelSettings

import tracking_core
from tracking_core import SettingsError
from tracking_core.receivers import LoopbackReceiver

Enable = Callable[..., None]


def test_disabled_without_token(mp_env: Enable) -> None:
    mp_env(MIXPANEL_HOST="https://api-eu.mixpanel.com")
    assert tracking_core.list_tracking_providers() == []
    assert "mixpanel" not in tracking_core.tracking_stats()


def test_enabled_with_token(mp_env: Enable, fake: MixpanelFake) -> None:
    mp_env(MIXPANEL_TOKEN=fake.token)
    assert tracking_core.list_tracking_providers() == ["mixpanel"]


def test_tracking_providers_allow_list_is_respected(mp_env: Enable, fake: MixpanelFake) -> None:
    mp_env(MIXPANEL_TOKEN=fake.token, TRACKING_PROVIDERS="posthog")
    assert tracking_core.list_tracking_providers() == []


def test_token_file_enables_and_is_sent(
    mp_env: Enable, fake: MixpanelFake, receiver: LoopbackReceiver, tmp_path: Path
) -> None:
    secret_file = tmp_path / "token"
    secret_file.write_text(fake.token + "\n", encoding="utf-8")
    mp_env(MIXPANEL_TOKEN_FILE=str(secret_file), MIXPANEL_HOST=receiver.url)
    assert tracking_core.list_tracking_providers() == ["mixpanel"]
    tracking_core.track("Signed Up", {"plan": "pro"}, user_id="user-1")
    assert tracking_core.flush_tracking(10)
    assert [e["properties"]["token"] for e in fake.events] == [fake.token]


def _only_line(caplog: pytest.LogCaptureFixture, needle: str) -> str:
    lines = [r.getMessage() for r in caplog.records if needle in r.getMessage()]
    assert len(lines) == 1, [r.getMessage() for r in caplog.records]
    return lines[0]


def _assert_no_secret(caplog: pytest.LogCaptureFixture, *secrets: str) -> None:
    for record in caplog.records:
        text = record.getMessage()
        for secret in secrets:
            assert secret not in text


@pytest.mark.parametrize(
    ("variables", "named"),
    [
        ({"MIXPANEL_HOST": "api.mixpanel.com"}, "MIXPANEL_HOST"),
        ({"MIXPANEL_HOST": "ftp://api.mixpanel.com"}, "MIXPANEL_HOST"),
        ({"MIXPANEL_HOST": "https://"}, "MIXPANEL_HOST"),
        ({"MIXPANEL_PROJECT_ID": "123"}, "MIXPANEL_SERVICE_ACCOUNT_USERNAME"),
        (
            {
                "MIXPANEL_SERVICE_ACCOUNT_USERNAME": "sa-user.1",
                "MIXPANEL_SERVICE_ACCOUNT_SECRET": "sa-secret-value-1",
            },
            "MIXPANEL_PROJECT_ID",
        ),
        (
            {
                "MIXPANEL_SERVICE_ACCOUNT_USERNAME": "sa-user.1",
                "MIXPANEL_SERVICE_ACCOUNT_SECRET": "sa-secret-value-1",
                "MIXPANEL_PROJECT_ID": "my-project",
            },
            "MIXPANEL_PROJECT_ID",
        ),
        ({"MIXPANEL_API_SECRET_FILE": "/nonexistent/secret"}, "MIXPANEL_API_SECRET_FILE"),
        ({"MIXPANEL_ID_MERGE": "v2"}, "MIXPANEL_ID_MERGE"),
    ],
)
def test_malformed_variable_disables_with_one_line(
    mp_env: Enable,
    caplog: pytest.LogCaptureFixture,
    variables: dict[str, str],
    named: str,
) -> None:
    token = "tok-must-not-leak-1234"
    caplog.set_level(logging.DEBUG, logger="tracking_core")
    mp_env(MIXPANEL_TOKEN=token, **variables)
    assert tracking_core.list_tracking_providers() == []
    line = _only_line(caplog, named)
    assert "mixpanel" in line
    _assert_no_secret(caplog, token, "sa-secret-value-1")


def test_empty_token_file_is_named(
    mp_env: Enable, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    empty = tmp_path / "empty"
    empty.write_text("  \n", encoding="utf-8")
    caplog.set_level(logging.DEBUG, logger="tracking_core")
    mp_env(MIXPANEL_TOKEN_FILE=str(empty))
    assert tracking_core.list_tracking_providers() == []
    assert "empty" in _only_line(caplog, "MIXPANEL_TOKEN_FILE")


def test_settings_from_environ() -> None:
    assert MixpanelSettings.from_environ({}) is None
    plain = MixpanelSettings.from_environ(
        {"MIXPANEL_TOKEN": " tok-1234 ", "MIXPANEL_HOST": "https://proxy.example/mp/"}
    )
    assert plain is not None
    assert plain.token == "tok-1234"
    assert plain.host == "https://proxy.example/mp"
    assert not plain.import_auth
    assert plain.authorization() is None
    default = MixpanelSettings.from_environ({"MIXPANEL_TOKEN": "tok-1234"})
    assert default is not None and default.host == DEFAULT_HOST

    secret = MixpanelSettings.from_environ(
        {"MIXPANEL_TOKEN": "tok-1234", "MIXPANEL_API_SECRET": "s3cr3t-value"}
    )
    assert secret is not None and secret.import_auth and not secret.uses_service_account
    account = MixpanelSettings.from_environ(
        {
            "MIXPANEL_TOKEN": "tok-1234",
            "MIXPANEL_API_SECRET": "s3cr3t-value",
            "MIXPANEL_SERVICE_ACCOUNT_USERNAME": "sa.user",
            "MIXPANEL_SERVICE_ACCOUNT_SECRET": "sa-s3cr3t",
            "MIXPANEL_PROJECT_ID": "42",
        }
    )
    assert account is not None and account.uses_service_account  # the account wins
    assert account.authorization() == "Basic c2EudXNlcjpzYS1zM2NyM3Q="  # sa.user:sa-s3cr3t

    with pytest.raises(SettingsError) as info:
        MixpanelSettings.from_environ({"MIXPANEL_TOKEN": "tok-1234", "MIXPANEL_HOST": "nope"})
    assert info.value.variable == "MIXPANEL_HOST"


def test_id_merge_setting() -> None:
    def id_merge(value: str | None) -> str:
        environ = {"MIXPANEL_TOKEN": "tok-1234"}
        if value is not None:
            environ["MIXPANEL_ID_MERGE"] = value
        settings = MixpanelSettings.from_environ(environ)
        assert settings is not None
        return settings.id_merge

    assert id_merge(None) == "simplified"
    assert id_merge("") == "simplified"
    assert id_merge(" Original ") == "original"
    assert id_merge("SIMPLIFIED") == "simplified"
    for bad in ("orig", "legacy", "true"):
        with pytest.raises(SettingsError) as info:
            id_merge(bad)
        assert info.value.variable == "MIXPANEL_ID_MERGE"
        assert "simplified or original" in str(info.value)


def test_secrets_stay_out_of_reprs() -> None:
    settings = MixpanelSettings.from_environ(
        {
            "MIXPANEL_TOKEN": "tok-hidden-1",
            "MIXPANEL_API_SECRET": "secret-hidden-2",
            "MIXPANEL_SERVICE_ACCOUNT_USERNAME": "user-hidden-3",
            "MIXPANEL_SERVICE_ACCOUNT_SECRET": "secret-hidden-4",
            "MIXPANEL_PROJECT_ID": "42",
        }
    )
    assert settings is not None
    provider = MixpanelProvider(settings)
    for text in (repr(settings), repr(provider), str(settings)):
        assert "hidden" not in text
    assert "42" in repr(settings)
    secrets = list(provider.secrets())
    for value in ("tok-hidden-1", "secret-hidden-2", "user-hidden-3", "secret-hidden-4"):
        assert value in secrets
    header = settings.authorization()
    assert header is not None and header.split(" ")[1] in secrets


def test_settings_are_described() -> None:
    described = {s.name: s for s in tracking_mixpanel.plugin.tracking_provider_settings()}
    assert set(described) == {
        "MIXPANEL_TOKEN",
        "MIXPANEL_HOST",
        "MIXPANEL_API_SECRET",
        "MIXPANEL_SERVICE_ACCOUNT_USERNAME",
        "MIXPANEL_SERVICE_ACCOUNT_SECRET",
        "MIXPANEL_PROJECT_ID",
        "MIXPANEL_ID_MERGE",
    }
    assert described["MIXPANEL_ID_MERGE"].default == "simplified"
    assert not described["MIXPANEL_ID_MERGE"].secret
    assert described["MIXPANEL_TOKEN"].required and described["MIXPANEL_TOKEN"].secret
    assert described["MIXPANEL_API_SECRET"].secret
    assert described["MIXPANEL_SERVICE_ACCOUNT_SECRET"].secret
    # Half of the Basic credentials: masked in logs and reprs, and `_FILE` works for it too.
    assert described["MIXPANEL_SERVICE_ACCOUNT_USERNAME"].secret
    assert not described["MIXPANEL_HOST"].secret
    assert described["MIXPANEL_HOST"].default == DEFAULT_HOST


def test_plugin_report_lists_the_provider(mp_env: Enable, fake: MixpanelFake) -> None:
    mp_env(MIXPANEL_TOKEN=fake.token)
    reports = {r.name: r for r in tracking_core.discover_tracking_providers()}
    report = reports["mixpanel"]
    assert report.distribution == "tracking-mixpanel"
    assert report.providers == ("mixpanel",)
    assert report.error is None
