"""The steps of a run that app code and fallbacks can change: hooks, guardrails, fallback models.

``Steered`` is a base of ``Run`` (the loop): it holds what ``agentloop.hooks`` describes, run at
its points in the loop, each change recorded as a ``hook`` event, and the fallback models that
take a request the model failed. Kept apart so the loop reads top to bottom. Agent layer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from agentloop.actions import Call, ToolCall
from agentloop.context import ConversationTurn, RunContext
from agentloop.deltas import DeltaListener
from agentloop.errors import (
    GuardrailTripped,
    HookFailed,
    ModelConnectionError,
    ModelError,
    ModelRateLimited,
    ModelTimeoutError,
    ToolRetry,
)
from agentloop.events import BaseEvent, HookApplied, RunWarned
from agentloop.hooks import Deny, RequestEdit, Rewrite, call_hook, hook_name
from agentloop.messages import Message, ModelResponse, Usage, UserMessage
from agentloop.models.base import Model
from agentloop.settings import ModelSettings
from agentloop.spec import AgentSpec
from agentloop.streaming import stream_response
from agentloop.tools import Toolset


class Steered:
    """Hook, guardrail and fallback steps; ``Run`` provides the state they read."""

    spec: AgentSpec
    model: Model
    tools: Toolset
    settings: ModelSettings
    messages: list[Message]
    sent: int
    step: int
    usage: Usage
    run_id: str
    task: str
    deps: Any
    conversation: ConversationTurn | None
    redact: Callable[[str], str]
    on_delta: DeltaListener | None
    """Set when the run is streamed (``Agent.stream``): the model is asked with
    ``request_stream`` and each delta goes here."""

    def emit(self, event_type: type[BaseEvent], /, **fields: Any) -> None:
        raise NotImplementedError

    def count_mistakes(self, n: int) -> None:
        raise NotImplementedError

    def flush_trace(self) -> None:
        """Hand the events made so far to the trace file: called before every wait."""
        raise NotImplementedError

    async def request(self, settings: ModelSettings) -> ModelResponse:
        """The model's response; on a rate limit, server error or timeout, the agent's
        fallback models take the request in turn (each switch recorded as a warning)."""
        models = (self.model, *self.spec.fallback_models)
        for index, model in enumerate(models):
            self.flush_trace()
            try:
                if self.on_delta is None:
                    return await model.request(self.messages, self.tools, settings)
                return await stream_response(self, model, settings, self.on_delta)
            except ModelError as exc:
                if index + 1 == len(models) or not _falls_back(exc):
                    raise
                self.emit(
                    RunWarned,
                    kind="model_fallback",
                    message=self.redact(
                        f"{model.name} failed ({type(exc).__name__}: {exc}); "
                        f"asking {models[index + 1].name}"
                    ),
                )
        raise AssertionError("unreachable")

    # -- hooks and guardrails ----------------------------------------------------------------

    async def hook(self, point: str, hook: Any, *args: Any) -> Any:
        """Run one hook; one that raises stops the run with ``HookFailed``."""
        self.flush_trace()
        try:
            return await call_hook(hook, self.context(), *args)
        except (ToolRetry, GuardrailTripped, HookFailed):
            raise
        except Exception as exc:
            name = hook_name(hook)
            raise HookFailed(
                f"{point} hook {name} raised {type(exc).__name__}: {exc}", hook=name
            ) from exc

    def context(self) -> RunContext[Any]:
        return RunContext(
            deps=self.deps,
            run_id=self.run_id,
            step=self.step,
            usage=self.usage,
            approver=self.spec.approver,
            conversation_id=self.conversation.id if self.conversation else None,
        )

    def applied(self, hook: Any, point: str, action: str, **fields: Any) -> None:
        self.emit(HookApplied, hook=hook_name(hook), point=point, action=action, **fields)

    async def check_input(self) -> None:
        for guard in self.spec.hooks.input_guardrails:
            reason = await self.hook("input_guardrails", guard, self.task)
            if reason is not None:
                self.applied(guard, "input_guardrails", "stop", detail=str(reason))
                raise GuardrailTripped(f"input guardrail: {reason}", guardrail=hook_name(guard))

    async def check_output(self, text: str) -> tuple[bool, Any]:
        """``(True, output)`` for an answer that parses and passes the output guardrails;
        ``(False, None)`` after sending the model back with what to fix."""
        value: Any = text
        guard: Any = None
        try:
            if self.spec.output is not None:
                self.flush_trace()
                value = await self.spec.output.parse(text)
            for guard in self.spec.hooks.output_guardrails:
                reason = await self.hook("output_guardrails", guard, value)
                if reason is not None:
                    self.applied(guard, "output_guardrails", "stop", detail=str(reason))
                    raise GuardrailTripped(
                        f"output guardrail: {reason}", guardrail=hook_name(guard)
                    )
        except ToolRetry as exc:
            if guard is not None:
                self.applied(guard, "output_guardrails", "retry", detail=exc.message)
            else:
                self.emit(RunWarned, kind="output_invalid", message=self.redact(exc.message))
            self.messages.append(
                UserMessage(
                    content=f"Your final answer was not accepted: {exc.message}. "
                    "Answer again in the required form."
                )
            )
            self.count_mistakes(1)
            return False, None
        return True, value

    async def before_request(self) -> ModelSettings | None:
        settings: ModelSettings | None = None
        for hook in self.spec.hooks.before_request:
            edit = await self.hook(
                "before_request", hook, list(self.messages), settings or self.settings
            )
            if isinstance(edit, RequestEdit):
                if edit.messages is not None:
                    self.messages[:] = list(edit.messages)
                    self.sent = min(self.sent, len(self.messages))
                if edit.settings is not None:
                    settings = edit.settings
                detail = {
                    "messages": len(edit.messages) if edit.messages is not None else None,
                    "settings": edit.settings.model_dump(mode="json", exclude_none=True)
                    if edit.settings is not None
                    else None,
                }
                self.applied(hook, "before_request", "edit", detail=detail)
        return settings

    async def before_tool_calls(self, actions: list[Call]) -> list[Call]:
        checked: list[Call] = []
        for action in actions:
            for hook in self.spec.hooks.before_tool_call:
                if not isinstance(action, ToolCall):
                    break
                verdict = await self.hook("before_tool_call", hook, action)
                if isinstance(verdict, Deny):
                    self.applied(hook, "before_tool_call", "deny", call_id=action.call_id,
                                 detail=verdict.reason)  # fmt: skip
                    action = action.denied(verdict.reason)
                    break
                if isinstance(verdict, Rewrite):
                    self.applied(hook, "before_tool_call", "rewrite", call_id=action.call_id,
                                 detail=verdict.arguments)  # fmt: skip
                    action = action.rewritten(verdict.arguments)
            checked.append(action)
        return checked

    async def after_tool_call(self, call: ToolCall, content: str) -> str:
        for hook in self.spec.hooks.after_tool_call:
            edited = await self.hook("after_tool_call", hook, call, content)
            if edited is not None and edited != content:
                content = str(edited)
                self.applied(hook, "after_tool_call", "edit", call_id=call.call_id,
                             detail=content)  # fmt: skip
        return content


def _falls_back(exc: ModelError) -> bool:
    """Whether a fallback model should take a request that failed with ``exc``."""
    status = getattr(exc, "status", None)
    return isinstance(exc, ModelRateLimited | ModelTimeoutError | ModelConnectionError) or (
        isinstance(status, int) and status >= 500
    )
