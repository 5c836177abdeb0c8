"""Streaming against the real llama.cpp: its HTTP server (xllamacpp, on 127.0.0.1) through
``OpenAIModel`` in the chat and completion forms, and the embedded model through
``LocalModel``. At temperature 0 the streamed response assembles to exactly what the
unstreamed request returns, and arrives in more than one piece."""

from __future__ import annotations

from contextlib import aclosing
from typing import Any

import pytest

from agentloop import ModelResponse, ModelSettings
from agentloop.deltas import StreamItem, TextDelta
from agentloop.messages import AssistantMessage, Message, ToolCallPart, ToolMessage, UserMessage
from agentloop.models.local import LocalModel
from agentloop.models.openai import OpenAIModel
from agentloop.tools import Toolset
from test_local_model import CALCULATOR, llama_server, local_model

pytestmark = pytest.mark.slow
__all__ = ["llama_server", "local_model"]  # fixtures, shared with test_local_model
SETTINGS = ModelSettings(temperature=0, seed=0, max_tokens=12)
SAME = {"latency_ms", "first_token_ms", "generation_ms", "timings", "model_name"}


async def drain(stream: Any) -> tuple[list[str], ModelResponse]:
    pieces: list[str] = []
    items: list[StreamItem] = []
    async with aclosing(stream):
        async for item in stream:
            items.append(item)
            if isinstance(item, TextDelta):
                pieces.append(item.text)
    response = items[-1]
    assert isinstance(response, ModelResponse)
    assert response.first_token_ms is not None and response.first_token_ms > 0
    return pieces, response


async def test_llama_server_streams_chat_through_openai_model(llama_server: str) -> None:
    async with OpenAIModel("gemma", base_url=llama_server) as model:
        messages: list[Message] = [UserMessage(content="Name three colours.")]
        pieces, streamed = await drain(model.request_stream(messages, Toolset(), SETTINGS))
        whole = await model.request(messages, Toolset(), SETTINGS)
    assert len(pieces) > 3 and "".join(pieces) == streamed.text
    assert streamed.usage.input_tokens > 0 and streamed.usage.output_tokens > 0
    assert streamed.model_dump(exclude=SAME) == whole.model_dump(exclude=SAME)


async def test_llama_server_streams_completions_through_openai_model(llama_server: str) -> None:
    async with OpenAIModel("gemma", base_url=llama_server) as model:
        prompt = "The capital of France is"
        pieces, streamed = await drain(model.complete_stream(prompt, SETTINGS))
        whole = await model.complete(prompt, SETTINGS)
    assert len(pieces) > 3 and "".join(pieces) == streamed.text
    assert streamed.model_dump(exclude=SAME) == whole.model_dump(exclude=SAME)


def after_the_tool() -> list[Message]:
    call = ToolCallPart(call_id="call_0", name="calculator", arguments='{"expression": "17 * 23"}')
    return [
        UserMessage(content="What is 17 * 23?"),
        AssistantMessage(tool_calls=(call,)),
        ToolMessage(call_id="call_0", name="calculator", content="391"),
    ]


async def test_the_embedded_model_streams_the_answer_text(local_model: LocalModel) -> None:
    """The JSON action protocol: the deltas are the answer's text, decoded from the JSON
    string as llama.cpp writes it, never the JSON around it."""
    tools = Toolset([CALCULATOR])
    settings = ModelSettings(max_tokens=24)
    stream = local_model.request_stream(after_the_tool(), tools, settings)
    pieces, streamed = await drain(stream)
    whole = await local_model.request(after_the_tool(), tools, settings)
    assert streamed.text and "391" in streamed.text
    assert len(pieces) > 3 and "".join(pieces) == streamed.text
    assert not any("{" in p or '"' in p for p in pieces)
    # llama.cpp reuses its prompt cache between the two requests, which can change a greedy
    # answer's wording; the answer itself must agree.
    assert whole.text and "391" in whole.text and whole.finish_reason == streamed.finish_reason
