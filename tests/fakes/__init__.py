"""Test fakes that stand in for the outside world over loopback only.

``openai_server`` is an OpenAI-compatible (chat) completions server on 127.0.0.1 with scripted
replies and fault injection (errors, delays, stalls, dropped connections).
"""

from fakes.openai_server import (
    CLOSE,
    STALL,
    STALL_AFTER_HEADERS,
    TRUNCATE_BODY,
    FakeOpenAIServer,
    RecordedRequest,
    Reply,
    answer,
    completion,
    cut_off,
    error,
    raw,
    refused_url,
    text_completion,
    tool_call,
    tool_call_raw,
    tool_calls,
)

__all__ = [
    "CLOSE",
    "STALL",
    "STALL_AFTER_HEADERS",
    "TRUNCATE_BODY",
    "FakeOpenAIServer",
    "RecordedRequest",
    "Reply",
    "answer",
    "completion",
    "cut_off",
    "error",
    "raw",
    "refused_url",
    "text_completion",
    "tool_call",
    "tool_call_raw",
    "tool_calls",
]
