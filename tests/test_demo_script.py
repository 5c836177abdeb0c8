"""`make demo` works: examples/demo.py runs the embedded model with the calculator, writes and
shows the trace, and replays it offline with no divergence (it broke once on a rename that no
test ran)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_the_demo_script_answers_writes_a_trace_and_replays_it(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "demo.py")],
        cwd=tmp_path,  # the script writes traces/ where it is run
        capture_output=True,
        text=True,
        timeout=290,
        env={**os.environ, "NO_COLOR": "1"},
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert "answer: " in out and "391" in out.split("answer: ", 1)[1].splitlines()[0]
    assert "calculator ->" in out and "run_finished" in out
    assert "the same answer, no divergence" in out
    [trace] = (tmp_path / "traces").glob("*.jsonl")
    assert f"agentloop traces show {trace.relative_to(tmp_path)}" in out
    assert list((tmp_path / "traces" / "replays").glob("*.jsonl"))
