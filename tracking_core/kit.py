"""The provider kit: a provider package declares its settings and registers in one line.

A settings class lists each environment variable once, in a `var` declaration::

    @dataclasses.dataclass(frozen=True)
    class AcmeSettings(ProviderSettings):
        api_key: str = var("ACME_API_KEY", "enables Acme", required=True, secret=True)
        host: str = var("ACME_HOST", "Acme base URL", default="https://api.acme.example", check=url)

and that declaration drives everything else: reading the environment (`from_environ`), the
``<NAME>_FILE`` form of secrets, the values masked in log lines (`secrets`), what
``tracking providers`` shows (`describe`), the conformance suite's checks and the docs tables.
`ProviderPlugin` turns the settings class and the provider class into the pluggy hooks, so a
package's ``__init__.py`` is one line and its entry point names that object::

    plugin = ProviderPlugin(AcmeProvider, AcmeSettings)  # acme = "tracking_acme:plugin"
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar, cast

from ._log import rate_limited, redact, secret_forms
from .convert import json_safe
from .entrypoints import load
from .hookspecs import hookimpl
from .settings import (
    SettingsError,
    check_int,
    check_url,
    env_secret,
    env_text,
    secret_source,
    split_url,
)
from .settings_doc import ProviderSetting

if TYPE_CHECKING:
    from .fakes import FakeDestination

__all__ = [
    "Check",
    "ProviderPlugin",
    "ProviderSettings",
    "Variable",
    "choice",
    "digits",
    "endpoint",
    "integer",
    "json_object",
    "lazy_attributes",
    "log_limited",
    "mask_secrets",
    "split_url",
    "url",
    "var",
]

#: A variable's check: ``check(variable, text)`` returns the value to keep or raises
#: `SettingsError` naming `variable` (``<NAME>_FILE`` when a secret came from its file).
Check = Callable[[str, str], Any]

_METADATA = "tracking_core.variable"
_S = TypeVar("_S", bound="ProviderSettings")


@dataclasses.dataclass(frozen=True)
class Variable(ProviderSetting):
    """One declared environment variable: its `ProviderSetting` facts plus its `check`.

    `default` is the text used when the variable is unset, as a user would write it (it is
    what ``tracking providers`` and the docs show); the field's default is that text checked.
    """

    check: Check | None = dataclasses.field(default=None, compare=False, repr=False)

    def read(self, environ: Mapping[str, str]) -> tuple[str, Any] | None:
        """``(the variable read, its checked value)``, or None when it is unset or blank.

        A secret is read with `env_secret`, so ``<NAME>_FILE`` works, and its errors are told
        without the value even when a check repeats what it was given.
        """
        text = env_secret(environ, self.name) if self.secret else env_text(environ, self.name)
        if text is None:
            return None
        source = secret_source(environ, self.name) if self.secret else self.name
        return source, self.parse(source, text)

    def parse(self, source: str, text: str) -> Any:
        """`text` (read from variable `source`) through the check."""
        if self.check is None:
            return text
        try:
            return self.check(source, text)
        except SettingsError as exc:
            # A check that repeats what it got (`integer`, `choice`) must not show a secret. A
            # value under 8 characters is too likely a word of the message itself ("whsec_").
            message = str(exc)
            if self.secret and len(text) >= 8 and (text in message or text[:12] in message):
                raise SettingsError(source, "is malformed (the value is not shown)") from None
            raise

    def setting(self) -> ProviderSetting:
        """The plain description, as the ``tracking_provider_settings`` hook returns it."""
        return ProviderSetting(
            self.name, self.description, self.required, self.secret, self.default
        )


def var(
    name: str,
    description: str,
    *,
    required: bool = False,
    secret: bool = False,
    default: str | None = None,
    check: Check | None = None,
) -> Any:
    """Declare a settings field read from the environment variable `name`.

    Args:
        name: the variable, e.g. ``"ACME_API_KEY"``; written here and nowhere else.
        description: one line for ``tracking providers`` and the docs.
        required: the provider needs it. The first required field enables the provider: while
            it is unset, `ProviderSettings.from_environ` returns None without reading the rest.
        secret: a key or token: hidden from the repr, masked in logs, ``<NAME>_FILE`` accepted.
        default: the text used when it is unset (not for a required or secret variable).
        check: turns the text into the value or raises `SettingsError`; see `url`, `endpoint`,
            `integer`, `choice`, `digits`. Without one the value is the stripped text.

    Returns:
        A `dataclasses.field` (keyword-only) holding the `Variable` in its metadata.
    """
    if default is not None and (required or secret):
        kind = "required" if required else "secret"
        raise ValueError(f"{name}: a {kind} variable has no default")
    variable = Variable(name, description, required, secret, default, check)
    metadata = {_METADATA: variable}
    if required:
        return dataclasses.field(repr=not secret, kw_only=True, metadata=metadata)
    value = None if default is None else variable.parse(name, default)
    return dataclasses.field(default=value, repr=not secret, kw_only=True, metadata=metadata)


class ProviderSettings:
    """Base of a provider's settings: a frozen dataclass whose fields are `var` declarations.

    Fields declared otherwise (values derived in ``__post_init__``, say) are left alone.
    """

    _declared_fields: ClassVar[dict[type, tuple[tuple[str, Variable], ...]]] = {}

    @classmethod
    def _declared(cls) -> tuple[tuple[str, Variable], ...]:
        found = cls._declared_fields.get(cls)
        if found is None:
            found = tuple(
                (field.name, field.metadata[_METADATA])
                for field in dataclasses.fields(cls)  # type: ignore[arg-type]
                if _METADATA in field.metadata
            )
            cls._declared_fields[cls] = found
        return found

    @classmethod
    def variables(cls) -> tuple[Variable, ...]:
        """Every declared variable, in declaration order."""
        return tuple(variable for _, variable in cls._declared())

    @classmethod
    def variable(cls, field: str) -> Variable:
        """The variable declared for `field`."""
        return dict(cls._declared())[field]

    @classmethod
    def describe(cls) -> list[ProviderSetting]:
        """What the ``tracking_provider_settings`` hook returns (``tracking providers``)."""
        return [variable.setting() for variable in cls.variables()]

    @classmethod
    def from_environ(cls: type[_S], environ: Mapping[str, str]) -> _S | None:
        """The settings in `environ`, or None when no required variable is set (the first
        required one enables the provider).

        Raises:
            SettingsError: a required variable is missing, a check refused a value, or
                `validate` refused the whole; it names the variable, never a secret value.
        """
        declared = cls._declared()
        enabling = next((item for item in declared if item[1].required), None)
        if enabling is None:
            raise TypeError(f"{cls.__name__} declares no required variable to enable it")
        first = enabling[1].read(environ)
        if first is None:
            # Another required variable set without this one: half a configuration, which
            # must be said (a user set GA4_API_SECRET and forgot GA4_MEASUREMENT_ID), not None.
            for _, variable in declared:
                other = variable.required and variable is not enabling[1]
                if other and variable.read(environ) is not None:
                    raise SettingsError(enabling[1].name, f"is required with {variable.name}")
            return None
        values: dict[str, Any] = {enabling[0]: first[1]}
        sources = {enabling[0]: first[0]}
        for field, variable in declared:
            found = first if field == enabling[0] else variable.read(environ)
            if found is not None:
                sources[field], values[field] = found
            elif variable.required:
                raise SettingsError(variable.name, f"is required with {enabling[1].name}")
        build: Callable[..., _S] = cls
        settings = build(**values)
        object.__setattr__(settings, "_sources", sources)
        settings.validate()
        return settings

    def validate(self) -> None:
        """Rules across variables (a credential that needs another); raise `SettingsError`,
        naming the variable with `name_of`. Called by `from_environ` once every value is read."""

    def name_of(self, field: str) -> str:
        """The variable `field` was read from: its name, or ``<NAME>_FILE`` for a secret read
        from its file. For messages: the name a user has to fix."""
        sources: dict[str, str] = getattr(self, "_sources", {})
        return sources.get(field) or self.variable(field).name

    def secrets(self) -> tuple[str, ...]:
        """The values of the secret variables that are set: masked in every log line."""
        found = (getattr(self, field) for field, v in self._declared() if v.secret)
        return tuple(str(value) for value in found if value)


# -- checks ------------------------------------------------------------------------------------


def url(variable: str, text: str) -> str:
    """A base URL: http(s), a host, an optional path prefix, no query; trailing slash removed."""
    return check_url(variable, text)


def endpoint(variable: str, text: str) -> str:
    """A full URL used as it is (a query allowed, the trailing slash kept)."""
    return check_url(variable, text, endpoint=True)


def integer(minimum: int = 0) -> Check:
    """A check for a whole number of at least `minimum`."""

    def check(variable: str, text: str) -> int:
        return check_int(variable, text, minimum)

    return check


def choice(*values: str) -> Check:
    """A check for one of `values`, compared case-insensitively; returns the value as declared."""
    allowed = {value.lower(): value for value in values}
    listed = ", ".join(values[:-1]) + f" or {values[-1]}" if len(values) > 1 else values[0]

    def check(variable: str, text: str) -> str:
        found = allowed.get(text.lower())
        if found is None:
            raise SettingsError(variable, f"expected {listed}, got {text!r:.40}")
        return found

    return check


def digits(variable: str, text: str) -> str:
    """Digits only (a numeric id kept as text)."""
    if not (text.isascii() and text.isdigit()):
        raise SettingsError(variable, "expected a number (digits only)")
    return text


# -- registration --------------------------------------------------------------------------


def lazy_attributes(package: str, module: str, *names: str) -> Callable[[str], object]:
    """A provider package's module ``__getattr__``: `names` read from `package` come from its
    `module` (``".provider"``), imported when one is first read. Discovery then imports only
    what the package's ``__init__`` imports (its settings), and ``from tracking_acme import
    AcmeProvider`` still works::

        __getattr__ = lazy_attributes(__name__, ".provider", "AcmeProvider")
    """
    wanted = frozenset(names)

    def __getattr__(name: str) -> object:
        if name in wanted:
            return getattr(importlib.import_module(module, package), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__


class ProviderPlugin(Generic[_S]):
    """The pluggy plugin of a provider package, built from its provider and settings classes.

    ``plugin = ProviderPlugin("tracking_acme.provider:AcmeProvider", AcmeSettings,
    fake="tracking_acme.fake:destination")`` with the entry point ``acme = "tracking_acme:plugin"``.
    It registers ``provider(settings)`` when `settings.from_environ` finds the provider
    configured, describes the declared variables, and hands out the package's fake.

    Args:
        provider: called with the settings to make the provider: the class itself, or its
            ``"module:Class"`` name, imported only when the provider is configured. With the
            name (and the settings class in a module of its own that does not import the
            provider's), an installed package that is not configured costs a process only
            reading its settings, not importing its wire mapping and the HTTP stack.
        settings: the `ProviderSettings` subclass.
        fake: ``"module:function"`` returning the package's `FakeDestination`, imported only
            when asked for (the demo, test suites); None when the package ships no fake.

    Raises:
        ValueError: `provider` is a string that is not ``"module:Class"``.
    """

    def __init__(
        self, provider: Callable[[_S], object] | str, settings: type[_S], *, fake: str | None = None
    ) -> None:
        if isinstance(provider, str) and not all(provider.partition(":")[::2]):
            raise ValueError(f"provider {provider!r}: expected 'module:Class'")
        self._provider = provider
        self.settings = settings
        self.fake = fake

    @property
    def provider(self) -> Callable[[_S], object]:
        """What makes the provider: the class given, or the one its ``"module:Class"`` name
        names (imported on first use, here)."""
        if isinstance(self._provider, str):
            self._provider = cast("Callable[[_S], object]", load(self._provider))
        return self._provider

    @hookimpl
    def tracking_register_providers(
        self, register: Callable[[Any], None], environ: Mapping[str, str]
    ) -> None:
        """Register the provider when its enabling variable is set (see `from_environ`)."""
        settings = self.settings.from_environ(environ)
        if settings is not None:
            register(self.provider(settings))

    @hookimpl
    def tracking_provider_settings(self) -> list[ProviderSetting]:
        """The declared variables."""
        return self.settings.describe()

    @hookimpl
    def tracking_provider_fake(self) -> FakeDestination | None:
        """The package's fake, made by the function `fake` names; None without one."""
        if self.fake is None:
            return None
        made: FakeDestination = cast("Callable[[], Any]", load(self.fake))()
        return made

    def __repr__(self) -> str:
        provider = self._provider
        if isinstance(provider, str):  # not imported for a repr
            name = provider.partition(":")[2].strip()
        else:
            name = getattr(provider, "__qualname__", repr(provider))
        return f"ProviderPlugin({name}, {self.settings.__qualname__})"


def log_limited(
    level: int, key: str, message: str, *args: object, secrets: Iterable[str | None] = ()
) -> bool:
    """Log `message % args` on the ``tracking_core`` logger through the library's rate limiter:
    the first line for `key` at once, then at most one a minute, the next one saying how many
    were suppressed (so a count is never lost). Every form of each of `secrets` is masked in
    the string arguments. Returns whether the line was logged.

    For providers that are not `HttpProvider` (which has `warn`): a file, a queue, a socket.
    Prefix `key` with the provider's name (``"acme:io"``) so providers do not silence each
    other.
    """
    return rate_limited.log_masked(level, key, secret_forms(secrets), message, *args)


def mask_secrets(text: str, secrets: Iterable[str | None]) -> str:
    """`text` with each of `secrets` (four characters or more) replaced by ``***``, in every
    form it may be sent or echoed in (as is, URL-encoded, Base64 in a Basic header...)."""
    return redact(text, secrets)


def json_object(values: Mapping[str, Any]) -> dict[str, Any]:
    """`values` (an event's properties, a user's traits) as a JSON object, by `json_safe`'s
    rule: string keys, strict-JSON values; never raises."""
    converted = json_safe(values)  # a new dict, so the caller may change it
    return converted if isinstance(converted, dict) else {}
