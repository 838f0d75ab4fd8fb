"""Fixtures shared by the JSON Lines tests: a file in the test's temporary directory, the
strict fake that reads it back, and the environment.

The fixtures of `tracking_core.testing` (``tracking_env``, ``clean_tracking``, ...) are loaded by
the repository's root conftest.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from tracking_jsonl.fake import JsonlFake

import tracking_core

#: What every ``env(...)`` starts from: only this plugin, none of its variables and no engine
#: setting from the surrounding environment (None removes a variable).
BASE_ENVIRONMENT: dict[str, str | None] = {
    "TRACKING_JSONL_PATH": None,
    "TRACKING_JSONL_MAX_BYTES": None,
    "TRACKING_JSONL_BACKUPS": None,
    "TRACKING_DISABLED": None,
    "TRACKING_DEBUG": None,
    "TRACKING_BATCH_SIZE": None,
    "TRACKING_PROVIDERS": "jsonl",
}


@pytest.fixture
def path(tmp_path: Path) -> Path:
    """The file the provider writes (it does not exist before the first line)."""
    return tmp_path / "events.jsonl"


@pytest.fixture
def fake(path: Path) -> JsonlFake:
    """The strict fake reading `path` (and its rotated copies) back."""
    return JsonlFake(str(path))


@pytest.fixture
def env(tracking_env: Callable[..., None]) -> Callable[..., None]:
    """``env(**variables)``: `BASE_ENVIRONMENT` plus `variables` (None removes one) on top of
    the core's fast delivery settings, then discovery runs again."""

    def configure(**variables: str | None) -> None:
        tracking_env(**{**BASE_ENVIRONMENT, **variables})

    return configure


@pytest.fixture
def enable(env: Callable[..., None], path: Path) -> Callable[..., None]:
    """``enable(**variables)``: the provider on, writing `path`; only `flush_tracking` (or a
    full batch) writes, as the flush interval is long."""

    def apply(**variables: str | None) -> None:
        defaults = {"TRACKING_JSONL_PATH": str(path), "TRACKING_FLUSH_INTERVAL": "30"}
        env(**{**defaults, **variables})
        assert tracking_core.list_tracking_providers() == ["jsonl"]

    return apply
