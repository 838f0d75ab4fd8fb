"""The peer benchmarks run (tiny: tracking-core and the stdlib floors) so that they cannot rot.

Benchmarks are not tests: nothing here looks at a timing. It only checks that the driver ran
every measurement and printed well-formed Markdown tables.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DRIVER = ROOT / "benchmarks" / "peers" / "driver.py"
CLIENTS = ["floor", "floor-sender", "tracking-core-1", "tracking-core-4"]
#: Each table and its rows: the floor in caller, asyncio and stalled, the floor sender in e2e,
#: asyncio and flaky, tracking-core everywhere.
TABLES = {
    "### Receiver capacity": 2,
    "### 1. Caller cost": 3,
    "### 2. End to end": 3,
    "### 3. Inside asyncio: a yield per event": 4,
    "### 4. Inside asyncio: a yield per 100 events": 4,
    "### 5. Stalled receiver": 3,
    "### 6. A flaky destination": 3,
    "### 7. Import and configure": 2,
}
TARGETS = "### tracking-core against the targets"


def _tables(text: str) -> dict[str, list[list[str]]]:
    """Each ``###`` heading's table: its rows (header first, separator dropped) as cells."""
    tables: dict[str, list[list[str]]] = {}
    heading = None
    for line in text.splitlines():
        if line.startswith("### "):
            heading = line
            tables[heading] = []
        elif heading is not None and line.startswith("|") and not line.startswith("|---"):
            tables[heading].append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return tables


pytestmark = pytest.mark.slow  # runs the peers benchmark driver (about 20 s)


@pytest.fixture(scope="module")
def output(tmp_path_factory: pytest.TempPathFactory) -> str:
    markdown = tmp_path_factory.mktemp("bench") / "tables.md"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRACKING_", "POSTHOG_"))}
    done = subprocess.run(
        [
            sys.executable,
            str(DRIVER),
            "--clients",
            ",".join(CLIENTS),
            "--events",
            "500",
            "--cap",
            "10",
            "--flush-timeout",
            "0.5",
            "--shutdown-budget",
            "0.5",
            "--import-repeat",
            "1",
            "--capacity-seconds",
            "0.3",
            "--jitter-ticks",
            "50",
            "--flaky-events",
            "300",
            "--flaky-cap",
            "10",
            "--flaky-settle",
            "0.5",
            "--output",
            str(markdown),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert markdown.read_text().strip() == done.stdout.strip()
    return done.stdout


def test_every_measurement_prints_a_table_with_a_row_per_client(output: str) -> None:
    tables = _tables(output)
    for heading, rows_expected in TABLES.items():
        assert heading in tables, f"missing {heading}"
        header, *rows = tables[heading]
        assert len(rows) == rows_expected, (heading, rows)
        for row in rows:
            assert len(row) == len(header), (heading, row)
            assert not any(cell.startswith("error") for cell in row), (heading, row)


def test_tracking_core_rows_carry_numbers_and_ratios(output: str) -> None:
    tables = _tables(output)
    for heading in list(TABLES)[1:]:
        header, *rows = tables[heading]
        assert header[-1].endswith("x"), header
        reference = next(r for r in rows if "tracking-core, 1 provider" in r[0])
        assert reference[-1] == "1.00x", (heading, reference)
        float(reference[1].replace(",", "").split()[0].removeprefix("flush(0.5):"))
    caller = tables["### 1. Caller cost"]
    dropped = caller[0].index("dropped")
    assert all(row[dropped] != "" for row in caller[1:])


def test_the_environment_and_the_targets_are_reported(output: str) -> None:
    assert "## Environment" in output
    assert "- Python: " in output
    assert "1 ms ticker with no client, 50 ticks (one run): worst " in output
    assert "- packages: tracking-core " in output
    header, *rows = _tables(output)[TARGETS]
    assert header == ["measurement", "target", "tracking-core", "met"]
    assert all(len(row) == len(header) and row[3] in ("yes", "**no**") for row in rows), rows
    measured = " ".join(row[0] for row in rows)
    for what in ("a yield per 100", "floor sender", "flaky destination: lost", "discovery"):
        assert what in measured or any(what in row[1] for row in rows), (what, rows)


def test_the_flaky_table_pairs_healthy_and_flaky_runs(output: str) -> None:
    assert "\n300 events to a destination that answers after" in output  # --flaky-events
    header, *rows = _tables(output)["### 6. A flaky destination"]
    assert header[1:5] == [
        "healthy events/s",
        "flaky events/s",
        "flaky / healthy",
        "before recovery",
    ]
    for row in rows:
        assert row[3].endswith("%") and row[4].endswith("%"), row
    floor_sender = next(row for row in rows if row[0].startswith("floor sender"))
    lost = header.index("lost")
    int(floor_sender[lost].replace(",", ""))  # a count, whatever it is
