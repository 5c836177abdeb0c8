"""``agentloop chat``: a conversation with an agent in the terminal.

Each line you type is one turn (one run, with its own trace linked to the conversation); the
answer goes to stdout and each step to stderr as it happens. Ctrl-C during a turn cancels that
turn (recorded as ``run_cancelled``) and keeps the session; an empty line, ``/exit``, Ctrl-D or
Ctrl-C at the prompt ends it.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from agentloop.approval import terminal_approver
from agentloop.cli._output import EXIT_CODES, EXIT_OK, message, out, say
from agentloop.cli.run import _Progress, add_agent_options, build_agent
from agentloop.conversation import Conversation
from agentloop.errors import AgentLoopError
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
        try:
            result = asyncio.run(conversation.run(task, listener=progress))
        except KeyboardInterrupt:
            say("turn cancelled")
            continue
        except AgentLoopError as exc:
            say(f"error: turn failed: {escape(agent.redact(message(exc)))}")
            continue
        out(escape(agent.redact(str(result.output or ""))))
    say(f"{len(conversation.results)} turns; traces in {escape(str(args.trace_dir))}")
    return EXIT_OK
