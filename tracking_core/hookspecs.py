"""The pluggy markers and the hook that provider packages implement.

A provider package needs one import (``from tracking_core import hookimpl``), one function and one
entry point in the group ``tracking_core``; see docs/writing-a-provider.md.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
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
    logs the message under the plugin's name and carries on with the other plugins. Never put a
    secret value into the message.
    """


@hookspec
def tracking_provider_settings() -> list[ProviderSetting]:  # type: ignore[empty-body]
    """Describe the environment variables this package reads (optional).

    Return a list of `tracking_core.ProviderSetting`. The ``tracking providers`` command shows
    them, so users see which variable would enable an installed but disabled provider; secret
    values are always masked.
    """
