"""Streamed completions: server-sent events read incrementally, and the chunks assembled.

``SSEDecoder`` turns bytes, cut anywhere (inside a line, a UTF-8 character or a ``\\r\\n``),
into whole events. ``ChunkAssembler`` reads OpenAI's ``chat.completion.chunk`` (and text
completion) events: text deltas, tool-call deltas assembled by index (arguments split across
any number of chunks, several calls interleaved), the finish reason, and usage from the final
chunk; ``response()`` is the ``ModelResponse`` the same completion gives unstreamed.

The decoder is our own rather than httpx2's ``EventSource`` for three reasons: llama.cpp's
server reports a failure mid-stream as an ``error:`` line, which a generic decoder drops as an
unknown field; a line that is not server-sent events at all (a proxy's HTML, a body cut in
two) must be an error, not silently skipped; and working on bytes with ``split`` keeps the
per-token cost near a raw loop's.

Everything wrong with the stream raises ``StreamProtocolError``; the backend turns it into a
``ModelStreamError`` carrying the partial text.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from agentloop.deltas import ModelDelta, TextDelta, ToolCallDelta
from agentloop.messages import ModelResponse, RequestAttempt, ToolCallPart, Usage
from agentloop.models.openai_wire import token_count

MAX_EVENT_BYTES = 16 * 1024 * 1024
"""A line or event longer than this ends the stream (memory stays bounded)."""
_KNOWN_FIELDS = frozenset({b"data", b"event", b"id", b"retry"})


class StreamProtocolError(Exception):
    """The stream is not what an OpenAI-compatible server sends, or it reports an error."""


class SSEDecoder:
    """Server-sent events from bytes in any chunking: ``feed`` returns the events completed
    by a chunk, as ``(event name, data)``; the name is ``"message"`` unless the server set one.
    llama.cpp's ``error: {...}`` line is an event named ``"error"``."""

    __slots__ = ("_buffer", "_cr", "_data", "_event")

    def __init__(self) -> None:
        self._buffer = b""
        self._cr = False  # the last chunk ended in "\r": a "\n" starting the next is its pair
        self._data: list[bytes] = []
        self._event = b""

    def feed(self, chunk: bytes) -> list[tuple[str, str]]:
        if self._cr:
            self._cr = False
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
        if b"\r" in chunk:
            self._cr = chunk.endswith(b"\r")
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        if b"\n" not in chunk:
            self._buffer += chunk
            if len(self._buffer) > MAX_EVENT_BYTES:
                raise StreamProtocolError(f"a line longer than {MAX_EVENT_BYTES} bytes")
            return []
        lines = (self._buffer + chunk).split(b"\n")
        self._buffer = lines.pop()
        events: list[tuple[str, str]] = []
        for line in lines:
            if not line:
                if self._data:
                    events.append(self._dispatch())
                continue
            if line[0] == 58:  # ":" a comment (keep-alive)
                continue
            name, _, value = line.partition(b":")
            if value[:1] == b" ":
                value = value[1:]
            if name == b"data":
                self._data.append(value)
                if len(self._data) > 1 and sum(map(len, self._data)) > MAX_EVENT_BYTES:
                    raise StreamProtocolError(f"an event longer than {MAX_EVENT_BYTES} bytes")
            elif name == b"event":
                self._event = value
            elif name == b"error":  # llama.cpp's server
                self._event = b"error"
                self._data.append(value)
            elif name not in _KNOWN_FIELDS:
                shown = line[:120].decode(errors="replace")
                raise StreamProtocolError(f"a line that is not server-sent events: {shown!r}")
        return events

    def _dispatch(self) -> tuple[str, str]:
        raw = self._data[0] if len(self._data) == 1 else b"\n".join(self._data)
        event = self._event.decode(errors="replace") if self._event else "message"
        self._data, self._event = [], b""
        try:
            return event, raw.decode()
        except UnicodeDecodeError:
            raise StreamProtocolError("an event that is not UTF-8") from None


@dataclass(slots=True)
class _Call:
    call_id: str | None
    name: str
    arguments: list[str] = field(default_factory=list)


class ChunkAssembler:
    """Reads the events of one streamed completion; ``add`` returns the deltas in an event.

    ``text=True`` reads text completions (``choices[0].text``), else chat completion chunks
    (``choices[0].delta``). Tool-call deltas are matched to calls by their ``index``; a delta
    that reuses an index under a different ``id`` (Ollama numbers every call 0) starts a new
    call, so distinct calls are never merged. Calls without an id get ``call_<position>``,
    as unstreamed ones do.
    """

    __slots__ = (
        "_by_index",
        "_has_text",
        "_text",
        "calls",
        "done",
        "finish_reason",
        "model_name",
        "text_form",
        "timings",
        "usage",
    )

    def __init__(self, text: bool = False) -> None:
        self.text_form = text
        self._text: list[str] = []
        self._has_text = False
        self.calls: list[_Call] = []
        self._by_index: dict[int, int] = {}
        self.finish_reason: str | None = None
        self.usage: Any = None
        self.model_name: str | None = None
        self.timings: dict[str, float] | None = None
        self.done = False
        """``[DONE]`` arrived."""

    @property
    def complete(self) -> bool:
        """The stream said it was over (``[DONE]``, or at least a finish reason)."""
        return self.done or self.finish_reason is not None

    @property
    def text(self) -> str:
        return "".join(self._text)

    def partial_calls(self) -> tuple[tuple[str, str], ...]:
        return tuple((c.name, "".join(c.arguments)) for c in self.calls)

    def add(self, event: str, data: str) -> list[ModelDelta]:
        if data == "[DONE]":
            self.done = True
            return []
        if event == "error":
            raise StreamProtocolError(f"the server sent an error: {_error_text(data)}")
        try:
            chunk = json.loads(data)
        except ValueError:
            raise StreamProtocolError(f"an event that is not JSON: {data[:120]!r}") from None
        if not isinstance(chunk, dict):
            raise StreamProtocolError(f"an event that is not a JSON object: {data[:120]!r}")
        return self.add_chunk(chunk)

    def add_chunk(self, chunk: dict[str, Any]) -> list[ModelDelta]:
        """The deltas in one decoded chunk (llama.cpp in-process hands over dicts)."""
        if "error" in chunk:
            raise StreamProtocolError(f"the server sent an error: {_error_text(chunk)}")
        if self.model_name is None and isinstance(chunk.get("model"), str):
            self.model_name = chunk["model"]
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            self.usage = usage
        timings = chunk.get("timings")
        if isinstance(timings, dict):
            self.timings = {k: float(v) for k, v in timings.items() if isinstance(v, int | float)}
        choices = chunk.get("choices")
        if not choices:
            return []
        try:
            choice = choices[0]
            reason = choice.get("finish_reason")
            if reason is not None:
                self.finish_reason = str(reason)
            if self.text_form:
                return self._add_text(choice.get("text"))
            delta = choice.get("delta") or {}
            deltas = self._add_text(delta.get("content"))
            for call in delta.get("tool_calls") or ():
                deltas.append(self._add_call(call))
            return deltas
        except (AttributeError, TypeError, LookupError):
            shown = json.dumps(chunk)[:120]
            raise StreamProtocolError(f"not a completion chunk: {shown!r}") from None

    def _add_text(self, content: Any) -> list[ModelDelta]:
        if not isinstance(content, str):
            return []
        self._has_text = True
        if not content:  # an opening chunk with empty content is nothing to show
            return []
        self._text.append(content)
        return [TextDelta(content)]

    def _add_call(self, wire: Any) -> ToolCallDelta:
        index = wire.get("index")
        index = index if isinstance(index, int) else -1
        function = wire.get("function") or {}
        call_id = wire.get("id") if isinstance(wire.get("id"), str) and wire.get("id") else None
        name = function.get("name") if isinstance(function.get("name"), str) else None
        arguments = function.get("arguments")
        if arguments is not None and not isinstance(arguments, str):  # some send the object
            arguments = json.dumps(arguments)
        arguments = arguments or ""
        position = self._by_index.get(index)
        if position is not None and self._starts_new_call(self.calls[position], call_id, name):
            position = None
        if position is None:
            position = len(self.calls)
            self._by_index[index] = position
            self.calls.append(_Call(call_id, name or "", [arguments]))
            return ToolCallDelta(position, call_id, name or "", arguments)
        call = self.calls[position]
        if call_id and not call.call_id:
            call.call_id = call_id
        if name and not call.name:
            call.name = name
        call.arguments.append(arguments)
        return ToolCallDelta(position, None, None, arguments)

    @staticmethod
    def _starts_new_call(call: _Call, call_id: str | None, name: str | None) -> bool:
        if call_id is not None and call.call_id is not None:
            return call_id != call.call_id
        if call_id is None and name and call.name:  # no ids: a second name after whole args
            try:
                return isinstance(json.loads("".join(call.arguments)), dict)
            except ValueError:
                return False
        return False

    def response(
        self,
        latency_ms: float,
        first_token_ms: float | None,
        attempts: tuple[RequestAttempt, ...] = (),
    ) -> ModelResponse:
        """The assembled response (what the unstreamed completion would have returned)."""
        calls = tuple(
            ToolCallPart(
                call_id=c.call_id or f"call_{i}", name=c.name, arguments="".join(c.arguments)
            )
            for i, c in enumerate(self.calls)
        )
        return ModelResponse(
            text="".join(self._text) if self._has_text else None,
            tool_calls=calls,
            finish_reason=self.finish_reason,
            usage=Usage(
                input_tokens=token_count(self.usage, "prompt_tokens"),
                output_tokens=token_count(self.usage, "completion_tokens"),
            ),
            model_name=self.model_name,
            latency_ms=latency_ms,
            first_token_ms=first_token_ms,
            generation_ms=latency_ms - first_token_ms if first_token_ms is not None else None,
            attempts=attempts,
            timings=self.timings,
        )


def _error_text(data: str | dict[str, Any]) -> str:
    """The message of an error event (OpenAI's ``{"error": {...}}``, llama.cpp's)."""
    try:
        body = json.loads(data) if isinstance(data, str) else data
    except ValueError:
        return str(data)[:300]
    inner = body.get("error", body) if isinstance(body, dict) else body
    if isinstance(inner, dict):
        parts = [str(inner[k]) for k in ("code", "message") if inner.get(k)]
        if parts:
            return ": ".join(parts)
    return json.dumps(inner)[:300]
