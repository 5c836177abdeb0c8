"""The fine-tuning line formats export writes, each a pydantic model that validates a line
before it is written.

Two families, one conversation underneath (OpenAI wire messages, as the agent saw them):

- **OpenAI**: chat fine-tuning (``messages`` + ``tools``) for SFT, and preference fine-tuning
  (``input`` / ``preferred_output`` / ``non_preferred_output``) for pairs. OpenAI's preference
  format takes exactly one final assistant message per side, so a pair whose continuations hold
  tool calls is not expressible in it and is skipped with that reason.
- **TRL** (Hugging Face's conversational formats, loadable with ``datasets``): SFT
  ``{"messages", "tools"}`` and preference ``{"prompt", "chosen", "rejected", "tools"}`` with
  message lists. Messages follow the ``transformers`` chat-template shape: an assistant's
  ``tool_calls`` carry ``arguments`` as a JSON object (not text), and a tool message names its
  tool (``name``) and the call it answers (``tool_call_id``). ``tools`` are the agent's tool
  schemas (``{"type": "function", "function": {...}}``). A preference pair keeps the whole
  trajectory: the shared prefix up to the step where the two runs part, then each side's full
  continuation, tool calls and tool results included.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Format = Literal["openai", "trl"]
FORMATS: tuple[Format, ...] = ("openai", "trl")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- OpenAI ------------------------------------------------------------------------------------


class WireFunction(_Strict):
    name: str = Field(min_length=1)
    arguments: str


class WireToolCall(_Strict):
    id: str = Field(min_length=1)
    type: Literal["function"]
    function: WireFunction


class WireMessage(_Strict):
    role: Literal["system", "user", "assistant", "tool"]
    content: str | None = None
    tool_calls: list[WireToolCall] | None = None
    tool_call_id: str | None = None

    @model_validator(mode="after")
    def _shape(self) -> WireMessage:
        _check_message(self.role, self.content, self.tool_calls, self.tool_call_id)
        return self


class WireTool(_Strict):
    type: Literal["function"]
    function: dict[str, Any]


def _check_message(role: str, content: str | None, calls: list[Any] | None, call_id: Any) -> None:
    if role == "tool" and not call_id:
        raise ValueError("a tool message needs tool_call_id")
    if role != "assistant" and calls:
        raise ValueError(f"a {role} message cannot have tool_calls")
    if role != "assistant" and content is None:
        raise ValueError(f"a {role} message needs content")
    if role == "assistant" and content is None and not calls:
        raise ValueError("an assistant message needs content or tool_calls")


def check_conversation(messages: list[Any], *, opened: set[str] | None = None) -> set[str]:
    """Every tool message answers an earlier call and every call is answered before the next
    assistant turn. ``opened``: calls still open from a prefix; returns those left open."""
    open_calls: set[str] = set(opened or ())
    for message in messages:
        if message.role == "assistant":
            if open_calls:
                raise ValueError(f"tool calls without results: {sorted(open_calls)}")
            open_calls = {c.id for c in message.tool_calls or ()}
        elif message.role == "tool":
            if message.tool_call_id not in open_calls:
                raise ValueError(f"tool message for unknown call {message.tool_call_id!r}")
            open_calls.discard(message.tool_call_id)
    return open_calls


def _check_closed(messages: list[Any]) -> None:
    left = check_conversation(messages)
    if left:
        raise ValueError(f"tool calls without results: {sorted(left)}")


def _check_final(messages: list[Any]) -> None:
    last = messages[-1]
    if last.role != "assistant" or not last.content or last.tool_calls:
        raise ValueError("the last message must be the assistant's final answer")


class SFTExample(_Strict):
    """One line of OpenAI's chat fine-tuning format (with tools)."""

    messages: list[WireMessage] = Field(min_length=2)
    tools: list[WireTool] | None = None

    @model_validator(mode="after")
    def _conversation(self) -> SFTExample:
        _check_closed(self.messages)
        _check_final(self.messages)
        return self


class PreferenceInput(_Strict):
    messages: list[WireMessage] = Field(min_length=1)
    tools: list[WireTool] | None = None


class DPOExample(_Strict):
    """One line of OpenAI's preference (DPO) fine-tuning format."""

    input: PreferenceInput
    preferred_output: list[WireMessage] = Field(min_length=1, max_length=1)
    non_preferred_output: list[WireMessage] = Field(min_length=1, max_length=1)

    @model_validator(mode="after")
    def _outputs(self) -> DPOExample:
        _check_closed(self.input.messages)
        for output in (self.preferred_output[0], self.non_preferred_output[0]):
            if output.role != "assistant" or not output.content or output.tool_calls:
                raise ValueError("each output must be one assistant message with text")
        if self.preferred_output[0].content == self.non_preferred_output[0].content:
            raise ValueError("the preferred and non-preferred outputs are the same")
        return self


# -- TRL (Hugging Face) ------------------------------------------------------------------------


class TRLFunction(_Strict):
    name: str = Field(min_length=1)
    arguments: dict[str, Any]


class TRLToolCall(_Strict):
    id: str = Field(min_length=1)
    type: Literal["function"]
    function: TRLFunction


class TRLMessage(_Strict):
    role: Literal["system", "user", "assistant", "tool"]
    content: str | None = None
    tool_calls: list[TRLToolCall] | None = None
    tool_call_id: str | None = None
    name: str | None = None

    @model_validator(mode="after")
    def _shape(self) -> TRLMessage:
        _check_message(self.role, self.content, self.tool_calls, self.tool_call_id)
        if self.role == "tool" and not self.name:
            raise ValueError("a tool message needs the tool's name")
        return self


class TRLSFTExample(_Strict):
    """One line of TRL's conversational language-modeling format, with ``tools``."""

    messages: list[TRLMessage] = Field(min_length=2)
    tools: list[WireTool] | None = None

    @model_validator(mode="after")
    def _conversation(self) -> TRLSFTExample:
        _check_closed(self.messages)
        _check_final(self.messages)
        return self


class TRLPreferenceExample(_Strict):
    """One line of TRL's conversational preference format with an explicit prompt: the shared
    prefix, then each side's continuation to its final answer."""

    prompt: list[TRLMessage] = Field(min_length=1)
    chosen: list[TRLMessage] = Field(min_length=1)
    rejected: list[TRLMessage] = Field(min_length=1)
    tools: list[WireTool] | None = None

    @model_validator(mode="after")
    def _sides(self) -> TRLPreferenceExample:
        left = check_conversation(self.prompt)
        if left:
            raise ValueError(f"the prompt leaves tool calls without results: {sorted(left)}")
        for side in (self.chosen, self.rejected):
            if side[0].role != "assistant":
                raise ValueError("each side must start with an assistant turn")
            _check_closed(side)
            _check_final(side)
        if _dump(self.chosen) == _dump(self.rejected):
            raise ValueError("the chosen and rejected continuations are the same")
        return self


def _dump(messages: list[TRLMessage]) -> str:
    return json.dumps([m.model_dump() for m in messages], sort_keys=True)


SCHEMAS: dict[tuple[Format, Literal["sft", "dpo"]], type[_Strict]] = {
    ("openai", "sft"): SFTExample,
    ("openai", "dpo"): DPOExample,
    ("trl", "sft"): TRLSFTExample,
    ("trl", "dpo"): TRLPreferenceExample,
}
"""The schema each (format, kind) line is validated against before it is written."""


# -- conversion from the wire conversation -----------------------------------------------------


class NotExpressible(ValueError):
    """The example cannot be written in the asked-for format (the reason says why)."""


def to_trl_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """OpenAI wire messages in the ``transformers`` chat-template shape: tool-call arguments
    as JSON objects, tool messages with the tool's name. ``NotExpressible`` if a call's
    arguments are not a JSON object (a model's malformed call)."""
    names: dict[str, str] = {}
    out: list[dict[str, Any]] = []
    for message in messages:
        converted = {k: v for k, v in message.items() if k != "tool_calls"}
        if message.get("tool_calls"):
            calls = []
            for call in message["tool_calls"]:
                function = call["function"]
                try:
                    arguments = json.loads(function["arguments"] or "{}")
                except ValueError:
                    arguments = None
                if not isinstance(arguments, dict):
                    raise NotExpressible(
                        f"the arguments of a {function['name']!r} call are not a JSON object"
                    )
                names[call["id"]] = function["name"]
                calls.append(
                    {
                        "id": call["id"],
                        "type": "function",
                        "function": {"name": function["name"], "arguments": arguments},
                    }
                )
            converted["tool_calls"] = calls
        if message["role"] == "tool":
            converted["name"] = names.get(message.get("tool_call_id") or "", "")
        out.append(converted)
    return out


def sft_line(example: dict[str, Any], fmt: Format) -> dict[str, Any]:
    """An SFT example (``messages``, optional ``tools``) as a line of ``fmt``."""
    if fmt == "openai":
        return example
    return {**example, "messages": to_trl_messages(example["messages"])}


def pair_line(pair: dict[str, Any], fmt: Format) -> dict[str, Any]:
    """A pair (``prompt``, ``chosen``, ``rejected``, ``tools``: wire message lists) as a line
    of ``fmt``; ``NotExpressible`` if ``fmt`` cannot hold it."""
    tools = pair.get("tools")
    if fmt == "trl":
        line: dict[str, Any] = {
            side: to_trl_messages(pair[side]) for side in ("prompt", "chosen", "rejected")
        }
        if tools:
            line["tools"] = tools
        return line
    for side in ("chosen", "rejected"):
        messages = pair[side]
        if len(messages) != 1 or messages[0].get("tool_calls"):
            raise NotExpressible(
                "not expressible in OpenAI's preference format: a side continues with tool "
                "calls (use --format trl)"
            )
    preference_input: dict[str, Any] = {"messages": pair["prompt"]}
    if tools:
        preference_input["tools"] = tools
    return {
        "input": preference_input,
        "preferred_output": pair["chosen"],
        "non_preferred_output": pair["rejected"],
    }
