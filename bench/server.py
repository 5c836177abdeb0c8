"""A lean loopback OpenAI-compatible server for benchmarks (about 0.1 ms per request).

POST /v1/chat/completions with model "k<K>" answers with a call to the ``add`` tool until the
conversation holds K tool results, then with a final answer. It counts tool messages by
substring instead of parsing JSON, so its own cost stays small and the same for every client.
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
            match = _MODEL.search(body)
            steps = int(match.group(1)) if match else 0
            if LATENCY:
                await asyncio.sleep(LATENCY)
            writer.write(TOOL_CALL if len(_TOOL_ROLE.findall(body)) < steps else ANSWER)
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
