"""Bad configuration: each malformed variable gives exactly one clear log line naming it (never a
secret value), disables only what it configures, and the rest keeps delivering.

The four built-in providers are pointed at their strict fakes; each case breaks one variable,
re-runs discovery exactly as an application starts, then checks the log, the plugin reports, and
that every provider the variable does not configure still delivers an event.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import pickle
import re
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

import tracking_core as tc

from ..harness import (
    BUILTIN_PROVIDERS,
    Served,
    credentials,
    declared_settings,
    environment,
    served_fakes,
)

if TYPE_CHECKING:
    from tests.reliability.conftest import ReliabilityReport

PROVIDERS = BUILTIN_PROVIDERS
#: The credentials the fakes expect, by variable.
CREDENTIALS = credentials(PROVIDERS)
USER = "user-config-0001"
#: A secret kept in files that cannot be read: it must never reach a log line.
FILE_SECRET = "file-secret-5c0ffee-0123"
#: A password inside malformed URLs: never repeated either.
URL_PASSWORD = "url-pass-77aa-secret"

SECRETS: tuple[str, ...] = (
    *CREDENTIALS.values(),
    CREDENTIALS["TRACKING_WEBHOOK_AUTH"].partition(" ")[2],
    CREDENTIALS["TRACKING_WEBHOOK_SECRET"].removeprefix("whsec_"),
    FILE_SECRET,
    URL_PASSWORD,
)

#: Each built-in provider's variables, as its package declares them (read through discovery).
DECLARED = {name: settings for name, settings in declared_settings().items() if name in PROVIDERS}
OWNER = {setting.name: name for name, settings in DECLARED.items() for setting in settings}


def owner_of(variable: str) -> str | None:
    """The provider a variable configures, or None for an engine-wide one."""
    return OWNER.get(variable)


@dataclasses.dataclass(frozen=True)
class Env:
    """What a case hands to the environment builder."""

    urls: Mapping[str, str]  # provider -> its fake's base URL
    tmp: Path


@dataclasses.dataclass(frozen=True)
class ConfigCase:
    """One malformed setting.

    Attributes:
        id: readable, unique.
        variable: the variable the one log line must name.
        values: the environment changes (None removes a variable), given the fakes' URLs and a
            temporary directory.
        disabled: the provider it must disable (None: an engine setting; nothing is disabled).
        hidden: extra values that must not appear in any log line (the bad value itself when
            it may hold a secret).
    """

    id: str
    variable: str
    values: Callable[[Env], dict[str, str | None]]
    disabled: str | None
    hidden: tuple[str, ...] = ()


def _set(variable: str, value: str) -> Callable[[Env], dict[str, str | None]]:
    return lambda env: {variable: value}


def _fake_url(variable: str, provider: str, suffix: str) -> Callable[[Env], dict[str, str | None]]:
    """`variable` set to `provider`'s fake URL followed by `suffix`."""
    return lambda env: {variable: env.urls[provider] + suffix}


def _file(
    variable: str, content: bytes | None, kind: str
) -> Callable[[Env], dict[str, str | None]]:
    """``<variable>_FILE`` naming a file with `content` (None: a missing file, or a directory
    when `kind` is "directory"); the variable itself is unset."""

    def values(env: Env) -> dict[str, str | None]:
        path = env.tmp / f"{variable.lower()}-{kind}"
        if kind == "directory":
            path.mkdir()
        elif kind == "fifo":
            os.mkfifo(path)  # opening it for reading used to wait for a writer, for ever
        elif content is not None:
            path.write_bytes(content)
        return {variable: None, f"{variable}_FILE": str(path)}

    return values


URL_VARIABLES = ("POSTHOG_HOST", "MIXPANEL_HOST", "AMPLITUDE_HOST", "TRACKING_WEBHOOK_URL")
BAD_URLS = {
    "no-scheme": "api.example.com/ingest",
    "wrong-scheme": f"ftp://url-user:{URL_PASSWORD}@example.com",
    "no-host": f"https://url-user:{URL_PASSWORD}@/ingest",
    "bad-port": f"http://url-user:{URL_PASSWORD}@example.com:99999",
    "unclosed-ipv6": "http://[::1/ingest",
    "control-character": "http://exa\tmple.com",
}
NUMERIC = {
    "TRACKING_BATCH_SIZE": ("abc", "-1", "0", "1.5"),
    "TRACKING_MAX_QUEUE": ("lots", "-100", "0"),
    "TRACKING_FLUSH_INTERVAL": ("soon", "-1", "nan", "inf"),
    "TRACKING_SHUTDOWN_TIMEOUT": ("5s", "-5", "nan"),
}
#: Every declared secret: each gets the `_FILE` cases.
SECRET_VARIABLES = tuple(
    setting.name for settings in DECLARED.values() for setting in settings if setting.secret
)


#: Malformed secret values: (variable, kind, value, the provider it disables, the parts of it
#: that must never show).
MALFORMED_SECRETS: tuple[tuple[str, str, str, str, tuple[str, ...]], ...] = (
    (
        "POSTHOG_API_KEY",
        "personal-key",
        "phx_personal_key_secret_0001",
        "posthog",
        ("phx_personal_key_secret_0001", "personal_key_secret_0001"),
    ),
    (
        "TRACKING_WEBHOOK_SECRET",
        "not-base64",
        "whsec_!!!not-base64-secret-0002",
        "webhook",
        ("whsec_!!!not-base64-secret-0002", "!!!not-base64-secret-0002"),
    ),
    (
        "TRACKING_WEBHOOK_AUTH",
        "two-lines",
        "Bearer token-line-one-0003\nInjected: header",
        "webhook",
        ("token-line-one-0003",),
    ),
)


def _cases() -> list[ConfigCase]:
    cases: list[ConfigCase] = []
    for variable in URL_VARIABLES:
        for kind, value in BAD_URLS.items():
            cases.append(
                ConfigCase(
                    f"{variable}-{kind}",
                    variable,
                    _set(variable, value),
                    owner_of(variable),
                    hidden=(value,),
                )
            )
    for variable in URL_VARIABLES[:3]:
        provider = owner_of(variable)
        assert provider is not None
        for kind, suffix in (("query", "?region=eu"), ("fragment", "#eu")):
            cases.append(
                ConfigCase(
                    f"{variable}-{kind}",
                    variable,
                    _fake_url(variable, provider, suffix),
                    provider,
                )
            )
    for variable, values in NUMERIC.items():
        for value in values:
            cases.append(ConfigCase(f"{variable}={value}", variable, _set(variable, value), None))
    cases.append(
        ConfigCase(
            "TRACKING_PROVIDERS-unknown-name",
            "TRACKING_PROVIDERS",
            _set("TRACKING_PROVIDERS", ",".join((*PROVIDERS, "nosuchvendor"))),
            None,
        )
    )
    cases.append(
        ConfigCase("TRACKING_DEBUG=maybe", "TRACKING_DEBUG", _set("TRACKING_DEBUG", "maybe"), None)
    )
    cases.append(
        ConfigCase(
            "TRACKING_DISABLED=maybe", "TRACKING_DISABLED", _set("TRACKING_DISABLED", "maybe"), None
        )
    )
    for variable in SECRET_VARIABLES:
        file_variable = f"{variable}_FILE"
        provider = owner_of(variable)
        files: dict[str, tuple[bytes | None, str]] = {
            "missing": (None, "missing"),
            "directory": (None, "directory"),
            "not-utf8": (FILE_SECRET.encode() + b"\xff\xfe\n", "not-utf8"),
            "empty": (b"", "empty"),
            "whitespace-only": (b"  \n\t\n", "blank"),
            "larger-than-64KiB": (b"k" * (64 * 1024 + 1), "large"),
        }
        if hasattr(os, "mkfifo"):
            files["fifo"] = (None, "fifo")
        for kind, (content, file_kind) in files.items():
            cases.append(
                ConfigCase(
                    f"{file_variable}-{kind}",
                    file_variable,
                    _file(variable, content, file_kind),
                    provider,
                )
            )
    # Malformed secrets themselves: named, never shown.
    for variable, kind, value, provider, hidden in MALFORMED_SECRETS:
        cases.append(
            ConfigCase(f"{variable}-{kind}", variable, _set(variable, value), provider, hidden)
        )
    return cases


CASES = _cases()
assert len({case.id for case in CASES}) == len(CASES)


@pytest.fixture(scope="module")
def destinations() -> Iterator[dict[str, Served]]:
    """The four fakes, served for the whole module."""
    with served_fakes(PROVIDERS) as found:
        yield found


def base_environment(destinations: Mapping[str, Served]) -> dict[str, str | None]:
    """All four providers enabled against their fakes; every other variable of theirs unset."""
    return environment(destinations.values(), {"TRACKING_DISABLED": "0"})


def arrivals(destination: Served, tag: str) -> int:
    fake = destination.fake
    return sum(1 for event in list(fake.events) if fake.properties_of(event).get("rc") == tag)


def naming(records: Sequence[logging.LogRecord], variable: str) -> list[logging.LogRecord]:
    """The log records whose message names `variable` (as a whole word)."""
    pattern = re.compile(rf"(?<![A-Z0-9_]){re.escape(variable)}(?![A-Z0-9_])")
    return [record for record in records if pattern.search(record.getMessage())]


def check_delivery(destinations: Mapping[str, Served], enabled: Sequence[str]) -> None:
    """One event reaches every enabled provider's fake, exactly once."""
    tag = uuid.uuid4().hex
    tc.track("Config Check", {"rc": tag}, user_id=USER)
    assert tc.flush_tracking(10)
    got = {name: arrivals(destination, tag) for name, destination in destinations.items()}
    assert got == {name: (1 if name in enabled else 0) for name in destinations}
    stats = tc.tracking_stats()
    for name in enabled:
        s = stats[name]
        assert s.accepted == s.delivered + sum(s.dropped.values()) and s.queued == 0


def _params() -> list[Any]:
    return [pytest.param(case, id=case.id) for case in CASES]


def test_there_are_enough_bad_configurations() -> None:
    assert sorted(DECLARED) == sorted(PROVIDERS)
    assert set(SECRET_VARIABLES) >= {
        "POSTHOG_API_KEY",
        "MIXPANEL_TOKEN",
        "MIXPANEL_API_SECRET",
        "MIXPANEL_SERVICE_ACCOUNT_SECRET",
        "AMPLITUDE_API_KEY",
        "TRACKING_WEBHOOK_URL",
        "TRACKING_WEBHOOK_AUTH",
        "TRACKING_WEBHOOK_SECRET",
    }
    assert {owner_of(v) for v in URL_VARIABLES} == set(PROVIDERS)
    assert len(CASES) >= 60
    assert {case.variable for case in CASES} >= {
        *URL_VARIABLES,
        *NUMERIC,
        "TRACKING_PROVIDERS",
        *(f"{name}_FILE" for name in SECRET_VARIABLES),
    }


Configure = Callable[[Mapping[str, str | None]], None]


@pytest.fixture
def configure(
    destinations: dict[str, Served],
    tracking_env: Callable[..., None],
    caplog: pytest.LogCaptureFixture,
) -> Configure:
    """``configure(changes)``: every log line captured, then `base_environment` with `changes`
    (None removes a variable), as an application starts."""
    caplog.set_level(logging.DEBUG)

    def apply(changes: Mapping[str, str | None]) -> None:
        tracking_env(**{**base_environment(destinations), **changes})

    return apply


@pytest.mark.parametrize("case", _params())
def test_bad_setting_is_named_once_disables_only_its_own_and_the_rest_delivers(
    case: ConfigCase,
    destinations: dict[str, Served],
    configure: Configure,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
) -> None:
    urls = {name: d.server.url for name, d in destinations.items()}
    configure(case.values(Env(urls, tmp_path)))
    enabled = tc.list_tracking_providers()  # runs discovery, as an application's first use
    expected = [name for name in PROVIDERS if name != case.disabled]
    assert sorted(enabled) == sorted(expected)

    lines = naming(caplog.records, case.variable)
    assert len(lines) == 1, [r.getMessage() for r in lines]
    assert lines[0].levelno >= logging.WARNING
    assert lines[0].name.startswith("tracking_core")
    for secret in (*SECRETS, *case.hidden):
        assert secret not in caplog.text
        assert secret not in lines[0].getMessage()

    reports = {report.name: report for report in tc.discover_tracking_providers()}
    for secret in (*SECRETS, *case.hidden):
        assert secret not in repr(reports)
    if case.disabled is not None:
        report = reports[case.disabled]
        assert report.providers == ()
        assert report.error is not None and case.variable in report.error
    for name in expected:
        assert reports[name].providers == (name,) and reports[name].error is None

    check_delivery(destinations, expected)
    # Only setup lines: delivering did not add any line naming the variable.
    assert len(naming(caplog.records, case.variable)) == 1


def test_settings_error_takes_a_variable_and_a_problem_or_a_message_alone() -> None:
    two = tc.SettingsError("ACME_HOST", "must start with https://")
    assert str(two) == "ACME_HOST: must start with https://"
    assert (two.variable, two.problem) == ("ACME_HOST", "must start with https://")
    one = tc.SettingsError("ACME_HOST must start with https://")
    assert str(one) == "ACME_HOST must start with https://"
    assert (one.variable, one.problem) == (None, "ACME_HOST must start with https://")
    for error in (one, two):
        assert isinstance(error, ValueError)
        copy = pickle.loads(pickle.dumps(error))
        assert (type(copy), str(copy), copy.variable, copy.problem) == (
            tc.SettingsError,
            str(error),
            error.variable,
            error.problem,
        )


def test_a_good_secret_file_works_and_logs_nothing(
    destinations: dict[str, Served],
    configure: Configure,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
) -> None:
    """The control: the same variables through readable `_FILE`s enable everything quietly."""
    changes: dict[str, str | None] = {}
    for variable in ("POSTHOG_API_KEY", "MIXPANEL_TOKEN", "AMPLITUDE_API_KEY"):
        path = tmp_path / variable.lower()
        path.write_text(f"  {CREDENTIALS[variable]}\n", encoding="utf-8")
        changes[variable] = None
        changes[f"{variable}_FILE"] = str(path)
    configure(changes)
    assert sorted(tc.list_tracking_providers()) == sorted(PROVIDERS)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    check_delivery(destinations, PROVIDERS)


def test_every_bad_setting_at_once_figures(
    destinations: dict[str, Served],
    configure: Configure,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
    reliability_report: ReliabilityReport,
) -> None:
    """One malformed value for every engine setting and for three of the four providers at
    once: each is named once, and the spared provider delivers every event."""
    changes: dict[str, str | None] = {
        "TRACKING_BATCH_SIZE": "abc",
        "TRACKING_MAX_QUEUE": "-100",
        "TRACKING_FLUSH_INTERVAL": "nan",
        "TRACKING_SHUTDOWN_TIMEOUT": "-5",
        "TRACKING_DEBUG": "maybe",
        "TRACKING_PROVIDERS": ",".join((*PROVIDERS, "nosuchvendor")),
        "MIXPANEL_HOST": f"ftp://url-user:{URL_PASSWORD}@example.com",
        "AMPLITUDE_API_KEY": None,
        "AMPLITUDE_API_KEY_FILE": str(tmp_path / "missing"),
        "TRACKING_WEBHOOK_SECRET": "whsec_!!!not-base64-secret-0002",
    }
    configure(changes)
    assert tc.list_tracking_providers() == ["posthog"]
    named = {
        variable: len(naming(caplog.records, variable))
        for variable in changes
        if variable != "AMPLITUDE_API_KEY"
    }
    assert named == dict.fromkeys(named, 1)
    for secret in SECRETS:
        assert secret not in caplog.text

    events = 200
    tags = [uuid.uuid4().hex for _ in range(events)]
    for tag in tags:
        tc.track("Config Check", {"rc": tag}, user_id=USER)
    assert tc.flush_tracking(20)
    s = tc.tracking_stats()["posthog"]
    lost = events - s.delivered - sum(s.dropped.values())
    assert sum(arrivals(destinations["posthog"], tag) for tag in tags) == events
    assert lost == 0
    reliability_report.add(
        "bad configuration: every setting malformed at once",
        f"{len(named)} malformed variables, {events} events",
        "each variable named in exactly one log line, never with a secret; mixpanel, "
        "amplitude and webhook disabled, engine settings back to defaults; posthog delivered "
        "every event",
        lost,
    )
