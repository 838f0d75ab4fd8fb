"""Fixtures shared by the OTLP tests: the strict Collector fake on 127.0.0.1 and the environment.

The fixtures of `tracking_core.testing` (``tracking_env``, ``clean_tracking``, ...) are loaded by
the repository's root conftest.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from tracking_otlp.fake import OtlpFake

import tracking_core
from tracking_core.receivers import LoopbackReceiver

#: The bearer token the tests configure and the fake expects (long enough that a log line
#: holding any part of it is noticed).
TOKEN = "otlp-S3cr3tToken-0123456789abcdef"
#: ``TRACKING_OTLP_HEADERS`` carrying it (W3C Baggage style: the space percent-encoded).
HEADERS = f"Authorization=Bearer%20{TOKEN},x-scope-orgid=tenant-7"

#: Every variable the provider reads, removed unless a test sets it, plus only this plugin.
BASE_ENVIRONMENT: dict[str, str | None] = {
    "TRACKING_OTLP_ENDPOINT": None,
    "TRACKING_OTLP_HEADERS": None,
    "TRACKING_OTLP_HEADERS_FILE": None,
    "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": None,
    "OTEL_EXPORTER_OTLP_ENDPOINT": None,
    "OTEL_EXPORTER_OTLP_LOGS_HEADERS": None,
    "OTEL_EXPORTER_OTLP_HEADERS": None,
    "OTEL_SERVICE_NAME": None,
    "OTEL_RESOURCE_ATTRIBUTES": None,
    "TRACKING_DISABLED": None,
    "TRACKING_DEBUG": None,
    "TRACKING_BATCH_SIZE": None,
    "TRACKING_MAX_ATTEMPTS": None,
    "TRACKING_PROVIDERS": "otlp",
}


@pytest.fixture
def token() -> str:
    """`TOKEN`: what the fake expects and the tests look for in log lines."""
    return TOKEN


@pytest.fixture
def headers() -> str:
    """`HEADERS`: the value of ``TRACKING_OTLP_HEADERS`` that carries `TOKEN`."""
    return HEADERS


@pytest.fixture
def fake() -> OtlpFake:
    """A strict Collector fake that wants `TOKEN` as a bearer token."""
    return OtlpFake(headers={"authorization": f"Bearer {TOKEN}"})


@pytest.fixture
def server(fake: OtlpFake) -> Iterator[LoopbackReceiver]:
    """The fake, served on 127.0.0.1."""
    with LoopbackReceiver(fake) as receiver:
        yield receiver


@pytest.fixture
def env(tracking_env: Callable[..., None]) -> Callable[..., None]:
    """``env(**variables)``: `BASE_ENVIRONMENT` plus `variables` (None removes one) on top of
    the core's fast delivery settings, then discovery runs again."""

    def configure(**variables: str | None) -> None:
        tracking_env(**{**BASE_ENVIRONMENT, **variables})

    return configure


@pytest.fixture
def enable(env: Callable[..., None], server: LoopbackReceiver) -> Callable[..., None]:
    """``enable(**variables)``: the provider on against the fake with `HEADERS`; only
    `flush_tracking` (or a full batch) sends, as the flush interval is long."""

    def apply(**variables: str | None) -> None:
        defaults = {
            "TRACKING_OTLP_ENDPOINT": server.url,
            "TRACKING_OTLP_HEADERS": HEADERS,
            "TRACKING_FLUSH_INTERVAL": "30",
        }
        env(**{**defaults, **variables})
        assert tracking_core.list_tracking_providers() == ["otlp"]

    return apply
