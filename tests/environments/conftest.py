"""Shared by the environment tests (issue #13): where Python applications run, each exercised
with the real software, events counted at loopback fakes by their dedupe id.

``environment_report``: each scenario records one row through
``environment_report.add(page, setup=..., stop=..., destination=..., tracked=..., delivered=...,
counted=...)``. At the end of the session, when ``TRACKING_ENVIRONMENT_REPORT`` names a
directory, each page's rows are written there as ``<page>.md``, a Markdown table ready for
``docs/environments/<page>.md`` (the pages paste them; run
``TRACKING_ENVIRONMENT_REPORT=/tmp/env python -m pytest tests/environments`` to refresh them).
"""

from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

REPORT_VARIABLE = "TRACKING_ENVIRONMENT_REPORT"


@dataclasses.dataclass(frozen=True)
class EnvironmentRow:
    """One scenario's outcome. `counted`: events the library counted as dropped (and logged);
    `lost`: tracked, but neither delivered nor counted."""

    setup: str
    stop: str
    destination: str
    tracked: int
    delivered: int
    counted: int

    @property
    def lost(self) -> int:
        return max(0, self.tracked - self.delivered - self.counted)


class EnvironmentReport:
    """The rows recorded during the session, by page (thread-safe)."""

    def __init__(self) -> None:
        self.pages: dict[str, list[EnvironmentRow]] = {}
        self._lock = threading.Lock()

    def add(
        self,
        page: str,
        *,
        setup: str,
        stop: str,
        destination: str,
        tracked: int,
        delivered: int,
        counted: int = 0,
    ) -> EnvironmentRow:
        """Record one scenario of `page` (``gunicorn``, ``celery``, ...); returns the row."""
        row = EnvironmentRow(setup, stop, destination, tracked, delivered, counted)
        with self._lock:
            self.pages.setdefault(page, []).append(row)
        return row

    def markdown(self, page: str) -> str:
        """`page`'s rows as a Markdown table, sorted."""

        def cell(text: str) -> str:
            return " ".join(text.split()).replace("|", "\\|")

        lines = [
            "| setup | how it stopped | destination | tracked | delivered | counted as dropped "
            "| lost |",
            "|---|---|---|---|---|---|---|",
        ]
        with self._lock:
            rows = sorted(self.pages.get(page, []), key=lambda r: (r.setup, r.stop, r.destination))
        for row in rows:
            lines.append(
                f"| {cell(row.setup)} | {cell(row.stop)} | {cell(row.destination)} "
                f"| {row.tracked:,} | {row.delivered:,} | {row.counted:,} | {row.lost:,} |"
            )
        return "\n".join(lines) + "\n"


@pytest.fixture(scope="session")
def environment_report() -> Iterator[EnvironmentReport]:
    """The session's `EnvironmentReport`; written under ``$TRACKING_ENVIRONMENT_REPORT``."""
    report = EnvironmentReport()
    yield report
    target = os.environ.get(REPORT_VARIABLE)
    if target:
        directory = Path(target)
        directory.mkdir(parents=True, exist_ok=True)
        for page in report.pages:
            (directory / f"{page}.md").write_text(report.markdown(page), encoding="utf-8")
