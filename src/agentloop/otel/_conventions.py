"""The OpenTelemetry GenAI semantic conventions, as agentloop fills them in.

Names follow the GenAI conventions of semantic-conventions 1.44 (status "development"): the
``invoke_agent``, ``chat`` and ``execute_tool`` operations, ``gen_ai.provider.name`` (not the
older ``gen_ai.system``), and message content as the JSON-encoded ``gen_ai.input.messages`` /
``gen_ai.output.messages`` attributes. Everything agentloop adds is under ``agentloop.*``.

The functions here turn the JSON form of agentloop's messages (as a trace file holds them) into
the conventions' message form: ``{"role": ..., "parts": [{"type": "text", "content": ...}]}``.
"""

from __future__ import annotations

import json
import os
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from typing import Any

SEMCONV_VERSION = "1.44.0"
SCHEMA_URL = f"https://opentelemetry.io/schemas/{SEMCONV_VERSION}"
SCOPE = "agentloop"
"""The instrumentation scope of every span agentloop makes."""

OPERATION = "gen_ai.operation.name"
PROVIDER = "gen_ai.provider.name"
REQUEST_MODEL = "gen_ai.request.model"
RESPONSE_MODEL = "gen_ai.response.model"
RESPONSE_ID = "gen_ai.response.id"
FINISH_REASONS = "gen_ai.response.finish_reasons"
INPUT_TOKENS = "gen_ai.usage.input_tokens"
OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
AGENT_NAME = "gen_ai.agent.name"
CONVERSATION_ID = "gen_ai.conversation.id"
TOOL_NAME = "gen_ai.tool.name"
TOOL_CALL_ID = "gen_ai.tool.call.id"
TOOL_TYPE = "gen_ai.tool.type"
ERROR_TYPE = "error.type"
INPUT_MESSAGES = "gen_ai.input.messages"
OUTPUT_MESSAGES = "gen_ai.output.messages"
SYSTEM_INSTRUCTIONS = "gen_ai.system_instructions"
TOOL_ARGUMENTS = "gen_ai.tool.call.arguments"
TOOL_RESULT = "gen_ai.tool.call.result"
CONTENT_ATTRIBUTES = frozenset(
    {INPUT_MESSAGES, OUTPUT_MESSAGES, SYSTEM_INSTRUCTIONS, TOOL_ARGUMENTS, TOOL_RESULT}
)
"""The attributes that carry message or tool content: set only when content capture is on."""

REQUEST_SETTINGS = {
    "temperature": "gen_ai.request.temperature",
    "top_p": "gen_ai.request.top_p",
    "max_tokens": "gen_ai.request.max_tokens",
    "seed": "gen_ai.request.seed",
    "stop": "gen_ai.request.stop_sequences",
}
"""agentloop's ``ModelSettings`` fields and the request attributes they become."""

CAPTURE_CONTENT_ENV = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
_CAPTURE_ON = {"true", "1", "yes", "span_only", "span_and_event"}

_PROVIDERS = {"OpenAIModel": "openai", "LocalModel": "llama.cpp"}
_FINISH = {"tool_calls": "tool_call", "function_call": "tool_call"}


@cache
def scope_version() -> str:
    try:
        return version("agentloop")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "unknown"


def capture_content_from_env() -> bool:
    """Whether ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`` asks for message content
    on spans: ``true`` (the switch's first form) or ``SPAN_ONLY`` / ``SPAN_AND_EVENT`` (the form
    under ``OTEL_SEMCONV_STABILITY_OPT_IN=gen_ai_latest_experimental``). Off by default."""
    return os.environ.get(CAPTURE_CONTENT_ENV, "").strip().lower() in _CAPTURE_ON


def provider_name(model_config: dict[str, Any]) -> str:
    """``gen_ai.provider.name`` for a model: ``openai`` for any OpenAI-compatible endpoint,
    ``llama.cpp`` for the embedded model, the model class's name for anything else."""
    kind = str(model_config.get("kind", "unknown"))
    return _PROVIDERS.get(kind, kind)


def request_attributes(agent: dict[str, Any]) -> dict[str, Any]:
    """The ``gen_ai.request.*`` attributes an agent's configuration (a trace header's
    ``agent``) sets on every model request."""
    model = agent.get("model") or {}
    attributes: dict[str, Any] = {
        PROVIDER: provider_name(model),
        REQUEST_MODEL: str(model.get("name", "unknown")),
    }
    settings = agent.get("settings") or {}
    for field, name in REQUEST_SETTINGS.items():
        value = settings.get(field)
        if isinstance(value, list):
            value = [str(v) for v in value]
        if value is not None:
            attributes[name] = value
    return attributes


def _arguments(raw: str) -> Any:
    """A tool call's arguments as a JSON value when they parse, else the raw text."""
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def _text(content: Any) -> list[dict[str, Any]]:
    return [{"type": "text", "content": content}] if content else []


def input_message(message: dict[str, Any]) -> dict[str, Any]:
    """One agentloop message (its JSON form) as a conventions input message."""
    role = message.get("role")
    if role == "tool":
        part = {
            "type": "tool_call_response",
            "id": message.get("call_id"),
            "response": message.get("content"),
        }
        return {"role": "tool", "parts": [part]}
    parts = _text(message.get("content"))
    for call in message.get("tool_calls") or ():
        parts.append(
            {
                "type": "tool_call",
                "id": call.get("call_id"),
                "name": call.get("name"),
                "arguments": _arguments(str(call.get("arguments", ""))),
            }
        )
    return {"role": role, "parts": parts}


def output_message(response: dict[str, Any]) -> dict[str, Any]:
    """A model response (its JSON form) as a conventions output message."""
    message = input_message(
        {"role": "assistant", "content": response.get("text"), "tool_calls": response["tool_calls"]}
    )
    reason = response.get("finish_reason") or ("tool_call" if message["parts"] else "stop")
    message["finish_reason"] = _FINISH.get(reason, reason)
    return message


def dumps(value: Any) -> str:
    """JSON for an attribute value: compact, non-ASCII kept as is."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
