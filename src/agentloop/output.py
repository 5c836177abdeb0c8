"""Typed output: the final answer parsed into a Python type the app asked for.

``Agent(output_type=X)`` takes a pydantic model, dataclass, TypedDict, ``list[...]``, a scalar,
a ``Literal`` or an Enum. ``OutputSpec`` turns the type into one JSON Schema on the wire
(always an object at the root, as OpenAI's structured outputs require: a non-object type is
wrapped as ``{"result": ...}``), which every backend uses the same way: an OpenAI-compatible
server as a strict ``response_format``; the JSON action protocol (the embedded model, servers
without native tool calling) as the answer branch of its action schema, so llama.cpp's grammar
constrains it. The answer is validated; an answer that does not validate, or that an output
validator refuses with ``ToolRetry``, goes back to the model within the retry budget.
Runtime layer.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic

from pydantic import TypeAdapter, ValidationError

from agentloop.errors import ToolRetry, first_problem
from agentloop.result import OutputT

OutputValidator = Callable[[Any], Any]
"""A check on the parsed output: returns the (possibly changed) output, or an awaitable of it;
raises ``ToolRetry`` to send the model back with a message."""

RESULT_KEY = "result"
"""The key a non-object output is wrapped in on the wire."""


class OutputInvalid(ToolRetry):
    """The final answer does not match the output type; the message says why, for the model."""


@dataclass(frozen=True)
class OutputSpec(Generic[OutputT]):
    """How to ask for, and read, one output type."""

    output_type: Any
    validators: Sequence[OutputValidator] = ()
    adapter: TypeAdapter[Any] = field(init=False, repr=False, compare=False)
    schema: dict[str, Any] = field(init=False, repr=False, compare=False)
    """The wire schema: an object at the root."""
    wrapped: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        adapter: TypeAdapter[Any] = TypeAdapter(self.output_type)
        schema = adapter.json_schema()
        wrapped = schema.get("type") != "object"
        if wrapped:
            defs = schema.pop("$defs", None)
            schema = {
                "type": "object",
                "properties": {RESULT_KEY: schema},
                "required": [RESULT_KEY],
                "additionalProperties": False,
                **({"$defs": defs} if defs else {}),
            }
        object.__setattr__(self, "adapter", adapter)
        object.__setattr__(self, "schema", schema)
        object.__setattr__(self, "wrapped", wrapped)

    @property
    def name(self) -> str:
        """The output type as written in Python (recorded in the agent's configuration)."""
        kind = self.output_type
        return getattr(kind, "__name__", None) or str(kind).replace("typing.", "")

    def config(self) -> dict[str, Any]:
        """What the trace header records (part of the agent's version)."""
        return {
            "type": self.name,
            "schema": self.schema,
            "validators": [getattr(v, "__qualname__", repr(v)) for v in self.validators],
        }

    def instructions(self) -> str:
        """The sentence the system prompt adds so every backend knows the answer's shape."""
        return (
            "Give your final answer as JSON that matches this JSON Schema, and nothing else: "
            + json.dumps(self.schema, separators=(",", ":"))
        )

    async def parse(self, text: str) -> OutputT:
        """The output in ``text``, validated and passed through the validators; raises
        ``OutputInvalid`` (or a validator's ``ToolRetry``) with a message for the model."""
        try:
            raw = json.loads(_strip_fence(text))
        except json.JSONDecodeError as exc:
            raise OutputInvalid(f"the final answer is not JSON ({exc.msg})") from None
        if self.wrapped:
            if not isinstance(raw, dict) or RESULT_KEY not in raw:
                raw = {RESULT_KEY: raw}  # a bare value is accepted too
            raw = raw[RESULT_KEY]
        try:
            value: Any = self.adapter.validate_python(raw)
        except ValidationError as exc:
            problem = first_problem(exc)
            raise OutputInvalid(f"the final answer does not match the schema: {problem}") from None
        for validator in self.validators:
            value = validator(value)
            if inspect.isawaitable(value):
                value = await value
        return value  # type: ignore[no-any-return]

    @staticmethod
    def recorded(config: dict[str, Any]) -> OutputSpec[Any]:
        """The output a trace header recorded, for replay: the same schema and version, its
        values read as plain JSON (the Python type is not in the trace)."""
        return _RecordedOutput(config)


class _RecordedOutput(OutputSpec[Any]):
    """An output rebuilt from a trace: parses JSON, reports the recorded configuration."""

    _config: dict[str, Any]

    def __init__(self, config: dict[str, Any]) -> None:
        object.__setattr__(self, "output_type", Any)
        object.__setattr__(self, "validators", ())
        object.__setattr__(self, "adapter", TypeAdapter(Any))
        object.__setattr__(self, "schema", config.get("schema", {}))
        properties = self.schema.get("properties", {})
        object.__setattr__(self, "wrapped", list(properties) == [RESULT_KEY])
        object.__setattr__(self, "_config", dict(config))

    def config(self) -> dict[str, Any]:
        return dict(self._config)


def _strip_fence(text: str) -> str:
    """Models often wrap JSON in a Markdown fence; take what is inside."""
    stripped = text.strip()
    if stripped.startswith("```"):
        stripped = stripped.split("\n", 1)[-1].rsplit("```", 1)[0]
    return stripped.strip()
