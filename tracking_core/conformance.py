"""A conformance suite that a provider package runs against itself.

Subclass `ProviderConformance` in your package's tests (as ``Test...``, so pytest collects it)::

    class TestAcmeConformance(ProviderConformance):
        entry_point = "acme"  # the name in [project.entry-points.tracking_core]

        def enabling_environment(self, url: str) -> dict[str, str]:
            return {"ACME_API_KEY": "acme-secret-key-123", "ACME_HOST": url}

The variables come from the package's declaration (``tracking_provider_settings``): the suite
unsets every declared one a check does not set, expects the required ones set, and checks that
no declared secret reaches a log line or a repr. With a fake (``tracking_provider_fake``) the
fake is the server and its environment enables the provider. The checks: enabled only by its
variables, declared, delivers to a loopback receiver, never raises into the caller whatever the
input or the destination does, never logs a secret. A failure says what it expected and what it
got (explicit checks: pytest does not rewrite the asserts of an installed package). Only pytest
and the installed package (its entry point visible) are needed.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import logging
import math
import os
import uuid
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import pytest

from . import api
from .discovery import PluginReport, installed_fakes
from .receivers import LoopbackReceiver, ReceivedRequest, Reply
from .registry import runtime
from .testing import FAST_DELIVERY, configure_tracking, reset_tracking

if TYPE_CHECKING:
    from .fakes import FakeDestination

__all__ = ["ProviderConformance"]


class ProviderConformance:
    """Checks every provider package should pass. Override the attributes and methods below."""

    #: The entry-point name of the package under test.
    entry_point: ClassVar[str] = ""
    #: The `name` of the provider it registers (default: the entry-point name).
    provider_name: ClassVar[str] = ""
    #: Variables whose values must never be logged, beyond the ones declared secret.
    secret_variables: ClassVar[Sequence[str]] = ()
    #: Whether the provider implements identify.
    supports_identify: ClassVar[bool] = True

    def enabling_environment(self, url: str) -> dict[str, str]:
        """The variables that enable the provider and point it at `url` (a loopback server);
        by default those of the package's fake."""
        destination = self.fake_destination()
        if destination is None:
            raise NotImplementedError(
                f"{self.entry_point!r} gives no fake (tracking_provider_fake; a broken one is "
                "logged): override enabling_environment(url) to say what enables the provider"
            )
        return dict(destination.environment(url))

    def responder(self) -> Any:
        """The loopback server's responder: by default the package's fake, or None for 200."""
        destination = self.fake_destination()
        return None if destination is None else destination.fake

    def count_received(self, requests: Sequence[ReceivedRequest]) -> int | None:
        """How many events the server received (None: do not check)."""
        return None

    def fake_destination(self) -> FakeDestination | None:
        """The package's fake (``tracking_provider_fake``), one per test; None without one."""
        if "_fake" not in self.__dict__:
            fakes = installed_fakes([self.entry_point])
            self.__dict__["_fake"] = fakes[0] if fakes else None
        fake: FakeDestination | None = self.__dict__["_fake"]
        return fake

    # -- fixtures ---------------------------------------------------------------------------

    @pytest.fixture
    def conformance_server(self) -> Iterator[LoopbackReceiver]:
        with LoopbackReceiver(self.responder()) as server:
            yield server

    @pytest.fixture
    def enable(
        self, monkeypatch: pytest.MonkeyPatch, conformance_server: LoopbackReceiver
    ) -> Iterator[dict[str, str]]:
        environment = {
            **_hermetic(),
            **FAST_DELIVERY,
            "TRACKING_MAX_ATTEMPTS": "2",
            "TRACKING_CIRCUIT_THRESHOLD": "1000",
            "TRACKING_PROVIDERS": self.entry_point,
            **self.enabling_environment(conformance_server.url),
        }
        configure_tracking(monkeypatch, environment)
        # The provider's other variables (an alternative credential, a tuning knob) must come
        # from this test, not from the shell: unset every declared one it did not set.
        declared = _with_files(_declared(self._report()))
        configure_tracking(monkeypatch, {n: None for n in declared if n not in environment})
        yield {name: value for name, value in environment.items() if value is not None}
        reset_tracking()

    # -- the checks -------------------------------------------------------------------------

    def test_disabled_without_its_variables(
        self, monkeypatch: pytest.MonkeyPatch, conformance_server: LoopbackReceiver
    ) -> None:
        configure_tracking(monkeypatch, {**_hermetic(), "TRACKING_PROVIDERS": self.entry_point})
        names = list(self.enabling_environment(conformance_server.url))
        names += [name for name in _declared(self._report()) if name not in names]
        configure_tracking(monkeypatch, dict.fromkeys(_with_files(names)))
        try:
            enabled = api.list_tracking_providers()
            _check(
                self._name() not in enabled,
                f"{self._name()!r} is enabled without its variables ({', '.join(names)}): "
                f"expected it absent from list_tracking_providers(), got {enabled}",
            )
            error = self._report().error
            _check(
                error is None,
                f"without its variables ({', '.join(names)}) the plugin must load quietly: "
                f"expected no error, got {error!r}",
            )
        finally:
            reset_tracking()

    def test_enabled_by_its_variables(self, enable: dict[str, str]) -> None:
        _check_enabled(self._report(), self.entry_point, self._name())

    def test_declares_its_settings(self, enable: dict[str, str]) -> None:
        _check_declarations(
            self._report(), self.enabling_environment("http://127.0.0.1:9"), self.secret_variables
        )

    def test_delivers_events_to_the_destination(
        self, enable: dict[str, str], conformance_server: LoopbackReceiver
    ) -> None:
        for i in range(20):
            api.track("Conformance Event", {"i": i}, user_id="conformance-user")
        if self.supports_identify:
            api.identify("conformance-user", {"plan": "pro"})
        _flushed(15)
        calls = "20 track() calls" + (" and 1 identify()" if self.supports_identify else "")
        expected = 21 if self.supports_identify else 20
        _check_delivered(self._name(), calls, expected, conformance_server)
        received = self.count_received(conformance_server.requests)
        if received is not None:
            _check(
                received == expected,
                f"after {calls}: expected {expected} events at the destination "
                f"(count_received), got {received}",
            )

    def test_never_raises_whatever_the_input(
        self, enable: dict[str, str], conformance_server: LoopbackReceiver
    ) -> None:
        for properties in _odd_values():
            api.track("Odd Values", properties, user_id="conformance-user")
        for bad in ("", None, 42):
            api.track(bad)  # type: ignore[arg-type]
        api.track("Bad Props", "not a mapping")  # type: ignore[arg-type]
        _flushed(15)
        _check_odd_values_sent(self._name(), conformance_server)

    def test_survives_a_failing_destination(
        self, enable: dict[str, str], conformance_server: LoopbackReceiver
    ) -> None:
        conformance_server.responder = lambda request: Reply(500, b"down")
        for _ in range(3):
            api.track("Lost", user_id="conformance-user")
        _flushed(15)
        stats = api.tracking_stats()[self._name()]
        dropped = sum(stats.dropped.values())
        _check(
            stats.delivered == 0 and dropped == 3,
            "while the destination answers HTTP 500: expected 0 events delivered and 3 dropped, "
            f"got {stats.delivered} delivered and {dropped} dropped",
        )

    def test_secrets_never_reach_the_logs(
        self,
        enable: dict[str, str],
        monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture,
        conformance_server: LoopbackReceiver,
    ) -> None:
        monkeypatch.setenv("TRACKING_DEBUG", "1")
        reset_tracking(discover=True)
        caplog.set_level(logging.DEBUG)
        missing = [name for name in self.secret_variables if not enable.get(name)]
        _check(not missing, f"expected enabling_environment() to set {missing} (secret_variables)")
        declared = [name for name, s in _declared(self._report()).items() if s.secret]
        names = dict.fromkeys([*declared, *self.secret_variables])
        secrets = {name: enable[name] for name in names if enable.get(name)}
        # The vendor echoes the credentials back, as some do in error messages.
        echoed = {"error": "bad key: " + " ".join(secrets.values())}
        conformance_server.responder = lambda request: Reply(401, echoed)
        api.track("Secret Check", user_id="conformance-user")
        api.flush_tracking(15)
        shown = [f"{r.getMessage()} (logger {r.name})" for r in caplog.records]
        _check_hidden(secrets, shown, "leaked into a log line")
        _check_hidden(secrets, _reprs(), "shows in a repr")

    def _name(self) -> str:
        return self.provider_name or self.entry_point

    def _report(self) -> PluginReport:
        reports = api.discover_tracking_providers()
        for report in reports:
            if report.name == self.entry_point:
                return report
        pytest.fail(
            f"expected an installed entry point named {self.entry_point!r} in the group "
            f"tracking_core, got {sorted(report.name for report in reports)}"
        )


def _hermetic() -> dict[str, str | None]:
    """Remove the caller's TRACKING_* variables, so results do not depend on the shell."""
    return {name: None for name in os.environ if name.startswith("TRACKING_")}


def _declared(report: PluginReport) -> dict[str, Any]:
    """The variables the plugin declares, by name (`ProviderSetting`s)."""
    return {setting.name: setting for setting in report.settings}


def _with_files(names: Sequence[str] | Mapping[str, Any]) -> list[str]:
    """Each name and its ``<NAME>_FILE``."""
    return [variable for name in names for variable in (name, f"{name}_FILE")]


def _check_enabled(report: PluginReport, entry_point: str, name: str) -> None:
    enabled = api.list_tracking_providers()
    why = f"; the plugin's error: {report.error}" if report.error else ""
    _check(
        enabled == [name],
        f"with enabling_environment() set and TRACKING_PROVIDERS={entry_point}: "
        f"expected list_tracking_providers() == [{name!r}], got {enabled}{why}",
    )
    _check(
        report.providers == (name,),
        f"expected entry point {entry_point!r} to report the provider it registered, "
        f"({name!r},), got {report.providers}",
    )
    _check(
        bool(report.distribution),
        f"expected entry point {entry_point!r} to belong to an installed distribution, "
        "got none: install the package (pip install -e .), do not only put it on sys.path",
    )


def _check_declarations(
    report: PluginReport, environment: Mapping[str, str], secret_variables: Sequence[str]
) -> None:
    """What `enabling_environment` sets is declared, and it sets every required variable."""
    declared = _declared(report)
    known = sorted(declared)
    for name in environment:
        base = name.removesuffix("_FILE")
        _check(
            name in declared or (base in declared and declared[base].secret),
            f"{name} is read but not declared: expected it among the "
            f"tracking_provider_settings() names, got {known}",
        )
    for name, setting in declared.items():
        _check(
            not setting.required or name in environment or f"{name}_FILE" in environment,
            f"{name} is declared required: expected enabling_environment() to set it, got "
            f"{sorted(environment)}",
        )
    for name in secret_variables:
        _check(
            name in declared and declared[name].secret,
            f"secret variable {name} is not declared secret: expected it among the "
            f"tracking_provider_settings() names with secret=True, got {known}",
        )


def _check_delivered(name: str, calls: str, expected: int, server: LoopbackReceiver) -> None:
    stats = api.tracking_stats()[name]
    _check(
        stats.accepted == expected,
        f"after {calls}: expected {expected} accepted, got {stats.accepted}",
    )
    _check(
        stats.delivered == expected,
        f"after {calls}: expected {expected} delivered, got {stats.delivered} delivered, "
        f"dropped {dict(stats.dropped)}, last error {stats.last_error!r}",
    )
    _check(
        bool(server.requests),
        f"nothing reached the destination: expected requests at {server.url} "
        f"(the URL given to enabling_environment()), got none although the provider "
        f"reported {stats.delivered} delivered",
    )


def _odd_values() -> list[Mapping[str, Any]]:
    cyclic: dict[str, Any] = {}
    cyclic["self"] = cyclic

    class Hostile:
        def __repr__(self) -> str:
            raise RuntimeError("repr")

        __str__ = __repr__

    return [
        {"nan": math.nan, "inf": math.inf},
        {"when": dt.datetime.now(), "day": dt.date.today(), "price": decimal.Decimal("9.99")},
        {"id": uuid.uuid4(), "tags": {"a", "b"}, "raw": b"\xff\x00"},
        {"cycle": cyclic, "hostile": Hostile(), 3: "int key"},  # type: ignore[dict-item]
    ]


def _check_odd_values_sent(name: str, server: LoopbackReceiver) -> None:
    stats = api.tracking_stats()[name]
    bad_input = stats.dropped.get("bad_input", 0)
    provider_error = stats.dropped.get("provider_error", 0)
    _check(
        bad_input == 4,
        "after 3 track() calls with a bad name and 1 with non-mapping properties: "
        f"expected 4 dropped as bad_input, got {bad_input}",
    )
    _check(
        stats.delivered + provider_error == 4,
        "after 4 track() calls with odd property values: expected 4 delivered, got "
        f"{stats.delivered} delivered, dropped {dict(stats.dropped)}",
    )
    _check(
        provider_error == 0,
        "a value broke the wire mapping: expected 0 dropped as provider_error, got "
        f"{provider_error} (last error {stats.last_error!r})",
    )
    for request in server.requests:
        try:
            request.json()  # strict JSON: no NaN tokens
        except ValueError as exc:
            pytest.fail(
                f"expected strict JSON in every request, got {exc} in a request to {request.path}"
            )


def _reprs() -> list[str]:
    """The reprs of every lane's provider and of its settings objects (dataclasses are what
    people print while debugging)."""
    shown = []
    for lane in runtime().engine.lanes:
        shown.append(repr(lane.provider))
        shown += [repr(v) for v in vars(lane.provider).values() if dataclasses.is_dataclass(v)]
    return shown


def _check_hidden(secrets: Mapping[str, str], texts: Sequence[str], where: str) -> None:
    __tracebackhide__ = True
    for text in texts:
        for name, secret in secrets.items():
            _check(
                secret not in text,
                f"the value of {name} {where}: expected it hidden, got "
                f"{text.replace(secret, '<the secret>')[:200]!r}",
            )


def _check(ok: bool, message: str) -> None:
    """Fail the running test with `message` (what was expected, what came) unless `ok`.

    Explicit on purpose: pytest rewrites the ``assert`` statements of test modules only, not of
    an installed package like this one, so a bare ``assert`` here would fail with a bare
    ``AssertionError``, and under ``python -O`` not at all.
    """
    __tracebackhide__ = True  # the failure shows at the check that called this
    if not ok:
        pytest.fail(message)


def _flushed(timeout: float) -> None:
    __tracebackhide__ = True
    if not api.flush_tracking(timeout):
        stats = {name: (s.queued, s.last_error) for name, s in api.tracking_stats().items()}
        pytest.fail(
            f"expected flush_tracking({timeout:g}) to finish, got a timeout; still queued and "
            f"last error per provider: {stats}"
        )
