"""Any OpenAI-compatible chat completions endpoint: OpenAI, vLLM, Ollama, llama.cpp server.

Built on the ``openai`` client for its connection handling, auth and error classes, but the
request body is sent as ready-made JSON: the typed ``messages=`` path re-transforms the whole
conversation on every call, which makes each step cost more as the run grows. Here each message
is encoded once and the body is joined from the cached pieces.

The client's own retries are off; this module is the one retry layer, and every failed try is
reported in ``ModelResponse.attempts`` (and on the raised error) so the trace shows it.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import os
import random
import re
import time
from collections.abc import Sequence
from typing import Any

import httpx2
import openai

from agentloop.errors import (
    ContextWindowExceeded,
    ModelAuthError,
    ModelConnectionError,
    ModelError,
    ModelHTTPError,
    ModelNotFoundError,
    ModelRateLimited,
    ModelResponseError,
    ModelTimeoutError,
    UserError,
)
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
from agentloop.models.base import Model, check_request_allowed
from agentloop.settings import ModelSettings
from agentloop.tools import Toolset

RETRYABLE_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})
_CONTEXT_OVERFLOW = re.compile(
    r"context_length_exceeded|maximum context length|context length|context window|"
    r"too many tokens|exceeds the available context",
    re.IGNORECASE,
)
_WIRE = "openai"


class OpenAIModel(Model):
    """A chat model behind an OpenAI-compatible HTTP endpoint."""

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: float = 120.0,
        connect_timeout: float = 10.0,
        max_retries: int = 3,
        max_retry_after: float = 60.0,
        backoff: float = 0.5,
        max_backoff: float = 8.0,
        default_headers: dict[str, str] | None = None,
        native_tools: bool = True,
    ) -> None:
        """``base_url`` and ``api_key`` default to ``OPENAI_BASE_URL`` and ``OPENAI_API_KEY``.

        A local server needs no key: with a ``base_url`` and no key, a placeholder is sent.
        ``max_retries`` transient failures (connection errors, 408/409/429/5xx) are retried with
        exponential backoff and jitter, honouring ``Retry-After`` up to ``max_retry_after``
        seconds; a longer ``Retry-After`` fails at once.
        """
        self.name = model
        base_url = base_url or os.environ.get("OPENAI_BASE_URL") or None
        api_key = api_key or os.environ.get("OPENAI_API_KEY") or None
        if api_key is None:
            if base_url is None:
                raise UserError(
                    f"OpenAIModel({model!r}) needs an API key: set OPENAI_API_KEY or pass "
                    "api_key=..., or point base_url (OPENAI_BASE_URL) at a local server"
                )
            api_key = "no-key"
        self._client = openai.AsyncOpenAI(
            api_key=api_key,
            base_url=base_url,
            max_retries=0,
            timeout=httpx2.Timeout(timeout, connect=connect_timeout),
            default_headers=default_headers,
        )
        self._api_key = api_key
        self.endpoint = str(self._client.base_url).rstrip("/")
        self.max_retries = max_retries
        self.max_retry_after = max_retry_after
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._tools_wire: tuple[Toolset | None, bytes] = (None, b"")
        self._options: Any = {"max_retries": 0, "headers": {"Content-Type": "application/json"}}
        self.native_tools = native_tools
        """``False``: offer tools through the JSON action protocol (``models/protocol.py``)."""

    def config(self) -> dict[str, Any]:
        config = {**super().config(), "endpoint": self.endpoint}
        return config if self.native_tools else {**config, "protocol": "json"}

    def secrets(self) -> list[str]:
        return [] if self._api_key == "no-key" else [self._api_key]

    async def request(
        self, messages: Sequence[Message], tools: Toolset, settings: ModelSettings
    ) -> ModelResponse:
        check_request_allowed(self.name, self.endpoint)
        if not self.native_tools and tools:  # the JSON action protocol: see models/protocol.py
            from agentloop.models.protocol import request_json_actions

            return await request_json_actions(self, messages, tools, settings)
        body = self._body(messages, tools, settings)
        attempts: list[RequestAttempt] = []
        while True:
            started = time.perf_counter()
            try:
                raw = await self._client.post(
                    "/chat/completions",
                    cast_to=httpx2.Response,
                    content=body,
                    options=self._options,
                )
            except openai.APIError as exc:
                error = self._classify(exc)
                delay = self._retry_delay(exc, error, len(attempts))
                status = getattr(exc, "status_code", None)
                attempts.append(
                    RequestAttempt(
                        attempt=len(attempts) + 1,
                        error=self._redact(str(error)),
                        status=status,
                        delay_s=delay or 0.0,
                    )
                )
                if delay is None:
                    error.attempts = tuple(attempts)  # type: ignore[attr-defined]
                    raise error from None
                await asyncio.sleep(delay)
                continue
            latency_ms = (time.perf_counter() - started) * 1000
            return self._parse(raw.content, latency_ms, tuple(attempts))

    # -- the request body ------------------------------------------------------------------

    def _body(self, messages: Sequence[Message], tools: Toolset, settings: ModelSettings) -> bytes:
        head: dict[str, Any] = {"model": self.name}
        for key in ("temperature", "top_p", "max_tokens", "seed"):
            value = getattr(settings, key)
            if value is not None:
                head[key] = value
        if settings.stop is not None:
            head["stop"] = list(settings.stop)
        if tools and settings.parallel_tool_calls is not None:
            head["parallel_tool_calls"] = settings.parallel_tool_calls
        head.update(settings.extra)
        parts = [json.dumps(head)[:-1].encode(), b',"messages":[']
        parts.append(b",".join(_encoded(m) for m in messages))
        parts.append(b"]")
        if tools:
            parts.append(self._tools_bytes(tools))
        parts.append(b"}")
        return b"".join(parts)

    def _tools_bytes(self, tools: Toolset) -> bytes:
        cached_for, encoded = self._tools_wire
        if cached_for is not tools:
            wire = [{"type": "function", "function": spec} for spec in tools.specs()]
            encoded = b',"tools":' + json.dumps(wire).encode()
            self._tools_wire = (tools, encoded)
        return encoded

    # -- the response ----------------------------------------------------------------------

    def _parse(
        self, content: bytes, latency_ms: float, attempts: tuple[RequestAttempt, ...]
    ) -> ModelResponse:
        try:
            data = json.loads(content)
            choice = data["choices"][0]
            message = choice.get("message") or {}
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            snippet = content[:200].decode(errors="replace")
            raise ModelResponseError(
                f"malformed chat completion (no choices[0].message): {snippet!r}",
                model=self.name,
                endpoint=self.endpoint,
            ) from None
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
        usage = data.get("usage") or {}
        text = message.get("content")
        return ModelResponse(
            text=text if isinstance(text, str) else None,
            tool_calls=tuple(calls),
            finish_reason=choice.get("finish_reason"),
            usage=Usage(
                input_tokens=usage.get("prompt_tokens") or 0,
                output_tokens=usage.get("completion_tokens") or 0,
            ),
            model_name=data.get("model"),
            latency_ms=latency_ms,
            attempts=attempts,
        )

    # -- errors and retries ----------------------------------------------------------------

    def _classify(self, exc: openai.APIError) -> ModelError:
        where = {"model": self.name, "endpoint": self.endpoint}
        if isinstance(exc, openai.APITimeoutError):
            return ModelTimeoutError("the endpoint did not answer in time", **where)
        if isinstance(exc, openai.APIConnectionError):
            return ModelConnectionError(
                f"cannot connect to {self.endpoint}; is the server running?", **where
            )
        if not isinstance(exc, openai.APIStatusError):
            return ModelResponseError(self._redact(str(exc)), **where)
        status = exc.status_code
        detail = self._redact(_error_detail(exc))
        if status in (401, 403):
            return ModelAuthError(
                f"HTTP {status}: the API key was refused; check OPENAI_API_KEY or api_key",
                status=status,
                **where,
            )
        if status == 404:
            return ModelNotFoundError(
                f"HTTP 404: unknown model or wrong base_url: {detail}", status=status, **where
            )
        if status == 429:
            return ModelRateLimited(f"HTTP 429: rate limited: {detail}", status=status, **where)
        if status in (400, 413, 422) and _CONTEXT_OVERFLOW.search(detail):
            return ContextWindowExceeded(
                f"HTTP {status}: the conversation exceeds the model's context: {detail}",
                status=status,
                **where,
            )
        return ModelHTTPError(f"HTTP {status}: {detail}", status=status, **where)

    def _retry_delay(self, exc: openai.APIError, error: ModelError, tries: int) -> float | None:
        """Seconds to wait before trying again, or ``None`` to give up now."""
        if tries >= self.max_retries:
            return None
        if isinstance(error, ModelHTTPError) and error.status not in RETRYABLE_STATUS:
            return None
        if isinstance(error, ContextWindowExceeded):
            return None
        response = getattr(exc, "response", None)
        retry_after = _retry_after(response.headers) if response is not None else None
        if retry_after is not None:
            return retry_after if retry_after <= self.max_retry_after else None
        backoff: float = min(self.max_backoff, self.backoff * 2**tries)
        return backoff * (0.5 + random.random() / 2)

    def _redact(self, text: str) -> str:
        return text.replace(self._api_key, "***") if len(self._api_key) >= 6 else text


def _encoded(message: Message) -> bytes:
    cached: bytes | None = message._wire.get(_WIRE)
    if cached is None:
        cached = json.dumps(_wire_message(message)).encode()
        message._wire[_WIRE] = cached
    return cached


def _wire_message(message: Message) -> dict[str, Any]:
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


def _error_detail(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict):
            parts = [str(inner.get(k)) for k in ("code", "message") if inner.get(k)]
            if parts:
                return ": ".join(parts)
        return json.dumps(body)[:500]
    return (exc.response.text if exc.response is not None else str(exc))[:500]


def _retry_after(headers: httpx2.Headers) -> float | None:
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
        parsed = email.utils.parsedate_to_datetime(value) if value else None
        return max(0.0, parsed.timestamp() - time.time()) if parsed else None
