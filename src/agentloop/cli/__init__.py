"""The ``agentloop`` command: run an agent from the terminal, list and show its traces.

Built on the stdlib ``argparse``, with no terminal library. stdout carries only data (the final
answer, ``--json`` objects, trace listings); progress, warnings and logs go to stderr. Text that
comes from a model, a tool or a trace is escaped before it is printed
(``agentloop.terminal.escape``).

Exit codes: 0 success; 1 the run failed (a limit, a model error, a tool error); 2 a usage or
configuration error (bad arguments, unknown model string, missing tool file or trace); 130
cancelled with Ctrl-C.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from agentloop import __version__
from agentloop.cli import chat, dataset, evals, improve, mcp, replay, run, traces, view
from agentloop.cli._output import (
    EXIT_CANCELLED,
    EXIT_CODES,
    EXIT_FAILED,
    EXIT_USAGE,
    logging_to_stderr,
    message,
    say,
)
from agentloop.errors import AgentLoopError
from agentloop.redaction import register_secrets
from agentloop.terminal import escape

__all__ = ["build_parser", "main"]

SECRET_ENV = ("OPENAI_API_KEY",)
"""Environment variables whose values the CLI masks in everything it writes."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``agentloop`` command with ``argv`` (default: ``sys.argv[1:]``); return the exit
    code. Called without ``argv`` it is the program itself and may end the process early."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error already printed
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    args.standalone = argv is None
    # A new process knows no run's secrets: mask the API keys in its environment everywhere
    # it writes (annotations, exports, replays, logs).
    register_secrets(*(os.environ.get(name, "") for name in SECRET_ENV))
    if args.handler is None:
        args.help_parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        with logging_to_stderr(verbose=args.verbose):
            code: int = args.handler(args)
    except KeyboardInterrupt:
        say("cancelled")
        code = EXIT_CANCELLED
    except BrokenPipeError:  # stdout closed early (`agentloop traces show x | head`)
        if args.standalone:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        code = EXIT_FAILED
    except (AgentLoopError, OSError) as exc:
        say(f"error: {escape(message(exc))}")
        code = EXIT_USAGE
    return code


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

    run.register(commands, common)
    chat.register(commands, common)
    traces.register(commands, common)
    replay.register(commands, common)
    improve.register(commands, common)
    evals.register(commands, common)
    dataset.register(commands, common)
    view.register(commands, common)
    mcp.register(commands, common)
    return parser
