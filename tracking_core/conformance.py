"""A conformance suite that a provider package runs against itself.

Subclass `ProviderConformance` in your package's tests, name the subclass ``Test...`` so pytest
collects it, and say how your provider is enabled::

    from tracking_core.conformance import ProviderConformance

    class TestAcmeConformance(ProviderConformance):
        entry_point = "acme"           # the name in [project.entry-points.tracking_core]
        provider_name = "acme"         # the provider's `name`
        secret_variables = ("ACME_API_KEY",)

        def enabling_environment(self, url: str) -> dict[str, str]:
            return {"ACME_API_KEY": "acme-secret-key-123", "ACME_HOST": url}

The suite needs only pytest and your package installed (its entry point must be visible). It
checks that the
provider is enabled only by its variables, declares them, delivers to a loopback receiver (your
strict fake, if you give one through `responder`), never raises into the caller whatever the
input or the destination does, and never logs a secret. A failing check says what it expected
and what it got (explicit checks, not bare ``assert``: pytest does not rewrite the asserts of an
installed package).
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
from typing import Any, ClassVar

import pytest

from . import api
from .receivers import LoopbackReceiver, ReceivedRequest, Reply
from .registry import runtime
from .testing import FAST_DELIVERY, configure_tracking, reset_tracking

__all__ = ["ProviderConformance"]


def _hermetic() -> dict[str, str | None]:
    """Remove the caller's TRACKING_* variables, so results do not depend on the shell."""
    return {name: None for name in os.environ if name.startswith("TRACKING_")}


class ProviderConformance:
    """Checks every provider package should pass. Override the attributes and methods below."""

    #: The entry-point name of the package under test.
    entry_point: ClassVar[str] = ""
    #: The `name` of the provider it registers.
    provider_name: ClassVar[str] = ""
    #: Variables whose values must never appear in a log line.
    secret_variables: ClassVar[Sequence[str]] = ()
    #: Whether the provider implements identify.
    supports_identify: ClassVar[bool] = True

    def enabling_environment(self, url: str) -> dict[str, str]:
        """The variables that enable the provider and point it at `url` (a loopback server)."""
        raise NotImplementedError("say which variables enable your provider")

    def responder(self) -> Any:
        """The loopback server's responder: your strict fake of the vendor, or None for 200."""
        return None

    def count_received(self, requests: Sequence[ReceivedRequest]) -> int | None:
        """How many events the server received (None: do not check)."""
        return None

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
        report = self._report()
        stray = {
            variable: None
            for setting in report.settings
            for variable in (setting.name, f"{setting.name}_FILE")
            if variable not in environment and variable in os.environ
        }
        if stray:
            configure_tracking(monkeypatch, stray)
        yield {name: value for name, value in environment.items() if value is not None}
        reset_tracking()

    # -- the checks -------------------------------------------------------------------------

    def test_disabled_without_its_variables(
        self, monkeypatch: pytest.MonkeyPatch, conformance_server: LoopbackReceiver
    ) -> None:
        variables: dict[str, str | None] = {**_hermetic(), "TRACKING_PROVIDERS": self.entry_point}
        names = list(self.enabling_environment(conformance_server.url))
        for name in names:
            variables[name] = None
            variables[f"{name}_FILE"] = None
        configure_tracking(monkeypatch, variables)
        try:
            enabled = api.list_tracking_providers()
            _check(
                self.provider_name not in enabled,
                f"{self.provider_name!r} is enabled without its variables ({', '.join(names)}): "
                f"expected it absent from list_tracking_providers(), got {enabled}",
            )
            report = self._report()
            _check(
                report.error is None,
                f"without its variables ({', '.join(names)}) the plugin must load quietly: "
                f"expected no error, got {report.error!r}",
            )
        finally:
            reset_tracking()

    def test_enabled_by_its_variables(self, enable: dict[str, str]) -> None:
        report = self._report()
        enabled = api.list_tracking_providers()
        why = f"; the plugin's error: {report.error}" if report.error else ""
        _check(
            enabled == [self.provider_name],
            f"with enabling_environment() set and TRACKING_PROVIDERS={self.entry_point}: "
            f"expected list_tracking_providers() == [{self.provider_name!r}], got {enabled}{why}",
        )
        _check(
            report.providers == (self.provider_name,),
            f"expected entry point {self.entry_point!r} to report the provider it registered, "
            f"({self.provider_name!r},), got {report.providers}",
        )
        _check(
            bool(report.distribution),
            f"expected entry point {self.entry_point!r} to belong to an installed distribution, "
            "got none: install the package (pip install -e .), do not only put it on sys.path",
        )

    def test_declares_its_settings(self, enable: dict[str, str]) -> None:
        declared = {setting.name: setting for setting in self._report().settings}
        for name in self.enabling_environment("http://127.0.0.1:9"):
            _check(
                name in declared,
                f"{name} is read but not declared: expected it among the "
                f"tracking_provider_settings() names, got {sorted(declared)}",
            )
        for name in self.secret_variables:
            _check(
                name in declared,
                f"secret variable {name} is not declared: expected it among the "
                f"tracking_provider_settings() names, got {sorted(declared)}",
            )
            _check(
                declared[name].secret,
                f"{name} must be declared secret: expected ProviderSetting(..., secret=True), "
                f"got secret={declared[name].secret}",
            )

    def test_delivers_events_to_the_destination(
        self, enable: dict[str, str], conformance_server: LoopbackReceiver
    ) -> None:
        for i in range(20):
            api.track("Conformance Event", {"i": i}, user_id="conformance-user")
        if self.supports_identify:
            api.identify("conformance-user", {"plan": "pro"})
        _flushed(15)
        stats = api.tracking_stats()[self.provider_name]
        expected = 21 if self.supports_identify else 20
        calls = "20 track() calls" + (" and 1 identify()" if self.supports_identify else "")
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
            bool(conformance_server.requests),
            f"nothing reached the destination: expected requests at {conformance_server.url} "
            f"(the URL given to enabling_environment()), got none although the provider "
            f"reported {stats.delivered} delivered",
        )
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
        cyclic: dict[str, Any] = {}
        cyclic["self"] = cyclic

        class Hostile:
            def __repr__(self) -> str:
                raise RuntimeError("repr")

            __str__ = __repr__

        odd_values: list[Mapping[str, Any]] = [
            {"nan": math.nan, "inf": math.inf},
            {"when": dt.datetime.now(), "day": dt.date.today(), "price": decimal.Decimal("9.99")},
            {"id": uuid.uuid4(), "tags": {"a", "b"}, "raw": b"\xff\x00"},
            {"cycle": cyclic, "hostile": Hostile(), 3: "int key"},  # type: ignore[dict-item]
        ]
        for properties in odd_values:
            api.track("Odd Values", properties, user_id="conformance-user")
        for bad in ("", None, 42):
            api.track(bad)  # type: ignore[arg-type]
        api.track("Bad Props", "not a mapping")  # type: ignore[arg-type]
        _flushed(15)
        stats = api.tracking_stats()[self.provider_name]
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
        for request in conformance_server.requests:
            try:
                request.json()  # strict JSON: no NaN tokens
            except ValueError as exc:
                pytest.fail(
                    f"expected strict JSON in every request, got {exc} in a request to "
                    f"{request.path}"
                )

    def test_survives_a_failing_destination(
        self, enable: dict[str, str], conformance_server: LoopbackReceiver
    ) -> None:
        conformance_server.responder = lambda request: Reply(500, b"down")
        for _ in range(3):
            api.track("Lost", user_id="conformance-user")
        _flushed(15)
        stats = api.tracking_stats()[self.provider_name]
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
        _check(
            not missing,
            f"expected enabling_environment() to set every secret_variables entry, got {missing} "
            "missing",
        )
        secrets = {name: enable[name] for name in self.secret_variables}
        # The vendor echoes the credentials back, as some do in error messages.
        echoed = {"error": "bad key: " + " ".join(secrets.values())}
        conformance_server.responder = lambda request: Reply(401, echoed)
        api.track("Secret Check", user_id="conformance-user")
        api.flush_tracking(15)
        for record in caplog.records:
            message = record.getMessage()
            for name, secret in secrets.items():
                _check(
                    secret not in message,
                    f"the value of {name} leaked into a log line: expected it never logged, got "
                    f"{_masked(message, secret)!r} (logger {record.name})",
                )
        for lane in runtime().engine.lanes:
            shown = [repr(lane.provider)]
            # Settings objects (dataclasses) are what people print while debugging.
            shown += [
                repr(value)
                for value in vars(lane.provider).values()
                if dataclasses.is_dataclass(value)
            ]
            for text in shown:
                for name, secret in secrets.items():
                    _check(
                        secret not in text,
                        f"the value of {name} shows in a repr: expected it hidden, got "
                        f"{_masked(text, secret)[:120]!r}",
                    )

    def _report(self) -> Any:
        reports = api.discover_tracking_providers()
        for report in reports:
            if report.name == self.entry_point:
                return report
        pytest.fail(
            f"expected an installed entry point named {self.entry_point!r} in the group "
            f"tracking_core, got {sorted(report.name for report in reports)}"
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


def _masked(text: str, secret: str) -> str:
    return text.replace(secret, "<the secret>")
