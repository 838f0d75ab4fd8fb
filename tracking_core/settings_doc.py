"""`ProviderSetting`: how a provider package describes the variables it reads."""

from __future__ import annotations

import dataclasses

__all__ = ["ProviderSetting"]


@dataclasses.dataclass(frozen=True)
class ProviderSetting:
    """One environment variable a provider package reads.

    Attributes:
        name: the variable's exact name, e.g. ``"POSTHOG_API_KEY"``.
        description: one line saying what it does.
        required: True when the provider is enabled only if this variable is set.
        secret: True for keys and tokens: values are masked and ``<name>_FILE`` is accepted.
        default: the value used when it is unset, shown to users (never for secrets).
    """

    name: str
    description: str
    required: bool = False
    secret: bool = False
    default: str | None = None
