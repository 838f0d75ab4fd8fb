"""The pluggy markers and the hooks that provider packages implement.

A provider package usually implements them all with one object,
``plugin = tracking_core.kit.ProviderPlugin(Provider, Settings)``, named by its entry point in the
group ``tracking_core`` (``acme = "tracking_acme:plugin"``). A module of ``@hookimpl`` functions
named by the entry point (``acme = "tracking_acme"``) works too; see docs/writing-a-provider.md.

Discovery checks each package with pluggy's own validation before calling it: a ``@hookimpl``
whose name is not one of the hooks below (a misspelling such as ``tracking_register_provider``)
or that asks for an argument its hook does not pass disables that package, with an error naming
the function (shown by ``tracking providers``); the other packages are not affected. An
implementation of a hook that only a newer tracking-core defines can be marked
``@hookimpl(optionalhook=True)`` to be ignored by older ones.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from .fakes import FakeDestination
    from .settings_doc import ProviderSetting

__all__ = ["PROJECT_NAME", "hookimpl", "hookspec"]

#: The pluggy project name, which is also the entry-point group.
PROJECT_NAME = "tracking_core"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def tracking_register_providers(
    register: Callable[[Any], None], environ: Mapping[str, str]
) -> None:
    """Register the providers this package enables in `environ`.

    Call ``register(provider)`` once for each provider whose environment variables are set in
    `environ` (a read-only view of ``os.environ``), and do nothing when they are absent:
    installed + configured = on. `provider` is any object with a non-empty ``name`` and a
    callable ``track`` (see `tracking_core.TrackingProvider`), or a
    `tracking_core.http.HttpProvider`.

    Raise `tracking_core.SettingsError` (or any exception) when a variable is malformed: the core
    logs the message under the plugin's name and carries on with the other plugins. It takes the
    variable and the problem, ``SettingsError("ACME_HOST", "must start with https://")``, or a
    message alone, ``SettingsError("ACME_HOST must start with https://")``. Never put a secret
    value into the message.

    The implementation may take any of the arguments, by these names (``register`` alone is
    fine); another argument name disables the package.
    """


@hookspec
def tracking_provider_settings() -> list[ProviderSetting]:  # type: ignore[empty-body]
    """Describe the environment variables this package reads (optional).

    Return a list of `tracking_core.ProviderSetting`. The ``tracking providers`` command shows
    them, so users see which variable would enable an installed but disabled provider; secret
    values are always masked.
    """


@hookspec
def tracking_provider_fake() -> FakeDestination | None:
    """The package's strict fake of its vendor, for demos and test suites (optional).

    Return a `tracking_core.fakes.FakeDestination` (the provider's name, the fake, and the
    variables that point the provider at a base URL), or None. Called only by
    `tracking_core.discovery.installed_fakes` (``tracking demo``, the reliability suite, the
    conformance suite), never when an application runs.
    """
