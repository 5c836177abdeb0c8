"""The test kit: deterministic models and helpers for testing agents without a network.

``ScriptedModel`` plays a list of responses and fails loudly when called past its script or
when steps are left over. ``FunctionModel`` computes each response with a function.
``capture_events`` collects the events of every run in a block; ``block_model_requests`` makes
any model request that would leave the machine fail.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from agentloop.errors import ScriptError
from agentloop.events import BaseEvent, capture_listeners
from agentloop.messages import Message, ModelResponse
from agentloop.models.base import Model, block_model_requests
from agentloop.settings import ModelSettings
from agentloop.tools import Toolset

__all__ = [
    "FunctionModel",
    "ModelCall",
    "ScriptedModel",
    "block_model_requests",
    "capture_events",
]

ScriptStep: TypeAlias = ModelResponse | BaseException | str
"""A scripted response; a string is a final answer, an exception is raised by the model."""


@dataclass(frozen=True)
class ModelCall:
    """What a test model was asked: a snapshot of the conversation, tool names and settings."""

    index: int
    messages: list[Message]
    tools: list[str]
    settings: ModelSettings


class _RecordingModel(Model):
    def __init__(self, name: str) -> None:
        self.name = name
        self.calls: list[ModelCall] = []

    def _record(
        self, messages: Sequence[Message], tools: Toolset, settings: ModelSettings
    ) -> ModelCall:
        call = ModelCall(len(self.calls), list(messages), list(tools), settings)
        self.calls.append(call)
        return call


class ScriptedModel(_RecordingModel):
    """Answers with ``steps`` in order; raises ``ScriptError`` on a call past the end.

    Call ``assert_consumed()`` (or use it as a context manager) to fail if steps are left.
    """

    def __init__(self, steps: Iterable[ScriptStep], *, name: str = "scripted") -> None:
        super().__init__(name)
        self.steps = list(steps)

    async def request(
        self, messages: Sequence[Message], tools: Toolset, settings: ModelSettings
    ) -> ModelResponse:
        call = self._record(messages, tools, settings)
        if call.index >= len(self.steps):
            last = messages[-1] if messages else None
            raise ScriptError(
                f"unexpected model call #{call.index + 1}: the script has only "
                f"{len(self.steps)} steps (last message: {last!r})"
            )
        step = self.steps[call.index]
        if isinstance(step, BaseException):
            raise step
        return ModelResponse.answer(step) if isinstance(step, str) else step

    @property
    def remaining(self) -> int:
        return max(0, len(self.steps) - len(self.calls))

    def assert_consumed(self) -> None:
        if self.remaining:
            raise ScriptError(
                f"{self.remaining} of {len(self.steps)} scripted steps were never requested"
            )

    def __enter__(self) -> ScriptedModel:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is None:
            self.assert_consumed()


ModelFunction: TypeAlias = Callable[
    [list[Message], ModelCall], ModelResponse | str | Awaitable[ModelResponse | str]
]


class FunctionModel(_RecordingModel):
    """Answers each request with ``function(messages, call)`` (sync or async); a returned
    string is a final answer."""

    def __init__(self, function: ModelFunction, *, name: str = "function") -> None:
        super().__init__(name)
        self.function = function

    async def request(
        self, messages: Sequence[Message], tools: Toolset, settings: ModelSettings
    ) -> ModelResponse:
        call = self._record(messages, tools, settings)
        result = self.function(list(messages), call)
        if inspect.isawaitable(result):
            result = await result
        return ModelResponse.answer(result) if isinstance(result, str) else result


@dataclass
class CapturedEvents:
    events: list[BaseEvent] = field(default_factory=list)

    def of_type(self, type_name: str) -> list[Any]:
        return [e for e in self.events if getattr(e, "type", None) == type_name]


@contextmanager
def capture_events() -> Iterator[CapturedEvents]:
    """Collect the events of every run started inside the block (in this context)."""
    captured = CapturedEvents()
    token = capture_listeners.set((*capture_listeners.get(), captured.events.append))
    try:
        yield captured
    finally:
        capture_listeners.reset(token)
