"""``agentloop traces``: list, show and compare run traces."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from glob import escape as glob_escape
from pathlib import Path

from agentloop.cli._output import DEFAULT_TRACE_DIR, EXIT_FAILED, EXIT_OK, message, out, say
from agentloop.cli.render import SHOW_LIMIT, TraceSummary, one_line, trace_lines, trace_table
from agentloop.errors import TraceError, UserError
from agentloop.replay.divergence import TraceDiff, diff_traces
from agentloop.terminal import escape
from agentloop.trace import Trace, iter_trace_files, read_trace, trace_path


def register(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    traces = commands.add_parser(
        "traces",
        parents=[common],
        help="list or show traces",
        description="List or show run traces.",
    )
    traces.set_defaults(handler=None, help_parser=traces)
    trace_commands = traces.add_subparsers(title="commands", metavar="COMMAND")
    listing = trace_commands.add_parser(
        "list",
        parents=[common],
        help="one line per trace, newest first",
        description="One line per trace in DIR, newest first by start time: run id, start "
        "time (UTC), status, steps, model, config hash and the task's first line (after "
        "[replay of RUN] or [fork of RUN at step K] for a replay or fork).",
    )
    listing.add_argument(
        "dir",
        metavar="DIR",
        nargs="?",
        default=DEFAULT_TRACE_DIR,
        help="folder of traces (default: ./traces)",
    )
    listing.add_argument("--json", action="store_true", help="print a JSON array instead")
    listing.set_defaults(handler=cmd_traces_list)
    show = trace_commands.add_parser(
        "show",
        parents=[common],
        help="show a trace step by step",
        description="Show a trace step by step: what the model said, each tool call and its "
        "result, warnings, and how the run ended.",
    )
    show.add_argument(
        "trace",
        metavar="TRACE",
        help="a trace file, or a run id (or its unique start) in --trace-dir",
    )
    show.add_argument(
        "--trace-dir",
        metavar="DIR",
        default=DEFAULT_TRACE_DIR,
        help="where to look up a run id (default: ./traces)",
    )
    show.add_argument(
        "--full",
        action="store_true",
        help=f"do not cut long texts (default: {SHOW_LIMIT} characters each)",
    )
    show.set_defaults(handler=cmd_traces_show)
    diff = trace_commands.add_parser(
        "diff",
        parents=[common],
        help="compare two traces step by step",
        description="Compare two runs side by side, step by step (a fork and its parent, or two "
        "versions of an agent on the same task). Exit code 1 when they differ.",
    )
    diff.add_argument("left", metavar="A", help="a trace file or run id")
    diff.add_argument("right", metavar="B", help="a trace file or run id")
    diff.add_argument(
        "--trace-dir",
        metavar="DIR",
        default=DEFAULT_TRACE_DIR,
        help="where to look up run ids (default: ./traces)",
    )
    diff.add_argument("--width", type=int, default=60, help="characters per side (default 60)")
    diff.add_argument("--json", action="store_true", help="print the comparison as JSON")
    diff.set_defaults(handler=cmd_traces_diff)


def cmd_traces_list(args: argparse.Namespace) -> int:
    """One line per trace in the folder, newest first by when the run started (the header's
    ``created``, not the file's time: a copied or annotated trace keeps its place), or a JSON
    array."""
    folder = Path(args.dir)
    if not folder.is_dir():
        raise UserError(
            f"trace folder {folder} does not exist (runs write to ./traces unless given "
            "--trace-dir; pass the folder: agentloop traces list DIR)"
        )
    summaries = []
    for path in iter_trace_files(folder):
        try:
            summaries.append(TraceSummary.of(read_trace(path)))
        except TraceError as exc:
            say(f"skipped {escape(str(path))}: {escape(message(exc))}")
    summaries.sort(key=lambda s: (s.created, s.run_id), reverse=True)
    if args.json:
        out(json.dumps([s.to_json() for s in summaries], indent=2))
    elif summaries:
        for line in trace_table(summaries):
            out(line)
    else:
        say(f"no traces in {escape(str(folder))}")
    return EXIT_OK


def cmd_traces_show(args: argparse.Namespace) -> int:
    """The trace step by step; a crashed run's trace shows as incomplete."""
    trace = read_trace(find_trace(args.trace, Path(args.trace_dir)))
    for line in trace_lines(trace, limit=None if args.full else SHOW_LIMIT):
        out(line)
    return EXIT_OK


def cmd_traces_diff(args: argparse.Namespace) -> int:
    """Two traces side by side, step by step; exit 1 if they differ."""
    folder = Path(args.trace_dir)
    left = read_trace(find_trace(args.left, folder))
    right = read_trace(find_trace(args.right, folder))
    diff = diff_traces(left, right)
    if args.json:
        out(
            json.dumps(
                {
                    "first_difference": diff.first_difference,
                    "config": [d.model_dump(mode="json") for d in diff.config],
                    "steps": [
                        {"step": s.step, "same": s.same, "left": s.left, "right": s.right}
                        for s in diff.steps
                    ],
                }
            )
        )
    else:
        for line in diff_lines(left, right, diff, args.width):
            out(line)
    return EXIT_OK if diff.first_difference is None and not diff.config else EXIT_FAILED


def diff_lines(left: Trace, right: Trace, diff: TraceDiff, width: int) -> Iterator[str]:
    yield f"A  {escape(left.run_id)}  config {escape(left.header.config_hash)}"
    yield f"B  {escape(right.run_id)}  config {escape(right.header.config_hash)}"
    for divergence in diff.config:
        yield f"config differs: {escape(divergence.kind)} {escape(divergence.detail)}".rstrip()
    for step in diff.steps:
        mark = " " if step.same else "*"
        yield f"{mark} step {step.step}"
        for i in range(max(len(step.left), len(step.right))):
            a = one_line(step.left[i], width) if i < len(step.left) else ""
            b = one_line(step.right[i], width) if i < len(step.right) else ""
            yield f"{mark}   {a:<{width}} | {b}"
    first = diff.first_difference
    yield "same steps" if first is None else f"first difference at step {first}"


def find_trace(ref: str, trace_dir: Path) -> Path:
    """A trace file path, or the trace in ``trace_dir`` whose run id is or starts with ``ref``."""
    given = Path(ref)
    if given.is_file():
        return given
    if given.suffix == ".jsonl" or len(given.parts) > 1:
        raise UserError(f"trace file {ref} does not exist")
    exact = trace_path(trace_dir, ref)
    if exact.is_file():
        return exact
    matches = sorted(trace_dir.glob(f"{glob_escape(ref)}*.jsonl"))
    if len(matches) == 1:
        return matches[0]
    if matches:
        names = ", ".join(m.stem for m in matches[:5]) + (", ..." if len(matches) > 5 else "")
        raise UserError(f"run id {ref!r} is ambiguous in {trace_dir}: {names}")
    raise UserError(
        f"no trace {ref!r}: not a file, and no run id starting with it in {trace_dir} "
        "(pass --trace-dir DIR to look elsewhere)"
    )
