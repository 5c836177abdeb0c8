"""Hooks rebuilt from a trace's ``hook`` events, so an offline replay does what the hooks did.

Hooks are app code and are not in the trace; what they changed is. A replay without the app's
hooks gets these instead: each one returns, at the same call or step, the recorded verdict
(deny, rewrite, edited observation, output retry, guardrail stop). Replay layer.
"""

from __future__ import annotations

from typing import Any

from agentloop.context import RunContext
from agentloop.errors import HookFailed, ToolRetry
from agentloop.hooks import Deny, Hooks, Rewrite
from agentloop.trace import Trace


def recorded_hooks(trace: Trace) -> Hooks | None:
    """Hooks that replay ``trace``'s recorded hook events; ``None`` if it has none."""
    events = [e for e in trace.events if e.type == "hook"]
    # A typed output the run refused (schema or validator): the replay refuses it at the same
    # step with the same message (the output's Python type and validators are not in the trace).
    refused = {
        e.step: e.message
        for e in trace.events
        if e.type == "warning" and e.kind == "output_invalid"
    }
    end = trace.terminal
    failed_first = (
        end is not None
        and getattr(end, "reason", None) == "hook_error"
        and not any(e.seq < end.seq for e in trace.events)
    )
    if not events and not refused and not failed_first:
        return None
    by_call = {(e.point, e.call_id): e for e in events if e.call_id is not None}
    by_step = {(e.point, e.step): e for e in events if e.call_id is None}

    def before_tool_call(ctx: RunContext[Any], call: Any) -> Deny | Rewrite | None:
        event = by_call.get(("before_tool_call", call.call_id))
        if event is None:
            return None
        if event.action == "deny":
            return Deny(str(event.detail))
        return Rewrite(dict(event.detail)) if isinstance(event.detail, dict) else None

    def after_tool_call(ctx: RunContext[Any], call: Any, content: str) -> str | None:
        event = by_call.get(("after_tool_call", call.call_id))
        return str(event.detail) if event is not None else None

    def guard(point: str) -> Any:
        def check(ctx: RunContext[Any], value: Any) -> str | None:
            if point == "input_guardrails" and failed_first:
                raise HookFailed(str(getattr(end, "message", "")), hook="recorded")
            if point == "output_guardrails" and ctx.step in refused:
                raise ToolRetry(refused[ctx.step])
            event = by_step.get((point, ctx.step))
            if event is None:
                return None
            if event.action == "retry":
                raise ToolRetry(str(event.detail))
            return str(event.detail)

        check.__qualname__ = f"recorded_{point}"
        return check

    points = {e.point for e in events}
    return Hooks(
        before_tool_call=[before_tool_call] if "before_tool_call" in points else [],
        after_tool_call=[after_tool_call] if "after_tool_call" in points else [],
        input_guardrails=[guard("input_guardrails")]
        if "input_guardrails" in points or failed_first
        else [],
        output_guardrails=[guard("output_guardrails")]
        if "output_guardrails" in points or refused
        else [],
    )


def recorded_hook_failure(trace: Trace) -> tuple[int, str, str] | None:
    """Where a recorded run stopped because app code (a hook, a listener) raised: the last
    event before the failure (seq, type) and the failure's message. The code is not in the
    trace, so an offline replay stops after the same event with the same ``HookFailed``.
    ``None`` if the run did not stop so, or stopped before its first event (then
    ``recorded_hooks`` has an input guardrail that raises it)."""
    end = trace.terminal
    if end is None or end.type != "run_failed" or getattr(end, "reason", None) != "hook_error":
        return None
    before = [e for e in trace.events if e.seq < end.seq]
    if not before:  # it stopped before the first event: an input guardrail raises it
        return None
    return before[-1].seq, before[-1].type, str(getattr(end, "message", ""))
