"""The webhook's settings declaration and its signing key: all that discovery reads while the
webhook is not configured (the wire mapping, in `tracking_webhook.provider`, is imported once it
is)."""

from __future__ import annotations

import contextlib
import dataclasses
import re

from tracking_core.kit import ProviderSettings, endpoint, integer, var
from tracking_core.settings import SettingsError

__all__ = ["SECRET_PREFIX", "WebhookSettings", "signing_key"]

#: The prefix of a Standard Webhooks symmetric secret (the rest is base64).
SECRET_PREFIX = "whsec_"

#: How to make a secret, as said in every refusal of one.
_MAKE_SECRET = (
    'make one with: python -c "import base64, os; '
    "print('whsec_' + base64.b64encode(os.urandom(32)).decode())\""
)

_BASE64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")


def signing_key(secret: str) -> bytes:
    """The HMAC key of a Standard Webhooks secret, ``whsec_<standard base64>`` (``=`` padding
    optional): the forms the reference verifiers (``standardwebhooks``, ``svix``) read as the
    same key. Raises ValueError (never holding the secret; saying how to make a good one) for
    anything else, which those libraries would read as other bytes or refuse."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError(
            f"must be {SECRET_PREFIX} followed by a base64 key, the form Standard Webhooks "
            f"verifiers read the same way (a base64 key without the prefix: put {SECRET_PREFIX} "
            f"in front of it); {_MAKE_SECRET}"
        )
    encoded = secret[len(SECRET_PREFIX) :]
    if not encoded:
        raise ValueError(f"starts with {SECRET_PREFIX} but holds no key after it; {_MAKE_SECRET}")
    if _BASE64.fullmatch(encoded):
        import base64  # with binascii: only when a secret is configured
        import binascii

        with contextlib.suppress(binascii.Error):  # e.g. a length no base64 text has
            return base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    raise ValueError(
        f"starts with {SECRET_PREFIX} but what follows is not standard base64 "
        f"(A-Z, a-z, 0-9, + and /, optional = padding); {_MAKE_SECRET}"
    )


def _signing_secret(variable: str, secret: str) -> str:
    """`secret`, when `signing_key` reads a key from it; its refusal names `variable`."""
    try:
        signing_key(secret)
    except ValueError as exc:
        raise SettingsError(variable, str(exc)) from None
    return secret


def _header_value(variable: str, value: str) -> str:
    if not all(" " <= char <= "~" or char == "\t" for char in value):
        raise SettingsError(
            variable,
            "must be printable ASCII on one line to be sent as the Authorization header",
        )
    return value


@dataclasses.dataclass(frozen=True)
class WebhookSettings(ProviderSettings):
    """The webhook provider's configuration. Its repr hides the URL (used exactly as given: it
    may carry credentials or a token), the Authorization value and the secret; `secrets` lists
    them with the parts of the URL a receiver may echo. `key` is the HMAC key derived from
    `secret` (see `signing_key`)."""

    url: str = var(
        "TRACKING_WEBHOOK_URL",
        "the full URL every batch is POSTed to; masked like a secret (it may hold credentials)",
        required=True,
        secret=True,
        check=endpoint,
    )
    auth: str | None = var(
        "TRACKING_WEBHOOK_AUTH",
        "sent verbatim as the Authorization header (e.g. 'Bearer <token>')",
        secret=True,
        check=_header_value,
    )
    secret: str | None = var(
        "TRACKING_WEBHOOK_SECRET",
        "Standard Webhooks signing secret, 'whsec_<base64>': signs every request",
        secret=True,
        check=_signing_secret,
    )
    max_events: int = var(
        "TRACKING_WEBHOOK_MAX_EVENTS", "messages per request", default="500", check=integer(1)
    )
    max_batch_bytes: int = var(
        "TRACKING_WEBHOOK_MAX_BATCH_BYTES",
        "bytes per request body",
        default="500000",
        check=integer(1024),
    )
    max_event_bytes: int = var(
        "TRACKING_WEBHOOK_MAX_EVENT_BYTES",
        "bytes per message; a larger event is dropped (too_large)",
        default="32000",
        check=integer(256),
    )
    key: bytes | None = dataclasses.field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.key is None and self.secret is not None:
            object.__setattr__(self, "key", signing_key(self.secret))

    def validate(self) -> None:
        """An Authorization value and credentials in the URL exclude each other: the HTTP
        client turns URL credentials into its own Authorization header."""
        import urllib.parse  # loaded by the URL's check already

        parts = urllib.parse.urlsplit(self.url)
        if self.auth is not None and (parts.username or parts.password):
            raise SettingsError(
                self.name_of("auth"),
                f"cannot be combined with credentials in {self.variable('url').name} "
                "(user:password@); use one or the other",
            )

    def secrets(self) -> tuple[str, ...]:
        """The secrets, and the parts of the URL a receiver may echo (user info, query, query
        values, path: URLs often carry a token), longest first."""
        import urllib.parse  # loaded by the URL's check already

        values: list[str] = [self.url]
        parts = urllib.parse.urlsplit(self.url)
        values += [parts.username or "", parts.password or "", parts.query]
        # A receiver may echo one query value alone (``token=abc`` -> ``abc``).
        values += [value for _, value in urllib.parse.parse_qsl(parts.query) if len(value) >= 4]
        if parts.path.strip("/"):
            values.append(parts.path)
        if self.auth:
            values.append(self.auth)
            values.append(self.auth.partition(" ")[2])  # the credentials after "Bearer "
        if self.secret:
            values.append(self.secret)
            values.append(self.secret.removeprefix(SECRET_PREFIX))
        # Longest first, so that a secret is masked whole before any part of it.
        return tuple(sorted({v for v in values if v}, key=len, reverse=True))
