"""A loopback OpenAI-compatible completions server, scripted, with fault injection.

The server runs its own asyncio loop in a background thread on 127.0.0.1 (a random free port),
so it serves sync code (``Agent.run_sync``) and async tests alike. It speaks just enough
HTTP/1.1 for an HTTP client: keep-alive, ``Content-Length`` or chunked request bodies.

``POST /v1/chat/completions`` and ``POST /v1/completions`` answer with the next scripted
``Reply`` (or a function of the request that returns one); when the script runs out,
``fallback`` is used if set, else the server answers 418 and counts an overrun, so a test that
asks more than it scripted fails.
Like real servers (OpenAI, vLLM, llama.cpp), every response gets a fresh response id, and every
tool call built with ``tool_call()`` a fresh id, minted when the response is sent: a reply used
twice (a fallback, a replay against the server) never repeats an id. ``cut_off()`` answers with
``finish_reason: "length"``, as a server does when ``max_tokens`` runs out.
Every request is recorded (``requests``) with its headers and body, so tests assert what was
sent. Faults: any status with any headers and body, a delay, a stall before or after the
headers, a dropped connection, a body cut short.

    with FakeOpenAIServer() as server:
        server.script(tool_calls(tool_call("add", {"a": 1, "b": 2})), answer("3"))
        model = OpenAIModel("m", base_url=server.url)
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import json
import socket
import threading
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Literal, TypeAlias

from fakes.sse import is_stream_request, stream_events

Action: TypeAlias = Literal[
    "respond",
    "stall",
    "stall_after_headers",
    "close",
    "truncate_body",
    "drop_mid_stream",
    "stall_mid_stream",
]
JSONBody: TypeAlias = dict[str, Any] | list[Any]


@dataclass(frozen=True)
class RecordedRequest:
    """One request the server received."""

    method: str
    path: str
    headers: dict[str, str]
    """Header names lower-cased."""
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def messages(self) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = self.json()["messages"]
        return messages


@dataclass(frozen=True)
class Reply:
    """What the server does with one request.

    ``body`` may be JSON-able (sent as JSON), text or bytes (sent as they are). ``delay`` is
    waited before anything is sent. ``action`` picks a fault instead of a normal response:
    ``stall`` never answers, ``stall_after_headers`` sends the headers and never the body,
    ``close`` drops the connection without a word, ``truncate_body`` sends half the body and
    drops the connection.

    A request with ``"stream": true`` gets a 200 completion body as server-sent events
    (``fakes/sse.py``), each event cut in two across HTTP chunks; ``drop_mid_stream`` and
    ``stall_mid_stream`` drop the connection or go silent after ``after_events`` events.
    """

    status: int = 200
    body: JSONBody | str | bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    action: Action = "respond"
    after_events: int = 2

    def encoded(self) -> bytes:
        if isinstance(self.body, bytes):
            return self.body
        if isinstance(self.body, str):
            return self.body.encode()
        return json.dumps(self.body).encode()


Responder: TypeAlias = Callable[[RecordedRequest], Reply]
ScriptItem: TypeAlias = Reply | Responder

STALL = Reply(action="stall")
STALL_AFTER_HEADERS = Reply(action="stall_after_headers", body=b'{"choices": []}')
CLOSE = Reply(action="close")
TRUNCATE_BODY = Reply(action="truncate_body", body={"choices": [{"message": {"content": "x"}}]})
CHAT_PATH = "/v1/chat/completions"
COMPLETIONS_PATH = "/v1/completions"
_ids = itertools.count(1)
FRESH_ID = "<fresh id>"
"""Where a reply holds this id, the server puts a new one when it sends the reply."""


# -- building replies ------------------------------------------------------------------------


def completion(
    content: str | None = None,
    tool_calls: list[dict[str, Any]] | None = None,
    *,
    finish_reason: str | None = None,
    usage: dict[str, int] | None = None,
    model: str = "fake-model",
) -> dict[str, Any]:
    """A chat completion body as OpenAI sends it. ``usage=None`` leaves usage out."""
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if tool_calls:
        message["tool_calls"] = tool_calls
    reason = finish_reason or ("tool_calls" if tool_calls else "stop")
    body: dict[str, Any] = {
        "id": FRESH_ID,
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": reason}],
    }
    if usage is not None:
        body["usage"] = {**usage, "total_tokens": sum(usage.values())}
    return body


def text_completion(
    text: str, *, finish_reason: str = "stop", usage: dict[str, int] | None = None
) -> Reply:
    """A 200 reply to ``/v1/completions`` whose continuation is ``text``."""
    body: dict[str, Any] = {
        "id": FRESH_ID,
        "object": "text_completion",
        "created": 0,
        "model": "fake-model",
        "choices": [{"index": 0, "text": text, "finish_reason": finish_reason}],
    }
    if usage is not None:
        body["usage"] = {**usage, "total_tokens": sum(usage.values())}
    return Reply(body=body)


def answer(content: str, *, usage: dict[str, int] | None = None, **kw: Any) -> Reply:
    """A 200 reply whose message is the text ``content``."""
    return Reply(body=completion(content, usage=usage), **kw)


def tool_call(name: str, arguments: Any = None, *, id: str | None = "auto") -> dict[str, Any]:
    """One tool call in wire form; ``arguments`` other than a string are JSON-encoded (use
    ``tool_call_raw`` to send a non-string ``arguments`` field). ``id="auto"`` gives a fresh
    unique id each time the reply is sent; ``id=None`` leaves the id out."""
    text = arguments if isinstance(arguments, str) else json.dumps(arguments or {})
    call: dict[str, Any] = {"type": "function", "function": {"name": name, "arguments": text}}
    if id == "auto":
        call["id"] = FRESH_ID
    elif id is not None:
        call["id"] = id
    return call


def tool_call_raw(name: str, arguments: Any, *, id: str | None = None) -> dict[str, Any]:
    """A tool call whose ``arguments`` field is sent as given (an object, an array, ...)."""
    call: dict[str, Any] = {"type": "function", "function": {"name": name, "arguments": arguments}}
    if id is not None:
        call["id"] = id
    return call


def tool_calls(
    *calls: dict[str, Any],
    content: str | None = None,
    finish_reason: str | None = None,
    usage: dict[str, int] | None = None,
) -> Reply:
    """A 200 reply asking for ``calls`` (built with ``tool_call``), in order."""
    return Reply(body=completion(content, list(calls), finish_reason=finish_reason, usage=usage))


def cut_off(text: str, *, chat: bool = True) -> Reply:
    """A 200 reply whose text stopped at the token limit (``finish_reason: "length"``): a chat
    completion, or with ``chat=False`` a text completion (``/v1/completions``)."""
    if chat:
        return Reply(body=completion(text, finish_reason="length"))
    return text_completion(text, finish_reason="length")


def with_fresh_ids(body: JSONBody | str | bytes) -> JSONBody | str | bytes:
    """``body`` with every ``FRESH_ID`` (the response id, tool-call ids) replaced by a new id."""
    if not isinstance(body, dict) or FRESH_ID not in json.dumps(body):
        return body
    fresh = json.loads(json.dumps(body))
    if fresh.get("id") == FRESH_ID:
        prefix = "cmpl" if fresh.get("object") == "text_completion" else "chatcmpl"
        fresh["id"] = f"{prefix}-{next(_ids)}"
    for choice in fresh.get("choices") or ():
        message = choice.get("message") if isinstance(choice, dict) else None
        for call in (message or {}).get("tool_calls") or ():
            if isinstance(call, dict) and call.get("id") == FRESH_ID:
                call["id"] = f"call_{next(_ids)}"
    return fresh


def error(
    status: int,
    message: str = "error",
    *,
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> Reply:
    """An error reply in OpenAI's shape: ``{"error": {"message", "type", "code"}}``."""
    body = {"error": {"message": message, "type": "invalid_request_error", "code": code}}
    return Reply(status=status, body=body, headers=headers or {})


def raw(body: str | bytes, *, status: int = 200, content_type: str = "text/plain") -> Reply:
    """A reply with exactly this body."""
    return Reply(status=status, body=body, headers={"Content-Type": content_type})


# -- the server ------------------------------------------------------------------------------


class FakeOpenAIServer:
    """An OpenAI-compatible chat completions server on 127.0.0.1 in a background thread."""

    def __init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        self.fallback: Responder | None = None
        """Answers requests once the script is used up (``None``: answer 418, an overrun)."""
        self.overruns = 0
        """Requests that arrived after the script ran out and had no fallback."""
        self.connections = 0
        """TCP connections accepted (keep-alive reuses them)."""
        self._script: deque[ScriptItem] = deque()
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._stopping: asyncio.Event | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    @property
    def url(self) -> str:
        """The base_url to give a client: ``http://127.0.0.1:<port>/v1``."""
        return f"http://127.0.0.1:{self.port}/v1"

    # -- scripting ---------------------------------------------------------------------------

    def script(self, *items: ScriptItem) -> FakeOpenAIServer:
        """Queue replies (or functions of the request that return one), answered in order."""
        with self._lock:
            self._script.extend(items)
        return self

    @property
    def remaining(self) -> int:
        """Scripted replies not yet used."""
        with self._lock:
            return len(self._script)

    def assert_consumed(self) -> None:
        """Fail if a scripted reply was never requested or a request found no reply."""
        assert self.remaining == 0, f"{self.remaining} scripted replies were never requested"
        assert self.overruns == 0, f"{self.overruns} requests came after the script ran out"

    @property
    def bodies(self) -> list[Any]:
        """The JSON bodies of the (chat) completion requests received, in order."""
        return [r.json() for r in self.requests if r.path in (CHAT_PATH, COMPLETIONS_PATH)]

    def _next_reply(self, request: RecordedRequest) -> Reply:
        with self._lock:
            self.requests.append(request)
            item = self._script.popleft() if self._script else None
        if request.path not in (CHAT_PATH, COMPLETIONS_PATH) or request.method != "POST":
            if item is not None:  # not for us: keep the script for the right request
                with self._lock:
                    self._script.appendleft(item)
            return error(404, f"no route for {request.method} {request.path}", code="not_found")
        if item is None:
            if self.fallback is None:
                self.overruns += 1
                return error(418, "fake server: the script has no reply left for this request")
            item = self.fallback
        reply = item if isinstance(item, Reply) else item(request)
        return dataclasses.replace(reply, body=with_fresh_ids(reply.body))

    # -- life cycle --------------------------------------------------------------------------

    def start(self) -> FakeOpenAIServer:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=10)
        return self

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    async def _start(self) -> None:
        self._stopping = asyncio.Event()
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _stop(self) -> None:
        assert self._server is not None and self._stopping is not None
        self._server.close()
        self._stopping.set()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    # -- HTTP ----------------------------------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections += 1
        try:
            await self._serve(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await writer.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert self._stopping is not None
        while True:
            request = await _read_request(reader)
            if request is None:
                return
            reply = self._next_reply(request)
            if reply.delay:
                await asyncio.sleep(reply.delay)
            if reply.action == "stall":
                await self._stopping.wait()
                return
            if reply.action == "close":
                return
            if (
                reply.status == 200
                and isinstance(reply.body, dict)
                and is_stream_request(request.body)
            ):
                if not await self._stream(reader, writer, reply):
                    return
                continue
            body = reply.encoded()
            writer.write(_head(reply, len(body)))
            if reply.action == "stall_after_headers":
                await writer.drain()
                await self._stopping.wait()
                return
            if reply.action == "truncate_body":
                writer.write(body[: len(body) // 2])
                await writer.drain()
                return
            writer.write(body)
            await writer.drain()
            if request.headers.get("connection", "").lower() == "close":
                return

    async def _stream(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, reply: Reply
    ) -> bool:
        """Send ``reply`` as server-sent events; ``False`` if the connection is to end. A
        stall lasts until the server stops or the client hangs up."""
        assert self._stopping is not None and isinstance(reply.body, dict)
        head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked"
        writer.write(
            (
                "\r\n".join([head, *(f"{k}: {v}" for k, v in reply.headers.items())]) + "\r\n\r\n"
            ).encode()
        )
        for sent, event in enumerate(stream_events(reply.body)):
            if sent == reply.after_events and reply.action == "drop_mid_stream":
                await writer.drain()
                return False
            if sent == reply.after_events and reply.action == "stall_mid_stream":
                await writer.drain()
                waits = {
                    asyncio.ensure_future(reader.read(1)),
                    asyncio.ensure_future(self._stopping.wait()),
                }
                _, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                for task in pending:
                    task.cancel()
                return False
            cut = len(event) // 2
            for part in (event[:cut], event[cut:]):
                writer.write(b"%x\r\n%s\r\n" % (len(part), part))
                await writer.drain()
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        return True


async def _read_request(reader: asyncio.StreamReader) -> RecordedRequest | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None  # the client closed a kept-alive connection
    request_line, *lines = head[:-4].decode("latin-1").split("\r\n")
    method, target, _version = request_line.split(" ", 2)
    headers: dict[str, str] = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = await _read_chunked(reader)
    else:
        body = await reader.readexactly(int(headers.get("content-length") or 0))
    return RecordedRequest(method=method, path=target, headers=headers, body=body)


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    chunks: list[bytes] = []
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        if size == 0:
            await reader.readuntil(b"\r\n")
            return b"".join(chunks)
        chunks.append(await reader.readexactly(size))
        await reader.readexactly(2)


def _head(reply: Reply, length: int) -> bytes:
    try:
        phrase = HTTPStatus(reply.status).phrase
    except ValueError:
        phrase = "Status"
    headers = {"Content-Type": "application/json", **reply.headers, "Content-Length": str(length)}
    lines = [f"HTTP/1.1 {reply.status} {phrase}", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


@contextlib.contextmanager
def refused_url() -> Iterator[str]:
    """A loopback base_url where nothing listens: the port is held (bound, not listening) for
    the block, so every connection to it is refused and no other test can take it."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
    finally:
        sock.close()
