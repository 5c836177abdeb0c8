"""`make bench` (viewer part): the viewer's scale targets, timed through its ASGI app.

Targets (issue 17): the runs list of 10,000 runs answers in under a second (index warm, its
incremental refresh included), and a 10,000-step trace opens its first page in under a second.
The traces are synthetic but written with the runtime's own event models
(tests/viewer_corpus.py). Prints a table; ``--quick`` uses tiny sizes (a smoke test), and the
exit code is 1 when a target is missed at full size.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from starlette.testclient import TestClient  # noqa: E402

from agentloop.viewer import create_app  # noqa: E402
from viewer_corpus import many_runs, synthetic_trace  # noqa: E402

TARGET_S = 1.0


def timed(action: Callable[[], object], repeats: int = 5) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, no targets")
    args = parser.parse_args()
    runs, steps = (200, 200) if args.quick else (10_000, 10_000)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        many_runs(folder, runs)
        synthetic_trace(folder / "long" / "big.jsonl", run_id="big", created="2027", steps=steps)
        app = create_app([folder])
        index = app.state.viewer.index
        http = TestClient(app, base_url="http://127.0.0.1:8765")
        cold = timed(lambda: index.refresh(force=True), repeats=1)[0]

        def listing() -> None:
            index.refresh(force=True)  # what a page load after a second's pause pays
            assert http.get("/").status_code == 200

        def filtered() -> None:
            index.refresh(force=True)
            assert http.get("/", params={"text": "files", "status": "finished"}).status_code == 200

        def first_page() -> None:
            assert http.get("/runs/0/long/big.jsonl").status_code == 200

        rows = [
            (f"runs list, {runs + 1} runs", timed(listing)),
            (f"runs list filtered + searched, {runs + 1} runs", timed(filtered)),
            (f"run page 1 of a {steps}-step trace", timed(first_page)),
        ]
    print("## Viewer (median [min-max] over 5; target < 1 s)\n")
    print(f"index built cold over {runs + 1} traces: {cold:.2f} s (once per new folder)\n")
    print("| what | seconds | target |")
    print("|---|---|---|")
    missed = False
    for name, times in rows:
        median = statistics.median(times)
        ok = median < TARGET_S
        missed |= not ok
        verdict = "" if args.quick else ("met" if ok else "MISSED")
        print(f"| {name} | {median:.3f} [{min(times):.3f}-{max(times):.3f}] | {verdict} |")
    return 1 if missed and not args.quick else 0


if __name__ == "__main__":
    raise SystemExit(main())
