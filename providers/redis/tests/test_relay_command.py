"""``tracking relay`` is a command of the ``tracking`` CLI, added by the installed package."""

from __future__ import annotations

import io

import pytest

from tracking_core import cli


def test_the_tracking_cli_has_the_relay_command_of_the_installed_package(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["relay", "--help"])
    assert exited.value.code == 0
    shown = capsys.readouterr().out
    assert "usage: tracking relay" in shown and "--stats" in shown


def test_the_relay_needs_the_redis_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRACKING_REDIS_URL", raising=False)
    monkeypatch.delenv("TRACKING_REDIS_URL_FILE", raising=False)
    out = io.StringIO()
    assert cli.main(["relay"], out) == 2
    assert "TRACKING_REDIS_URL" in out.getvalue()
