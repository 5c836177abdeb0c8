"""A lean loopback OpenAI-compatible server for benchmarks (about 0.1 ms per request).

POST /v1/chat/completions with model "k<K>" answers with a call to the ``add`` tool until the
conversation holds K tool results, then with a final answer; with ``"stream": true`` the same
step comes as server-sent events (the call's arguments in two pieces, as servers split them).
With ``"stream": true`` and model "t<N>" it streams an answer of N one-word tokens (with the
usage chunk and ``[DONE]``), in one write, so the client's cost per token is what differs. It
counts tool messages by substring instead of parsing JSON, so its own cost stays small and the
same for every client.
Run: ``python bench/server.py [LATENCY_S]`` prints the port, then serves until killed; with
a latency, every answer waits that long first (a model that takes time, for the scale run).
"""

from __future__ import annotations

import asyncio
import json
import re
import sys

_MODEL = re.compile(rb'"model":\s*"k(\d+)"')
_TOOL_ROLE = re.compile(rb'"role":\s*"tool"')
_STREAM = re.compile(rb'"model":\s*"t(\d+)"')
_STREAMED = re.compile(rb'"stream":\s*true')
_STREAMS: dict[int, bytes] = {}


def _stream(tokens: int) -> bytes:
    """A streamed answer of ``tokens`` chunks (cached: built once per size)."""
    if tokens not in _STREAMS:
        head = (
            '{"id":"chatcmpl-bench","object":"chat.completion.chunk","created":0,"model":"bench",'
        )
        events = [
            head + '"choices":[{"index":0,"delta":{"role":"assistant","content":""},'
            '"finish_reason":null}]}'
        ]
        events += [
            head
            + f'"choices":[{{"index":0,"delta":{{"content":"tok{i} "}},"finish_reason":null}}]}}'
            for i in range(tokens)
        ]
        events.append(head + '"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}')
        usage = (
            f'"usage":{{"prompt_tokens":10,"completion_tokens":{tokens},'
            f'"total_tokens":{tokens + 10}}}'
        )
        events.append(head + '"choices":[],' + usage + "}")
        events.append("[DONE]")
        payload = "".join(f"data: {e}\n\n" for e in events).encode()
        _STREAMS[tokens] = (
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
            b"content-length: " + str(len(payload)).encode() + b"\r\n\r\n" + payload
        )
    return _STREAMS[tokens]


def _events(events: list[str]) -> bytes:
    payload = "".join(f"data: {e}\n\n" for e in [*events, "[DONE]"]).encode()
    return (
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
        b"content-length: " + str(len(payload)).encode() + b"\r\n\r\n" + payload
    )


def _chunk(choices: str) -> str:
    return (
        '{"id":"chatcmpl-bench","object":"chat.completion.chunk","created":0,"model":"bench",'
        f'"choices":{choices}}}'
    )


_USAGE_CHUNK = _chunk("[]")[:-1] + (
    ',"usage":{"prompt_tokens":10,"completion_tokens":5,"total_tokens":15}}'
)
STREAMED_TOOL_CALL = _events(
    [
        _chunk(
            '[{"index":0,"delta":{"role":"assistant","content":null,"tool_calls":[{"index":0,'
            '"id":"call_add","type":"function","function":{"name":"add","arguments":""}}]},'
            '"finish_reason":null}]'
        ),
        _chunk(
            '[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":'
            '"{\\"a\\": 2, "}}]},"finish_reason":null}]'
        ),
        _chunk(
            '[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":'
            '"\\"b\\": 3}"}}]},"finish_reason":null}]'
        ),
        _chunk('[{"index":0,"delta":{},"finish_reason":"tool_calls"}]'),
        _USAGE_CHUNK,
    ]
)
STREAMED_ANSWER = _events(
    [
        _chunk('[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]'),
        _chunk('[{"index":0,"delta":{"content":"done"},"finish_reason":null}]'),
        _chunk('[{"index":0,"delta":{},"finish_reason":"stop"}]'),
        _USAGE_CHUNK,
    ]
)


def _reply(body: dict[str, object]) -> bytes:
    payload = json.dumps(body).encode()
    head = (
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
        b"content-length: " + str(len(payload)).encode() + b"\r\n\r\n"
    )
    return head + payload


def _completion(message: dict[str, object], finish: str) -> bytes:
    return _reply(
        {
            "id": "chatcmpl-bench",
            "object": "chat.completion",
            "created": 0,
            "model": "bench",
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
        }
    )


TOOL_CALL = _completion(
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_add",
                "type": "function",
                "function": {"name": "add", "arguments": '{"a": 2, "b": 3}'},
            }
        ],
    },
    "tool_calls",
)
ANSWER = _completion({"role": "assistant", "content": "done"}, "stop")
SPANS_TAKEN = (
    b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n"
)


LATENCY = float(sys.argv[1]) if len(sys.argv) > 1 else 0.0


async def _serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            body = await reader.readexactly(length)
            if head.startswith(b"POST /v1/traces "):  # OTLP/HTTP spans: taken, not read
                writer.write(SPANS_TAKEN)
                continue
            streamed = _STREAM.search(body)
            if streamed:
                writer.write(_stream(int(streamed.group(1))))
                continue
            match = _MODEL.search(body)
            steps = int(match.group(1)) if match else 0
            if LATENCY:
                await asyncio.sleep(LATENCY)
            more = len(_TOOL_ROLE.findall(body)) < steps
            if _STREAMED.search(body):
                writer.write(STREAMED_TOOL_CALL if more else STREAMED_ANSWER)
            else:
                writer.write(TOOL_CALL if more else ANSWER)
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def main() -> None:
    server = await asyncio.start_server(_serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    print(port, flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
