"""Hooks and guardrails: app code that may change what a run does, each change recorded.

``Agent(hooks=Hooks(...))`` takes sync or async callables at five points:

- ``before_request(ctx, messages, settings)``: return ``RequestEdit(messages=..., settings=...)``
  to change the conversation (kept for the rest of the run) or this request's settings;
- ``before_tool_call(ctx, call)``: return ``Deny(reason)`` to refuse a validated call (the
  model sees the reason) or ``Rewrite(arguments)`` to change its arguments (validated again);
  the approver is one such hook, for tools marked ``requires_approval``;
- ``after_tool_call(ctx, call, content)``: return a new text to replace what the model sees
  (strip PII, shorten); the trace keeps what the tool returned and records the edit;
- ``input_guardrails(ctx, task)`` and ``output_guardrails(ctx, output)``: return a reason (a
  ``str``) to stop the run with ``GuardrailTripped``; an output guardrail may instead raise
  ``ToolRetry`` to send the output back to the model within the retry budget.

``None`` always means "no change". Every change is a ``hook`` event in the trace, so replay
reproduces the run. A hook that raises stops the run with ``HookFailed`` (recorded as
``run_failed``); it never leaves the trace without its terminal event. Core layer.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from agentloop.messages import Message
from agentloop.settings import ModelSettings


@dataclass(frozen=True)
class RequestEdit:
    """What a ``before_request`` hook changes; ``None`` fields are left as they are."""

    messages: Sequence[Message] | None = None
    settings: ModelSettings | None = None


@dataclass(frozen=True)
class Deny:
    """A ``before_tool_call`` verdict: do not run the call; the model sees ``reason``."""

    reason: str


@dataclass(frozen=True)
class Rewrite:
    """A ``before_tool_call`` verdict: run the call with these arguments instead."""

    arguments: dict[str, Any]


Hook = Callable[..., Any]


@dataclass(frozen=True)
class Hooks:
    """The hooks of an agent, run in order at each point."""

    before_request: Sequence[Hook] = field(default_factory=tuple)
    before_tool_call: Sequence[Hook] = field(default_factory=tuple)
    after_tool_call: Sequence[Hook] = field(default_factory=tuple)
    input_guardrails: Sequence[Hook] = field(default_factory=tuple)
    output_guardrails: Sequence[Hook] = field(default_factory=tuple)

    def __bool__(self) -> bool:
        return any(
            (
                self.before_request,
                self.before_tool_call,
                self.after_tool_call,
                self.input_guardrails,
                self.output_guardrails,
            )
        )

    def names(self) -> dict[str, list[str]]:
        """The hooks by point, by name: part of the agent's configuration and version."""
        points = (
            "before_request",
            "before_tool_call",
            "after_tool_call",
            "input_guardrails",
            "output_guardrails",
        )
        return {p: [hook_name(h) for h in getattr(self, p)] for p in points if getattr(self, p)}


def hook_name(hook: Hook) -> str:
    return str(getattr(hook, "__qualname__", None) or type(hook).__name__)


async def call_hook(hook: Hook, *args: Any) -> Any:
    """``hook(*args)``, awaited when it is async."""
    value = hook(*args)
    if inspect.isawaitable(value):
        value = await value
    return value
