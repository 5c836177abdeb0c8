"""A recorded model response served as a stream: deltas, instantly or at the recorded pace.

Replay streams like a live model does, so a streaming consumer (an app, the CLI) can be tested
offline against a real trace. The text is cut into words; with ``pace`` the first piece waits
the recorded time to first token (or the whole latency, for a response recorded unstreamed)
and the rest is spread over the recorded generation time.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncGenerator

from agentloop.deltas import StreamItem, TextDelta, ToolCallDelta
from agentloop.messages import ModelResponse

_WORDS = re.compile(r"\s*\S+\s*|\s+")


async def paced_deltas(
    response: ModelResponse, pace: bool = False
) -> AsyncGenerator[StreamItem, None]:
    """``response`` as deltas (words of its text, then each tool call whole), then itself."""
    pieces: list[TextDelta | ToolCallDelta] = [
        TextDelta(word) for word in _WORDS.findall(response.text or "")
    ]
    pieces += [
        ToolCallDelta(i, part.call_id, part.name, part.arguments)
        for i, part in enumerate(response.tool_calls)
    ]
    first_ms = response.first_token_ms
    if first_ms is None:
        first_ms = response.latency_ms or 0.0
    gap_s = (response.generation_ms or 0.0) / 1000 / max(len(pieces) - 1, 1)
    for index, piece in enumerate(pieces):
        if pace:
            await asyncio.sleep(first_ms / 1000 if index == 0 else gap_s)
        yield piece
    if pace and not pieces:
        await asyncio.sleep(first_ms / 1000)
    yield response
