"""The benchmark harness runs end to end at tiny sizes, so it cannot rot (timing is not a test)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.timeout(240)  # a dozen subprocesses; slow on a busy 2-core machine
def test_bench_quick_prints_every_table(tmp_path: Path) -> None:
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "run.py"),
            "--quick",
            "--json",
            str(tmp_path / "b.json"),
        ],
        capture_output=True,
        text=True,
        timeout=230,
        check=True,
    )
    for heading in (
        "## Per tool step",
        "## Side by side in one process",
        "## Concurrent runs",
        "## Evaluation",
        "## Streamed answer",
        "## Other",
        "## Targets",
    ):
        assert heading in out.stdout
    clients = (
        "| httpx |",
        "| openai |",
        "| agentloop |",
        "| agentloop-notrace |",
        "| agentloop-async-tool |",
        "| agentloop-otel |",
        "| httpx-streamed |",
        "| agentloop-streamed |",
        "| httpx-sse |",
        "| agentloop-stream |",
    )
    for client in clients:
        assert client in out.stdout
    assert "- tracing (serialize, redact values, write, flush) at K=1: " in out.stdout
    assert "- a sync tool's worker thread at K=1: " in out.stdout
    assert "over the raw loop: the trace " in out.stdout
    assert "per step at K=1 <= 1.3x raw httpx2, in one process (" in out.stdout
    assert "| agentloop at K=3 |" in out.stdout  # flatness, side by side too
    assert (tmp_path / "b.json").read_text().startswith("{")
