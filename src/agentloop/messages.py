"""The conversation, provider-neutral: messages, what the model said, and token usage.

``ToolCallPart`` is what the model *said* (a raw name and raw argument text, possibly invalid);
``agentloop.actions.ToolCall`` is the validated action built from it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Annotated, Any, Literal, Self, TypeAlias

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class _Message(_Frozen):
    """Base of the messages; backends may cache their wire encoding of a message here, since
    messages never change once made (so a request costs the same at step 50 as at step 1)."""

    _wire: dict[str, Any] = PrivateAttr(default_factory=dict)

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        """A copy with its own (empty) wire cache: pydantic would share the private dict, and
        a copy with other content must not be sent with the original's encoding."""
        copied = super().model_copy(update=update, deep=deep)
        copied._wire = {}
        return copied


class ToolCallPart(_Frozen):
    """One tool call as the model emitted it: the name and argument text are not yet checked."""

    call_id: str
    name: str
    arguments: str
    """The raw argument text; normally a JSON object, but the model may send anything."""


class SystemMessage(_Message):
    role: Literal["system"] = "system"
    content: str


class UserMessage(_Message):
    role: Literal["user"] = "user"
    content: str


class AssistantMessage(_Message):
    role: Literal["assistant"] = "assistant"
    content: str | None = None
    tool_calls: tuple[ToolCallPart, ...] = ()


class ToolMessage(_Message):
    """The observation of one tool call, sent back to the model under the call's id."""

    role: Literal["tool"] = "tool"
    call_id: str
    name: str
    content: str


Message: TypeAlias = Annotated[
    SystemMessage | UserMessage | AssistantMessage | ToolMessage, Field(discriminator="role")
]


class Usage(_Frozen):
    """Tokens spent. Backends that report nothing leave zeros."""

    input_tokens: int = 0
    output_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
        )


class RequestAttempt(_Frozen):
    """One failed try at a model request that the retry layer retried."""

    attempt: int
    error: str
    status: int | None = None
    delay_s: float = 0.0
    """How long the retry layer waited before the next try."""


class ModelResponse(_Frozen):
    """What a model returned for one request."""

    text: str | None = None
    tool_calls: tuple[ToolCallPart, ...] = ()
    finish_reason: str | None = None
    usage: Usage = Usage()
    model_name: str | None = None
    latency_ms: float | None = None
    first_token_ms: float | None = None
    """Streamed responses: from sending the request to the first text or tool-call delta."""
    generation_ms: float | None = None
    """Streamed responses: from the first delta to the end of the stream."""
    attempts: tuple[RequestAttempt, ...] = ()
    """Failed tries before this response, if the retry layer retried."""
    protocol: Literal["native", "json"] = "native"
    """Which action protocol produced the tool calls."""
    timings: dict[str, float] | None = None
    """What the backend measured, when it reports it (llama.cpp: ``prompt_n``, ``prompt_ms``,
    ``prompt_per_second``, ``predicted_n``, ``predicted_ms``, ``predicted_per_second``...)."""

    @classmethod
    def answer(cls, text: str, **fields: Any) -> ModelResponse:
        """A response that is a final answer."""
        return cls(text=text, finish_reason="stop", **fields)

    @classmethod
    def tool_call(
        cls,
        name: str,
        arguments: dict[str, Any] | str | None = None,
        *,
        call_id: str | None = None,
        **fields: Any,
    ) -> ModelResponse:
        """A response with one tool call; ``arguments`` as a dict or as raw text."""
        return cls.tool_calls_of([(name, arguments)], call_ids=[call_id], **fields)

    @classmethod
    def tool_calls_of(
        cls,
        calls: list[tuple[str, dict[str, Any] | str | None]],
        *,
        call_ids: list[str | None] | None = None,
        **fields: Any,
    ) -> ModelResponse:
        """A response with several tool calls, in order."""
        ids = call_ids or [None] * len(calls)
        parts = tuple(
            ToolCallPart(
                call_id=call_id or f"call_{i}",
                name=name,
                arguments=args if isinstance(args, str) else json.dumps(args or {}),
            )
            for i, ((name, args), call_id) in enumerate(zip(calls, ids, strict=True))
        )
        return cls(tool_calls=parts, finish_reason="tool_calls", **fields)

    def to_message(self) -> AssistantMessage:
        """The assistant message that records this response in the conversation (built
        without validating again: the response's fields were validated when it was made)."""
        return AssistantMessage.model_construct(content=self.text, tool_calls=self.tool_calls)
