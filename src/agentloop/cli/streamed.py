"""``agentloop run`` streamed: the model's text on stdout as it is written.

Each piece is redacted and escaped before it is shown, like everything the CLI prints; since
a secret may arrive split across pieces, text is held back until the redactor says it is
settled (the end of a word, or of a line that mentions a secret-shaped key).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Coroutine
from typing import Any, TextIO, TypeVar

from agentloop.agent import Agent
from agentloop.events import EventListener
from agentloop.redaction import Redactor
from agentloop.result import RunResult
from agentloop.streaming import AgentStream, OutputProduced, StepFinished, TextGenerated
from agentloop.terminal import escape

T = TypeVar("T")


class TextPrinter:
    """Writes streamed text to ``sink`` as it settles (redacted, escaped)."""

    def __init__(self, redact: Redactor, sink: TextIO | None = None) -> None:
        self.redact = redact
        self.sink = sink if sink is not None else sys.stdout
        self.pending = ""
        self.at_line_start = True
        self.output_shown = False
        """The final answer has been written in full (the CLI does not print it again)."""

    def text(self, piece: str) -> None:
        self.pending = self.redact(self.pending + piece)
        end = self.redact.settled(self.pending)
        self._write(self.pending[:end])
        self.pending = self.pending[end:]

    def step_finished(self) -> None:
        """A step ended: what is left is shown, on a line of its own."""
        self._write(self.pending)
        self.pending = ""
        if not self.at_line_start:
            self._write("\n")

    def end_line(self) -> None:
        """The run ended early: what was shown ends its line; text held back is dropped (it
        was not settled, and no answer follows)."""
        self.pending = ""
        if not self.at_line_start:
            self._write("\n")

    def output(self, event: OutputProduced, last_text: str) -> None:
        self.output_shown = last_text == str(event.output)

    def _write(self, text: str) -> None:
        if not text:
            return
        self.sink.write(escape(text))
        self.sink.flush()
        self.at_line_start = text.endswith("\n")


def streamed_run(
    agent: Agent, task: str, printer: TextPrinter
) -> Callable[[EventListener], Coroutine[Any, Any, RunResult]]:
    """The ``start`` function ``run_and_report`` takes: the run, streamed through ``printer``;
    ``listener`` (the progress on stderr) sees every trace event, as in an unstreamed run."""

    async def start(listener: EventListener) -> RunResult:
        return await show_stream(agent.stream(task, listener=listener), printer)

    return start


async def show_stream(stream: AgentStream[T], printer: TextPrinter) -> T:
    """Iterate ``stream`` to its end, its text through ``printer``; the stream's result."""
    last_text: list[str] = []
    async with stream as run:
        async for event in run:
            if isinstance(event, TextGenerated):
                last_text.append(event.text)
                printer.text(event.text)
            elif isinstance(event, StepFinished):
                printer.step_finished()
                if event.response.tool_calls:
                    last_text = []
            elif isinstance(event, OutputProduced):
                printer.output(event, "".join(last_text))
    return run.result()
