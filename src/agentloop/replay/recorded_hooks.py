"""Hooks rebuilt from a trace's ``hook`` events, so an offline replay does what the hooks did.

Hooks are app code and are not in the trace; what they changed is. A replay without the app's
hooks gets these instead: each one returns, at the same call or step, the recorded verdict
(deny, rewrite, edited observation, output retry, guardrail stop). Replay layer.
"""

from __future__ import annotations

from typing import Any

from agentloop.context import RunContext
from agentloop.errors import ToolRetry
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
    if not events and not refused:
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
        input_guardrails=[guard("input_guardrails")] if "input_guardrails" in points else [],
        output_guardrails=[guard("output_guardrails")]
        if "output_guardrails" in points or refused
        else [],
    )
