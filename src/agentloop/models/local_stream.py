"""``LocalModel`` streaming: llama.cpp's tokens as it generates them, in-process.

xllamacpp calls back, on its own thread, with each OpenAI-shaped chunk (a dict); the chunks
are handed to the event loop and assembled like a server's (``models/sse.py``). Under the JSON
action protocol only the answer's text is passed on (``models/protocol_stream.py``); with the
caller's own schema (structured output) the whole text is. Closing the stream early tells
llama.cpp to stop (the callback's return value), so a cancelled run frees the model at once.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncGenerator, Sequence
from typing import TYPE_CHECKING, Any

from agentloop.deltas import StreamItem, TextDelta
from agentloop.messages import Message, ModelResponse
from agentloop.models.protocol_stream import AnswerStream
from agentloop.models.sse import ChunkAssembler, StreamProtocolError
from agentloop.settings import ModelSettings
from agentloop.tools import Toolset

if TYPE_CHECKING:
    from agentloop.models.local import LocalModel, PromptForm, _Pool

_END = object()


async def stream_local(
    model: LocalModel,
    pool: _Pool,
    messages: Sequence[Message],
    tools: Toolset,
    settings: ModelSettings,
) -> AsyncGenerator[StreamItem, None]:
    """``model``'s response streamed from an instance of its loaded ``pool``."""
    body = {**model.body(messages, tools, settings), "stream": True}
    body["stream_options"] = {"include_usage": True}
    form: PromptForm = "completion" if "prompt" in body else "chat"
    structured = settings.json_schema is not None and not tools
    loop = asyncio.get_running_loop()
    chunks: asyncio.Queue[Any] = asyncio.Queue()
    stop = threading.Event()

    def on_chunk(chunk: Any) -> bool:
        loop.call_soon_threadsafe(chunks.put_nowait, chunk)
        return stop.is_set()  # True: llama.cpp stops generating

    def generate() -> None:
        try:
            pool.call(form, body, on_chunk)
        finally:
            loop.call_soon_threadsafe(chunks.put_nowait, _END)

    started = time.perf_counter()
    first: float | None = None
    assembler = ChunkAssembler(text=form == "completion")
    answer = None if structured else AnswerStream()
    worker = asyncio.ensure_future(asyncio.to_thread(generate))
    try:
        while (chunk := await chunks.get()) is not _END:
            if not isinstance(chunk, dict) or "error" in chunk:
                model._response(chunk, messages, 0.0)  # raises the typed error
            try:
                deltas = assembler.add_chunk(chunk)
            except StreamProtocolError as exc:
                model._response({"error": {"message": str(exc)}}, messages, 0.0)
            for delta in deltas:
                if not isinstance(delta, TextDelta):
                    continue
                piece = delta.text if answer is None else answer.feed(delta.text)
                if first is None:
                    first = time.perf_counter()
                if piece:
                    yield TextDelta(piece)
        await worker
    finally:
        stop.set()
        if not worker.done():  # closed early: llama.cpp stops at its next token
            await asyncio.shield(worker)
    latency_ms = (time.perf_counter() - started) * 1000
    raw = {
        "choices": [{"text": assembler.text, "finish_reason": assembler.finish_reason}],
        "usage": assembler.usage,
        "timings": assembler.timings,
    }
    response: ModelResponse = model._response(raw, messages, latency_ms, structured=structured)
    first_ms = (first - started) * 1000 if first is not None else None
    yield response.model_copy(
        update={
            "first_token_ms": first_ms,
            "generation_ms": latency_ms - first_ms if first_ms is not None else None,
        }
    )
