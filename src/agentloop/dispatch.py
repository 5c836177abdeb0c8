"""Run validated tool calls: concurrently, each under its timeout, each giving one observation.

Async tools run on the event loop; each call of a sync tool runs in a daemon thread no other call
is using (``agentloop.workers``: idle threads are reused), so it cannot block the loop. A
timed-out sync tool's thread cannot be killed (Python threads cannot be stopped): it runs on in
the background, so it never holds a pool slot that a later call needs, never makes
``asyncio.run`` (the sync doors) wait for it, and never keeps the process from exiting. The
model is told the call timed out and may still be running; the outcome says so
(``still_running``) and the loop records a warning. Give tools that must be stopped hard a
subprocess of their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import functools
import inspect
import time
import traceback
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, TypeAlias

from agentloop import workers
from agentloop.actions import Call, ToolCall
from agentloop.context import current_run_context
from agentloop.errors import ToolRetry
from agentloop.observations import Observation, to_text, truncate
from agentloop.settings import RunLimits

Approver: TypeAlias = Callable[[ToolCall], bool | Awaitable[bool]]
"""Decides whether a call to a ``requires_approval`` tool may run. Raising counts as "no"."""


OutcomeListener: TypeAlias = Callable[["ToolOutcome"], None]
"""Called with each outcome as soon as it exists (the loop journals it at once)."""


class ToolRunner(Protocol):
    """Produces the outcomes of one step's calls (valid ones; rejected calls are passed so a
    runner can see them, but get no outcome), calling ``done`` with each outcome as soon as it
    exists. The agent's default runs the tools; replay serves recorded results instead."""

    async def __call__(
        self, calls: Sequence[Call], step: int, done: OutcomeListener
    ) -> list[ToolOutcome]: ...


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
    still_running: bool = False
    """The call timed out and its thread was still running when the outcome was made."""

    @property
    def approval(self) -> Literal["approved", "denied"] | None:
        """The verdict as the trace records it."""
        if self.approved is None:
            return None
        return "approved" if self.approved else "denied"


async def run_tool_calls(
    calls: Sequence[ToolCall],
    limits: RunLimits,
    approver: Approver | None = None,
    done: OutcomeListener | None = None,
) -> list[ToolOutcome]:
    """Run ``calls`` at most ``limits.tool_concurrency`` at a time; outcomes keep call order.
    ``done`` sees each outcome the moment it exists, in the order the calls finish."""
    gate = asyncio.Semaphore(limits.tool_concurrency)

    async def gated(call: ToolCall) -> ToolOutcome:
        try:
            async with gate:
                outcome = await _run_one(call, limits, approver)
        except (KeyboardInterrupt, SystemExit) as exc:
            # Raised in a task of gather's, it would stop the event loop at once, before the
            # run could end its trace: carry it to the run as an ordinary exception instead.
            raise ToolAborted(call, exc) from exc
        if done is not None:
            done(outcome)
        return outcome

    if len(calls) == 1:
        return [await gated(calls[0])]
    return list(await asyncio.gather(*(gated(c) for c in calls)))


class ToolAborted(Exception):
    """A tool raised ``SystemExit`` or ``KeyboardInterrupt``. The run ends its trace, then
    raises ``original``."""

    def __init__(self, call: ToolCall, original: BaseException) -> None:
        super().__init__(f"tool {call.tool.name!r} raised {type(original).__name__}")
        self.call = call
        self.original = original


def _in_thread(
    function: Callable[..., object],
    arguments: dict[str, object],
    leading: tuple[object, ...] = (),
) -> asyncio.Future[object]:
    """``function(*leading, **arguments)`` in a daemon worker thread (with this context's
    variables), as a future whose ``running`` flag (a one-item list) turns false when the
    function returns or raises. Cancelling or timing out the await leaves the call to finish
    on its own."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[object] = loop.create_future()
    context = contextvars.copy_context()
    running = [True]  # a plain flag: an Event would cost a lock and a condition per call
    future.running = running  # type: ignore[attr-defined]

    def settle(value: object, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(value)

    def job() -> Callable[[], None]:
        try:
            value = context.run(function, *leading, **arguments)
        except BaseException as exc:  # handed to the awaiting task, which decides
            running[0] = False
            return functools.partial(_call_soon, loop, settle, None, exc)
        running[0] = False
        return functools.partial(_call_soon, loop, settle, value, None)

    workers.start(job)
    return future


def _call_soon(loop: asyncio.AbstractEventLoop, *args: object) -> None:
    with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits for the call now
        loop.call_soon_threadsafe(*args)  # type: ignore[arg-type]


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
    running: list[bool] | None = None
    try:
        async with deadline:
            context = (current_run_context(),) if tool.takes_context else ()
            if tool.is_async:
                value = await tool.function(*context, **call.arguments)
            else:
                call_future = _in_thread(tool.function, call.arguments, context)
                running = getattr(call_future, "running", None)
                value = await call_future
            if inspect.isawaitable(value):  # a sync function that returned a coroutine
                value = await value
    except ToolRetry as exc:
        return outcome(Observation(content=exc.message, error="retry"))
    except TimeoutError as exc:
        if not deadline.expired():  # the tool itself raised TimeoutError
            return outcome(_failed(tool.name, exc), exc)
        alive = running is not None and running[0]
        timed_out = outcome(
            Observation(
                content=f"Error: {tool.name!r} timed out after {timeout or 0:g} s. "
                + (
                    "It may still be running in the background and take effect later; check "
                    "before calling it again."
                    if alive
                    else "It was stopped."
                ),
                error="timeout",
            )
        )
        return dataclasses.replace(timed_out, still_running=alive)
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
