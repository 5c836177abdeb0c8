"""Serving a recorded run: its model responses and tool results, step by step.

``ReplayModel`` stands in for the model and ``ReplayTools`` for the tool runner (the two seams
of ``Agent.run``), so a replay, a fork and a resume run the ordinary loop. Both compare what
the run does with the recording through a ``Checker`` when asked.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any, Literal

from agentloop.actions import Call, ToolCall
from agentloop.agent import Agent
from agentloop.deltas import StreamItem
from agentloop.dispatch import ToolOutcome, run_tool_calls
from agentloop.errors import ReplayDiverged
from agentloop.events import ToolCallRequested, ToolResultRecorded
from agentloop.messages import Message, ModelResponse, SystemMessage, UserMessage
from agentloop.models.base import Model
from agentloop.observations import Observation
from agentloop.replay.divergence import Divergence
from agentloop.replay.paced import paced_deltas
from agentloop.settings import ModelSettings
from agentloop.tools import Toolset
from agentloop.trace import Trace

INTERRUPTED = (
    "Error: this call was interrupted before it finished (the run stopped and was resumed), "
    "and it was not run again because the tool is not marked idempotent. Check whether it took "
    "effect before calling it again."
)


class Recording:
    """A trace indexed by step, for serving and comparing."""

    def __init__(self, trace: Trace) -> None:
        self.trace = trace
        self.inputs: dict[int, list[Message]] = {}
        self.responses: list[ModelResponse] = []
        self.calls: dict[int, dict[str, ToolCallRequested]] = {}
        self.results: dict[int, dict[str, ToolResultRecorded]] = {}
        for event in trace.events:
            if event.type == "model_request":
                self.inputs[event.step] = event.messages
            elif event.type == "model_response":
                self.responses.append(event.response)
            elif event.type == "tool_call":
                self.calls.setdefault(event.step, {})[event.call_id] = event
            elif event.type == "tool_result":
                self.results.setdefault(event.step, {})[event.call_id] = event

    def history(self) -> list[Message]:
        """The messages the original run was given between its instructions and its task."""
        first = list(self.inputs.get(0, []))
        if first and isinstance(first[0], SystemMessage):
            first = first[1:]
        return first[:-1] if first and isinstance(first[-1], UserMessage) else first

    def interrupted_calls(self) -> list[ToolCallRequested]:
        """Valid tool calls that started but have no result (the run was killed or stopped)."""
        return [
            call
            for step, calls in self.calls.items()
            for call_id, call in calls.items()
            if call.valid and call_id not in self.results.get(step, {})
        ]


@dataclass
class Checker:
    """Collects divergences; in strict mode the first one found at a step stops the run."""

    strict: bool
    found: list[Divergence] = field(default_factory=list)

    def note(self, divergence: Divergence) -> None:
        self.found.append(divergence)
        if self.strict and divergence.step is not None:
            raise ReplayDiverged(f"replay diverged at {divergence.describe()}", divergence)


class ReplayModel(Model):
    """Serves a recording's model responses in order, from ``live_from`` on asks ``live``.

    With ``compare_live``, every step asks ``live`` and compares its actions with the recorded
    ones (to find where a changed prompt or model first acts differently).
    """

    def __init__(
        self,
        recording: Recording,
        *,
        live: Model | None = None,
        live_from: int | None = None,
        compare_live: bool = False,
        checker: Checker | None = None,
        skip_tool_inputs: bool = False,
        pace: bool = False,
    ) -> None:
        self.recording = recording
        self.pace = pace
        """Streamed, recorded responses arrive at their recorded pace (else at once)."""
        self.live = live
        self.live_from = live_from
        self.compare_live = compare_live
        self.checker = checker
        self.skip_tool_inputs = skip_tool_inputs
        recorded_model = recording.trace.header.agent.get("model", {})
        self.name = str(recorded_model.get("name", "replay"))
        self._recorded_config: dict[str, Any] = dict(recorded_model)
        self.served = 0
        self._seen = 0

    def config(self) -> dict[str, Any]:
        if self.live is not None and (self.live_from is not None or self.compare_live):
            return self.live.config()
        return self._recorded_config

    def secrets(self) -> list[str]:
        return self.live.secrets() if self.live is not None else []

    async def request(
        self, messages: Sequence[Message], tools: Toolset, settings: ModelSettings
    ) -> ModelResponse:
        step, self.served = self.served, self.served + 1
        if self.live_from is not None and step >= self.live_from:
            assert self.live is not None
            return await self.live.request(messages, tools, settings)
        if self.checker is not None:
            self._check_inputs(step, messages)
        if step >= len(self.recording.responses):
            end = self.recording.trace.terminal
            if end is not None and end.type == "run_cancelled" and not self.compare_live:
                raise RecordedCancellation(f"the recorded run was cancelled at step {step}")
            divergence = Divergence(
                step=step,
                kind="more_steps",
                expected=len(self.recording.responses),
                actual=step + 1,
                detail="the run asks the model for more steps than the recording has",
            )
            if self.checker is not None:
                self.checker.found.append(divergence)
            raise ReplayDiverged(f"replay diverged at {divergence.describe()}", divergence)
        recorded = self.recording.responses[step]
        if self.compare_live and self.live is not None:
            actual = await self.live.request(messages, tools, settings)
            if actions(actual) != actions(recorded) and self.checker is not None:
                self.checker.note(
                    Divergence(
                        step=step,
                        kind="action_changed",
                        expected=actions(recorded),
                        actual=actions(actual),
                    )
                )
            return actual
        return recorded

    async def request_stream(
        self, messages: Sequence[Message], tools: Toolset, settings: ModelSettings
    ) -> AsyncGenerator[StreamItem, None]:
        """Recorded responses as deltas (``replay/paced.py``); live steps stream live."""
        step = self.served
        if self.live_from is not None and step >= self.live_from and self.live is not None:
            self.served += 1
            stream = self.live.request_stream(messages, tools, settings)
        else:
            stream = paced_deltas(await self.request(messages, tools, settings), self.pace)
        async with aclosing(stream):
            async for item in stream:
                yield item

    def _check_inputs(self, step: int, messages: Sequence[Message]) -> None:
        assert self.checker is not None
        actual = [m.model_dump() for m in messages[self._seen :] if self._compared(m)]
        self._seen = len(messages)
        recorded = self.recording.inputs.get(step)
        if recorded is None:
            return
        expected = [m.model_dump() for m in recorded if self._compared(m)]
        if actual != expected:
            index = next(
                (i for i, (a, b) in enumerate(zip(expected, actual, strict=False)) if a != b),
                min(len(expected), len(actual)),
            )
            first = expected[index] if index < len(expected) else None
            other = actual[index] if index < len(actual) else None
            role = (first or other or {}).get("role", "?")
            self.checker.note(
                Divergence(
                    step=step,
                    kind="model_input_changed",
                    expected=first,
                    actual=other,
                    detail=f"the {role} message the model is sent differs",
                )
            )

    def _compared(self, message: Message) -> bool:
        return not (self.skip_tool_inputs and message.role == "tool")


class RecordedCancellation(asyncio.CancelledError):
    """Replays a recorded cancellation: raised where the recording's model request was
    cancelled, so the replayed run ends with ``run_cancelled`` too (the replay catches it; no
    task was cancelled)."""


class RecordedToolError(Exception):
    """Stands in for a tool exception recorded in a trace, so replay fails where the original
    run failed; its message is the recorded exception's last line."""


@dataclass
class ReplayTools:
    """Serves recorded tool results (or runs tools live and compares), per step."""

    recording: Recording
    agent: Agent
    mode: Literal["recorded", "live"] = "recorded"
    live_from: int | None = None
    checker: Checker | None = None
    resuming: bool = False
    check_calls: bool = True

    async def __call__(self, calls: Sequence[Call], step: int) -> list[ToolOutcome]:
        if self.live_from is not None and step >= self.live_from:
            return await self._live([c for c in calls if isinstance(c, ToolCall)])
        if self.checker is not None and self.check_calls:
            self._check_calls(step, calls)
        valid = [c for c in calls if isinstance(c, ToolCall)]
        if self.mode == "live":
            ran = await self._live(valid)
            self._check_results(step, ran)
            return ran
        recorded = self.recording.results.get(step, {})
        outcomes: dict[str, ToolOutcome] = {}
        rerun: list[ToolCall] = []
        for call in valid:
            result = recorded.get(call.call_id)
            if result is not None:
                outcomes[call.call_id] = served(call, result)
            elif self.resuming and call.tool.idempotent:
                rerun.append(call)
            else:
                outcomes[call.call_id] = ToolOutcome(
                    call, Observation(content=INTERRUPTED, error="interrupted"), 0.0
                )
        for outcome in await self._live(rerun):
            outcomes[outcome.call.call_id] = outcome
        return [outcomes[c.call_id] for c in valid]

    async def _live(self, calls: list[ToolCall]) -> list[ToolOutcome]:
        if not calls:
            return []
        return await run_tool_calls(calls, self.agent.limits, self.agent.approver)

    def _check_calls(self, step: int, calls: Sequence[Call]) -> None:
        assert self.checker is not None
        recorded = self.recording.calls.get(step, {})
        for call in calls:
            before = recorded.get(call.call_id)
            valid = isinstance(call, ToolCall)
            rejection = None if isinstance(call, ToolCall) else call.observation.error
            if before is None or before.valid != valid or before.rejection != rejection:
                self.checker.note(
                    Divergence(
                        step=step,
                        kind="tool_call_changed",
                        expected=call_state(before.valid, before.rejection) if before else None,
                        actual=call_state(valid, rejection),
                        detail=f"call {call.call_id} to {call.part.name!r}",
                    )
                )

    def _check_results(self, step: int, outcomes: list[ToolOutcome]) -> None:
        assert self.checker is not None
        recorded = self.recording.results.get(step, {})
        for outcome in outcomes:
            before = recorded.get(outcome.call.call_id)
            now = outcome.observation
            if before is not None and (before.content, before.error) != (now.content, now.error):
                self.checker.note(
                    Divergence(
                        step=step,
                        kind="tool_result_changed",
                        expected=before.content,
                        actual=now.content,
                        detail=f"{outcome.call.tool.name!r} returned something else",
                    )
                )


def served(call: ToolCall, result: ToolResultRecorded) -> ToolOutcome:
    error = None
    if result.exception:
        error = RecordedToolError(result.exception.strip().splitlines()[-1])
    return ToolOutcome(
        call=call,
        observation=Observation(
            content=result.content, error=result.error, truncated_from=result.truncated_from
        ),
        duration_ms=result.duration_ms,
        exception=error,
        exception_text=result.exception,
        approved=None if result.approval is None else result.approval == "approved",
    )


def actions(response: ModelResponse) -> list[Any]:
    if response.tool_calls:
        return [{"name": p.name, "arguments": p.arguments} for p in response.tool_calls]
    return [{"answer": response.text}]


def call_state(valid: bool, rejection: str | None) -> str:
    return "valid" if valid else f"rejected ({rejection})"
