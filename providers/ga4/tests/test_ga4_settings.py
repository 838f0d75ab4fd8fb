"""GA4's variables: what enables it, what is refused, and the API secret never shown (it travels
in every request's URL)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pytest
from tracking_ga4 import GA4Provider, GA4Settings
from tracking_ga4.fake import GA4Fake
from tracking_ga4.provider import DEFAULT_HOST

import tracking_core
from tracking_core import SettingsError
from tracking_core.receivers import LoopbackReceiver, ReceivedRequest, Reply


def test_enabled_by_the_measurement_id_and_the_api_secret() -> None:
    assert GA4Settings.from_environ({}) is None
    with pytest.raises(SettingsError) as caught:  # half a configuration is said
        GA4Settings.from_environ({"GA4_API_SECRET": "s3cret-value"})
    assert caught.value.variable == "GA4_MEASUREMENT_ID"
    settings = GA4Settings.from_environ(
        {"GA4_MEASUREMENT_ID": " G-ABC123XYZ0 ", "GA4_API_SECRET": "s3cret-value"}
    )
    assert settings is not None
    assert (settings.measurement_id, settings.api_secret) == ("G-ABC123XYZ0", "s3cret-value")
    assert settings.host == DEFAULT_HOST == "https://www.google-analytics.com"
    assert settings.secrets() == ("s3cret-value",)
    assert "s3cret-value" not in repr(settings)
    eu = GA4Settings.from_environ(
        {
            "GA4_MEASUREMENT_ID": "G-ABC123XYZ0",
            "GA4_API_SECRET": "s3cret-value",
            "GA4_HOST": "https://region1.google-analytics.com/",
        }
    )
    assert eu is not None and eu.host == "https://region1.google-analytics.com"


@pytest.mark.parametrize(
    ("environ", "variable"),
    [
        ({"GA4_MEASUREMENT_ID": "G-ABC123XYZ0"}, "GA4_API_SECRET"),
        (
            {"GA4_MEASUREMENT_ID": "UA-12345-1", "GA4_API_SECRET": "s3cret-value"},
            "GA4_MEASUREMENT_ID",
        ),
        (
            {"GA4_MEASUREMENT_ID": "1:1234:android:ab", "GA4_API_SECRET": "x" * 12},
            "GA4_MEASUREMENT_ID",
        ),
        (
            {"GA4_MEASUREMENT_ID": "G-ABC", "GA4_API_SECRET": "k", "GA4_HOST": "ga.example"},
            "GA4_HOST",
        ),
    ],
)
def test_a_bad_value_names_its_variable(environ: dict[str, str], variable: str) -> None:
    with pytest.raises(SettingsError) as caught:
        GA4Settings.from_environ(environ)
    assert caught.value.variable == variable
    assert "s3cret-value" not in str(caught.value)


def test_the_secret_can_come_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_text("from-a-file-secret\n", encoding="utf-8")
    settings = GA4Settings.from_environ(
        {"GA4_MEASUREMENT_ID": "G-ABC123XYZ0", "GA4_API_SECRET_FILE": str(path)}
    )
    assert settings is not None and settings.api_secret == "from-a-file-secret"
    assert "from-a-file-secret" not in repr(GA4Provider(settings))


def test_the_secret_in_the_url_never_reaches_a_log_line(
    enable: Callable[..., None],
    server: LoopbackReceiver,
    fake: GA4Fake,
    secret: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def echo(request: ReceivedRequest) -> Reply:
        # A proxy that quotes the whole request line back, query string included.
        fake(request)
        query = "&".join(f"{key}={value}" for key, value in request.query.items())
        return Reply(400, f"bad request to {request.path}?{query}")

    server.responder = echo
    enable(TRACKING_DEBUG="1")
    caplog.set_level(logging.DEBUG)
    tracking_core.track("shown", user_id="u-1")
    assert tracking_core.flush_tracking(10)
    stats = tracking_core.tracking_stats()["ga4"]
    assert dict(stats.dropped) == {"rejected": 1}
    text = "\n".join(record.getMessage() for record in caplog.records)
    assert "bad request to /mp/collect" in text
    for form in (secret, secret.replace("/", "%2F").replace("+", "%2B")):
        assert form not in text
        assert form not in (stats.last_error or "")
