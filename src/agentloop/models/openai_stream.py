"""``OpenAIModel`` streaming: ``"stream": true`` requests read as server-sent events.

The body is the unstreamed one plus ``"stream": true`` and ``stream_options.include_usage``
(so the last chunk carries the token counts). Events are decoded and assembled as they arrive
(``models/sse.py``) and each text or tool-call delta is passed on at once.

Faults, in the same single retry layer as unstreamed requests: a connection that fails, drops
or stalls before any delta reached the caller is retried
like any transient failure (an opening chunk with empty content counts as nothing); after a
delta it raises ``ModelStreamError`` with the partial text, since the caller has already shown
it. A line that is not server-sent events, an event that is not a completion chunk, and an
error event are ``ModelStreamError`` at once: retrying a broken server does not help.
A server that ignores ``"stream"`` and answers with one JSON body is read as unstreamed.

Unlike an unstreamed request, whose ``timeout`` bounds the whole answer, a stream may take as
long as the model generates: ``timeout`` bounds each wait for the next bytes (a stall), and
``max_response_bytes`` the whole stream (a server cannot flood the run).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING

import httpx2

from agentloop.deltas import StreamItem, deltas_of
from agentloop.errors import ModelConnectionError, ModelError, ModelStreamError
from agentloop.messages import RequestAttempt
from agentloop.models.sse import ChunkAssembler, SSEDecoder, StreamProtocolError

if TYPE_CHECKING:
    from agentloop.models.openai import OpenAIModel

STREAM_FIELDS = b',"stream":true,"stream_options":{"include_usage":true}}'
_HEADERS = {"Accept": "text/event-stream"}


def streamed(body: bytes) -> bytes:
    """An unstreamed request body (a JSON object) asking for a stream instead."""
    return body[:-1] + STREAM_FIELDS


async def stream_completion(
    model: OpenAIModel, url: httpx2.URL, body: bytes, *, text: bool = False
) -> AsyncGenerator[StreamItem, None]:
    """Post the streaming ``body`` and yield deltas, then the assembled ``ModelResponse``.

    ``text``: a text completion (``/completions``). Closing the iterator early closes the
    HTTP stream.
    """
    attempts: list[RequestAttempt] = []
    emitted = False
    while True:
        assembler = ChunkAssembler(text)
        decoder = SSEDecoder()
        started = time.perf_counter()
        first: float | None = None
        failed: httpx2.Response | None = None
        error: ModelError | None = None
        pool = await model._pool()
        shard = pool.lease()
        try:
            client = pool.clients[shard]
            async with client.stream("POST", url, content=body, headers=_HEADERS) as raw:
                if raw.status_code >= 400:
                    await _read(raw, model.max_response_bytes)
                    failed, error = raw, model._status_error(raw)
                elif _is_json(raw):  # a server that ignores "stream": the whole completion
                    content = await _read(raw, model.max_response_bytes)
                    latency = (time.perf_counter() - started) * 1000
                    whole = model._parse(content, latency, tuple(attempts), text)
                    for delta in deltas_of(whole):
                        yield delta
                    yield whole.model_copy(update={"first_token_ms": latency, "generation_ms": 0.0})
                    return
                else:
                    size = 0
                    async for chunk in raw.aiter_bytes():
                        size += len(chunk)
                        if size > model.max_response_bytes:
                            raise StreamProtocolError(_too_large(model.max_response_bytes))
                        for event, data in decoder.feed(chunk):
                            for delta in assembler.add(event, data):
                                if first is None:
                                    first = time.perf_counter()
                                emitted = True
                                yield delta
                        if assembler.done:
                            break
                    if not assembler.complete:
                        error = ModelConnectionError(
                            "the stream ended before the completion did (no finish reason, "
                            "no [DONE])",
                            model=model.name,
                            endpoint=model.endpoint,
                        )
        except (httpx2.HTTPError, httpx2.StreamError) as exc:
            error = model._transport_error(exc)
        except StreamProtocolError as exc:
            raise _broken(model, assembler, model._redact(str(exc)), attempts) from None
        finally:
            pool.busy[shard] -= 1
        if error is None:
            ended = time.perf_counter()
            first_ms = (first - started) * 1000 if first is not None else None
            yield assembler.response((ended - started) * 1000, first_ms, tuple(attempts))
            return
        if emitted:  # the caller has shown part of this answer: no silent second one
            raise _broken(model, assembler, f"the stream broke off: {error}", attempts)
        delay = model._retry_delay(failed, error, len(attempts))
        attempts.append(
            RequestAttempt(
                attempt=len(attempts) + 1,
                error=model._redact(str(error)),
                status=failed.status_code if failed is not None else None,
                delay_s=delay or 0.0,
            )
        )
        if delay is None:
            error.attempts = tuple(attempts)  # type: ignore[attr-defined]
            raise error from None
        await asyncio.sleep(delay)


async def _read(response: httpx2.Response, limit: int) -> bytes:
    """The whole body of a response that is not a stream (an error, a server ignoring
    ``stream``), at most ``limit`` bytes of it."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > limit:
            raise StreamProtocolError(_too_large(limit))
        chunks.append(chunk)
    response._content = content = b"".join(chunks)  # what Response.aread() sets
    return content


def _too_large(limit: int) -> str:
    return f"the response is larger than max_response_bytes={limit}"


def _is_json(response: httpx2.Response) -> bool:
    content_type = response.headers.get("content-type", "")
    return content_type.split(";")[0].strip().lower() == "application/json"


def _broken(
    model: OpenAIModel,
    assembler: ChunkAssembler,
    reason: str,
    attempts: list[RequestAttempt],
) -> ModelStreamError:
    text = assembler.text
    error = ModelStreamError(
        f"{reason} (after {len(text)} characters of text and {len(assembler.calls)} tool calls)",
        partial_text=text,
        partial_tool_calls=assembler.partial_calls(),
        model=model.name,
        endpoint=model.endpoint,
    )
    error.attempts = tuple(attempts)  # type: ignore[attr-defined]
    return error
