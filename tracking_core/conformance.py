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
input or the destination does, and never logs a secret.
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
        for name in self.enabling_environment(conformance_server.url):
            variables[name] = None
            variables[f"{name}_FILE"] = None
        configure_tracking(monkeypatch, variables)
        try:
            assert self.provider_name not in api.list_tracking_providers()
            report = self._report()
            assert report.error is None, report.error
        finally:
            reset_tracking()

    def test_enabled_by_its_variables(self, enable: dict[str, str]) -> None:
        assert api.list_tracking_providers() == [self.provider_name]
        report = self._report()
        assert report.providers == (self.provider_name,)
        assert report.distribution, "the entry point must belong to an installed distribution"

    def test_declares_its_settings(self, enable: dict[str, str]) -> None:
        declared = {setting.name: setting for setting in self._report().settings}
        for name in self.enabling_environment("http://127.0.0.1:9"):
            assert name in declared, f"{name} is read but not declared"
        for name in self.secret_variables:
            assert name in declared, f"secret variable {name} is not declared"
            assert declared[name].secret, f"{name} must be declared secret"

    def test_delivers_events_to_the_destination(
        self, enable: dict[str, str], conformance_server: LoopbackReceiver
    ) -> None:
        for i in range(20):
            api.track("Conformance Event", {"i": i}, user_id="conformance-user")
        if self.supports_identify:
            api.identify("conformance-user", {"plan": "pro"})
        assert api.flush_tracking(15)
        stats = api.tracking_stats()[self.provider_name]
        expected = 21 if self.supports_identify else 20
        assert stats.accepted == expected
        assert stats.delivered == expected, stats
        assert conformance_server.requests, "nothing reached the destination"
        received = self.count_received(conformance_server.requests)
        if received is not None:
            assert received == expected

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
        assert api.flush_tracking(15)
        stats = api.tracking_stats()[self.provider_name]
        assert stats.dropped.get("bad_input") == 4
        assert stats.delivered + stats.dropped.get("provider_error", 0) == 4
        assert stats.dropped.get("provider_error", 0) == 0, "a value broke the wire mapping"
        for request in conformance_server.requests:
            request.json()  # strict JSON: no NaN tokens

    def test_survives_a_failing_destination(
        self, enable: dict[str, str], conformance_server: LoopbackReceiver
    ) -> None:
        conformance_server.responder = lambda request: Reply(500, b"down")
        for _ in range(3):
            api.track("Lost", user_id="conformance-user")
        assert api.flush_tracking(15)
        stats = api.tracking_stats()[self.provider_name]
        assert stats.delivered == 0
        assert sum(stats.dropped.values()) == 3

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
        assert not missing, f"enabling_environment() does not set {missing}"
        secrets = [enable[name] for name in self.secret_variables]
        # The vendor echoes the credentials back, as some do in error messages.
        echoed = {"error": "bad key: " + " ".join(secrets)}
        conformance_server.responder = lambda request: Reply(401, echoed)
        api.track("Secret Check", user_id="conformance-user")
        api.flush_tracking(15)
        for record in caplog.records:
            message = record.getMessage()
            for secret in secrets:
                assert secret not in message, f"a secret leaked into: {message}"
        for lane in runtime().engine.lanes:
            shown = [repr(lane.provider)]
            # Settings objects (dataclasses) are what people print while debugging.
            shown += [
                repr(value)
                for value in vars(lane.provider).values()
                if dataclasses.is_dataclass(value)
            ]
            for text in shown:
                for secret in secrets:
                    assert secret not in text, f"a secret shows in a repr: {text[:80]}"

    def _report(self) -> Any:
        reports = api.discover_tracking_providers()
        for report in reports:
            if report.name == self.entry_point:
                return report
        raise AssertionError(f"no installed entry point named {self.entry_point!r}")
