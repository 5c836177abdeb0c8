"""The OpenAI chat-completions wire format: messages out, completions in, strict schemas.

Kept apart from ``OpenAIModel`` (the HTTP client, retries and limits) so the format reads on its
own: each message's wire JSON is encoded once and cached on the message, a completion (chat or
text) becomes a ``ModelResponse``, and ``strict_allowed`` says when a schema may be sent with
``strict: true``. Models layer.
"""

from __future__ import annotations

import datetime
import email.utils
import json
import time
from typing import Any

import httpx2
from pydantic import ValidationError

from agentloop.errors import first_problem
from agentloop.messages import (
    AssistantMessage,
    Message,
    ModelResponse,
    RequestAttempt,
    SystemMessage,
    ToolCallPart,
    ToolMessage,
    Usage,
)

_WIRE = "openai"


_NOT_STRICT = frozenset(
    {
        "patternProperties",
        "unevaluatedProperties",
        "propertyNames",
        "minProperties",
        "maxProperties",
        "dependentRequired",
        "dependentSchemas",
        "if",
        "then",
        "else",
        "not",
        "contains",
        "uniqueItems",
        "default",
    }
)


def strict_allowed(schema: Any) -> bool:
    """Whether OpenAI's strict structured outputs accept ``schema``: every object lists all of
    its properties as required and forbids others, and no keyword strict mode lacks is used."""
    if isinstance(schema, list):
        return all(strict_allowed(item) for item in schema)
    if not isinstance(schema, dict):
        return True
    if _NOT_STRICT.intersection(schema):
        return False
    if schema.get("type") == "object" or "properties" in schema:
        properties = schema.get("properties", {})
        if schema.get("additionalProperties") is not False:
            return False
        if not isinstance(properties, dict) or set(schema.get("required", ())) != set(properties):
            return False
    return all(strict_allowed(value) for value in schema.values() if isinstance(value, dict | list))


def strict_tool(spec: dict[str, Any]) -> dict[str, Any]:
    """A tool spec with ``strict: true`` when its parameters allow it."""
    return {**spec, "strict": True} if strict_allowed(spec.get("parameters", {})) else spec


def encoded(message: Message) -> bytes:
    """The message's wire JSON, encoded once per message (messages never change).

    The cache is the message's private ``_wire`` dict, read from pydantic's private store
    directly: ``message._wire`` goes through ``BaseModel.__getattr__`` (about 3.5 µs, paid for
    every message of every request) where the store is a plain attribute (0.15 µs)."""
    wire: dict[str, bytes] = message.__pydantic_private__["_wire"]  # type: ignore[index]
    cached = wire.get(_WIRE)
    if cached is None:
        cached = wire[_WIRE] = json.dumps(wire_message(message)).encode()
    return cached


def wire_message(message: Message) -> dict[str, Any]:
    if isinstance(message, AssistantMessage):
        wire: dict[str, Any] = {"role": "assistant", "content": message.content}
        if message.tool_calls:
            wire["tool_calls"] = [
                {
                    "id": p.call_id,
                    "type": "function",
                    "function": {"name": p.name, "arguments": p.arguments},
                }
                for p in message.tool_calls
            ]
        return wire
    if isinstance(message, ToolMessage):
        return {"role": "tool", "tool_call_id": message.call_id, "content": message.content}
    role = "system" if isinstance(message, SystemMessage) else "user"
    return {"role": role, "content": message.content}


def completion_response(
    data: Any, latency_ms: float, attempts: tuple[RequestAttempt, ...], text: bool = False
) -> ModelResponse:
    """Read a decoded chat completion (or with ``text``, a text completion); raises on a
    shape that is not one."""
    choice = data["choices"][0]
    message = {"content": choice["text"]} if text else choice["message"] or {}
    calls = []
    for index, call in enumerate(message.get("tool_calls") or ()):
        function = call.get("function") or {}
        arguments = function.get("arguments")
        if not isinstance(arguments, str):  # some servers send the object itself
            arguments = json.dumps(arguments if arguments is not None else {})
        calls.append(
            ToolCallPart(
                call_id=str(call.get("id") or f"call_{index}"),
                name=str(function.get("name") or ""),
                arguments=arguments,
            )
        )
    usage = data.get("usage")
    content = message.get("content")
    model_name = data.get("model")
    return ModelResponse(
        text=content if isinstance(content, str) else None,
        tool_calls=tuple(calls),
        finish_reason=choice.get("finish_reason"),
        usage=Usage(
            input_tokens=token_count(usage, "prompt_tokens"),
            output_tokens=token_count(usage, "completion_tokens"),
        ),
        model_name=model_name if isinstance(model_name, str) else None,
        latency_ms=latency_ms,
        attempts=attempts,
    )


def token_count(usage: Any, key: str) -> int:
    """A token count from ``usage``; 0 when usage or the count is missing or not a number
    (usage is bookkeeping: a server that garbles it should not fail the run)."""
    value = usage.get(key) if isinstance(usage, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def problem(exc: Exception) -> str:
    if isinstance(exc, KeyError):
        return f"no {exc.args[0]!r} field"
    if isinstance(exc, IndexError):
        return "'choices' is empty"
    if isinstance(exc, ValidationError):
        return str(first_problem(exc))
    return "a field has the wrong type"


def error_detail(response: httpx2.Response) -> str:
    """The error code and message of an error body (OpenAI's, vLLM's, llama.cpp's shapes)."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:500] or response.reason_phrase
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict):
            parts = [str(inner.get(k)) for k in ("code", "message") if inner.get(k)]
            if parts:
                return ": ".join(parts)
        if isinstance(inner, str):
            return inner[:500]
    return json.dumps(body)[:500]


def retry_after(headers: httpx2.Headers) -> float | None:
    """Seconds from ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date)."""
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None  # unreadable: fall back to our own backoff
    if parsed.tzinfo is None:  # "-0000" dates come back naive; HTTP dates are always UTC
        parsed = parsed.replace(tzinfo=datetime.UTC)
    return max(0.0, parsed.timestamp() - time.time())
