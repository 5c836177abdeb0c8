"""Turn a model response into actions: validated tool calls, rejected calls, or a final answer.

A call the model got wrong (bad JSON, bad arguments, unknown tool, cut off by the token limit)
becomes a ``RejectedCall`` carrying the observation that tells the model what to fix. Nothing
here raises for the model's mistakes.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, TypeAlias

from agentloop.messages import ModelResponse, ToolCallPart
from agentloop.observations import ErrorKind, Observation
from agentloop.tool_schemas import InvalidArguments
from agentloop.tools import Tool, Toolset


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A call that passed validation: ``arguments`` are the keyword arguments for the tool."""

    part: ToolCallPart
    tool: Tool
    arguments: dict[str, Any]
    raw_arguments: dict[str, Any]
    """The arguments as the model sent them, parsed but not converted (for the trace)."""

    @property
    def call_id(self) -> str:
        return self.part.call_id

    def denied(self, reason: str) -> RejectedCall:
        """This call refused by a hook: it will not run, and the model sees ``reason``."""
        message = f"Error: the call to {self.tool.name!r} was denied: {reason}"
        return _reject(self.part, "denied", message)

    def rewritten(self, arguments: dict[str, Any]) -> ToolCall | RejectedCall:
        """This call with other arguments (from a hook), validated like the model's."""
        try:
            converted = self.tool.validate(arguments)
        except InvalidArguments as exc:
            message = f"Error: a hook rewrote the arguments for {self.tool.name!r}: {exc}"
            return _reject(self.part, "invalid_arguments", message)
        return ToolCall(self.part, self.tool, converted, dict(arguments))


@dataclass(frozen=True, slots=True)
class RejectedCall:
    """A call that will not run; ``observation`` tells the model why."""

    part: ToolCallPart
    observation: Observation

    @property
    def call_id(self) -> str:
        return self.part.call_id


@dataclass(frozen=True, slots=True)
class FinalAnswer:
    text: str


Call: TypeAlias = ToolCall | RejectedCall
"""A tool call the model asked for, valid or not."""


def with_unique_call_ids(response: ModelResponse) -> ModelResponse:
    """The response with every tool call id present and distinct within it.

    Some servers omit ids or repeat one (Ollama reuses ``call_0``); each call must still get
    exactly one result, so missing or repeated ids become ``call_<index>``.
    """
    seen: set[str] = set()
    fixed: list[ToolCallPart] = []
    for index, part in enumerate(response.tool_calls):
        call_id = part.call_id
        if not call_id or call_id in seen:
            call_id = f"call_{index}"
            while call_id in seen:
                call_id += "_"
            part = part.model_copy(update={"call_id": call_id})
        seen.add(call_id)
        fixed.append(part)
    if fixed == list(response.tool_calls):
        return response
    return response.model_copy(update={"tool_calls": tuple(fixed)})


def parse_actions(response: ModelResponse, tools: Toolset) -> FinalAnswer | list[Call]:
    """The actions in ``response``: its tool calls, or else its text as the final answer.

    An empty list means the response was empty (no text, no tool calls).
    """
    if response.tool_calls:
        cut_off = response.finish_reason == "length"
        return [_parse_call(part, tools, cut_off) for part in response.tool_calls]
    if response.text and response.text.strip():
        return FinalAnswer(response.text)
    return []


def _parse_call(part: ToolCallPart, tools: Toolset, cut_off: bool) -> ToolCall | RejectedCall:
    if cut_off:
        return _reject(
            part,
            "truncated_call",
            f"Error: your output was cut off (finish_reason=length) before the call to "
            f"{part.name!r} was complete, so it was not run. Call it again with shorter "
            "arguments, or answer.",
        )
    tool = tools.get(part.name)
    if tool is None:
        available = ", ".join(sorted(tools)) or "(none)"
        return _reject(
            part,
            "unknown_tool",
            f"Error: there is no tool named {part.name!r}. Available tools: {available}.",
        )
    try:
        raw = _strict_json(part.arguments) if part.arguments.strip() else {}
    except ValueError as exc:
        return _reject(
            part,
            "invalid_json",
            f"Error: the arguments for {part.name!r} are not valid JSON ({exc}). Send one "
            "JSON object matching the tool's parameters.",
        )
    if not isinstance(raw, dict):
        return _reject(
            part,
            "invalid_arguments",
            f"Error: the arguments for {part.name!r} must be a JSON object, not "
            f"{type(raw).__name__}.",
        )
    try:
        arguments = tool.validate(raw)
    except RecursionError:
        return _reject(
            part,
            "invalid_arguments",
            f"Error: the arguments for {part.name!r} are nested too deep.",
        )
    except InvalidArguments as exc:
        return _reject(
            part,
            "invalid_arguments",
            f"Error: invalid arguments for {part.name!r}: {exc}. Fix them and call again.",
        )
    return ToolCall(part=part, tool=tool, arguments=arguments, raw_arguments=raw)


def _strict_json(text: str) -> Any:
    """JSON as the standard defines it: no NaN or Infinity, no repeated keys (Python's json
    accepts both, and a repeated key would silently drop a value)."""
    try:
        return json.loads(text, parse_constant=_no_constant, object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{exc.msg} at position {exc.pos}") from None
    except RecursionError:
        raise ValueError("nested too deep") from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    unique = dict(pairs)
    if len(unique) != len(pairs):
        keys = [k for k, _ in pairs]
        repeated = next(k for i, k in enumerate(keys) if k in keys[:i])
        raise ValueError(f"repeated key {repeated!r}")
    return unique


def _reject(part: ToolCallPart, kind: ErrorKind, message: str) -> RejectedCall:
    return RejectedCall(part=part, observation=Observation(content=message, error=kind))


_TOOL_CALL_IN_TEXT = re.compile(r"<tool_call>|\"(?:name|function)\"\s*:\s*\"([A-Za-z0-9_.-]+)\"")


def looks_like_unparsed_tool_call(text: str | None, tools: Toolset) -> bool:
    """Whether a text answer seems to hold a tool call the server failed to parse (a known
    vLLM/Ollama parser mismatch). It stays a text answer; the trace gets a warning."""
    if not text:
        return False
    for match in _TOOL_CALL_IN_TEXT.finditer(text):
        if match.group(1) is None or match.group(1) in tools:
            return True
    return False
