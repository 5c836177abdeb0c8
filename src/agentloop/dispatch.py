"""Run validated tool calls: concurrently, each under its timeout, each giving one observation.

Async tools run on the event loop; sync tools run in worker threads so they cannot block it.
A timed-out sync tool's thread cannot be killed and runs on in the background (Python threads
cannot be stopped); give tools that must be stopped hard a subprocess of their own.
"""

from __future__ import annotations

import asyncio
import inspect
import time
import traceback
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, TypeAlias

from agentloop.actions import Call, ToolCall
from agentloop.context import current_run_context
from agentloop.errors import ToolRetry
from agentloop.observations import Observation, to_text, truncate
from agentloop.settings import RunLimits

Approver: TypeAlias = Callable[[ToolCall], bool | Awaitable[bool]]
"""Decides whether a call to a ``requires_approval`` tool may run. Raising counts as "no"."""


class ToolRunner(Protocol):
    """Produces the outcomes of one step's calls (valid ones; rejected calls are passed so a
    runner can see them, but get no outcome). The agent's default runs the tools; replay serves
    recorded results instead."""

    async def __call__(self, calls: Sequence[Call], step: int) -> list[ToolOutcome]: ...


@dataclass(frozen=True, slots=True)
class ToolOutcome:
    """What one call produced: the observation for the model, and for the trace the time it
    took and any unexpected exception."""

    call: ToolCall
    observation: Observation
    duration_ms: float
    exception: BaseException | None = None
    exception_text: str | None = None
    approved: bool | None = None
    """For a ``requires_approval`` tool, the approver's verdict; ``None`` for other tools."""

    @property
    def approval(self) -> Literal["approved", "denied"] | None:
        """The verdict as the trace records it."""
        if self.approved is None:
            return None
        return "approved" if self.approved else "denied"


async def run_tool_calls(
    calls: Sequence[ToolCall], limits: RunLimits, approver: Approver | None = None
) -> list[ToolOutcome]:
    """Run ``calls`` at most ``limits.tool_concurrency`` at a time; outcomes keep call order."""
    if len(calls) == 1:
        return [await _run_one(calls[0], limits, approver)]
    gate = asyncio.Semaphore(limits.tool_concurrency)

    async def gated(call: ToolCall) -> ToolOutcome:
        async with gate:
            return await _run_one(call, limits, approver)

    return list(await asyncio.gather(*(gated(c) for c in calls)))


async def _run_one(call: ToolCall, limits: RunLimits, approver: Approver | None) -> ToolOutcome:
    tool = call.tool
    approved = await _approved(call, approver) if tool.requires_approval else None
    started = time.perf_counter()  # after approval: a person's thinking time is not the tool's

    def outcome(observation: Observation, exc: BaseException | None = None) -> ToolOutcome:
        return ToolOutcome(
            call=call,
            observation=observation,
            duration_ms=(time.perf_counter() - started) * 1000,
            exception=exc,
            exception_text="".join(traceback.format_exception(exc)) if exc else None,
            approved=approved,
        )

    if approved is False:
        return outcome(
            Observation(
                content=f"Error: the call to {tool.name!r} needs approval and was denied; "
                "it was not run.",
                error="denied",
            )
        )
    timeout = tool.timeout if tool.timeout is not None else limits.tool_timeout
    deadline = asyncio.timeout(timeout)
    try:
        async with deadline:
            context = (current_run_context(),) if tool.takes_context else ()
            if tool.is_async:
                value = await tool.function(*context, **call.arguments)
            else:
                value = await asyncio.to_thread(tool.function, *context, **call.arguments)
            if inspect.isawaitable(value):  # a sync function that returned a coroutine
                value = await value
    except ToolRetry as exc:
        return outcome(Observation(content=exc.message, error="retry"))
    except TimeoutError as exc:
        if not deadline.expired():  # the tool itself raised TimeoutError
            return outcome(_failed(tool.name, exc), exc)
        return outcome(
            Observation(
                content=f"Error: {tool.name!r} timed out after {timeout or 0:g} s and was stopped.",
                error="timeout",
            )
        )
    except Exception as exc:
        return outcome(_failed(tool.name, exc), exc)
    text, original = truncate(to_text(value), limits.max_observation_chars)
    return outcome(Observation(content=text, truncated_from=original))


def _failed(name: str, exc: BaseException) -> Observation:
    """What the model sees of an unexpected exception: its type only, never the message or
    traceback, which may hold paths or secrets (those go to the redacted trace)."""
    return Observation(
        content=f"Error: {name!r} failed with {type(exc).__name__}. Try different arguments or "
        "another approach.",
        error="tool_error",
    )


async def _approved(call: ToolCall, approver: Approver | None) -> bool:
    if approver is None:
        return False
    try:
        verdict = approver(call)
        if inspect.isawaitable(verdict):
            verdict = await verdict
    except Exception:
        return False
    return verdict is True
