"""Divergences: where and how a run departs from a recording of it.

A ``Divergence`` names the step (``None`` for the agent's configuration), the kind, and what
was expected (the recording) against what actually happened, readable on a terminal and
available as data.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

from pydantic import BaseModel, ConfigDict

from agentloop.trace import Trace, read_trace

DivergenceKind: TypeAlias = Literal[
    "instructions_changed",
    "settings_changed",
    "limits_changed",
    "model_changed",
    "tool_missing",
    "tool_added",
    "tool_schema_changed",
    "tool_code_changed",
    "model_input_changed",
    "action_changed",
    "tool_call_changed",
    "tool_result_changed",
    "more_steps",
    "fewer_steps",
    "outcome_changed",
]


class Divergence(BaseModel):
    """One difference between a recording and its replay."""

    model_config = ConfigDict(frozen=True)

    step: int | None
    """The step where it shows; ``None`` for a difference in the agent's configuration."""
    kind: DivergenceKind
    expected: Any = None
    """What the recording has."""
    actual: Any = None
    """What the replay has."""
    detail: str = ""

    def describe(self) -> str:
        """One readable line (plus expected/actual) for a terminal."""
        where = "config" if self.step is None else f"step {self.step}"
        head = f"{where}: {self.kind}" + (f" ({self.detail})" if self.detail else "")
        return f"{head}\n  expected: {_short(self.expected)}\n  actual:   {_short(self.actual)}"


def config_divergences(recorded: dict[str, Any], current: dict[str, Any]) -> list[Divergence]:
    """Differences between two agent configurations (trace header ``agent`` dicts)."""
    found: list[Divergence] = []
    for key, kind in (
        ("model", "model_changed"),
        ("instructions", "instructions_changed"),
        ("settings", "settings_changed"),
        ("limits", "limits_changed"),
    ):
        if recorded.get(key) != current.get(key):
            found.append(
                Divergence(
                    step=None, kind=kind, expected=recorded.get(key), actual=current.get(key)
                )
            )
    old = {t["name"]: t for t in recorded.get("tools", [])}
    new = {t["name"]: t for t in current.get("tools", [])}
    for name in old.keys() - new.keys():
        found.append(Divergence(step=None, kind="tool_missing", expected=name, detail=name))
    for name in new.keys() - old.keys():
        found.append(Divergence(step=None, kind="tool_added", actual=name, detail=name))
    for name in sorted(old.keys() & new.keys()):
        before, after = old[name], new[name]
        schema = ("description", "parameters")
        if [before.get(k) for k in schema] != [after.get(k) for k in schema]:
            found.append(
                Divergence(
                    step=None,
                    kind="tool_schema_changed",
                    expected=before.get("parameters"),
                    actual=after.get("parameters"),
                    detail=name,
                )
            )
        if before.get("source_hash") != after.get("source_hash"):
            found.append(
                Divergence(
                    step=None,
                    kind="tool_code_changed",
                    expected=before.get("source_hash"),
                    actual=after.get("source_hash"),
                    detail=name,
                )
            )
    return sorted(found, key=lambda d: (d.kind, d.detail))


def _short(value: Any, limit: int = 160) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str, sort_keys=True)
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True)
class StepComparison:
    """One step of two traces side by side: what each run did there."""

    step: int
    left: list[str]
    right: list[str]

    @property
    def same(self) -> bool:
        return self.left == self.right


@dataclass(frozen=True)
class TraceDiff:
    """Two traces aligned by step: configuration differences, then each step."""

    config: list[Divergence]
    steps: list[StepComparison]

    @property
    def first_difference(self) -> int | None:
        return next((s.step for s in self.steps if not s.same), None)


def diff_traces(
    left: Trace | str | os.PathLike[str], right: Trace | str | os.PathLike[str]
) -> TraceDiff:
    """Compare two runs step by step (a fork and its parent, two versions of an agent); each
    a ``Trace`` or a trace file's path, as ``agentloop traces diff`` takes them."""
    left = left if isinstance(left, Trace) else read_trace(left)
    right = right if isinstance(right, Trace) else read_trace(right)
    a, b = step_summaries(left), step_summaries(right)
    steps = [
        StepComparison(step=i, left=a[i] if i < len(a) else [], right=b[i] if i < len(b) else [])
        for i in range(max(len(a), len(b)))
    ]
    return TraceDiff(config=config_divergences(left.header.agent, right.header.agent), steps=steps)


def step_summaries(trace: Trace) -> list[list[str]]:
    """Per step, one line per thing the run did: a changed tool list, tool calls, their
    results, the answer."""
    steps: list[list[str]] = []
    for event in trace.events:
        while len(steps) <= event.step:
            steps.append([])
        lines = steps[event.step]
        if event.type == "tools_changed":
            names = [*(f"+{n}" for n in event.added), *(f"-{n}" for n in event.removed)]
            lines.append(f"tools changed ({event.source}): {' '.join(names) or 'same names'}")
        elif event.type == "model_response" and not event.response.tool_calls:
            lines.append(f"answer: {event.response.text or '(empty)'}")
        elif event.type == "tool_call":
            lines.append(f"call {event.name}({event.raw_arguments})")
        elif event.type == "tool_result":
            lines.append(
                f"  -> {_short(event.content, 120)}" + (f" [{event.error}]" if event.error else "")
            )
        elif event.type in ("run_failed", "run_cancelled"):
            lines.append(f"{event.type}: {getattr(event, 'reason', '')}")
    return steps
