"""Mixpanel's settings declaration: all that discovery reads while Mixpanel is not configured
(the wire mapping, in `tracking_mixpanel.provider`, is imported once it is)."""

from __future__ import annotations

import dataclasses

from tracking_core.kit import ProviderSettings, choice, digits, url, var
from tracking_core.settings import SettingsError

__all__ = [
    "DEFAULT_HOST",
    "ID_MERGE_MODES",
    "ID_MERGE_ORIGINAL",
    "ID_MERGE_SIMPLIFIED",
    "MixpanelSettings",
]

#: The US ingestion host; EU projects use ``https://api-eu.mixpanel.com``, India ``api-in``.
DEFAULT_HOST = "https://api.mixpanel.com"

#: The project's ID Merge API (Project Settings > Identity Merge). ``simplified``: anonymous
#: events carry ``$device_id`` and ``distinct_id`` ``$device:<id>``, identified ones ``$user_id``.
#: ``original``: ``distinct_id`` is the anonymous id itself, no ``$device_id``/``$user_id``
#: (docs.mixpanel.com/docs/tracking-methods/id-management/identifying-users-original).
ID_MERGE_SIMPLIFIED = "simplified"
ID_MERGE_ORIGINAL = "original"
ID_MERGE_MODES = (ID_MERGE_SIMPLIFIED, ID_MERGE_ORIGINAL)


@dataclasses.dataclass(frozen=True)
class MixpanelSettings(ProviderSettings):
    """The Mixpanel provider's configuration (`import_auth`: events go to ``/import``)."""

    token: str = var("MIXPANEL_TOKEN", "project token", required=True, secret=True)
    host: str = var(
        "MIXPANEL_HOST",
        "ingestion base URL (EU: https://api-eu.mixpanel.com, India: "
        "https://api-in.mixpanel.com); a path prefix is kept",
        default=DEFAULT_HOST,
        check=url,
    )
    api_secret: str | None = var(
        "MIXPANEL_API_SECRET", "project secret: events to /import with Basic auth", secret=True
    )
    service_account_username: str | None = var(
        "MIXPANEL_SERVICE_ACCOUNT_USERNAME", "service account user, for /import", secret=True
    )
    service_account_secret: str | None = var(
        "MIXPANEL_SERVICE_ACCOUNT_SECRET", "service account secret, for /import", secret=True
    )
    project_id: str | None = var(
        "MIXPANEL_PROJECT_ID", "numeric project id, sent with a service account", check=digits
    )
    id_merge: str = var(
        "MIXPANEL_ID_MERGE",
        "the project's ID Merge API (Project Settings > Identity Merge): simplified, or "
        "original (anonymous events then use the anonymous id itself as distinct_id)",
        default=ID_MERGE_SIMPLIFIED,
        check=choice(*ID_MERGE_MODES),
    )

    def validate(self) -> None:
        """A service account needs its username, its secret and the project id."""
        account = ("service_account_username", "service_account_secret", "project_id")
        given = [field for field in account if getattr(self, field) is not None]
        if given and len(given) < len(account):
            missing = next(field for field in account if field not in given)
            raise SettingsError(
                self.name_of(missing),
                "is required with "
                + " and ".join(self.name_of(field) for field in given)
                + " (a service account needs the username, the secret and the project id)",
            )

    @property
    def uses_service_account(self) -> bool:
        """True when a complete service account is configured (it wins over the secret)."""
        return bool(
            self.service_account_username and self.service_account_secret and self.project_id
        )

    @property
    def import_auth(self) -> bool:
        """True when events go to ``/import`` with Basic auth instead of ``/track``."""
        return self.uses_service_account or bool(self.api_secret)

    def authorization(self) -> str | None:
        """The ``Authorization`` header for ``/import``, or None in ``/track`` mode."""
        if self.uses_service_account:
            pair = f"{self.service_account_username}:{self.service_account_secret}"
        elif self.api_secret:
            pair = f"{self.api_secret}:"
        else:
            return None
        import base64  # only for /import

        return "Basic " + base64.b64encode(pair.encode("utf-8")).decode("ascii")

    def secrets(self) -> tuple[str, ...]:
        """The secret variables' values and the Basic credentials: never in a log line."""
        header = self.authorization()
        return (*super().secrets(), *([header.partition(" ")[2]] if header else ()))
