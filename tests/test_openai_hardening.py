"""OpenAIModel against a rude server: a flood, a trickle, a body that does not decode, and
settings that would collide with the request it builds. Each is a typed error, quickly."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeAlias

import pytest

from agentloop.errors import ModelResponseError, ModelTimeoutError, UserError
from agentloop.messages import UserMessage
from agentloop.models.openai import OpenAIModel
from agentloop.settings import ModelSettings
from agentloop.tools import Toolset
from fakes import FakeOpenAIServer, Reply, answer
from fakes.runs import fast_model

ASK = [UserMessage(content="hi")]
Handler: TypeAlias = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def test_a_response_over_the_cap_is_a_typed_error_and_not_retried(
    openai_server: FakeOpenAIServer,
) -> None:
    openai_server.script(answer("x" * 300_000))
    model = fast_model(openai_server.url, max_response_bytes=100_000)
    with pytest.raises(ModelResponseError, match="larger than max_response_bytes=100000"):
        await model.request(ASK, Toolset(), ModelSettings())
    await model.aclose()
    assert len(openai_server.requests) == 1


async def test_a_chunked_flood_without_a_length_stops_at_the_cap() -> None:
    async def flood(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n")
        writer.write(b"Transfer-Encoding: chunked\r\n\r\n")
        chunk = b"x" * 65_536
        try:
            for _ in range(1000):  # 64 MiB if nobody stops reading
                writer.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                await writer.drain()
        except ConnectionError:
            pass

    async with serving(flood) as url:
        model = OpenAIModel("m", base_url=url, max_retries=0, max_response_bytes=1_000_000)
        with pytest.raises(ModelResponseError, match="larger than max_response_bytes"):
            await model.request(ASK, Toolset(), ModelSettings())
        await model.aclose()


async def test_the_timeout_bounds_the_whole_request_not_each_read() -> None:
    async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n")
        writer.write(b"Content-Length: 1000\r\n\r\n")
        try:
            for _ in range(1000):  # one byte every 0.1 s: every read is quick, the whole is not
                writer.write(b" ")
                await writer.drain()
                await asyncio.sleep(0.1)
        except ConnectionError:
            pass

    async with serving(trickle) as url:
        model = OpenAIModel("m", base_url=url, max_retries=0, timeout=1.0)
        started = time.monotonic()
        with pytest.raises(ModelTimeoutError):
            await model.request(ASK, Toolset(), ModelSettings())
        assert time.monotonic() - started < 5
        await model.aclose()


async def test_a_body_that_does_not_decode_is_a_typed_error(
    openai_server: FakeOpenAIServer,
) -> None:
    openai_server.script(Reply(body=b"this is not gzip", headers={"Content-Encoding": "gzip"}))
    model = fast_model(openai_server.url)
    with pytest.raises(ModelResponseError, match="cannot be decoded"):
        await model.request(ASK, Toolset(), ModelSettings())
    await model.aclose()


@pytest.mark.parametrize("key", ["messages", "tools", "model", "prompt"])
async def test_extra_fields_that_collide_with_the_body_are_refused(
    openai_server: FakeOpenAIServer, key: str
) -> None:
    model = fast_model(openai_server.url)
    settings = ModelSettings(extra={key: "x", "top_k": 5})
    with pytest.raises(UserError, match=f"settings.extra cannot set {key}"):
        await model.request(ASK, Toolset(), settings)
    await model.aclose()
    assert openai_server.requests == []


def test_an_unparseable_base_url_is_a_configuration_error() -> None:
    with pytest.raises(UserError, match="invalid base_url"):
        OpenAIModel("m", base_url="http://[::1", api_key="k" * 10)


class serving:
    """A raw loopback server running ``handler`` per connection; handlers still running at
    the end are cancelled and their connections closed."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.server: asyncio.Server | None = None
        self.tasks: set[asyncio.Task[object]] = set()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        try:
            await self.handler(reader, writer)
        finally:
            writer.close()

    async def __aenter__(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/v1"

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.server.close()
        await self.server.wait_closed()
