"""``agentloop run``: run an agent on a task, with live progress on stderr."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from agentloop.agent import Agent
from agentloop.agentfile import load_agent
from agentloop.approval import terminal_approver
from agentloop.cli._output import (
    DEFAULT_TRACE_DIR,
    EXIT_CANCELLED,
    EXIT_CODES,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    add_model_options,
    message,
    out,
    positive_int,
    say,
)
from agentloop.cli.render import event_lines, plural, result_json, usage_json, usage_text
from agentloop.cli.streamed import TextPrinter, streamed_run
from agentloop.errors import AgentLoopError, TraceError, UserError
from agentloop.events import BaseEvent, EventListener, RunCancelled, RunFailed, RunFinished
from agentloop.loading import load_tools
from agentloop.mcp.config import server_from_option
from agentloop.mcp.server import MCPServer
from agentloop.models import infer_model
from agentloop.result import RunResult
from agentloop.settings import USE_AGENT_DEFAULT
from agentloop.terminal import escape
from agentloop.tools import Tool, ToolSource
from agentloop.trace import read_trace, trace_path

P = ParamSpec("P")
T = TypeVar("T")


def register(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    run = commands.add_parser(
        "run",
        parents=[common],
        help="run an agent on a task",
        description="Run an agent on TASK. The model's text goes to stdout as it is written\n"
        "(with --no-stream or --json: the final answer once complete); each step is\n"
        "reported on stderr as it happens. The run's trace is written to --trace-dir.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("task", metavar="TASK", help="what the agent should do")
    add_agent_options(run)
    run.add_argument(
        "--json",
        action="store_true",
        help="print a JSON result object on stdout instead of the answer (never streamed)",
    )
    run.add_argument(
        "--no-stream",
        action="store_true",
        help="print the answer once it is complete, not as the model writes it",
    )
    run.set_defaults(handler=cmd_run)


def add_agent_options(parser: argparse.ArgumentParser) -> None:
    """The options that choose an agent (``run`` and ``chat``)."""
    parser.add_argument(
        "--model",
        help="model string, e.g. 'openai:<name>' for an OpenAI-compatible endpoint "
        "(OPENAI_BASE_URL, OPENAI_API_KEY); with --agent, replaces the file's model",
    )
    add_model_options(parser)
    parser.add_argument(
        "--agent",
        metavar="FILE",
        help="an agent file (TOML: model, instructions, tools, settings, limits); "
        "--model and --max-steps override it",
    )
    parser.add_argument(
        "--tools",
        metavar="PATH",
        action="append",
        default=[],
        help="a Python file of @tool functions, or a folder of such files (not recursive; "
        "names starting with '_' are skipped); repeat --tools for more",
    )
    add_mcp_options(parser)
    parser.add_argument(
        "--otel",
        action="store_true",
        help="also send runs as OpenTelemetry spans to the endpoint the OTEL_* environment "
        "names (OTEL_EXPORTER_OTLP_ENDPOINT...; needs agentloop[otel])",
    )
    parser.add_argument(
        "--trace-dir",
        metavar="DIR",
        default=DEFAULT_TRACE_DIR,
        help="where the trace is written (default: ./traces)",
    )
    parser.add_argument(
        "--max-steps",
        metavar="N",
        type=positive_int,
        help="most model requests in the run (default: 20)",
    )
    parser.add_argument("--instructions", metavar="TEXT", help="system instructions for the model")


def cmd_run(args: argparse.Namespace) -> int:
    """Run the agent, printing progress to stderr and the answer (or JSON) to stdout."""
    agent = build_agent(args)
    if args.json or args.no_stream:
        return run_and_report(args, agent, lambda listener: agent.run(args.task, listener=listener))
    args.printer = TextPrinter(agent.redact)
    return run_and_report(args, agent, streamed_run(agent, args.task, args.printer))


def build_agent(args: argparse.Namespace) -> Agent:
    """The agent ``--agent``/``--model``/``--tools``/``--instructions``/``--max-steps`` name
    (shared by ``run`` and ``chat``)."""
    max_steps = args.max_steps if args.max_steps is not None else USE_AGENT_DEFAULT
    options = dict(args.model_options)
    if options and args.model is None:
        raise UserError("--model-option needs --model (an agent file sets model_options itself)")
    if args.agent is not None:
        if args.tools or args.instructions is not None:
            raise UserError("with --agent, put tools and instructions in the agent file")
        model = infer_model(args.model, **options) if args.model is not None else None
        otel = {"otel": True} if args.otel else {}  # else the file says
        agent = load_agent(
            args.agent,
            model=model,
            trace_dir=args.trace_dir,
            max_steps=max_steps,
            mcp=mcp_servers(args),
            **otel,
        )
        # With MCP servers, the version also covers what they serve: known once they are open
        # (the trace header has it).
        pending = " before its MCP servers' tools" if agent.tool_sources else ""
        say(f"agent {escape(args.agent)}, version {agent.config_hash}{pending}")
    elif args.model is None:
        raise UserError("give --model MODEL or --agent FILE")
    else:
        tools: list[Tool | Callable[..., Any] | ToolSource] = [
            *load_tools(args.tools),
            *mcp_servers(args),
        ]
        agent = Agent(
            infer_model(args.model, **options),
            tools=tools,
            instructions=args.instructions,
            max_steps=max_steps,
            trace_dir=args.trace_dir,
            otel=args.otel,
        )
    return agent


def add_mcp_options(parser: argparse.ArgumentParser) -> None:
    """``--mcp`` and ``--mcp-url``, shared by the commands that run agents."""
    parser.add_argument(
        "--mcp",
        metavar="COMMAND",
        action="append",
        default=[],
        help="an MCP server to start over stdio, e.g. --mcp 'npx -y some-server --flag'; "
        "its tools join the agent's (repeatable)",
    )
    parser.add_argument(
        "--mcp-url",
        metavar="URL",
        action="append",
        default=[],
        help="an MCP server to reach over Streamable HTTP (repeatable); credentials belong "
        "in an agent file's [[mcp]] headers, from the environment",
    )


def mcp_servers(args: argparse.Namespace) -> list[MCPServer]:
    """The servers ``--mcp`` and ``--mcp-url`` name, in that order."""
    return [
        *(server_from_option(command, url=False) for command in args.mcp),
        *(server_from_option(url, url=True) for url in args.mcp_url),
    ]


def run_and_report(
    args: argparse.Namespace,
    agent: Agent,
    start: Callable[[EventListener], Coroutine[Any, Any, RunResult]],
) -> int:
    """Run ``start(listener)`` (a run of ``agent``) with live progress on stderr, then report
    how it ended; the exit code. Shared by ``run`` and ``resume``."""
    progress = _Progress(agent.redact)
    threads = _ToolThreads()
    if agent.approver is None:  # asks on the terminal; denies when there is none
        agent.approver = terminal_approver()

    async def watched() -> RunResult:
        asyncio.get_running_loop().set_default_executor(threads)
        return await start(progress)

    try:
        result = asyncio.run(watched())
    except KeyboardInterrupt:
        code = _report_cancelled(args, agent, progress)
    except AgentLoopError as exc:
        code = _report_failed(args, agent, exc)
    else:
        code = _report_finished(args, agent, result)
    if threads.running and args.standalone:
        # A worker thread (a local model call, a DNS lookup, an approval prompt) is still
        # running after a cancel: Python cannot stop it, and a normal exit would wait for it.
        # (Sync tools run in daemon threads of their own, which never hold up exit.) The trace
        # is already closed.
        say(f"leaving {plural(threads.running, 'tool call')} running in the background")
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


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
            say(self.redact(line))


class _ToolThreads(ThreadPoolExecutor):
    """The run's default executor (``asyncio.to_thread``), counting the calls still running.

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
    say(
        f"finished: {plural(result.steps, 'step')}, {plural(result.tool_calls, 'tool call')}, "
        f"{usage_text(result.usage)}, {result.duration_s:.2f} s"
    )
    say(f"trace: {escape(str(result.trace_path))}")
    printer = getattr(args, "printer", None)
    if args.json:
        _emit_json(agent, result_json(result))
    elif printer is None or not printer.output_shown:
        out(escape(agent.redact(result.output or "")))
    return EXIT_OK


def _report_failed(args: argparse.Namespace, agent: Agent, exc: AgentLoopError) -> int:
    printer = getattr(args, "printer", None)
    if printer is not None:  # text streamed before the failure: end its line, keep no more
        printer.end_line()
    reason = exc.partial.stop_reason if exc.partial else "error"
    say(f"error: run failed ({reason}): {escape(agent.redact(message(exc)))}")
    if exc.trace_path is not None:
        say(f"trace: {escape(str(exc.trace_path))}")
    if args.json and exc.partial is not None:
        error = {"type": type(exc).__name__, "message": message(exc)}
        _emit_json(agent, {**result_json(exc.partial), "error": error})
    return EXIT_USAGE if isinstance(exc, UserError) else EXIT_FAILED


def _report_cancelled(args: argparse.Namespace, agent: Agent, progress: _Progress) -> int:
    """After Ctrl-C: the run is already recorded as cancelled; say where, from its trace."""
    say("cancelled")
    if progress.run_id is None:
        return EXIT_CANCELLED
    path = trace_path(Path(args.trace_dir), progress.run_id)
    say(f"trace: {escape(str(path))}")
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
    out(json.dumps(agent.redact.value(data)))
