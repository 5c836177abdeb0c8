"""``agentloop critique``, ``feedback`` and ``export``: from recorded runs to better agents.

``critique`` has a judge model score a run against a rubric (and, with ``--revise``, fork the
run at the first flagged step with the critique as guidance); ``feedback`` records a person's
rating, comment or correction; ``export`` turns traces into fine-tuning data.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Literal

from agentloop.cli import otel
from agentloop.cli._output import DEFAULT_TRACE_DIR, EXIT_OK, out, say
from agentloop.cli.replay import add_live_agent_options, live_agent
from agentloop.cli.traces import find_trace
from agentloop.errors import UserError
from agentloop.evals.datasets import Dataset
from agentloop.feedback.critique import critique_sync, revise_sync
from agentloop.feedback.export import Filters, dpo_export, read_traces, sft_export, write_jsonl
from agentloop.feedback.formats import FORMATS
from agentloop.feedback.human import add_feedback
from agentloop.feedback.signals import SIGNALS, normalize_task
from agentloop.models import infer_model
from agentloop.terminal import escape
from agentloop.trace import read_trace


def register(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    judging = commands.add_parser(
        "critique",
        parents=[common],
        help="have a judge model critique a run against a rubric",
        description="A judge model scores the run in TRACE against each principle of a rubric, "
        "lists problems per step, and gives a verdict. The critique is appended to the trace.",
    )
    judging.add_argument("trace", metavar="TRACE", help="a trace file or run id")
    judging.add_argument("--judge", required=True, help="the judge's model string")
    judging.add_argument(
        "--rubric", metavar="FILE", help="a TOML or JSON rubric (default: built in)"
    )
    judging.add_argument(
        "--revise",
        action="store_true",
        help="fork the run at the first flagged step with the critique as guidance, critique "
        "the new branch, and record which the judge prefers",
    )
    judging.add_argument(
        "--tools", metavar="PATH", action="append", default=None, help="tools, for --revise"
    )
    add_live_agent_options(judging)  # the agent --revise runs: --agent, --model, --trust-trace
    judging.add_argument("--trace-dir", metavar="DIR", default=DEFAULT_TRACE_DIR)
    judging.add_argument("--json", action="store_true", help="print the critique as JSON")
    judging.set_defaults(handler=cmd_critique)

    rating = commands.add_parser(
        "feedback",
        parents=[common],
        help="record a person's rating, comment, corrected answer or implicit signal",
        description="Append feedback to the run in TRACE (several may be recorded per run).",
    )
    rating.add_argument("trace", metavar="TRACE", help="a trace file or run id")
    rating.add_argument("--rating", choices=["up", "down"])
    rating.add_argument("--comment", metavar="TEXT")
    rating.add_argument(
        "--correction", metavar="TEXT", help="what the answer should have been; @FILE reads a file"
    )
    rating.add_argument(
        "--signal",
        choices=SIGNALS,
        help="implicit feedback: the user edited the answer (give the edit as --correction), "
        "regenerated it, copied it or abandoned the conversation",
    )
    rating.add_argument("--step", type=int, metavar="N", help="the step it is about (from 0)")
    rating.add_argument("--user", metavar="ID", help="who gave the feedback")
    rating.add_argument("--trace-dir", metavar="DIR", default=DEFAULT_TRACE_DIR)
    rating.set_defaults(handler=cmd_feedback)

    exporting = commands.add_parser(
        "export",
        parents=[common],
        help="write fine-tuning data (SFT examples or preference pairs) or OpenTelemetry spans "
        "from traces",
        description="sft: finished runs' conversations with their tools (a correction or an "
        "edit replaces the answer). dpo: preference pairs that keep the trajectory (the shared "
        "prefix, then each side's continuation with its tool calls and results) from "
        "corrections, preferred critique revisions and differently rated runs of the same "
        "task. --format openai writes OpenAI's fine-tuning formats (a pair whose sides hold "
        "tool calls does not fit OpenAI's preference format and is skipped); --format trl "
        "writes Hugging Face TRL's conversational formats. Replays, forks and resumes are left "
        "out unless --include-replays. Every line is redacted and validated; the count written "
        "and the reasons for skipping go to stderr. otel: send the runs as OpenTelemetry spans "
        "to an OTLP/HTTP endpoint (needs agentloop[otel]); span ids derive from the run ids, "
        "so exporting twice sends the same spans.",
    )
    exporting.add_argument(
        "kind",
        choices=["sft", "dpo", "preference", "otel"],
        help="dpo and preference are the same",
    )
    exporting.add_argument("traces", metavar="TRACES", nargs="+", help="trace files or folders")
    exporting.add_argument("-o", "--output", metavar="FILE", help="write here (default stdout)")
    exporting.add_argument(
        "--format", choices=FORMATS, default="openai", help="line format (default: openai)"
    )
    exporting.add_argument("--rating", choices=["up", "down"], help="sft: only runs rated so")
    exporting.add_argument("--min-critique", type=float, metavar="X", help="sft: critique >= X")
    exporting.add_argument("--min-score", type=float, metavar="X", help="sft: eval score >= X")
    exporting.add_argument("--version", metavar="HASH", help="sft: only this agent version")
    exporting.add_argument(
        "--include-replays",
        action="store_true",
        help="keep replays, forks and resumes (they copy other runs)",
    )
    exporting.add_argument(
        "--exclude-cases",
        metavar="FILE",
        action="append",
        default=[],
        help="leave out runs whose task is a case of this eval dataset (e.g. a test split)",
    )
    otel.add_arguments(exporting)
    exporting.set_defaults(handler=cmd_export)


def cmd_critique(args: argparse.Namespace) -> int:
    path = find_trace(args.trace, Path(args.trace_dir))
    judge = infer_model(args.judge)
    if args.revise:
        source = read_trace(path)
        if args.tools is None and not args.agent and source.header.agent.get("tools"):
            raise UserError(
                "--revise runs the agent again: pass --tools PATH for its tools (or --agent FILE)"
            )
        agent = live_agent(source, args, live_model=True)
        agent.trace_dir = Path(args.trace_dir)
        revision = revise_sync(source, agent, judge, args.rubric, progress=_progress)
        say(f"revised run: {escape(str(revision.trace_path))}")
        result = revision.original
        say(
            f"overall: original {revision.original.overall:.2f}, revised "
            f"{revision.revised.overall:.2f}; the judge prefers the {revision.preferred} run"
        )
    else:
        result = critique_sync(path, judge, args.rubric, progress=_progress)
    if args.json:
        out(json.dumps({**result.critique.model_dump(), "overall": result.overall}))
        return EXIT_OK
    found = result.critique
    out(f"verdict: {found.verdict} (overall {result.overall:.2f})")
    out(f"summary: {escape(found.summary)}")
    for score in found.scores:
        out(f"  {escape(score.principle)}: {score.score} - {escape(score.rationale)}")
    for problem in found.problems:
        out(f"  step {problem.step}: {escape(problem.problem)} Fix: {escape(problem.fix)}")
    if found.revised_answer:
        out(f"revised answer: {escape(found.revised_answer)}")
    return EXIT_OK


def _progress(line: str) -> None:
    say(escape(line))


def cmd_feedback(args: argparse.Namespace) -> int:
    correction = args.correction
    if correction is not None and correction.startswith("@"):
        correction = Path(correction[1:]).read_text(encoding="utf-8")
    path = find_trace(args.trace, Path(args.trace_dir))
    event = add_feedback(
        path,
        rating=args.rating,
        comment=args.comment,
        correction=correction,
        signal=args.signal,
        step=args.step,
        user_id=args.user,
        source="cli",
    )
    say(f"feedback recorded on run {escape(event.run_id)}")
    return EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    passed_over: list[str] = []
    traces = list(read_traces(args.traces, passed_over))
    for note in passed_over:
        say(f"not a trace, passed over: {escape(note)}")
    if args.kind == "otel":
        return otel.export(traces, args)
    excluded = frozenset(
        normalize_task(case.input)
        for file in args.exclude_cases
        for case in Dataset.from_jsonl(file)
    )
    filters = Filters(
        args.rating,
        args.min_critique,
        args.min_score,
        args.version,
        include_replays=args.include_replays,
        exclude_tasks=excluded,
    )
    kind: Literal["sft", "dpo"] = "sft" if args.kind == "sft" else "dpo"
    export = sft_export(traces, filters) if kind == "sft" else dpo_export(traces, filters)
    if args.output:
        with Path(args.output).open("w", encoding="utf-8") as file:
            written = write_jsonl(export, file, kind, fmt=args.format)
    else:
        # On stdout (often a terminal), every non-ASCII character is a JSON escape.
        written = write_jsonl(export, sys.stdout, kind, fmt=args.format, ensure_ascii=True)
    where = args.output or "stdout"
    say(
        f"wrote {written} {kind} example(s) to {escape(where)} from {len(traces)} "
        f"trace(s), {args.format} format"
    )
    for reason, count in sorted(export.skipped.items()):
        say(f"  skipped {count}: {escape(reason)}")
    return EXIT_OK
