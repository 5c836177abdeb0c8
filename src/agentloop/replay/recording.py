"""Serving a recorded run: its model responses and tool results, step by step.

``ReplayModel`` stands in for the model and ``ReplayTools`` for the tool runner (the two seams
of ``Agent.run``), so a replay, a fork and a resume run the ordinary loop. Both compare what
the run does with the recording through a ``Checker`` when asked.

Recorded and live actions are matched by their position in the step, the tool's name and the
arguments parsed as JSON, never by tool-call id: servers mint fresh ids on every response, so
a live model that repeats a recorded call exactly gets the recorded result for it (the result
is served under the live call's id).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any, Literal

from agentloop.actions import Call, ToolCall
from agentloop.agent import Agent
from agentloop.deltas import StreamItem
from agentloop.dispatch import OutcomeListener, ToolOutcome, run_tool_calls
from agentloop.errors import ReplayDiverged
from agentloop.events import ToolCallRequested, ToolResultRecorded
from agentloop.messages import Message, ModelResponse, SystemMessage, ToolCallPart, UserMessage
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
NOT_RECORDED = (
    "Error: this call was not run: the replay serves recorded tool results only, and the "
    "recording has no call like it at this point."
)


class Recording:
    """A trace indexed by step, for serving and comparing."""

    def __init__(self, trace: Trace) -> None:
        self.trace = trace
        self.inputs: dict[int, list[Message]] = {}
        self.responses: list[ModelResponse] = []
        self.calls: dict[int, list[ToolCallRequested]] = {}
        """Each step's calls in the order the model asked for them."""
        self.results: dict[int, dict[str, ToolResultRecorded]] = {}
        """Each step's results by the recorded call id."""
        for event in trace.events:
            if event.type == "model_request":
                self.inputs[event.step] = event.messages
            elif event.type == "model_response":
                self.responses.append(event.response)
            elif event.type == "tool_call":
                self.calls.setdefault(event.step, []).append(event)
            elif event.type == "tool_result":
                self.results.setdefault(event.step, {})[event.call_id] = event
        end = trace.terminal
        self.failed_step = (
            end.step if end is not None and getattr(end, "reason", None) == "tool_error" else None
        )
        """The step whose tool failure ended the run (``tool_errors="raise"``), if one did."""

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
            for call in calls
            if call.valid and call.call_id not in self.results.get(step, {})
        ]

    def failed_calls(self) -> list[ToolCallRequested]:
        """The calls whose tool exception ended the run (``tool_errors="raise"``)."""
        if self.failed_step is None:
            return []
        results = self.results.get(self.failed_step, {})
        return [
            call
            for call in self.calls.get(self.failed_step, [])
            if call.call_id in results and results[call.call_id].exception is not None
        ]

    def matching(self, step: int, index: int, call: Call) -> ToolCallRequested | None:
        """The recorded call at ``index`` in ``step`` if it is the same action as ``call``
        (same tool, same arguments parsed as JSON), else ``None``."""
        recorded = self.calls.get(step, [])
        before = recorded[index] if index < len(recorded) else None
        if before is None or action_of(before.name, before.raw_arguments) != action_of(
            call.part.name, call.part.arguments
        ):
            return None
        return before

    def result(self, step: int, recorded: ToolCallRequested) -> ToolResultRecorded | None:
        return self.results.get(step, {}).get(recorded.call_id)


def action_of(name: str, arguments: str) -> dict[str, Any]:
    """A tool call as compared across runs: the name and the arguments parsed as JSON (the
    raw text when it does not parse), so ``{"a":1}`` and ``{"a": 1}`` are the same call."""
    try:
        parsed: Any = json.loads(arguments) if arguments.strip() else {}
    except ValueError:
        parsed = arguments
    return {"name": name, "arguments": parsed}


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
        actual = [_comparable(m) for m in messages[self._seen :] if self._compared(m)]
        self._seen = len(messages)
        recorded = self.recording.inputs.get(step)
        if recorded is None:
            return
        expected = [_comparable(m) for m in recorded if self._compared(m)]
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
    """Serves recorded tool results (or runs tools live and compares), per step.

    A call gets the result recorded for the call at the same position in the step if that
    call is the same action (tool and parsed arguments); the live call's id does not matter.
    """

    recording: Recording
    agent: Agent
    mode: Literal["recorded", "live"] = "recorded"
    live_from: int | None = None
    checker: Checker | None = None
    resuming: bool = False
    check_calls: bool = True

    async def __call__(
        self, calls: Sequence[Call], step: int, done: OutcomeListener
    ) -> list[ToolOutcome]:
        valid = [c for c in calls if isinstance(c, ToolCall)]
        if self.live_from is not None and step >= self.live_from:
            return await self._live(valid, done)
        if self.checker is not None and self.check_calls:
            self._check_calls(step, calls)
        if self.mode == "live":
            ran = await self._live(valid, done)
            self._check_results(step, calls, ran)
            return ran
        outcomes: dict[str, ToolOutcome] = {}
        rerun: list[ToolCall] = []
        failed_here = self.resuming and step == self.recording.failed_step
        for index, call in enumerate(calls):
            if not isinstance(call, ToolCall):
                continue
            before = self.recording.matching(step, index, call)
            result = self.recording.result(step, before) if before is not None else None
            if result is not None and failed_here and result.exception is not None:
                # The failure that ended the run: run it again if that is safe, else the model
                # sees the recorded error as an observation and the run goes on.
                if call.tool.idempotent:
                    rerun.append(call)
                    continue
                outcomes[call.call_id] = served(call, result, failure=False)
            elif result is not None:
                outcomes[call.call_id] = served(call, result)
            elif before is not None and self.resuming and call.tool.idempotent:
                rerun.append(call)
                continue
            elif before is not None:
                outcomes[call.call_id] = ToolOutcome(
                    call, Observation(content=INTERRUPTED, error="interrupted"), 0.0
                )
            else:
                outcomes[call.call_id] = ToolOutcome(
                    call, Observation(content=NOT_RECORDED, error="not_run"), 0.0
                )
            done(outcomes[call.call_id])
        for outcome in await self._live(rerun, done):
            outcomes[outcome.call.call_id] = outcome
        return [outcomes[c.call_id] for c in valid]

    async def _live(self, calls: list[ToolCall], done: OutcomeListener) -> list[ToolOutcome]:
        if not calls:
            return []
        return await run_tool_calls(calls, self.agent.limits, self.agent.approver, done)

    def _check_calls(self, step: int, calls: Sequence[Call]) -> None:
        assert self.checker is not None
        recorded = self.recording.calls.get(step, [])
        for index, call in enumerate(calls):
            before = recorded[index] if index < len(recorded) else None
            valid = isinstance(call, ToolCall)
            rejection = None if isinstance(call, ToolCall) else call.observation.error
            if before is None or before.valid != valid or before.rejection != rejection:
                self.checker.note(
                    Divergence(
                        step=step,
                        kind="tool_call_changed",
                        expected=call_state(before.valid, before.rejection) if before else None,
                        actual=call_state(valid, rejection),
                        detail=f"call {index + 1} of the step, to {call.part.name!r}",
                    )
                )

    def _check_results(self, step: int, calls: Sequence[Call], outcomes: list[ToolOutcome]) -> None:
        assert self.checker is not None
        position = {c.call_id: i for i, c in enumerate(calls)}
        for outcome in outcomes:
            before = self.recording.matching(step, position[outcome.call.call_id], outcome.call)
            result = self.recording.result(step, before) if before is not None else None
            now = outcome.observation
            if result is not None and (result.content, result.error) != (now.content, now.error):
                self.checker.note(
                    Divergence(
                        step=step,
                        kind="tool_result_changed",
                        expected=result.content,
                        actual=now.content,
                        detail=f"{outcome.call.tool.name!r} returned something else",
                    )
                )


def served(call: ToolCall, result: ToolResultRecorded, *, failure: bool = True) -> ToolOutcome:
    """The recorded outcome of ``call``. ``failure=False`` serves a recorded tool exception as
    its observation only (the run goes on instead of failing again)."""
    error = None
    if result.exception and failure:
        error = RecordedToolError(result.exception.strip().splitlines()[-1])
    return ToolOutcome(
        call=call,
        observation=Observation(
            content=result.content, error=result.error, truncated_from=result.truncated_from
        ),
        duration_ms=result.duration_ms,
        exception=error,
        exception_text=result.exception if failure else None,
        approved=None if result.approval is None else result.approval == "approved",
    )


def actions(response: ModelResponse) -> list[Any]:
    """The response's actions as compared across runs (arguments parsed, ids left out)."""
    if response.tool_calls:
        return [action_of(p.name, p.arguments) for p in response.tool_calls]
    return [{"answer": response.text}]


def _comparable(message: Message) -> dict[str, Any]:
    """A message as compared across runs: tool-call ids left out (servers mint new ones; calls
    and their results pair up by position) and call arguments parsed as JSON."""
    data = message.model_dump()
    data.pop("call_id", None)
    calls: Sequence[ToolCallPart] = getattr(message, "tool_calls", ())
    if calls:
        data["tool_calls"] = [action_of(p.name, p.arguments) for p in calls]
    return data


def call_state(valid: bool, rejection: str | None) -> str:
    return "valid" if valid else f"rejected ({rejection})"
