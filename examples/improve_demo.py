"""The `make improve-demo` script: the whole improvement loop, offline, on the embedded model.

1. run a small task set with agent version 1 (``agents/improve-v1.toml``: the bundled Gemma 3
   270M with the calculator), one trace per run;
2. apply a feedback file (``examples/improve-demo/feedback.jsonl``: a rating up, a rating down
   with a correction, an edit), as an application would with ``add_feedback``;
3. critique the down-rated run with the local model as judge, then revise it (fork at the first
   flagged step with the critique as guidance, judge the new branch);
4. build eval cases from the traces (``cases_from_traces``: corrections and well-rated answers,
   one per task) with a seeded train/test split;
5. export SFT examples and preference pairs (trajectories kept) in OpenAI's and TRL's formats,
   leaving out the test split's tasks, and check that nothing overlaps;
6. evaluate version 1 and version 2 (``agents/improve-v2.toml``: new instructions) on the cases
   and compare them.

It prints where each artifact is. ``run_demo`` takes any model (the tests pass a scripted one);
the embedded model is a 270M base model, so its answers and critiques are weak: the point is
the loop and its artifacts, not the model.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agentloop import AgentLoopError, Model, load_agent
from agentloop.evals import Dataset, cases_from_traces, compare, evaluate_sync, numeric, summarize
from agentloop.feedback import add_feedback, critique_sync, dpo_export, revise_sync, sft_export
from agentloop.feedback.critique import Principle, Rubric
from agentloop.feedback.export import Filters, example_task, read_traces, write_jsonl
from agentloop.feedback.signals import derived_from, normalize_task
from agentloop.models import infer_model
from agentloop.trace import Trace

ROOT = Path(__file__).resolve().parents[1]
HERE = ROOT / "examples" / "improve-demo"
AGENTS = (ROOT / "agents" / "improve-v1.toml", ROOT / "agents" / "improve-v2.toml")

DEMO_RUBRIC = Rubric(
    name="demo",
    principles=[
        Principle(name="correct", description="The final answer is the right number."),
        Principle(name="used_tools", description="The calculator did the arithmetic."),
    ],
)
"""Two principles keep the local judge's answers short (the default rubric has four)."""


def apply_feedback_file(path: Path, traces: list[Trace]) -> int:
    """Each line names a ``task`` (or a ``run_id``) and the feedback to record on that run
    (the newest original run of the task): ``rating``, ``comment``, ``correction``,
    ``signal``. Returns how many were recorded."""
    applied = 0
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        entry: dict[str, Any] = json.loads(line)
        runs = [
            t
            for t in traces
            if not derived_from(t)
            and (
                t.run_id == entry.get("run_id")
                or normalize_task(t.header.task) == normalize_task(str(entry.get("task", "")))
            )
        ]
        if not runs:
            raise SystemExit(
                f"{path}:{number}: no run of {entry.get('task') or entry.get('run_id')!r}"
            )
        target = max(runs, key=lambda t: t.header.created)
        fields = {k: entry[k] for k in ("rating", "comment", "correction", "signal") if k in entry}
        assert target.path is not None
        add_feedback(target.path, source="file", **fields)
        applied += 1
    return applied


def run_demo(
    out: Path,
    model: Model | str = "local",
    judge: Model | str | None = None,
    say: Callable[[str], None] = print,
) -> dict[str, Path]:
    """Run the loop into ``out``; returns each artifact's path by name."""
    started = time.monotonic()
    the_model = infer_model(model)
    the_judge = the_model if judge is None else infer_model(judge)
    traces_dir = out / "traces"
    v1, v2 = (load_agent(a, model=the_model, trace_dir=traces_dir) for a in AGENTS)
    tasks = [t for t in (HERE / "tasks.txt").read_text().splitlines() if t.strip()]

    def stage(text: str) -> None:
        say(f"[{time.monotonic() - started:5.0f} s] {text}")

    stage(f"1. running {len(tasks)} tasks with {AGENTS[0].name} ({v1.config_hash})")
    for task in tasks:
        result = v1.run_sync(task)
        stage(f"   {task!r} -> {result.output!r}")

    stage("2. applying examples/improve-demo/feedback.jsonl")
    applied = apply_feedback_file(HERE / "feedback.jsonl", list(read_traces([traces_dir])))
    stage(f"   {applied} feedback event(s) recorded")

    down = next(
        t for t in read_traces([traces_dir]) if any(f.rating == "down" for f in t.feedback())
    )
    assert down.path is not None
    stage(f"3. critiquing run {down.run_id} with the local judge")
    artifacts: dict[str, Path] = {"traces": traces_dir}
    try:
        judged = critique_sync(down.path, the_judge, DEMO_RUBRIC, progress=say)
        stage(f"   verdict {judged.critique.verdict} (overall {judged.overall:.2f})")
        stage("   revising it")
        revision = revise_sync(down.path, v2, the_judge, DEMO_RUBRIC, progress=say)
        stage(f"   revised run {revision.trace_path}; the judge prefers the {revision.preferred}")
        artifacts["revised run"] = revision.trace_path
    except AgentLoopError as exc:  # a 270M judge may fail to give a valid critique twice
        stage(f"   the judge gave no usable critique ({exc}); going on without a revision")

    stage("4. building eval cases from the traces")
    harvest = cases_from_traces(read_traces([traces_dir]))
    _train, test = harvest.split(1 / 3, seed=0)
    cases_all, cases_test = out / "cases.jsonl", out / "cases.test.jsonl"
    Dataset(harvest.cases, name="cases").to_jsonl(cases_all)
    if test:
        Dataset(test, name="test").to_jsonl(cases_test)
    else:
        cases_test.write_text("")
    stage(
        f"   {len(harvest.cases)} case(s), {len(test)} in the test split; skipped {harvest.skipped}"
    )

    stage("5. exporting fine-tuning data (the test split's tasks left out)")
    traces = list(read_traces([traces_dir]))
    filters = Filters(exclude_tasks=frozenset(normalize_task(c.input) for c in test))
    artifacts.update({"eval cases": cases_all, "test split": cases_test})
    for kind in ("sft", "dpo"):
        for fmt in ("openai", "trl"):
            export = (sft_export if kind == "sft" else dpo_export)(traces, filters)
            path = out / "export" / f"{kind}-{fmt}.jsonl"
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("w", encoding="utf-8") as file:
                written = write_jsonl(export, file, kind, fmt=fmt)  # type: ignore[arg-type]
            stage(f"   {path.name}: {written} line(s); skipped {dict(export.skipped)}")
            artifacts[f"{kind} ({fmt})"] = path
    test_tasks = {normalize_task(c.input) for c in test}
    overlap = [
        line
        for path in (out / "export").glob("*.jsonl")
        for line in path.read_text().splitlines()
        if normalize_task(example_task(json.loads(line)) or "") in test_tasks
    ]
    stage(f"   overlap with the test split: {len(overlap)} line(s)")

    stage(f"6. evaluating both versions on {cases_all.name}")
    runs = []
    for path, agent in zip(AGENTS, (v1, v2), strict=True):
        run = evaluate_sync(
            cases_all, agent, scorers=[numeric()], run_dir=out / "eval" / path.stem, concurrency=1
        )
        summary = summarize(run)
        stage(f"   {path.stem}: {summary.passed}/{summary.attempts} passed")
        artifacts[f"eval {path.stem}"] = run.path
        runs.append(run)
    comparison = compare(runs[0], runs[1])
    delta = comparison.deltas[0] if comparison.deltas else None
    if delta is not None:
        stage(f"   {delta.metric}: {delta.a:.2f} -> {delta.b:.2f} (p = {delta.test.p_value:.2f})")
    stage("done; the artifacts:")
    for name, path in artifacts.items():
        say(f"  {name:<16} {path}")
    say(f"compare them again: agentloop eval compare {runs[0].path} {runs[1].path}")
    return artifacts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    parser.add_argument("--out", default=f"runs/improve-demo-{stamp}", help="where to write")
    parser.add_argument("--model", default="local", help="the agents' and the judge's model")
    args = parser.parse_args(argv)
    run_demo(Path(args.out), args.model)
    return 0


if __name__ == "__main__":
    sys.exit(main())
