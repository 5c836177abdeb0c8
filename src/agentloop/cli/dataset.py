"""``agentloop dataset``: eval cases from recorded runs, and the train/eval overlap check.

    agentloop dataset from-traces DIR [DIR ...] -o cases.jsonl [--test-fraction F --seed N]
    agentloop dataset overlap TRAINING.jsonl CASES.jsonl

``from-traces`` writes one case per task from runs with a correction or a well-rated answer
(the source run in each case's metadata); with ``--test-fraction`` the test split goes to a
second file (``cases.test.jsonl`` beside ``cases.jsonl`` unless ``--test-output``).
``overlap`` lists the tasks a fine-tuning export shares with an eval dataset and exits 1 if
there are any.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from agentloop.cli._output import EXIT_FAILED, EXIT_OK, out, say
from agentloop.errors import UserError
from agentloop.evals.datasets import Case, Dataset
from agentloop.evals.from_traces import CaseFilters, cases_from_traces
from agentloop.feedback.export import example_task, read_traces
from agentloop.feedback.signals import normalize_task
from agentloop.terminal import escape


def register(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    parser = commands.add_parser(
        "dataset",
        parents=[common],
        help="build eval cases from traces; check training data against eval cases",
        description="from-traces: eval cases from recorded runs (task, expected answer from a "
        "correction or a well-rated answer, source run in metadata), one per task, optionally "
        "split into train and test with a seed. overlap: the tasks a fine-tuning export shares "
        "with an eval dataset (exit 1 if any).",
    )
    actions = parser.add_subparsers(title="actions", metavar="ACTION", required=True)
    harvest = actions.add_parser(
        "from-traces", parents=[common], help="eval cases from recorded runs"
    )
    harvest.add_argument("traces", metavar="TRACES", nargs="+", help="trace files or folders")
    harvest.add_argument("-o", "--output", metavar="FILE", required=True, help="cases (JSONL)")
    harvest.add_argument("--version", metavar="HASH", help="only runs of this agent version")
    harvest.add_argument(
        "--min-critique", type=float, metavar="X", help="a critique >= X makes an answer expected"
    )
    harvest.add_argument(
        "--min-score", type=float, metavar="X", help="an eval score >= X makes an answer expected"
    )
    harvest.add_argument(
        "--include-replays", action="store_true", help="keep replays, forks and resumes"
    )
    harvest.add_argument(
        "--test-fraction", type=float, metavar="F", help="put this share of cases in a test split"
    )
    harvest.add_argument("--seed", type=int, default=0, help="the split's seed (0)")
    harvest.add_argument(
        "--test-output", metavar="FILE", help="the test split (default: OUTPUT with .test.jsonl)"
    )
    harvest.set_defaults(handler=cmd_from_traces)
    overlap = actions.add_parser(
        "overlap", parents=[common], help="tasks shared by training data and eval cases"
    )
    overlap.add_argument("training", metavar="TRAINING", help="an export (any format)")
    overlap.add_argument("cases", metavar="CASES", nargs="+", help="eval datasets (JSONL)")
    overlap.set_defaults(handler=cmd_overlap)


def cmd_from_traces(args: argparse.Namespace) -> int:
    if args.test_fraction is not None and not 0 <= args.test_fraction <= 1:
        raise UserError("--test-fraction must be between 0 and 1")
    passed_over: list[str] = []
    traces = list(read_traces(args.traces, passed_over))
    for note in passed_over:
        say(f"not a trace, passed over: {escape(note)}")
    filters = CaseFilters(args.version, args.min_critique, args.min_score, args.include_replays)
    harvest = cases_from_traces(traces, filters)
    output = Path(args.output)
    if args.test_fraction is None:
        _write(output, harvest.cases)
        say(f"wrote {len(harvest.cases)} case(s) to {escape(str(output))}")
    else:
        train, test = harvest.split(args.test_fraction, args.seed)
        test_output = Path(args.test_output or output.with_suffix(".test.jsonl"))
        _write(output, train)
        _write(test_output, test)
        say(f"wrote {len(train)} train case(s) to {escape(str(output))}")
        say(f"wrote {len(test)} test case(s) to {escape(str(test_output))} (seed {args.seed})")
    say(f"from {len(traces)} trace(s)")
    for reason, count in sorted(harvest.skipped.items()):
        say(f"  skipped {count}: {escape(reason)}")
    return EXIT_OK


def cmd_overlap(args: argparse.Namespace) -> int:
    cases = {normalize_task(c.input): c.id for f in args.cases for c in Dataset.from_jsonl(f)}
    shared: dict[str, str] = {}
    lines = 0
    try:
        text = Path(args.training).read_text(encoding="utf-8")
    except OSError as exc:
        raise UserError(f"cannot read {args.training}: {exc.strerror}") from None
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            task = example_task(json.loads(line))
        except (ValueError, AttributeError):
            raise UserError(f"{args.training}:{number}: not a JSON object") from None
        lines += 1
        if task is not None and normalize_task(task) in cases:
            shared[cases[normalize_task(task)]] = task
    for case_id, task in sorted(shared.items()):
        out(f"{escape(case_id)}\t{escape(task)}")
    say(f"{len(shared)} eval case(s) share a task with {lines} training example(s)")
    return EXIT_FAILED if shared else EXIT_OK


def _write(path: Path, cases: list[Case]) -> None:
    if path.parent != Path():
        path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as file:
        for case in cases:
            file.write(case.model_dump_json(exclude_defaults=True) + "\n")
