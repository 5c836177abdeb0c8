"""The result of a run."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TypeAlias

from agentloop.messages import Message, Usage

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
    "cancelled",
    "error",
]
"""Why a run stopped. Only ``final_answer`` returns normally; the others raise an error whose
``partial`` is the ``RunResult`` so far."""


@dataclass(frozen=True)
class RunResult:
    """What a run produced, and where its trace is."""

    output: str | None
    """The final answer; ``None`` when the run stopped without one."""
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
