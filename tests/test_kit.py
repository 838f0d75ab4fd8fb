"""The provider kit: one declaration drives the environment, `_FILE`, masking and the docs."""

from __future__ import annotations

import dataclasses
import datetime as _dt
import importlib.metadata
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pluggy
import pytest

from tracking_core import ProviderSetting, SettingsError, hookspecs
from tracking_core.discovery import discover, installed_fakes
from tracking_core.fakes import FakeDestination, VendorFake
from tracking_core.kit import (
    ProviderPlugin,
    ProviderSettings,
    Variable,
    choice,
    digits,
    endpoint,
    integer,
    url,
    var,
)

KEY = "acme-secret-key-0123"


def _no_phx(variable: str, text: str) -> str:
    if text.startswith("phx_"):
        raise SettingsError(variable, "holds a personal key")
    return text


@dataclasses.dataclass(frozen=True)
class DemoSettings(ProviderSettings):
    api_key: str = var("DEMO_API_KEY", "enables Demo", required=True, secret=True, check=_no_phx)
    host: str = var("DEMO_HOST", "Demo base URL", default="https://api.demo.example/", check=url)
    region: str = var("DEMO_REGION", "eu or us", default="us", check=choice("us", "eu"))
    batch: int = var("DEMO_BATCH", "events per request", default="100", check=integer(1))
    project: str | None = var("DEMO_PROJECT", "numeric project id", check=digits)
    token: str | None = var("DEMO_TOKEN", "a second credential", secret=True)

    def validate(self) -> None:
        if self.token is not None and self.project is None:
            raise SettingsError(
                self.name_of("project"), f"is required with {self.name_of('token')}"
            )


@dataclasses.dataclass(frozen=True)
class TwoRequired(ProviderSettings):
    first: str = var("TWO_FIRST", "enables it", required=True)
    second: str = var("TWO_SECOND", "needed too", required=True, secret=True)


class DemoProvider:
    name = "demo"

    def __init__(self, settings: DemoSettings) -> None:
        self.settings = settings

    def track(self, event: object) -> None:
        pass


def _destination() -> FakeDestination:
    return FakeDestination(
        "demo", VendorFake(), lambda url: {"DEMO_API_KEY": KEY, "DEMO_HOST": url}
    )


def test_var_is_a_dataclass_field_holding_its_variable() -> None:
    fields = {f.name: f for f in dataclasses.fields(DemoSettings)}
    variable = fields["api_key"].metadata["tracking_core.variable"]
    assert isinstance(variable, Variable)
    assert (variable.name, variable.required, variable.secret) == ("DEMO_API_KEY", True, True)
    assert fields["api_key"].repr is False and fields["token"].repr is False
    assert fields["host"].repr is True
    # A default is written as in the environment, shown as written, and stored checked.
    assert fields["host"].metadata["tracking_core.variable"].default == "https://api.demo.example/"
    assert fields["host"].default == "https://api.demo.example"
    assert fields["batch"].default == 100
    assert fields["project"].default is None


@pytest.mark.parametrize(
    "arguments",
    [{"required": True, "default": "x"}, {"secret": True, "default": "x"}],
    ids=["required-with-default", "secret-with-default"],
)
def test_a_declaration_that_cannot_hold_is_refused(arguments: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="DEMO_X"):
        var("DEMO_X", "nonsense", **arguments)


def test_from_environ_is_none_without_the_enabling_variable() -> None:
    assert DemoSettings.from_environ({}) is None
    assert DemoSettings.from_environ({"DEMO_API_KEY": "   "}) is None  # blank is unset
    # Nothing else is read, so a malformed one is not an error while the provider is off.
    assert DemoSettings.from_environ({"DEMO_HOST": "not a url", "DEMO_BATCH": "x"}) is None


def test_from_environ_reads_checks_and_applies_defaults() -> None:
    settings = DemoSettings.from_environ({"DEMO_API_KEY": f" {KEY} "})
    assert settings == DemoSettings(api_key=KEY)
    assert (settings.host, settings.region, settings.batch) == (
        "https://api.demo.example",
        "us",
        100,
    )
    assert settings.project is None and settings.token is None
    full = DemoSettings.from_environ(
        {
            "DEMO_API_KEY": KEY,
            "DEMO_HOST": "http://127.0.0.1:9/prefix/",
            "DEMO_REGION": " EU ",
            "DEMO_BATCH": "7",
            "DEMO_PROJECT": "42",
            "DEMO_TOKEN": "tok-1",
            "DEMO_OTHER": "ignored",
        }
    )
    assert full is not None
    assert (full.host, full.region, full.batch, full.project) == (
        "http://127.0.0.1:9/prefix",
        "eu",
        7,
        "42",
    )


def test_secrets_are_read_from_their_file(tmp_path: Path) -> None:
    path = tmp_path / "key"
    path.write_text(f"{KEY}\n", encoding="utf-8")
    settings = DemoSettings.from_environ({"DEMO_API_KEY_FILE": str(path)})
    assert settings is not None and settings.api_key == KEY
    assert settings.name_of("api_key") == "DEMO_API_KEY_FILE"
    assert settings.name_of("host") == "DEMO_HOST"
    # A plain variable has no `_FILE`: it stays unset.
    assert DemoSettings.from_environ({"DEMO_API_KEY": KEY, "DEMO_HOST_FILE": str(path)}) == (
        DemoSettings(api_key=KEY)
    )
    # A check names the variable the value came from, never the value.
    path.write_text("phx_personal_key_0001", encoding="utf-8")
    with pytest.raises(SettingsError) as info:
        DemoSettings.from_environ({"DEMO_API_KEY_FILE": str(path)})
    assert info.value.variable == "DEMO_API_KEY_FILE"
    with pytest.raises(SettingsError) as info:
        DemoSettings.from_environ({"DEMO_API_KEY": "phx_personal_key_0001"})
    assert info.value.variable == "DEMO_API_KEY"
    empty = tmp_path / "empty"
    empty.write_text("\n", encoding="utf-8")
    with pytest.raises(SettingsError) as info:
        DemoSettings.from_environ({"DEMO_API_KEY": KEY, "DEMO_TOKEN_FILE": str(empty)})
    assert info.value.variable == "DEMO_TOKEN_FILE"


@pytest.mark.parametrize(
    ("variables", "named"),
    [
        ({"DEMO_HOST": "ftp://example.com"}, "DEMO_HOST"),
        ({"DEMO_HOST": "https://example.com/?q=1"}, "DEMO_HOST"),
        ({"DEMO_REGION": "mars"}, "DEMO_REGION"),
        ({"DEMO_BATCH": "lots"}, "DEMO_BATCH"),
        ({"DEMO_BATCH": "0"}, "DEMO_BATCH"),
        ({"DEMO_PROJECT": "my-project"}, "DEMO_PROJECT"),
        ({"DEMO_TOKEN": "tok-1"}, "DEMO_PROJECT"),  # validate(): a cross-variable rule
    ],
)
def test_a_malformed_value_names_its_variable_and_never_the_secret(
    variables: dict[str, str], named: str
) -> None:
    with pytest.raises(SettingsError) as info:
        DemoSettings.from_environ({"DEMO_API_KEY": KEY, **variables})
    assert info.value.variable == named
    assert KEY not in str(info.value)


def test_a_check_never_repeats_a_secret() -> None:
    @dataclasses.dataclass(frozen=True)
    class Leaky(ProviderSettings):
        key: str = var("LEAKY_KEY", "enables it", required=True, secret=True, check=digits)
        size: int = var("LEAKY_SIZE", "a number", secret=True, check=integer(1))

    with pytest.raises(SettingsError) as info:
        Leaky.from_environ({"LEAKY_KEY": "not-digits-secret-1"})
    assert "not-digits-secret-1" not in str(info.value)
    with pytest.raises(SettingsError) as info:
        Leaky.from_environ({"LEAKY_KEY": "123", "LEAKY_SIZE": "size-secret-2"})
    assert info.value.variable == "LEAKY_SIZE"
    assert "size-secret-2" not in str(info.value)


def test_every_required_variable_must_be_set_once_any_is() -> None:
    assert TwoRequired.from_environ({}) is None
    # Half a configuration is said, whichever half is missing, never a silent None.
    with pytest.raises(SettingsError) as info:
        TwoRequired.from_environ({"TWO_SECOND": "second-secret"})
    assert info.value.variable == "TWO_FIRST"
    assert "TWO_SECOND" in info.value.problem and "second-secret" not in str(info.value)
    with pytest.raises(SettingsError) as info:
        TwoRequired.from_environ({"TWO_FIRST": "f"})
    assert info.value.variable == "TWO_SECOND"
    assert "TWO_FIRST" in info.value.problem
    settings = TwoRequired.from_environ({"TWO_FIRST": "f", "TWO_SECOND": "second-secret"})
    assert settings is not None and settings.secrets() == ("second-secret",)


def test_secrets_variables_and_describe_come_from_the_declaration() -> None:
    settings = DemoSettings.from_environ(
        {"DEMO_API_KEY": KEY, "DEMO_TOKEN": "tok-1", "DEMO_PROJECT": "7"}
    )
    assert settings is not None
    assert settings.secrets() == (KEY, "tok-1")
    assert DemoSettings(api_key=KEY).secrets() == (KEY,)
    assert KEY not in repr(settings) and "tok-1" not in repr(settings)
    assert [v.name for v in DemoSettings.variables()] == [
        "DEMO_API_KEY",
        "DEMO_HOST",
        "DEMO_REGION",
        "DEMO_BATCH",
        "DEMO_PROJECT",
        "DEMO_TOKEN",
    ]
    described = DemoSettings.describe()
    assert all(type(setting) is ProviderSetting for setting in described)
    assert described[0] == ProviderSetting(
        "DEMO_API_KEY", "enables Demo", required=True, secret=True
    )
    assert described[1] == ProviderSetting(
        "DEMO_HOST", "Demo base URL", default="https://api.demo.example/"
    )
    assert DemoSettings.variable("batch").default == "100"


def test_settings_without_a_required_variable_are_refused() -> None:
    @dataclasses.dataclass(frozen=True)
    class Nothing(ProviderSettings):
        host: str = var("NOTHING_HOST", "a URL", default="https://x.example", check=url)

    with pytest.raises(TypeError, match="required"):
        Nothing.from_environ({"NOTHING_HOST": "https://y.example"})


# -- the checks ------------------------------------------------------------------------------


def test_url_is_a_base_url_and_endpoint_a_full_one() -> None:
    assert url("X", "https://h.example/p/") == "https://h.example/p"
    assert endpoint("X", "https://h.example/in/?token=1") == "https://h.example/in/?token=1"
    for bad in ("h.example", "ftp://h.example", "https://", "https://h.example#f", "http://h:x/"):
        with pytest.raises(SettingsError) as info:
            url("X_HOST", f"{bad}")
        assert info.value.variable == "X_HOST"
    with pytest.raises(SettingsError, match="query"):
        url("X_HOST", "https://h.example/?q")
    with pytest.raises(SettingsError) as info:
        endpoint("X_URL", "https://user:pw-secret@h.example:99999/in")
    assert "pw-secret" not in str(info.value)


def test_integer_choice_and_digits() -> None:
    assert integer(1)("N", " 12 ") == 12
    for bad, problem in (("x", "whole number"), ("0", "at least 1"), ("1.5", "whole number")):
        with pytest.raises(SettingsError, match=problem) as info:
            integer(1)("N", bad)
        assert info.value.variable == "N"
    pick = choice("simplified", "original")
    assert pick("M", "ORIGINAL") == "original"
    with pytest.raises(SettingsError, match="expected simplified or original") as info:
        pick("M", "v2")
    assert info.value.variable == "M"
    assert digits("P", "0042") == "0042"
    for bad in ("4x2", "-1", "4.2"):
        with pytest.raises(SettingsError) as info:
            digits("P", bad)
        assert info.value.variable == "P"


# -- registration --------------------------------------------------------------------------------


def test_provider_plugin_implements_the_hooks() -> None:
    plugin = ProviderPlugin(DemoProvider, DemoSettings, fake=f"{__name__}:_destination")
    registered: list[Any] = []
    plugin.tracking_register_providers(registered.append, {})
    assert registered == []
    plugin.tracking_register_providers(registered.append, {"DEMO_API_KEY": KEY})
    (provider,) = registered
    assert isinstance(provider, DemoProvider) and provider.settings == DemoSettings(api_key=KEY)
    assert plugin.tracking_provider_settings() == DemoSettings.describe()
    destination = plugin.tracking_provider_fake()
    assert isinstance(destination, FakeDestination) and destination.provider == "demo"
    assert DemoSettings.from_environ(destination.environment("http://127.0.0.1:9")) is not None
    assert ProviderPlugin(DemoProvider, DemoSettings).tracking_provider_fake() is None
    assert KEY not in repr(plugin) and "DemoProvider" in repr(plugin)


def test_provider_plugin_passes_pluggys_validation() -> None:
    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    plugin = ProviderPlugin(DemoProvider, DemoSettings)
    pm.register(plugin, name="demo")
    pm.check_pending()
    names = sorted(caller.name for caller in pm.get_hookcallers(plugin) or ())
    assert names == [
        "tracking_provider_fake",
        "tracking_provider_settings",
        "tracking_register_providers",
    ]
    registered: list[Any] = []
    pm.hook.tracking_register_providers(register=registered.append, environ={"DEMO_API_KEY": KEY})
    assert [p.name for p in registered] == ["demo"]


def test_a_fake_that_does_not_exist_says_which() -> None:
    plugin = ProviderPlugin(DemoProvider, DemoSettings, fake=f"{__name__}:no_such_fake")
    with pytest.raises(AttributeError, match="no_such_fake"):
        plugin.tracking_provider_fake()


def test_discovery_loads_an_entry_point_naming_a_plugin_object() -> None:
    """The example package's entry point is ``acme = "tracking_acme:plugin"``."""
    (entry_point,) = importlib.metadata.entry_points(group="tracking_core", name="acme")
    assert entry_point.value == "tracking_acme:plugin"
    assert isinstance(entry_point.load(), ProviderPlugin)
    registered: list[Any] = []
    reports = {r.name: r for r in discover(registered.append, {"ACME_API_KEY": KEY})}
    acme = reports["acme"]
    assert acme.error is None, acme.error
    assert acme.providers == ("acme",)
    assert {s.name: (s.required, s.secret) for s in acme.settings} == {
        "ACME_API_KEY": (True, True),
        "ACME_HOST": (False, False),
    }
    (provider,) = [p for p in registered if p.name == "acme"]
    assert KEY in provider.secrets()


def test_installed_fakes_skips_plugins_without_one() -> None:
    assert installed_fakes(["acme"]) == []
    assert installed_fakes(["no-such-plugin"]) == []


def test_json_object_gives_a_strict_json_object_by_the_json_safe_rule() -> None:
    from tracking_core.kit import json_object

    values: dict[Any, Any] = {
        "plan": "pro",
        1: float("nan"),
        "when": _dt.date(2026, 12, 1),
        "tags": {"b", "a"},
    }
    assert json_object(values) == {
        "plan": "pro",
        "1": None,
        "when": "2026-12-01",
        "tags": ["a", "b"],
    }
    assert json_object({}) == {}


def test_json_object_gives_a_new_dict_and_never_raises() -> None:
    import types

    from tracking_core.kit import json_object

    plain = {"plan": "pro", "seats": 3}
    made = json_object(types.MappingProxyType(plain))
    made["added"] = True  # the provider's own: the properties it was made from stay as they are
    assert plain == {"plan": "pro", "seats": 3}
    assert json_object(plain) is not plain

    class Unreadable(Mapping[str, Any]):  # one value cannot be read out of it
        def __getitem__(self, key: str) -> Any:
            if key == "seats":
                raise RuntimeError("boom")
            return "pro"

        def __iter__(self) -> Iterator[str]:
            return iter(("plan", "seats"))

        def __len__(self) -> int:
            return 2

    assert json_object(Unreadable()) == {"plan": "pro", "seats": "<unconvertible>"}
