"""The JSON-lines provider's settings declaration: all that discovery reads while it is not
configured (the provider, in `tracking_jsonl.provider`, is imported once it is)."""

from __future__ import annotations

import dataclasses
import os

from tracking_core.kit import ProviderSettings, integer, var

__all__ = ["JsonlSettings"]


def _path(variable: str, text: str) -> str:
    """``-`` (standard output), else the path made absolute now: a later chdir moves nothing."""
    return text if text == "-" else os.path.abspath(os.path.expanduser(text))


@dataclasses.dataclass(frozen=True)
class JsonlSettings(ProviderSettings):
    """Where the lines go, and when the file is rotated."""

    path: str = var(
        "TRACKING_JSONL_PATH",
        "enables the provider: the file each line is appended to (created if missing); "
        "`-` is standard output",
        required=True,
        check=_path,
    )
    max_bytes: int = var(
        "TRACKING_JSONL_MAX_BYTES",
        "the file is rotated before a line would take it past this size; 0: never rotated",
        default="10000000",
        check=integer(0),
    )
    backups: int = var(
        "TRACKING_JSONL_BACKUPS",
        "rotated files kept: path.1 (the newest) to path.N; 0: never rotated",
        default="5",
        check=integer(0),
    )
