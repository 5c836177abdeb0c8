"""Completions as OpenAI streams them: a whole completion body cut into SSE chunk events.

``stream_events`` turns a chat completion (or text completion) body into the events a real
server sends for ``"stream": true``: an opening chunk with the role and empty content, the
text in small pieces, each tool call's arguments in pieces with the calls interleaved by
index (the id and name only on a call's first delta), a chunk with the finish reason, a
usage-only chunk (``choices: []``, as with ``stream_options.include_usage``), ``[DONE]``.
The fake server writes them as HTTP chunks, each event cut in two across writes, so the client
sees events split at arbitrary points.
"""

from __future__ import annotations

import json
from typing import Any


def _pieces(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def _event(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


def stream_events(body: dict[str, Any], *, piece: int = 3) -> list[bytes]:
    """The SSE events (each ``data: ...\\n\\n``) streaming the completion ``body``."""
    head = {k: body[k] for k in ("id", "created", "model") if k in body}
    choice = body["choices"][0]
    events: list[bytes] = []
    if "text" in choice:  # a text completion
        head["object"] = "text_completion"
        for part in _pieces(choice["text"], piece):
            events.append(_event({**head, "choices": [{"index": 0, "text": part}]}))
        last = {"index": 0, "text": "", "finish_reason": choice.get("finish_reason")}
        events.append(_event({**head, "choices": [last]}))
    else:
        head["object"] = "chat.completion.chunk"
        message = choice["message"]

        def chunk(delta: dict[str, Any], reason: str | None = None) -> bytes:
            return _event(
                {**head, "choices": [{"index": 0, "delta": delta, "finish_reason": reason}]}
            )

        content = message.get("content")
        events.append(chunk({"role": "assistant", "content": "" if content is not None else None}))
        if content:
            events += [chunk({"content": part}) for part in _pieces(content, piece)]
        calls = message.get("tool_calls") or []
        pieces = [_pieces(c["function"]["arguments"], piece + 2) for c in calls]
        for index, call in enumerate(calls):  # the opening delta of every call first...
            first: dict[str, Any] = {
                "index": index,
                "type": "function",
                "function": {"name": call["function"]["name"], "arguments": pieces[index][0]},
            }
            if "id" in call:
                first["id"] = call["id"]
            events.append(chunk({"tool_calls": [first]}))
        for round_ in range(1, max((len(p) for p in pieces), default=0)):  # ...then interleaved
            for index, parts in enumerate(pieces):
                if round_ < len(parts):
                    delta = {"index": index, "function": {"arguments": parts[round_]}}
                    events.append(chunk({"tool_calls": [delta]}))
        events.append(chunk({}, choice.get("finish_reason")))
    if "usage" in body:
        events.append(_event({**head, "choices": [], "usage": body["usage"]}))
    events.append(b"data: [DONE]\n\n")
    return events


def is_stream_request(body: bytes) -> bool:
    try:
        return json.loads(body).get("stream") is True
    except (ValueError, AttributeError):
        return False
