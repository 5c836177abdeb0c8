"""Approvers: who says yes to a call of a tool marked ``requires_approval``.

An approver is any callable taking the validated ``ToolCall`` and returning a bool (or an
awaitable bool); ``Agent(approver=...)`` uses it. Without one, such calls are denied, and an
approver that raises counts as a denial (``dispatch``). Calls whose arguments do not validate
never reach an approver: they are rejected before dispatch.

``terminal_approver`` asks a person on a terminal, showing the tool and its full arguments with
control characters escaped, so a tool argument cannot repaint the prompt. It denies without
asking when its input is not a terminal, and on end of input.
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TextIO

from agentloop.terminal import escape

if TYPE_CHECKING:
    from agentloop.actions import ToolCall


def escape_controls(text: str, *, keep_newlines: bool = False) -> str:
    """``text`` with every control character escaped, newlines too unless ``keep_newlines``."""
    return escape(text, keep="\n" if keep_newlines else "")


def describe_call(call: ToolCall) -> str:
    """What a person is asked to approve: the tool's name and all arguments, escaped."""
    arguments = json.dumps(call.raw_arguments, indent=2, ensure_ascii=False, default=str)
    # JSON escapes newlines inside values, so raw newlines left are the layout's own.
    return (
        f"The agent wants to call {escape_controls(call.tool.name)!s} with arguments:\n"
        f"{escape_controls(arguments, keep_newlines=True)}"
    )


def terminal_approver(
    stream_in: TextIO | None = None, stream_out: TextIO | None = None
) -> Callable[[ToolCall], Awaitable[bool]]:
    """An approver that asks "Allow? [y/N]" on ``stream_out`` (stderr by default) and reads the
    answer from ``stream_in`` (stdin by default). Only "y" or "yes" approves; end of input, any
    other answer, or an input that is not an interactive terminal denies."""
    lock = threading.Lock()  # one question at a time, even for parallel calls

    def ask(call: ToolCall) -> bool:
        with lock:
            return _ask(call)

    def _ask(call: ToolCall) -> bool:
        source = stream_in if stream_in is not None else sys.stdin
        sink = stream_out if stream_out is not None else sys.stderr
        sink.write(describe_call(call) + "\n")
        if not _interactive(source):
            sink.write("Denied: input is not an interactive terminal.\n")
            sink.flush()
            return False
        sink.write("Allow? [y/N] ")
        sink.flush()
        answer = source.readline()
        if not answer:
            sink.write("\nDenied: end of input.\n")
            sink.flush()
            return False
        return answer.strip().lower() in ("y", "yes")

    async def approve(call: ToolCall) -> bool:
        return await asyncio.to_thread(ask, call)  # reading a terminal must not block the loop

    return approve


def _interactive(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # closed or not a real stream
        return False
