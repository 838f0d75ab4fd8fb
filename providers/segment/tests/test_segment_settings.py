"""The package's two declarations: what enables each provider, what is refused, and the write
keys never shown (they travel as Basic credentials)."""

from __future__ import annotations

import base64
from collections.abc import Callable

import pytest
from tracking_segment import (
    RudderStackProvider,
    RudderStackSettings,
    SegmentProvider,
    SegmentSettings,
)
from tracking_segment.provider import DEFAULT_HOST, EU_HOST

import tracking_core
from tracking_core import SettingsError
from tracking_core.discovery import discover


def test_segment_is_enabled_by_its_write_key() -> None:
    assert SegmentSettings.from_environ({}) is None
    settings = SegmentSettings.from_environ({"SEGMENT_WRITE_KEY": " wk-123456789 "})
    assert settings is not None
    assert (settings.write_key, settings.host) == ("wk-123456789", DEFAULT_HOST)
    assert DEFAULT_HOST == "https://api.segment.io"
    eu = SegmentSettings.from_environ({"SEGMENT_WRITE_KEY": "wk-1", "SEGMENT_HOST": EU_HOST + "/"})
    assert eu is not None and eu.host == EU_HOST == "https://events.eu1.segmentapis.com"
    assert "wk-123456789" not in repr(settings) + repr(SegmentProvider(settings))


def test_rudderstack_needs_its_write_key_and_its_data_plane() -> None:
    with pytest.raises(SettingsError) as caught:  # half a configuration is said
        RudderStackSettings.from_environ({"RUDDERSTACK_DATA_PLANE_URL": "https://x.io"})
    assert caught.value.variable == "RUDDERSTACK_WRITE_KEY"
    with pytest.raises(SettingsError) as caught:
        RudderStackSettings.from_environ({"RUDDERSTACK_WRITE_KEY": "rs-key-12345678"})
    assert caught.value.variable == "RUDDERSTACK_DATA_PLANE_URL"
    settings = RudderStackSettings.from_environ(
        {
            "RUDDERSTACK_WRITE_KEY": "rs-key-12345678",
            "RUDDERSTACK_DATA_PLANE_URL": "https://acme.dataplane.rudderstack.com/",
        }
    )
    assert settings is not None
    assert settings.host == "https://acme.dataplane.rudderstack.com"
    assert "rs-key-12345678" not in repr(settings) + repr(RudderStackProvider(settings))


@pytest.mark.parametrize(
    "environ",
    [
        {"SEGMENT_WRITE_KEY": "wk-1", "SEGMENT_HOST": "api.segment.io"},
        {"RUDDERSTACK_WRITE_KEY": "rs-1", "RUDDERSTACK_DATA_PLANE_URL": "ftp://dataplane"},
    ],
)
def test_a_bad_url_names_its_variable(environ: dict[str, str]) -> None:
    settings = SegmentSettings if "SEGMENT_WRITE_KEY" in environ else RudderStackSettings
    with pytest.raises(SettingsError) as caught:
        settings.from_environ(environ)
    assert caught.value.variable in environ


def test_the_basic_credentials_are_masked_like_the_key() -> None:
    settings = SegmentSettings.from_environ({"SEGMENT_WRITE_KEY": "wk-masked-0123456789"})
    assert settings is not None
    token = base64.b64encode(b"wk-masked-0123456789:").decode()
    assert set(SegmentProvider(settings).secrets()) >= {"wk-masked-0123456789", token}


def test_one_package_two_entry_points_each_its_own_variables(
    tracking_env: Callable[..., None],
) -> None:
    reports = {r.name: r for r in discover(lambda provider: None, {})}
    assert reports["segment"].distribution == reports["rudderstack"].distribution
    assert reports["segment"].distribution == "tracking-segment"
    assert [s.name for s in reports["segment"].settings] == ["SEGMENT_WRITE_KEY", "SEGMENT_HOST"]
    assert [s.name for s in reports["rudderstack"].settings] == [
        "RUDDERSTACK_WRITE_KEY",
        "RUDDERSTACK_DATA_PLANE_URL",
    ]
    # TRACKING_PROVIDERS may name the distribution: both are then allowed.
    tracking_env(
        TRACKING_PROVIDERS="tracking-segment",
        SEGMENT_WRITE_KEY="wk-1",
        RUDDERSTACK_WRITE_KEY="rs-1",
        RUDDERSTACK_DATA_PLANE_URL="https://acme.dataplane.rudderstack.com",
    )
    assert sorted(tracking_core.list_tracking_providers()) == ["rudderstack", "segment"]
    # A bad RudderStack value disables RudderStack only.
    tracking_env(
        TRACKING_PROVIDERS="tracking-segment",
        SEGMENT_WRITE_KEY="wk-1",
        RUDDERSTACK_WRITE_KEY="rs-1",
        RUDDERSTACK_DATA_PLANE_URL="not a url",
    )
    assert tracking_core.list_tracking_providers() == ["segment"]
