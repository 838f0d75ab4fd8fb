"""Plugin discovery: entry points in the group ``tracking_core`` + the environment -> providers.

Each plugin is loaded and called on its own, inside its own try/except: pluggy's multicall stops
at the first exception, and one broken package must not take the others down.
"""

from __future__ import annotations

import dataclasses
import logging
import types
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, cast

import pluggy

from . import hookspecs
from ._log import logger
from .settings import SettingsError, env_bool
from .settings_doc import ProviderSetting

if TYPE_CHECKING:
    import importlib.metadata

__all__ = ["PluginReport", "allowed_plugins", "discover"]


@dataclasses.dataclass(frozen=True)
class PluginReport:
    """What discovery found for one installed provider package (one entry point).

    Attributes:
        name: the entry-point name (what ``TRACKING_PROVIDERS`` lists).
        distribution: the installed distribution's name, e.g. ``tracking-posthog``.
        version: the distribution's version.
        providers: the provider names it registered in this environment (empty: not enabled).
        allowed: False when ``TRACKING_PROVIDERS``/``TRACKING_DISABLED`` kept it from loading.
        error: why it failed to load or to register, when it did (never holds a secret value).
        settings: the variables it declares through ``tracking_provider_settings``.
    """

    name: str
    distribution: str | None
    version: str | None
    providers: tuple[str, ...] = ()
    allowed: bool = True
    error: str | None = None
    settings: tuple[ProviderSetting, ...] = ()


def allowed_plugins(environ: Mapping[str, str]) -> set[str] | None:
    """The entry-point names ``TRACKING_PROVIDERS`` allows; None means all of them."""
    raw = environ.get("TRACKING_PROVIDERS")
    if raw is None:
        return None
    names = {part.strip() for part in raw.split(",") if part.strip()}
    if names <= {"none"}:
        return set()
    return names


def _entry_points() -> list[importlib.metadata.EntryPoint]:
    import importlib.metadata  # ~20 ms: only when discovery runs, on the dispatcher thread

    seen: dict[str, importlib.metadata.EntryPoint] = {}
    for ep in importlib.metadata.entry_points(group=hookspecs.PROJECT_NAME):
        seen.setdefault(ep.name, ep)  # the first on sys.path wins, as for imports
    return list(seen.values())


def _describe(error: BaseException) -> str:
    if isinstance(error, SettingsError):
        return str(error)
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def discover(register: Callable[[Any], None], environ: Mapping[str, str]) -> list[PluginReport]:
    """Load every allowed plugin and let it register the providers its variables enable."""
    env = types.MappingProxyType(dict(environ))
    try:
        disabled = env_bool(env, "TRACKING_DISABLED")
    except SettingsError as exc:
        logger.warning("tracking: %s; discovery stays on", exc)
        disabled = False
    allow = set() if disabled else allowed_plugins(env)
    if disabled:
        logger.info(
            "tracking: TRACKING_DISABLED is set; no provider is enabled from the environment"
        )
    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    reports: list[PluginReport] = []
    entry_points = _entry_points()
    for ep in entry_points:
        dist = getattr(ep, "dist", None)
        base = PluginReport(
            name=ep.name,
            distribution=dist.metadata["Name"] if dist is not None else None,
            version=dist.version if dist is not None else None,
        )
        if allow is not None and ep.name not in allow:
            reports.append(dataclasses.replace(base, allowed=False))
            continue
        reports.append(_load_one(pm, ep, base, register, env))
    if allow:
        unknown = sorted(allow - {ep.name for ep in entry_points})
        if unknown:
            logger.warning(
                "tracking: TRACKING_PROVIDERS names %s, which %s not installed",
                ", ".join(repr(name) for name in unknown),
                "is" if len(unknown) == 1 else "are",
            )
    return reports


def _load_one(
    pm: pluggy.PluginManager,
    ep: importlib.metadata.EntryPoint,
    base: PluginReport,
    register: Callable[[Any], None],
    env: Mapping[str, str],
) -> PluginReport:
    try:
        module = ep.load()
        pm.register(module, name=ep.name)
    except Exception as exc:
        logger.error("tracking: provider plugin %r failed to load: %s", ep.name, _describe(exc))
        return dataclasses.replace(base, error=_describe(exc))

    settings: tuple[ProviderSetting, ...] = ()
    registered: list[str] = []
    error: str | None = None
    values = {"environ": env}

    def register_one(provider: Any) -> None:
        register(provider)
        registered.append(str(provider.name))

    values["register"] = register_one  # type: ignore[assignment]
    for impl in pm.hook.tracking_provider_settings.get_hookimpls():
        if impl.plugin is module:
            try:
                settings = tuple(cast("list[ProviderSetting]", impl.function()))
            except Exception as exc:
                logger.warning(
                    "tracking: provider plugin %r failed to describe its settings: %s",
                    ep.name,
                    _describe(exc),
                )
    for impl in pm.hook.tracking_register_providers.get_hookimpls():
        if impl.plugin is not module:
            continue
        try:
            impl.function(*(values[arg] for arg in impl.argnames))
        except Exception as exc:
            error = _describe(exc)
            level = logging.WARNING if isinstance(exc, SettingsError) else logging.ERROR
            logger.log(level, "tracking: provider plugin %r is disabled: %s", ep.name, error)
    return dataclasses.replace(base, providers=tuple(registered), error=error, settings=settings)
