"""The ``agentloop`` command: run an agent from the terminal, list and show its traces.

Built on the stdlib ``argparse``, with no terminal library. stdout carries only data (the final
answer, ``--json`` objects, trace listings); progress, warnings and logs go to stderr. Text that
comes from a model, a tool or a trace is escaped before it is printed (``render.escape``).

Exit codes: 0 success; 1 the run failed (a limit, a model error, a tool error); 2 a usage or
configuration error (bad arguments, unknown model string, missing tool file or trace); 130
cancelled with Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from glob import escape as glob_escape
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import structlog

from agentloop import __version__
from agentloop.agent import Agent
from agentloop.errors import AgentLoopError, TraceError, UserError
from agentloop.events import BaseEvent, RunCancelled, RunFailed, RunFinished
from agentloop.loading import load_tools
from agentloop.render import (
    SHOW_LIMIT,
    TraceSummary,
    escape,
    event_lines,
    plural,
    result_json,
    trace_lines,
    trace_table,
    usage_json,
    usage_text,
)
from agentloop.result import RunResult
from agentloop.settings import USE_AGENT_DEFAULT
from agentloop.trace import iter_trace_files, read_trace, trace_path

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_CANCELLED = 130
DEFAULT_TRACE_DIR = "traces"
EXIT_CODES = """\
exit codes:
  0    success
  1    the run failed (a limit, a model error, a tool error); the message and the
       trace path are on stderr
  2    usage or configuration error (bad arguments, unknown model string, tool file or
       trace not found, a tool file that fails to import)
  130  cancelled with Ctrl-C (the trace ends with run_cancelled)
"""

P = ParamSpec("P")
T = TypeVar("T")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``agentloop`` command with ``argv`` (default: ``sys.argv[1:]``); return the exit
    code. Called without ``argv`` it is the program itself and may end the process early."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error already printed
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    args.standalone = argv is None
    if args.handler is None:
        args.help_parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        with logging_to_stderr(verbose=args.verbose):
            code: int = args.handler(args)
    except KeyboardInterrupt:
        _say("cancelled")
        code = EXIT_CANCELLED
    except BrokenPipeError:  # stdout closed early (`agentloop traces show x | head`)
        if args.standalone:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        code = EXIT_FAILED
    except (AgentLoopError, OSError) as exc:
        _say(f"error: {escape(_message(exc))}")
        code = EXIT_USAGE
    return code


# -- the parser --------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="agentloop",
        description="Run tool-using agents and read their traces.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"agentloop {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    common = argparse.ArgumentParser(add_help=False)  # -v also after the command
    common.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=argparse.SUPPRESS,
        help="log debug messages to stderr",
    )
    parser.set_defaults(handler=None, help_parser=parser)
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    run = commands.add_parser(
        "run",
        parents=[common],
        help="run an agent on a task",
        description="Run an agent on TASK. The final answer goes to stdout; each step is\n"
        "reported on stderr as it happens. The run's trace is written to --trace-dir.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("task", metavar="TASK", help="what the agent should do")
    run.add_argument(
        "--model",
        required=True,
        help="model string, e.g. 'openai:<name>' for an OpenAI-compatible endpoint "
        "(OPENAI_BASE_URL, OPENAI_API_KEY)",
    )
    run.add_argument(
        "--tools",
        metavar="PATH",
        action="append",
        default=[],
        help="a Python file of @tool functions, or a folder of such files (not recursive; "
        "names starting with '_' are skipped); repeat --tools for more",
    )
    run.add_argument(
        "--trace-dir",
        metavar="DIR",
        default=DEFAULT_TRACE_DIR,
        help="where the trace is written (default: ./traces)",
    )
    run.add_argument(
        "--max-steps",
        metavar="N",
        type=_positive_int,
        help="most model requests in the run (default: 20)",
    )
    run.add_argument("--instructions", metavar="TEXT", help="system instructions for the model")
    run.add_argument(
        "--json",
        action="store_true",
        help="print a JSON result object on stdout instead of the answer",
    )
    run.set_defaults(handler=cmd_run)

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
        description="One line per trace in DIR, newest first: run id, start time (UTC), "
        "status, steps, model, config hash and the task's first line.",
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
    return parser


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


@contextmanager
def logging_to_stderr(*, verbose: bool) -> Iterator[None]:
    """Within the block, the ``agentloop`` logger writes to stderr (WARNING and up, or DEBUG
    with ``--verbose``), one ``key=value`` line per record; afterwards it is as it was."""
    logger = logging.getLogger("agentloop")
    before = (logger.level, logger.propagate)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_EscapingFormatter())
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if verbose else logging.WARNING)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(before[0])
        logger.propagate = before[1]


class _EscapingFormatter(structlog.stdlib.ProcessorFormatter):
    """structlog's console rendering of stdlib records (with their ``extra`` fields), with
    control characters escaped."""

    def __init__(self) -> None:
        super().__init__(
            foreign_pre_chain=[structlog.stdlib.add_log_level, structlog.stdlib.ExtraAdder()],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.dev.ConsoleRenderer(colors=False),
            ],
        )

    def format(self, record: logging.LogRecord) -> str:
        return escape(super().format(record))


# -- agentloop run -----------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    """Run the agent, printing progress to stderr and the answer (or JSON) to stdout."""
    agent = Agent(
        args.model,
        tools=load_tools(args.tools),
        instructions=args.instructions,
        max_steps=args.max_steps if args.max_steps is not None else USE_AGENT_DEFAULT,
        trace_dir=args.trace_dir,
    )
    progress = _Progress(agent.redact)
    threads = _ToolThreads()
    try:
        result = asyncio.run(_watch(agent, args.task, progress, threads))
    except KeyboardInterrupt:
        code = _report_cancelled(args, agent, progress)
    except AgentLoopError as exc:
        code = _report_failed(args, agent, exc)
    else:
        code = _report_finished(args, agent, result)
    if threads.running and args.standalone:
        # A sync tool is still running in a thread (cancelled, or timed out): Python cannot
        # stop it, and a normal exit would wait for it. The trace is already closed.
        _say(f"leaving {plural(threads.running, 'tool call')} running in the background")
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


async def _watch(agent: Agent, task: str, progress: _Progress, threads: _ToolThreads) -> RunResult:
    asyncio.get_running_loop().set_default_executor(threads)
    async with agent.iter(task) as run:
        async for event in run:
            progress(event)
    return run.result


class _Progress:
    """Prints each event of a running run to stderr as it happens, redacted and escaped."""

    def __init__(self, redact: Callable[[str], str]) -> None:
        self.redact = redact
        self.run_id: str | None = None

    def __call__(self, event: BaseEvent) -> None:
        self.run_id = event.run_id
        if isinstance(event, RunFinished | RunFailed | RunCancelled):
            return  # the command reports how the run ended itself
        for line in event_lines(event):
            _say(self.redact(line))


class _ToolThreads(ThreadPoolExecutor):
    """The threads sync tools run in, counting the calls still running.

    Shutting down never waits: a call that was cancelled or timed out keeps its thread (Python
    threads cannot be stopped), and the CLI should not hang on it after the run has ended.
    """

    def __init__(self) -> None:
        super().__init__(thread_name_prefix="agentloop-tool")
        self._lock = threading.Lock()
        self.running = 0

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        with self._lock:
            self.running += 1
        try:
            future = super().submit(fn, *args, **kwargs)
        except BaseException:
            self._finished(None)
            raise
        future.add_done_callback(self._finished)
        return future

    def _finished(self, _: object) -> None:
        with self._lock:
            self.running -= 1

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        super().shutdown(wait=False, cancel_futures=True)


def _report_finished(args: argparse.Namespace, agent: Agent, result: RunResult) -> int:
    _say(
        f"finished: {plural(result.steps, 'step')}, {plural(result.tool_calls, 'tool call')}, "
        f"{usage_text(result.usage)}, {result.duration_s:.2f} s"
    )
    _say(f"trace: {escape(str(result.trace_path))}")
    if args.json:
        _emit_json(agent, result_json(result))
    else:
        _out(escape(agent.redact(result.output or "")))
    return EXIT_OK


def _report_failed(args: argparse.Namespace, agent: Agent, exc: AgentLoopError) -> int:
    reason = exc.partial.stop_reason if exc.partial else "error"
    _say(f"error: run failed ({reason}): {escape(agent.redact(_message(exc)))}")
    if exc.trace_path is not None:
        _say(f"trace: {escape(str(exc.trace_path))}")
    if args.json and exc.partial is not None:
        error = {"type": type(exc).__name__, "message": _message(exc)}
        _emit_json(agent, {**result_json(exc.partial), "error": error})
    return EXIT_USAGE if isinstance(exc, UserError) else EXIT_FAILED


def _report_cancelled(args: argparse.Namespace, agent: Agent, progress: _Progress) -> int:
    """After Ctrl-C: the run is already recorded as cancelled; say where, from its trace."""
    _say("cancelled")
    if progress.run_id is None:
        return EXIT_CANCELLED
    path = trace_path(Path(args.trace_dir), progress.run_id)
    _say(f"trace: {escape(str(path))}")
    if args.json:
        data: dict[str, Any] = {
            "output": None,
            "stop_reason": "cancelled",
            "trace_path": str(path),
            "run_id": progress.run_id,
            "config_hash": agent.config_hash,
        }
        try:
            end = read_trace(path).terminal
        except TraceError:
            end = None
        if isinstance(end, RunCancelled):
            data.update(steps=end.steps, usage=usage_json(end.usage), tool_calls=end.tool_calls)
        _emit_json(agent, data)
    return EXIT_CANCELLED


def _emit_json(agent: Agent, data: dict[str, Any]) -> None:
    # json.dumps escapes every control character (ensure_ascii), so the line is terminal-safe.
    _out(agent.redact(json.dumps(data)))


# -- agentloop traces --------------------------------------------------------------------------


def cmd_traces_list(args: argparse.Namespace) -> int:
    """One line per trace in the folder, newest first (or a JSON array)."""
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
            _say(f"skipped {escape(str(path))}: {escape(_message(exc))}")
    if args.json:
        _out(json.dumps([s.to_json() for s in summaries], indent=2))
    elif summaries:
        for line in trace_table(summaries):
            _out(line)
    else:
        _say(f"no traces in {escape(str(folder))}")
    return EXIT_OK


def cmd_traces_show(args: argparse.Namespace) -> int:
    """The trace step by step; a crashed run's trace shows as incomplete."""
    trace = read_trace(find_trace(args.trace, Path(args.trace_dir)))
    for line in trace_lines(trace, limit=None if args.full else SHOW_LIMIT):
        _out(line)
    return EXIT_OK


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


# -- output ------------------------------------------------------------------------------------


def _out(line: str) -> None:
    """Data, on stdout."""
    print(line, file=sys.stdout, flush=True)


def _say(line: str) -> None:
    """Progress and errors, on stderr."""
    print(line, file=sys.stderr, flush=True)


def _message(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        return f"{exc.filename}: {exc.strerror}"
    return str(exc) or type(exc).__name__


if __name__ == "__main__":
    sys.exit(main())
