"""``agentloop replay`` and ``agentloop resume``: run a recorded trace again.

``replay`` needs nothing but the trace: the agent is rebuilt from its header and every model
response and tool result is served from the recording. ``--tools``, ``--model`` and
``--instructions`` (or a whole ``--agent`` file) swap in current code, another model or another
prompt, to see where the run departs from the recording (``--live-tools``, ``--live-model``) or
to continue live from a step (``--fork-at``). ``resume`` continues a run that did not finish.

Without ``--model`` or ``--agent``, a live model is the recorded one with its recorded options,
and only if its endpoint is the one configured here (``OPENAI_BASE_URL`` or the default): a
trace never decides where your API key goes. ``--trust-trace`` uses the recorded endpoint or
model file, the recorded ``settings.extra`` and limits.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from agentloop.agent import Agent
from agentloop.agentfile import load_agent
from agentloop.cli._output import (
    DEFAULT_TRACE_DIR,
    EXIT_CODES,
    EXIT_FAILED,
    EXIT_OK,
    add_model_options,
    out,
    positive_int,
    say,
)
from agentloop.cli.render import block, event_lines, one_line
from agentloop.cli.run import add_mcp_options, mcp_servers, run_and_report
from agentloop.cli.streamed import TextPrinter, show_stream
from agentloop.cli.traces import find_trace
from agentloop.errors import UserError
from agentloop.events import ModelRequested
from agentloop.loading import load_tools
from agentloop.mcp.server import MCPServer
from agentloop.redaction import Redactor
from agentloop.replay.recording import Recording
from agentloop.replay.runner import (
    agent_from_trace,
    model_for,
    recorded_model,
    replay_stream,
    replay_sync,
    resume,
)
from agentloop.settings import USE_AGENT_DEFAULT
from agentloop.terminal import escape
from agentloop.trace import Trace, read_trace

REPLAY_EXIT_CODES = EXIT_CODES.replace(
    "  1    the run failed", "  1    the replay diverged from the recording, or the run failed"
)


def register(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    replaying = commands.add_parser(
        "replay",
        parents=[common],
        help="run a trace again offline and report where a changed agent departs from it",
        description=__doc__,
        epilog=REPLAY_EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _agent_options(replaying)
    replaying.add_argument(
        "--live-tools",
        action="store_true",
        help="run the tools (from --tools) and compare their results with the recording",
    )
    replaying.add_argument(
        "--live-model",
        action="store_true",
        help="ask the model (--model, or the recorded one) at every step and compare its actions",
    )
    replaying.add_argument(
        "--fork-at",
        metavar="K",
        type=int,
        help="serve steps before K from the recording, then continue live (another --model, "
        "--instructions or --tools)",
    )
    replaying.add_argument(
        "--lenient",
        action="store_true",
        help="note every divergence and go on (default: stop at the first)",
    )
    replaying.add_argument(
        "--step",
        action="store_true",
        help="walk the recorded run one step at a time (Enter for the next, q to stop)",
    )
    replaying.add_argument(
        "--stream",
        action="store_true",
        help="show the recorded text on stderr as a stream, word by word, as the replay runs",
    )
    replaying.add_argument(
        "--pace",
        action="store_true",
        help="stream at the recorded pace (time to first token, generation time); implies --stream",
    )
    replaying.add_argument("--json", action="store_true", help="print the report as JSON")
    replaying.set_defaults(handler=cmd_replay)

    resuming = commands.add_parser(
        "resume",
        parents=[common],
        help="continue a run that did not finish",
        description="Continue a run that was killed, crashed, was cancelled or hit a limit: the "
        "recorded steps are served from TRACE, a tool call that started but has no result is "
        "re-run only if its tool is idempotent (otherwise the model is told it was "
        "interrupted), and the run goes on live to a final answer in a new trace.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _agent_options(resuming)
    resuming.add_argument(
        "--max-steps",
        metavar="N",
        type=positive_int,
        help="most model requests in the whole run, recorded steps included",
    )
    resuming.add_argument("--json", action="store_true", help="print a JSON result object")
    resuming.set_defaults(handler=cmd_resume)


def _agent_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("trace", metavar="TRACE", help="a trace file, or a run id in --trace-dir")
    parser.add_argument(
        "--trace-dir",
        metavar="DIR",
        default=DEFAULT_TRACE_DIR,
        help="where run ids are looked up and the new trace is written (default: ./traces)",
    )
    parser.add_argument(
        "--tools",
        metavar="PATH",
        action="append",
        default=None,
        help="the agent's tools now (a file or folder of @tool functions); repeat for more",
    )
    add_mcp_options(parser)  # a trace never chooses a command to run: MCP servers are named here
    add_live_agent_options(parser)


def add_live_agent_options(parser: argparse.ArgumentParser) -> None:
    """How a command that continues a recorded run live gets its agent: ``--agent``,
    ``--model`` (+ ``--model-option``), ``--instructions``, ``--trust-trace``."""
    parser.add_argument(
        "--agent",
        metavar="FILE",
        help="the agent now, from an agent file (its model, tools, instructions, settings)",
    )
    parser.add_argument(
        "--model",
        help="a model string (default: the recorded model, with its recorded options, if its "
        "endpoint is the one configured here)",
    )
    add_model_options(parser)
    parser.add_argument("--instructions", metavar="TEXT", help="new system instructions")
    parser.add_argument(
        "--trust-trace",
        action="store_true",
        help="let the trace header choose: the recorded endpoint (your API key goes there), "
        "model file, settings.extra and limits",
    )


def cmd_replay(args: argparse.Namespace) -> int:
    source = read_trace(find_trace(args.trace, Path(args.trace_dir)))
    if args.step:
        walk_steps(source)
    live = args.live_tools or args.live_model or args.fork_at is not None
    if (args.live_tools or args.fork_at is not None) and _needs_tools(source, args):
        raise UserError(
            "running tools live needs them: pass --tools PATH (the file or folder that defines "
            f"{', '.join(_tool_names(source))}) or --mcp/--mcp-url for an MCP server's"
        )
    wants_model = args.live_model or args.fork_at is not None
    changed = _gives_tools(args) or args.model or args.instructions is not None or args.agent
    agent = _agent(source, args, live_model=wants_model) if (live or changed) else None
    options: dict[str, Any] = {
        "tools": "live" if args.live_tools else "recorded",
        "model": "live" if args.live_model else "recorded",
        "fork_at": args.fork_at,
        "strict": not args.lenient,
        "trace_dir": args.trace_dir,
    }
    if args.stream or args.pace:
        stream = replay_stream(source, agent, pace=args.pace, **options)
        result = asyncio.run(show_stream(stream, TextPrinter(Redactor(), sys.stderr)))
    else:
        result = replay_sync(source, agent, **options)
    if result.trace_path is not None:
        say(f"replay trace: {escape(str(result.trace_path))}")
    if args.json:
        out(json.dumps(_replay_json(result.__dict__)))
    else:
        for line in result.report().splitlines():
            out(escape(line))
    return EXIT_FAILED if result.diverged else EXIT_OK


def cmd_resume(args: argparse.Namespace) -> int:
    source = read_trace(find_trace(args.trace, Path(args.trace_dir)))
    if source.output is not None:
        raise UserError(f"run {source.run_id} already finished; nothing to resume")
    if _needs_tools(source, args):
        raise UserError(
            f"resuming runs the tools live: pass --tools PATH for {', '.join(_tool_names(source))}"
        )
    agent = _agent(source, args, live_model=True)
    agent.trace_dir = Path(args.trace_dir)
    recording = Recording(source)
    for call in recording.interrupted_calls():
        idempotent = agent.tools.get(call.name) is not None and agent.tools[call.name].idempotent
        what = (
            "runs again (idempotent)" if idempotent else "is reported to the model as interrupted"
        )
        say(f"interrupted call {escape(call.call_id)} to {escape(call.name)} {what}")
    for call in recording.failed_calls():
        idempotent = agent.tools.get(call.name) is not None and agent.tools[call.name].idempotent
        what = "runs again (idempotent)" if idempotent else "shows the model its recorded error"
        say(f"failed call {escape(call.call_id)} to {escape(call.name)} {what}")
    max_steps = args.max_steps if args.max_steps is not None else USE_AGENT_DEFAULT
    return run_and_report(
        args,
        agent,
        lambda listener: resume(source, agent, max_steps=max_steps, listener=listener),
    )


def _agent(source: Trace, args: argparse.Namespace, *, live_model: bool) -> Agent:
    return live_agent(source, args, live_model=live_model)


def live_agent(source: Trace, args: argparse.Namespace, *, live_model: bool) -> Agent:
    """The agent a command continues ``source`` with, from the options of
    ``add_live_agent_options`` (and ``--tools``). ``live_model``: the model will be asked, so
    without ``--model``/``--agent`` the recorded one is rebuilt (if the rules allow)."""
    options = dict(getattr(args, "model_options", []) or [])
    if options and args.agent and not args.model:
        raise UserError("--model-option needs --model with --agent (the file sets model_options)")
    model = model_for(args.model, source, options) if args.model else None
    if args.agent:
        if (
            getattr(args, "tools", None) is not None
            or getattr(args, "instructions", None) is not None
        ):
            raise UserError("with --agent, put tools and instructions in the agent file")
        return load_agent(args.agent, model=model, trace_dir=args.trace_dir, mcp=_mcp(args))
    if model is None and live_model:
        model = recorded_model(source, trust=args.trust_trace, options=options)
    return agent_from_trace(
        source,
        model=model,
        tools=[*load_tools(args.tools or []), *_mcp(args)] if _gives_tools(args) else None,
        instructions=getattr(args, "instructions", None),
        trust=args.trust_trace,
    )


def _tool_names(source: Trace) -> list[str]:
    """Every tool the run offered (one an MCP server added mid-run included)."""
    return [str(t.get("name")) for t in source.tools()]


def _mcp(args: argparse.Namespace) -> list[MCPServer]:
    return mcp_servers(args) if hasattr(args, "mcp") else []


def _gives_tools(args: argparse.Namespace) -> bool:
    return getattr(args, "tools", None) is not None or bool(_mcp(args))


def _needs_tools(source: Trace, args: argparse.Namespace) -> bool:
    return not _gives_tools(args) and not args.agent and bool(_tool_names(source))


def walk_steps(trace: Trace) -> None:
    """Show the recorded run a step at a time: what the model saw, said, and got back."""
    interactive = sys.stdin.isatty()
    for number, lines in enumerate(_steps(trace)):
        if number and interactive:
            print(f"-- Enter for step {number}, q to stop --", end=" ", file=sys.stderr, flush=True)
            if sys.stdin.readline().strip().lower() == "q":
                return
        for line in lines:
            out(line)


def _steps(trace: Trace) -> Iterator[list[str]]:
    lines: list[str] = [f"run {escape(trace.run_id)}: {one_line(trace.header.task, 200)}"]
    for event in trace.events:
        if isinstance(event, ModelRequested):
            if event.step:
                yield lines
                lines = []
            lines.append(
                f"== step {event.step}: the model sees {len(event.messages)} new message(s)"
            )
            for message in event.messages:
                text = getattr(message, "content", None) or ""
                lines.extend(block(message.role, str(text), 500))
        else:
            lines.extend(event_lines(event, 500))
    yield lines


def _replay_json(fields: dict[str, Any]) -> dict[str, Any]:
    data = dict(fields)
    data["divergence"] = fields["divergence"].model_dump() if fields["divergence"] else None
    data["divergences"] = [d.model_dump() for d in fields["divergences"]]
    data["trace_path"] = str(fields["trace_path"]) if fields["trace_path"] else None
    return json.loads(json.dumps(data, default=str))  # type: ignore[no-any-return]
