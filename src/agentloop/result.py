"""The result of a run."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, Literal, TypeAlias

from typing_extensions import TypeVar

from agentloop.messages import Message, Usage

OutputT = TypeVar("OutputT", default=str)

StopReason: TypeAlias = Literal[
    "final_answer",
    "max_steps",
    "max_tool_calls",
    "run_timeout",
    "retry_budget",
    "tool_error",
    "model_error",
    "output_truncated",
    "replay_diverged",
    "output_invalid",
    "token_limit",
    "cost_limit",
    "guardrail",
    "hook_error",
    "cancelled",
    "error",
]
"""Why a run stopped. Only ``final_answer`` returns normally; the others raise an error whose
``partial`` is the ``RunResult`` so far."""


@dataclass(frozen=True)
class RunResult(Generic[OutputT]):
    """What a run produced, and where its trace is."""

    output: OutputT | None
    """The final answer (parsed into the agent's ``output_type``, a ``str`` without one);
    ``None`` when the run stopped without one."""
    stop_reason: StopReason
    steps: int
    """Model requests made."""
    usage: Usage
    trace_path: Path | None
    """The run's JSONL trace; ``None`` when tracing was off (``trace_dir=None``)."""
    messages: list[Message] = field(repr=False)
    """The whole conversation, final answer included."""
    run_id: str = ""
    config_hash: str = ""
    """The agent's version (see ``Agent.config_hash``)."""
    tool_calls: int = 0
    duration_s: float = 0.0
    history_length: int = 0
    """How many of ``messages`` came from earlier turns (``history=``), the system prompt
    included when there is one."""
    conversation_id: str | None = None
    """The conversation this run is a turn of, if any (recorded in the trace header)."""
    output_text: str | None = None
    """The final answer as the model wrote it (the JSON text, for a typed output)."""
    cost: float | None = None
    """What the run cost by the agent's price table, if it has one."""

    def all_messages(self) -> list[Message]:
        """The whole conversation: the system prompt, earlier turns, this task and everything
        after it. Pass it (or this result) as ``history=`` to continue the conversation."""
        return list(self.messages)

    def new_messages(self) -> list[Message]:
        """Only what this run added: the task, the model's messages and tool results."""
        return list(self.messages[self.history_length :])
