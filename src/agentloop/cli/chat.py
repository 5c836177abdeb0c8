"""``agentloop chat``: a conversation with an agent in the terminal.

Each line you type is one turn (one run, with its own trace linked to the conversation); the
answer goes to stdout as the model writes it (``--no-stream``: once complete) and each step to
stderr as it happens. Ctrl-C during a turn cancels that turn (recorded as ``run_cancelled``)
and keeps the session; an empty line, ``/exit``, Ctrl-D or Ctrl-C at the prompt ends it.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from agentloop.approval import terminal_approver
from agentloop.cli._output import EXIT_CODES, EXIT_OK, message, out, say
from agentloop.cli.run import _Progress, add_agent_options, build_agent
from agentloop.cli.streamed import TextPrinter, show_stream
from agentloop.conversation import Conversation
from agentloop.errors import AgentLoopError
from agentloop.events import EventListener
from agentloop.result import RunResult
from agentloop.streaming import AgentStream
from agentloop.terminal import escape


def register(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    chat = commands.add_parser(
        "chat",
        parents=[common],
        help="chat with an agent in the terminal",
        description="Chat with an agent: each line is a turn (a run with its own trace, linked\n"
        "to the conversation). Ctrl-C cancels a turn; an empty line, /exit or Ctrl-D ends.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_agent_options(chat)
    chat.add_argument(
        "--conversation-id", metavar="ID", help="the conversation's id (default: a new one)"
    )
    chat.add_argument(
        "--no-stream",
        action="store_true",
        help="print each answer once it is complete, not as the model writes it",
    )
    chat.set_defaults(handler=cmd_chat)


def cmd_chat(args: argparse.Namespace) -> int:
    agent = build_agent(args)
    if agent.approver is None:
        agent.approver = terminal_approver()
    conversation = Conversation(agent, args.conversation_id)
    say(f"conversation {conversation.id} (an empty line or /exit ends it)")
    while True:
        try:
            sys.stderr.write("you> ")
            sys.stderr.flush()
            line = sys.stdin.readline()
        except KeyboardInterrupt:
            break
        task = line.strip()
        if not line or not task or task == "/exit":
            break
        progress = _Progress(agent.redact)
        printer = None if args.no_stream else TextPrinter(agent.redact)
        try:
            if printer is None:
                result = asyncio.run(conversation.run(task, listener=progress))
            else:
                stream = AgentStream(_turn(conversation, task), progress)
                result = asyncio.run(show_stream(stream, printer))
        except KeyboardInterrupt:
            say("turn cancelled")
            continue
        except AgentLoopError as exc:
            say(f"error: turn failed: {escape(agent.redact(message(exc)))}")
            continue
        if printer is None or not printer.output_shown:
            out(escape(agent.redact(str(result.output or ""))))
    say(f"{len(conversation.results)} turns; traces in {escape(str(args.trace_dir))}")
    return EXIT_OK


def _turn(
    conversation: Conversation[Any], task: str
) -> Callable[[EventListener], Coroutine[Any, Any, RunResult[Any]]]:
    """One turn of ``conversation``, started with the listener a stream gives it."""
    return lambda listener: conversation.run(task, listener=listener)
