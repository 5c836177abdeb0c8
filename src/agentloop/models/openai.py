"""Any OpenAI-compatible chat completions endpoint: OpenAI, vLLM, Ollama, llama.cpp server.

With ``native_tools=False`` tools are offered through the JSON action protocol instead
(``models/protocol.py``): as chat messages, or with ``prompt_form="completion"`` as one prompt
to the endpoint's ``/completions``, for base models served by vLLM or llama.cpp.

The ``openai`` client resolves the configuration (``OPENAI_BASE_URL``, ``OPENAI_API_KEY``,
its default headers); requests go out as ready-made JSON through ``httpx2``, the client openai
itself uses. Two costs are avoided that way, both measured against a loopback server: the typed
``messages=`` path re-transforms the whole conversation on every call (10.9 ms a step at 10
steps, 24 ms at 50), and even a raw-body ``client.post`` spends about 0.35 ms per request in
openai's request pipeline, a third of a step. Here each message is encoded once, the body is
joined from the cached pieces, and posted as it is.

This module is the one retry layer, and every failed try is reported in
``ModelResponse.attempts`` (and on the raised error) so the trace shows it.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import time
import weakref
from collections.abc import AsyncGenerator, Sequence
from contextlib import aclosing
from typing import Any, Literal

import httpx2
import openai
from pydantic import ValidationError

from agentloop.deltas import StreamItem
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
    Message,
    ModelResponse,
    RequestAttempt,
)
from agentloop.models.base import Model, check_request_allowed
from agentloop.models.http_clients import LoopClients, close_with_loop, tls_context
from agentloop.models.openai_wire import (
    completion_response,
    encoded,
    error_detail,
    problem,
    retry_after,
    strict_allowed,
    strict_tool,
)
from agentloop.settings import ModelSettings
from agentloop.tools import Toolset

MAX_RESPONSE_BYTES = 32 * 1024 * 1024
"""The largest response body read by default (a chat completion is kilobytes)."""
BODY_KEYS = frozenset({"model", "messages", "tools", "prompt"})
"""Request fields agentloop builds itself; ``settings.extra`` may not set them (it may set
``response_format``, which the JSON action protocol uses, and any field agentloop does not
send)."""
RETRYABLE_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})
_CONTEXT_OVERFLOW = re.compile(
    r"context_length_exceeded|maximum context length|context length|context window|"
    r"too many tokens|exceeds the available context",
    re.IGNORECASE,
)
DEFAULT_CONNECTIONS = 20
"""Connections kept open for reuse, per event loop, until ``expect_concurrency`` asks for more
(httpx2's own default is 20 idle connections: 50 runs at once would keep reopening 30)."""
SHARD = 10
"""Connections per HTTP client; more connections are split over more clients (see ``_pool``)."""


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
        prompt_form: Literal["chat", "completion"] = "chat",
        max_response_bytes: int = MAX_RESPONSE_BYTES,
    ) -> None:
        """``base_url`` and ``api_key`` default to ``OPENAI_BASE_URL`` and ``OPENAI_API_KEY``.

        A local server needs no key: with a ``base_url`` and no key, a placeholder is sent.
        ``max_retries`` transient failures (connection errors, 408/409/429/5xx) are retried with
        exponential backoff and jitter, honouring ``Retry-After`` up to ``max_retry_after``
        seconds; a longer ``Retry-After`` fails at once.

        ``native_tools=False`` offers tools through the JSON action protocol, rendered as chat
        messages, or with ``prompt_form="completion"`` as one text sent to ``/completions``
        (a base model behind vLLM or llama.cpp's server).

        ``timeout`` bounds each whole request (connecting, sending, the full answer), not
        only each read; a body over ``max_response_bytes`` fails with ``ModelResponseError``.
        """
        if prompt_form not in ("chat", "completion"):
            raise UserError(f"prompt_form must be 'chat' or 'completion', not {prompt_form!r}")
        if prompt_form == "completion" and native_tools:
            raise UserError(
                "prompt_form='completion' renders the JSON action protocol: "
                "pass native_tools=False too"
            )
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
        try:
            configured = openai.AsyncOpenAI(
                api_key=api_key,
                base_url=base_url,
                max_retries=0,
                default_headers=default_headers,
                http_client=httpx2.AsyncClient(
                    verify=tls_context()
                ),  # never sends: spare a CA load
            )
        except httpx2.InvalidURL as exc:
            raise UserError(f"invalid base_url {base_url!r} for {model!r}: {exc}") from None
        self._headers = {
            **{k: v for k, v in configured.default_headers.items() if isinstance(v, str)},
            "Authorization": f"Bearer {api_key}",
        }
        self._timeout = httpx2.Timeout(timeout, connect=connect_timeout)
        self._connections = DEFAULT_CONNECTIONS
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LoopClients] = (
            weakref.WeakKeyDictionary()
        )
        self._api_key = api_key
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.endpoint = str(configured.base_url).rstrip("/")
        try:
            self._url = httpx2.URL(f"{self.endpoint}/chat/completions")  # parsed once
            self._completions_url = httpx2.URL(f"{self.endpoint}/completions")
        except httpx2.InvalidURL as exc:
            raise UserError(f"invalid base_url {self.endpoint!r} for {model!r}: {exc}") from None
        self.max_response_bytes = max_response_bytes
        self.max_retries = max_retries
        self.max_retry_after = max_retry_after
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._tools_wire: tuple[Toolset | None, bytes] = (None, b"")
        self.native_tools = native_tools
        """``False``: offer tools through the JSON action protocol (``models/protocol.py``)."""
        self.prompt_form = prompt_form

    def config(self) -> dict[str, Any]:
        config = {**super().config(), "endpoint": self.endpoint}
        if self.native_tools:
            return config
        from agentloop.models.protocol import prompt_hash

        return {
            **config,
            "protocol": "json",
            "protocol_prompt": prompt_hash(),
            "prompt_form": self.prompt_form,
        }

    async def aclose(self) -> None:
        """Close the connections this model keeps open on the running event loop; the model
        can still be used afterwards (it opens new ones).

        Connections are also closed when their loop shuts down (``asyncio.run``,
        ``Agent.run_sync``) if the model is still alive then. A model dropped just before its
        loop ends may leave sockets for the garbage collector (a ``ResourceWarning``); close it
        first, or use ``async with OpenAIModel(...) as model``.
        """
        bound = self._clients.pop(asyncio.get_running_loop(), None)
        if bound is not None:
            await bound.closer.aclose()

    async def __aenter__(self) -> OpenAIModel:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def _pool(self) -> LoopClients:
        """The HTTP clients for the running event loop.

        Pooled keep-alive connections belong to the loop that opened them: reusing them on
        another loop (a second ``run_sync``) fails, and leaving them open when their loop ends
        leaks sockets. So each loop gets its own clients, closed when that loop shuts down.

        Connections are split over clients of ``SHARD`` connections each, every request going
        to the least busy one: httpx2's pool looks at each of its idle connections (a system
        call each) for every request it sends, so one pool of 50 costs 50 of those per request
        when the runs are busy elsewhere, and shards of 10 cost at most 10.
        """
        loop = asyncio.get_running_loop()
        bound = self._clients.get(loop)
        if bound is None or bound.connections < self._connections:
            size = self._connections
            shards = -(-size // SHARD)
            limits = httpx2.Limits(
                max_connections=max(SHARD, -(-100 // shards)), max_keepalive_connections=SHARD
            )
            clients = tuple(
                httpx2.AsyncClient(
                    headers=self._headers,
                    timeout=self._timeout,
                    limits=limits,
                    verify=tls_context(),
                )
                for _ in range(shards)
            )
            closer = close_with_loop(clients)
            await anext(closer)  # now registered with the loop's async-generator shutdown
            # A smaller pool replaced while requests may still use it stays referenced (and
            # so open) until its loop shuts down.
            retired = (bound, *bound.retired) if bound is not None else ()
            bound = self._clients[loop] = LoopClients(clients, closer, size, retired)
        return bound

    def expect_concurrency(self, requests: int) -> int:
        """Keep ``requests`` connections open for reuse (on every event loop from now on), so
        that many runs at once never reopen one: free on loopback, a TLS handshake each
        against a real endpoint."""
        self._connections = max(self._connections, requests)
        return requests

    def secrets(self) -> list[str]:
        return [] if self._api_key == "no-key" else [self._api_key]

    async def request(
        self, messages: Sequence[Message], tools: Toolset, settings: ModelSettings
    ) -> ModelResponse:
        check_request_allowed(self.name, self.endpoint)
        if not self.native_tools and tools:  # the JSON action protocol: see models/protocol.py
            from agentloop.models.protocol import request_json_actions

            return await request_json_actions(self, messages, tools, settings, self.prompt_form)
        return await self._send(self._url, self._body(messages, tools, settings))

    async def complete(self, prompt: str, settings: ModelSettings) -> ModelResponse:
        """The endpoint's continuation of ``prompt`` (``/completions``, for base models)."""
        check_request_allowed(self.name, self.endpoint)
        body = {"model": self.name, "prompt": prompt, **self._sampling(settings)}
        return await self._send(self._completions_url, json.dumps(body).encode(), text=True)

    async def request_stream(
        self, messages: Sequence[Message], tools: Toolset, settings: ModelSettings
    ) -> AsyncGenerator[StreamItem, None]:
        """``request`` streamed: see ``models/openai_stream.py``."""
        check_request_allowed(self.name, self.endpoint)
        from agentloop.models import openai_stream

        if not self.native_tools and tools:
            from agentloop.models.protocol_stream import stream_json_actions

            stream = stream_json_actions(self, messages, tools, settings, self.prompt_form)
        else:
            body = openai_stream.streamed(self._body(messages, tools, settings))
            stream = openai_stream.stream_completion(self, self._url, body)
        async with aclosing(stream):
            async for item in stream:
                yield item

    async def complete_stream(
        self, prompt: str, settings: ModelSettings
    ) -> AsyncGenerator[StreamItem, None]:
        """``complete`` streamed."""
        check_request_allowed(self.name, self.endpoint)
        from agentloop.models import openai_stream

        body = {"model": self.name, "prompt": prompt, **self._sampling(settings)}
        stream = openai_stream.stream_completion(
            self,
            self._completions_url,
            openai_stream.streamed(json.dumps(body).encode()),
            text=True,
        )
        async with aclosing(stream):
            async for item in stream:
                yield item

    async def _send(self, url: httpx2.URL, body: bytes, *, text: bool = False) -> ModelResponse:
        """Post ``body``, retrying transient failures; every failed try is recorded.
        ``text``: the reply is a text completion (``choices[0].text``), not a chat one."""
        attempts: list[RequestAttempt] = []
        while True:
            started = time.perf_counter()
            pool = await self._pool()
            shard = pool.lease()
            try:
                raw = await self._post(pool.clients[shard], url, body)
                error = None if raw.status_code < 400 else self._status_error(raw)
            except (httpx2.HTTPError, httpx2.StreamError, TimeoutError, _TooLarge) as exc:
                raw, error = None, self._transport_error(exc)
            finally:
                pool.busy[shard] -= 1
            if error is None and raw is not None:
                latency_ms = (time.perf_counter() - started) * 1000
                return self._parse(raw.content, latency_ms, tuple(attempts), text)
            assert error is not None
            delay = self._retry_delay(raw, error, len(attempts))
            attempts.append(
                RequestAttempt(
                    attempt=len(attempts) + 1,
                    error=self._redact(str(error)),
                    status=raw.status_code if raw is not None else None,
                    delay_s=delay or 0.0,
                )
            )
            if delay is None:
                error.attempts = tuple(attempts)  # type: ignore[attr-defined]
                raise error from None
            await asyncio.sleep(delay)

    async def _post(
        self, client: httpx2.AsyncClient, url: httpx2.URL, body: bytes
    ) -> httpx2.Response:
        """POST ``body`` and read the answer, all within ``timeout`` and at most
        ``max_response_bytes`` of it (a server cannot stall or flood the run)."""
        async with asyncio.timeout(self.timeout):
            response = await client.send(
                client.build_request("POST", url, content=body), stream=True
            )
            try:
                declared = response.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > self.max_response_bytes:
                    raise _TooLarge(int(declared))
                chunks: list[bytes] = []
                size = 0
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > self.max_response_bytes:
                        raise _TooLarge(size)
                    chunks.append(chunk)
            finally:
                await response.aclose()
        response._content = b"".join(chunks)  # what Response.aread() sets
        return response

    # -- the request body ------------------------------------------------------------------

    def _body(self, messages: Sequence[Message], tools: Toolset, settings: ModelSettings) -> bytes:
        head: dict[str, Any] = {"model": self.name}
        if tools and settings.parallel_tool_calls is not None:
            head["parallel_tool_calls"] = settings.parallel_tool_calls
        if tools and settings.tool_choice is not None:
            choice = settings.tool_choice
            head["tool_choice"] = (
                choice
                if choice in ("auto", "required", "none")
                else {"type": "function", "function": {"name": choice}}
            )
        if settings.json_schema is not None:
            head["response_format"] = {
                "type": "json_schema",
                "json_schema": {
                    "name": "answer",
                    "schema": settings.json_schema,
                    **({"strict": True} if strict_allowed(settings.json_schema) else {}),
                },
            }
        head.update(self._sampling(settings))
        parts = [json.dumps(head)[:-1].encode(), b',"messages":[']
        parts.append(b",".join(encoded(m) for m in messages))
        parts.append(b"]")
        if tools:
            parts.append(self._tools_bytes(tools))
        parts.append(b"}")
        return b"".join(parts)

    @staticmethod
    def _sampling(settings: ModelSettings) -> dict[str, Any]:
        """The sampling fields that are set, and ``extra`` (which may override anything)."""
        fields: dict[str, Any] = {}
        for key in ("temperature", "top_p", "max_tokens", "seed"):
            value = getattr(settings, key)
            if value is not None:
                fields[key] = value
        if settings.stop is not None:
            fields["stop"] = list(settings.stop)
        if settings.extra and not BODY_KEYS.isdisjoint(settings.extra):
            taken = ", ".join(sorted(BODY_KEYS.intersection(settings.extra)))
            raise UserError(
                f"settings.extra cannot set {taken}: agentloop builds those fields of the "
                "request itself (give the agent its tools and the model its name; extra is "
                "for fields agentloop does not send, like top_k or logit_bias)"
            )
        return {**fields, **settings.extra}

    def _tools_bytes(self, tools: Toolset) -> bytes:
        cached_for, encoded = self._tools_wire
        if cached_for is not tools:
            wire = [{"type": "function", "function": strict_tool(spec)} for spec in tools.specs()]
            encoded = b',"tools":' + json.dumps(wire).encode()
            self._tools_wire = (tools, encoded)
        return encoded

    # -- the response ----------------------------------------------------------------------

    def _parse(
        self,
        content: bytes,
        latency_ms: float,
        attempts: tuple[RequestAttempt, ...],
        text: bool = False,
    ) -> ModelResponse:
        """The response in a 200 body. A body that is not a completion (not JSON, no
        ``choices[0].message``, or ``.text`` for a text completion, fields of the wrong type)
        raises ``ModelResponseError`` quoting the start of the body."""
        try:
            data = json.loads(content)
        except ValueError:
            what = "the body is not JSON"
        else:
            try:
                return completion_response(data, latency_ms, attempts, text)
            except (LookupError, TypeError, AttributeError, ValidationError) as exc:
                what = f"not a completion: {problem(exc)}"
        snippet = self._redact(content[:200].decode(errors="replace"))
        error = ModelResponseError(
            f"malformed response from the endpoint ({what}): {snippet!r}",
            model=self.name,
            endpoint=self.endpoint,
        )
        error.attempts = attempts  # type: ignore[attr-defined]
        raise error

    # -- errors and retries ----------------------------------------------------------------

    def _transport_error(self, exc: Exception) -> ModelError:
        """Every way a request can fail short of an HTTP status, as a typed ``ModelError``."""
        where = {"model": self.name, "endpoint": self.endpoint}
        if isinstance(exc, _TooLarge):
            return ModelResponseError(
                f"the response is larger than max_response_bytes={self.max_response_bytes}",
                **where,
            )
        if isinstance(exc, httpx2.DecodingError):
            reason = self._redact(str(exc) or type(exc).__name__)
            return ModelResponseError(f"the response body cannot be decoded: {reason}", **where)
        if isinstance(exc, httpx2.TimeoutException | TimeoutError):
            return ModelTimeoutError(
                f"no answer within the {self.timeout:g} s timeout "
                f"(connect timeout {self.connect_timeout:g} s)",
                **where,
            )
        if isinstance(exc, httpx2.ConnectError):
            return ModelConnectionError(
                f"cannot connect to {self.endpoint}; is the server running?", **where
            )
        reason = self._redact(str(exc) or type(exc).__name__)
        return ModelConnectionError(f"the connection to {self.endpoint} failed: {reason}", **where)

    def _status_error(self, response: httpx2.Response) -> ModelError:
        where = {"model": self.name, "endpoint": self.endpoint}
        status = response.status_code
        detail = self._redact(error_detail(response))
        if status in (401, 403):  # the body is left out: servers may echo the key back
            refused = "was refused" if status == 401 else "is not allowed to use this model"
            return ModelAuthError(
                f"HTTP {status}: the API key {refused}; check OPENAI_API_KEY or api_key",
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

    def _retry_delay(
        self, response: httpx2.Response | None, error: ModelError, tries: int
    ) -> float | None:
        """Seconds to wait before trying again, or ``None`` to give up now."""
        if tries >= self.max_retries:
            return None
        if isinstance(error, ModelHTTPError) and error.status not in RETRYABLE_STATUS:
            return None
        if isinstance(error, ContextWindowExceeded | ModelResponseError):
            return None
        asked = retry_after(response.headers) if response is not None else None
        if asked is not None:
            return asked if asked <= self.max_retry_after else None
        backoff: float = min(self.max_backoff, self.backoff * 2**tries)
        return backoff * (0.5 + random.random() / 2)

    def _redact(self, text: str) -> str:
        return text.replace(self._api_key, "***") if len(self._api_key) >= 6 else text


class _TooLarge(Exception):
    """The response body passed ``max_response_bytes``."""
