"""Facts the docs state about the code, checked against the code (issue #10, item 24)."""

from __future__ import annotations

import io
import re
from pathlib import Path

from tracking_core import demo, engine

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_design_states_the_dispatcher_chunk_the_engine_uses() -> None:
    text = (DOCS / "design.md").read_text()
    stated = re.search(r"takes up to ([\d,]+) intake items", text)
    assert stated is not None, "design.md no longer states the dispatcher's chunk"
    assert int(stated.group(1).replace(",", "")) == engine.DISPATCH_CHUNK


def test_no_page_says_providers_send_through_an_httpx_client() -> None:
    # They send through an httpx transport, without httpx.Client (see design.md).
    for page in DOCS.rglob("*.md"):
        for line in page.read_text().splitlines():
            if "httpx.Client" in line:
                assert re.search(r"without[^.]*httpx\.Client|`httpx\.Client` layer", line), (
                    f"{page.name}: {line.strip()}"
                )


def test_delivery_does_not_claim_uvicorn_flushes_on_its_own() -> None:
    text = (DOCS / "delivery.md").read_text()
    assert "such as gunicorn and uvicorn, already do" not in text
    assert "re-raises SIGTERM" in text  # the table says what uvicorn really does


def test_the_demo_table_says_what_its_numbers_count(clean_tracking: None) -> None:
    out = io.StringIO()
    assert demo.run_demo(out, events_per_worker=20, quiet=True) == 0
    header = next(line for line in out.getvalue().splitlines() if line.startswith("destination"))
    assert header.split()[:4] == ["destination", "events", "identifies", "requests"]
    assert "failed requests" in header and "events resent" in header
    assert "retries" not in header  # a bare count without a unit, before
