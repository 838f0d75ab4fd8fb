"""Plugin discovery: entry points in the group ``tracking_core`` + the environment -> providers.

An entry point names the plugin: an object (``tracking_acme:plugin``, usually a
`tracking_core.kit.ProviderPlugin`) or a module of ``@hookimpl`` functions (``tracking_acme``);
pluggy registers either. Each plugin is loaded, validated and called on its own, inside its own
try/except and with its own pluggy `PluginManager`: pluggy's multicall stops at the first
exception, and one broken package must not take the others down. Validation is pluggy's own:
`PluginManager.register` (a hook implementation asking for an argument the hook does not pass)
and `PluginManager.check_pending` (an implementation of a hook that does not exist, such as a
misspelt name), applied to that one plugin.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import re
import types
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

import pluggy

from . import hookspecs
from ._log import logger
from .entrypoints import EntryPoint, entry_points
from .settings import SettingsError, env_bool
from .settings_doc import ProviderSetting

if TYPE_CHECKING:
    from .fakes import FakeDestination

__all__ = [
    "PluginReport",
    "allowed_plugins",
    "discover",
    "installed_fakes",
    "unknown_allowed_names",
]

_REGISTER_HOOK = "tracking_register_providers"


@dataclasses.dataclass(frozen=True)
class PluginReport:
    """What discovery found for one installed provider package (one entry point).

    Attributes:
        name: the entry-point name (what ``TRACKING_PROVIDERS`` lists).
        distribution: the installed distribution's name, e.g. ``tracking-posthog``.
        version: the distribution's version.
        providers: the provider names it registered in this environment (empty: not enabled).
        allowed: False when ``TRACKING_PROVIDERS``/``TRACKING_DISABLED`` kept it from loading.
        error: why it failed to load, to validate or to register, when it did (one line; never
            holds a secret value).
        settings: the variables it declares through ``tracking_provider_settings``.
    """

    name: str
    distribution: str | None
    version: str | None
    providers: tuple[str, ...] = ()
    allowed: bool = True
    error: str | None = None
    settings: tuple[ProviderSetting, ...] = ()


def _normalized(name: str) -> str:
    """A plugin or distribution name compared the way ``TRACKING_PROVIDERS`` compares them:
    case-insensitively, with runs of ``-``, ``_`` and ``.`` alike (as pip compares names)."""
    return re.sub(r"[-_.]+", "-", name.strip()).lower()


def allowed_plugins(environ: Mapping[str, str]) -> set[str] | None:
    """The names ``TRACKING_PROVIDERS`` lists, as written; None means every installed plugin.

    An empty value, or ``none`` (in any case), allows none. A name matches a plugin whose
    entry-point name or distribution name is the same up to case and ``-``/``_``/``.`` (as pip
    compares names): ``posthog``, ``PostHog``, ``tracking-posthog`` and ``tracking_posthog``
    all allow the PostHog package.
    """
    raw = environ.get("TRACKING_PROVIDERS")
    if raw is None:
        return None
    names = {part.strip() for part in raw.split(",") if part.strip()}
    if all(_normalized(name) == "none" for name in names):
        return set()
    return names


def _is_allowed(allow: Collection[str], entry_point: str, distribution: str | None) -> bool:
    wanted = {_normalized(name) for name in allow}
    return _normalized(entry_point) in wanted or (
        distribution is not None and _normalized(distribution) in wanted
    )


def unknown_allowed_names(
    allow: Collection[str], installed: Iterable[tuple[str, str | None]]
) -> str | None:
    """What to say about the names in `allow` that match no installed plugin, or None.

    `installed` holds ``(entry-point name, distribution name)`` pairs. The text names each
    unknown name with the closest installed entry-point name, when one is close, and lists
    the installed ones, e.g. ``TRACKING_PROVIDERS names 'postgog', which is not installed
    (did you mean 'posthog'?); installed: mixpanel, posthog``.
    """
    pairs = list(installed)
    unknown = sorted(
        name
        for name in set(allow)
        if _normalized(name) != "none"
        and not any(_is_allowed((name,), ep, dist) for ep, dist in pairs)
    )
    if not unknown:
        return None
    import difflib  # only when a name is wrong

    candidates: dict[str, str] = {}
    for ep, dist in pairs:
        candidates.setdefault(_normalized(ep), ep)
        if dist is not None:
            candidates.setdefault(_normalized(dist), ep)
    named = []
    for name in unknown:
        close = difflib.get_close_matches(_normalized(name), list(candidates), n=1)
        hint = f" (did you mean {candidates[close[0]]!r}?)" if close else ""
        named.append((repr(name), hint))
    installed_names = ", ".join(sorted({ep for ep, _ in pairs})) or "none"
    if len(named) == 1:
        ((name, hint),) = named
        text = f"names {name}, which is not installed{hint}"
    else:
        text = f"names {', '.join(n + h for n, h in named)}, which are not installed"
    return f"TRACKING_PROVIDERS {text}; installed: {installed_names}"


def _entry_points() -> list[EntryPoint]:
    return entry_points(hookspecs.PROJECT_NAME)


def _distribution(ep: EntryPoint) -> str | None:
    return ep.distribution


def _manager(plugin: object, name: str) -> pluggy.PluginManager:
    """A manager of its own holding only `plugin`: pluggy's checks then judge it alone.
    Raises pluggy's `PluginValidationError` for a hook implementation it refuses."""
    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    pm.register(plugin, name=name)
    return pm


def installed_fakes(names: Sequence[str] | None = None) -> list[FakeDestination]:
    """The `FakeDestination` of every installed plugin that ships a fake (the
    ``tracking_provider_fake`` hook), in the order of `names` when given (entry-point or
    distribution names, compared as ``TRACKING_PROVIDERS`` compares them), else by name.

    A plugin that fails to load or to make its fake is logged and left out.
    """
    found: list[tuple[int, str, FakeDestination]] = []
    for ep in _entry_points():
        dist = _distribution(ep)
        rank = 0
        if names is not None:
            ranks = [i for i, name in enumerate(names) if _is_allowed((name,), ep.name, dist)]
            if not ranks:
                continue
            rank = ranks[0]
        try:
            pm = _manager(ep.load(), ep.name)
            for impl in pm.hook.tracking_provider_fake.get_hookimpls():
                destination = cast("FakeDestination | None", impl.function())
                if destination is not None:
                    found.append((rank, ep.name, destination))
        except Exception as exc:
            logger.error(
                "tracking: provider plugin %r has no usable fake: %s", ep.name, _describe(exc)
            )
    return [destination for _, _, destination in sorted(found, key=lambda item: item[:2])]


def _describe(error: BaseException) -> str:
    text = str(error)
    if not isinstance(error, SettingsError):
        text = f"{type(error).__name__}: {text}" if text else type(error).__name__
    # One line, whatever the exception holds (pluggy's messages span several).
    return "; ".join(line.strip() for line in text.splitlines() if line.strip())


def _hook_names() -> list[str]:
    return sorted(
        name
        for name, value in vars(hookspecs).items()
        if name.startswith("tracking_") and callable(value)
    )


def _suggest_hook(name: str) -> str:
    import difflib  # only for a broken plugin

    close = difflib.get_close_matches(name, _hook_names(), n=1)
    return f" (did you mean {close[0]}?)" if close else ""


def _explain_register_error(plugin: object, exc: pluggy.PluginValidationError) -> str:
    """pluggy's refusal of a hook implementation, as one line saying what the hook passes."""
    found = re.search(r"for hook '(\w+)'", str(exc))
    hook = found.group(1) if found else None
    spec = getattr(hookspecs, hook, None) if hook else None
    function = getattr(plugin, hook, None) if hook else None
    if hook and callable(spec) and callable(function):
        offered = list(inspect.signature(spec).parameters)
        wanted = [
            p.name
            for p in inspect.signature(function).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
        ]
        extra = [name for name in wanted if name not in offered]
        if extra:
            return (
                f"{hook}({', '.join(wanted)}): the hook passes no argument "
                f"{', '.join(repr(name) for name in extra)} (it passes {', '.join(offered)})"
            )
    return _describe(exc)


def _check_plugin(pm: pluggy.PluginManager, plugin: object) -> str | None:
    """pluggy's `check_pending` for this plugin's manager (it holds only this plugin), plus a
    plugin that implements no registration hook at all; the problem as one line, or None."""
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        unknown = sorted(
            caller.name
            for caller in pm.get_hookcallers(plugin) or ()
            if caller.spec is None and any(not impl.optionalhook for impl in caller.get_hookimpls())
        )
        if not unknown:  # pragma: no cover - check_pending has no other complaint today
            return _describe(exc)
        return "; ".join(
            f"@hookimpl {name} is not a tracking-core hook{_suggest_hook(name)}" for name in unknown
        )
    if not pm.hook.tracking_register_providers.get_hookimpls():
        if callable(getattr(plugin, _REGISTER_HOOK, None)):
            return f"its {_REGISTER_HOOK} function is not marked with @tracking_core.hookimpl"
        return f"it implements no @hookimpl {_REGISTER_HOOK}, so it can enable nothing"
    return None


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
    elif allow is not None and not allow:
        if env["TRACKING_PROVIDERS"].strip(" ,\t\r\n"):
            logger.info("tracking: TRACKING_PROVIDERS=none; no provider is enabled from it")
        else:
            logger.warning(
                "tracking: TRACKING_PROVIDERS is empty: every provider is off (unset it to "
                "allow every installed one, or set it to none to say so on purpose)"
            )
    reports: list[PluginReport] = []
    installed: list[tuple[str, str | None]] = []
    for ep in _entry_points():
        base = PluginReport(name=ep.name, distribution=ep.distribution, version=ep.version)
        installed.append((ep.name, base.distribution))
        if allow is not None and not _is_allowed(allow, ep.name, base.distribution):
            reports.append(dataclasses.replace(base, allowed=False))
            continue
        try:
            reports.append(_load_one(ep, base, register, env))
        except Exception as exc:  # pragma: no cover - _load_one guards each step itself
            logger.exception("tracking: provider plugin %r could not be checked", ep.name)
            reports.append(dataclasses.replace(base, error=_describe(exc)))
    if allow:
        message = unknown_allowed_names(allow, installed)
        if message:
            logger.warning("tracking: %s", message)
    return reports


def _load_one(
    ep: EntryPoint,
    base: PluginReport,
    register: Callable[[Any], None],
    env: Mapping[str, str],
) -> PluginReport:
    try:
        plugin = ep.load()
    except Exception as exc:
        logger.error("tracking: provider plugin %r failed to load: %s", ep.name, _describe(exc))
        return dataclasses.replace(base, error=_describe(exc))

    try:
        pm = _manager(plugin, ep.name)
    except pluggy.PluginValidationError as exc:
        invalid = _explain_register_error(plugin, exc)
        logger.error("tracking: provider plugin %r is invalid: %s", ep.name, invalid)
        return dataclasses.replace(base, error=invalid)
    except Exception as exc:
        logger.error("tracking: provider plugin %r failed to load: %s", ep.name, _describe(exc))
        return dataclasses.replace(base, error=_describe(exc))

    settings: tuple[ProviderSetting, ...] = ()
    for impl in pm.hook.tracking_provider_settings.get_hookimpls():
        try:
            settings = tuple(cast("list[ProviderSetting]", impl.function()))
        except Exception as exc:
            logger.warning(
                "tracking: provider plugin %r failed to describe its settings: %s",
                ep.name,
                _describe(exc),
            )

    problem = _check_plugin(pm, plugin)
    if problem is not None:
        logger.error("tracking: provider plugin %r is invalid: %s", ep.name, problem)
        return dataclasses.replace(base, error=problem, settings=settings)

    registered: list[str] = []
    error: str | None = None

    def register_one(provider: Any) -> None:
        register(provider)
        registered.append(str(provider.name))

    values: dict[str, Any] = {"environ": env, "register": register_one}
    for impl in pm.hook.tracking_register_providers.get_hookimpls():
        try:
            impl.function(*(values[arg] for arg in impl.argnames))
        except Exception as exc:
            error = _describe(exc)
            level = logging.WARNING if isinstance(exc, SettingsError) else logging.ERROR
            logger.log(level, "tracking: provider plugin %r is disabled: %s", ep.name, error)
    return dataclasses.replace(base, providers=tuple(registered), error=error, settings=settings)
