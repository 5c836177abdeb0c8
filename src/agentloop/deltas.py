"""The pieces of a model response as a backend streams them: text and tool-call deltas.

``Model.request_stream`` yields ``TextDelta`` and ``ToolCallDelta`` values as they arrive and
ends with the assembled ``ModelResponse`` (the same one ``Model.request`` returns). Deltas are
for showing progress; the trace records only the assembled response. They are plain slotted
dataclasses, not pydantic models: a stream makes one per token and they are never validated.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TypeAlias

from agentloop.messages import ModelResponse


@dataclass(frozen=True, slots=True)
class TextDelta:
    """A piece of the response's text (for the JSON action protocol: of the answer)."""

    text: str


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    """A piece of a tool call: ``index`` is the call's position in the response; ``call_id``
    and ``name`` come with the call's first delta (``None`` afterwards), ``arguments`` is the
    next piece of the raw argument text (possibly empty)."""

    index: int
    call_id: str | None
    name: str | None
    arguments: str


ModelDelta: TypeAlias = TextDelta | ToolCallDelta
StreamItem: TypeAlias = TextDelta | ToolCallDelta | ModelResponse
"""What ``Model.request_stream`` yields: deltas, then the assembled response, last."""


def deltas_of(response: ModelResponse) -> list[ModelDelta]:
    """A whole response as deltas (what a backend that cannot stream sends in one go)."""
    deltas: list[ModelDelta] = [TextDelta(response.text)] if response.text else []
    deltas += [
        ToolCallDelta(i, part.call_id, part.name, part.arguments)
        for i, part in enumerate(response.tool_calls)
    ]
    return deltas


DeltaListener: TypeAlias = Callable[[int, ModelDelta], None]
"""Called with the step and each delta of a streamed model response."""
delta_listener: ContextVar[DeltaListener | None] = ContextVar(
    "agentloop_delta_listener", default=None
)
"""Set by ``Agent.stream``: runs started in this context stream their model responses to it
(a run without one asks ``Model.request``, the unstreamed path, unchanged)."""
