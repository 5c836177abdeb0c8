"""The JSON action protocol, streamed: the answer's text as it is generated.

A reply under the protocol is one JSON object. When it is ``{"answer": "..."}``,
``AnswerStream`` decodes the JSON string as its characters arrive (escapes, ``\\uXXXX`` and
surrogate pairs cut anywhere) and passes the text on; a tool call is passed on only once
complete, as the step's response. The deltas are a preview: the step's ``ModelResponse`` (read
from the whole reply by ``protocol.parse_action``) is what the run acts on and records.
"""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator, Sequence
from contextlib import aclosing
from typing import Literal, Protocol

from agentloop.deltas import StreamItem, TextDelta
from agentloop.messages import Message, ModelResponse
from agentloop.models.protocol import (
    DEFAULT_EXAMPLES,
    Example,
    json_actions_request,
    json_actions_response,
)
from agentloop.settings import ModelSettings
from agentloop.tools import Toolset

_FIRST_KEY = re.compile(r'\{\s*"((?:[^"\\]|\\.)*)"\s*:\s*(\S)')
_PLAIN = re.compile(r'[^"\\]+')
_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
_ANSWER_KEYS = ("answer", "final_answer")
_UNDECIDED_LIMIT = 400
"""Characters of reply after which an action that has not started with a key is no answer."""


class AnswerStream:
    """Feed the raw reply piece by piece; ``feed`` returns the next decoded piece of the
    answer (``""`` while there is none, for good once the action turns out to be a tool call
    or the answer string has closed)."""

    __slots__ = ("_buffer", "_pos", "_state")

    def __init__(self) -> None:
        self._buffer = ""
        self._pos = 0
        self._state: Literal["seeking", "answer", "over"] = "seeking"

    def feed(self, text: str) -> str:
        if self._state == "over":
            return ""
        self._buffer += text
        if self._state == "seeking":
            found = _FIRST_KEY.search(self._buffer)
            if found is None:
                if len(self._buffer) > _UNDECIDED_LIMIT:
                    self._state = "over"
                return ""
            if found.group(1) not in _ANSWER_KEYS or found.group(2) != '"':
                self._state = "over"
                return ""
            self._state, self._pos = "answer", found.end()
        return self._decode()

    def _decode(self) -> str:
        buffer, i, out = self._buffer, self._pos, []
        end = len(buffer)
        while i < end:
            char = buffer[i]
            if char == '"':
                self._state = "over"
                break
            if char != "\\":
                run = _PLAIN.match(buffer, i)
                assert run is not None
                out.append(run.group())
                i = run.end()
                continue
            if i + 1 >= end:
                break  # the escape continues in the next piece
            kind = buffer[i + 1]
            if kind != "u":
                out.append(_ESCAPES.get(kind, kind))
                i += 2
                continue
            if i + 6 > end:
                break
            code = _hex(buffer[i + 2 : i + 6])
            if 0xD800 <= code < 0xDC00:  # a high surrogate: its pair must follow
                if i + 12 > end:
                    if buffer[i + 6 : i + 8] not in ("", "\\", "\\u"):
                        out.append("\ufffd")
                        i += 6
                        continue
                    break
                low = _hex(buffer[i + 8 : i + 12]) if buffer[i + 6 : i + 8] == "\\u" else -1
                if 0xDC00 <= low < 0xE000:
                    out.append(chr(0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)))
                    i += 12
                    continue
                out.append("\ufffd")
                i += 6
                continue
            out.append(chr(code) if code >= 0 else "\ufffd")
            i += 6
        self._pos = i
        return "".join(out)


def _hex(digits: str) -> int:
    try:
        return int(digits, 16) if len(digits) == 4 else -1
    except ValueError:
        return -1


class StreamingBackend(Protocol):
    """A chat model that can also continue a plain prompt, both streamed (``OpenAIModel``)."""

    def request_stream(
        self, messages: Sequence[Message], tools: Toolset, settings: ModelSettings
    ) -> AsyncGenerator[StreamItem, None]: ...

    def complete_stream(
        self, prompt: str, settings: ModelSettings
    ) -> AsyncGenerator[StreamItem, None]: ...


async def stream_json_actions(
    model: StreamingBackend,
    messages: Sequence[Message],
    tools: Toolset,
    settings: ModelSettings,
    form: Literal["chat", "completion"] = "chat",
    examples: Sequence[Example] = DEFAULT_EXAMPLES,
) -> AsyncGenerator[StreamItem, None]:
    """``protocol.request_json_actions`` streamed: the answer's text as deltas, then the
    step's response."""
    payload, settings = json_actions_request(messages, tools, settings, form, examples)
    if isinstance(payload, str):
        stream = model.complete_stream(payload, settings)
    else:
        stream = model.request_stream(payload, Toolset(), settings)
    async with aclosing(stream):
        async for item in answer_deltas(stream, messages):
            yield item


async def answer_deltas(
    raw: AsyncGenerator[StreamItem, None], messages: Sequence[Message]
) -> AsyncGenerator[StreamItem, None]:
    """The raw reply's stream (text deltas of the JSON action, then the raw response) as the
    answer's text deltas, then the step's response."""
    answer = AnswerStream()
    async for item in raw:
        if isinstance(item, TextDelta):
            piece = answer.feed(item.text)
            if piece:
                yield TextDelta(piece)
        elif isinstance(item, ModelResponse):
            yield json_actions_response(item, messages)
