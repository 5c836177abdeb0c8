"""Server-sent events and chunk assembly: a streamed completion, cut at any byte, assembles
to the response the unstreamed completion gives; broken streams are errors."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentloop.deltas import TextDelta, ToolCallDelta
from agentloop.messages import ModelResponse
from agentloop.models.openai_wire import completion_response as _response
from agentloop.models.protocol_stream import AnswerStream
from agentloop.models.sse import ChunkAssembler, SSEDecoder, StreamProtocolError
from fakes import completion, tool_call, tool_call_raw
from fakes.sse import stream_events

USAGE = {"prompt_tokens": 12, "completion_tokens": 5}
BODIES: list[dict[str, Any]] = [
    completion("Hello, wörld! 👋 done", usage=USAGE),
    completion(""),
    completion(None, [tool_call("add", {"a": 1, "b": 2}, id="call_a")], usage=USAGE),
    completion(
        "Let me look both up.",
        [
            tool_call("search", {"q": 'ö "q" \\'}, id="c1"),
            tool_call("add", {"a": 10, "b": 2}, id=None),
            tool_call("noop", {}, id="c3"),
        ],
        usage=USAGE,
    ),
    completion(None, [tool_call_raw("add", {"a": 1})], finish_reason="length"),
    {
        "id": "cmpl-1",
        "model": "m",
        "choices": [{"index": 0, "text": '{"answer": "a\\nb"}', "finish_reason": "stop"}],
        "usage": {**USAGE, "total_tokens": 17},
    },
]
WHOLE = {"latency_ms", "first_token_ms", "generation_ms", "timings"}


def unstreamed(body: dict[str, Any]) -> dict[str, Any]:
    text = "text" in body["choices"][0]
    return _response(body, 0.0, (), text).model_dump(exclude=WHOLE)


def assemble(stream: bytes, cuts: list[int], text: bool) -> tuple[ModelResponse, list[Any]]:
    decoder, assembler, deltas = SSEDecoder(), ChunkAssembler(text), []
    start = 0
    for cut in [*sorted(cuts), len(stream)]:
        for event, data in decoder.feed(stream[start:cut]):
            deltas += assembler.add(event, data)
        start = cut
    assert assembler.done
    return assembler.response(1.0, 0.5), deltas


def wire(body: dict[str, Any], crlf: bool = False) -> bytes:
    if "tool_calls" in body["choices"][0].get("message", {}):
        body = json.loads(json.dumps(body))
        for call in body["choices"][0]["message"]["tool_calls"]:
            args = call["function"]["arguments"]
            if not isinstance(args, str):
                call["function"]["arguments"] = json.dumps(args)
    stream = b"".join(stream_events(body))
    return stream.replace(b"\n", b"\r\n") if crlf else stream


@pytest.mark.parametrize("body", BODIES, ids=range(len(BODIES)))
def test_every_single_cut_assembles_the_unstreamed_response(body: dict[str, Any]) -> None:
    text = "text" in body["choices"][0]
    expected = unstreamed(body)
    for crlf in (False, True) if len(wire(body)) < 1500 else (False,):
        stream = wire(body, crlf)
        for offset in range(len(stream) + 1):
            response, _ = assemble(stream, [offset], text)
            assert response.model_dump(exclude=WHOLE) == expected, (crlf, offset)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    body=st.sampled_from(BODIES),
    crlf=st.booleans(),
    data=st.data(),
)
def test_random_chunkings_assemble_the_unstreamed_response(
    body: dict[str, Any], crlf: bool, data: st.DataObject
) -> None:
    stream = wire(body, crlf)
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=40))
    response, deltas = assemble(stream, cuts, "text" in body["choices"][0])
    assert response.model_dump(exclude=WHOLE) == unstreamed(body)
    text = "".join(d.text for d in deltas if isinstance(d, TextDelta))
    assert text == (response.text or "")
    for position, call in enumerate(response.tool_calls):  # the deltas spell out each call
        pieces = [d for d in deltas if isinstance(d, ToolCallDelta) and d.index == position]
        assert "".join(d.arguments for d in pieces) == call.arguments
        assert pieces[0].name == call.name


@settings(max_examples=200, deadline=None)
@given(
    answer=st.text(st.characters(codec="utf-8"), max_size=40),
    data=st.data(),
)
def test_the_answer_string_decodes_incrementally_at_any_cut(
    answer: str, data: st.DataObject
) -> None:
    raw = json.dumps({"answer": answer})  # \uXXXX escapes and surrogate pairs included
    if data.draw(st.booleans()):
        raw = json.dumps({"answer": answer}, ensure_ascii=False)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(raw)), max_size=12)))
    stream, out, start = AnswerStream(), [], 0
    for cut in [*cuts, len(raw)]:
        out.append(stream.feed(raw[start:cut]))
        start = cut
    assert "".join(out) == answer


def test_a_tool_call_action_streams_no_text() -> None:
    stream = AnswerStream()
    raw = '{"tool": "add", "arguments": {"answer": "no"}}'
    assert "".join(stream.feed(c) for c in raw) == ""


def test_ollama_reusing_index_0_with_new_ids_never_merges_calls() -> None:
    assembler = ChunkAssembler()
    for call_id, args in (("a", '{"x": 1}'), ("b", '{"x": 2}')):
        delta = {
            "tool_calls": [
                {"index": 0, "id": call_id, "function": {"name": "f", "arguments": args}}
            ]
        }
        assembler.add_chunk({"choices": [{"index": 0, "delta": delta}]})
    assembler.add_chunk({"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]})
    calls = assembler.response(1.0, None).tool_calls
    assert [(c.call_id, c.arguments) for c in calls] == [("a", '{"x": 1}'), ("b", '{"x": 2}')]


def test_calls_without_ids_get_stable_synthetic_ids() -> None:
    assembler = ChunkAssembler()
    for index in (0, 1):
        delta = {"tool_calls": [{"index": index, "function": {"name": "f", "arguments": "{}"}}]}
        assembler.add_chunk({"choices": [{"index": 0, "delta": delta}]})
    assert [c.call_id for c in assembler.response(1.0, None).tool_calls] == ["call_0", "call_1"]


@pytest.mark.parametrize(
    ("stream", "problem"),
    [
        (b"data: {not json}\n\n", "not JSON"),
        (b"<html>502 Bad Gateway</html>\n", "not server-sent events"),
        (b"data: [1, 2]\n\n", "not a JSON object"),
        (b'data: {"choices": "x"}\n\n', "not a completion chunk"),
        (b'data: {"error": {"message": "overloaded", "code": "server_error"}}\n\n', "overloaded"),
        (b'error: {"code": 500, "message": "slot crashed"}\n\n', "slot crashed"),
        (b'event: error\ndata: {"message": "boom"}\n\n', "boom"),
        (b"data: \xff\xfe\n\n", "not UTF-8"),
    ],
)
def test_malformed_lines_and_error_events_are_errors(stream: bytes, problem: str) -> None:
    decoder, assembler = SSEDecoder(), ChunkAssembler()

    def read() -> None:
        for event, data in decoder.feed(stream):
            assembler.add(event, data)

    with pytest.raises(StreamProtocolError, match=problem):
        read()


def test_comments_and_unknown_known_fields_are_skipped() -> None:
    decoder = SSEDecoder()
    events = decoder.feed(b": keep-alive\nid: 7\nretry: 100\nevent: message\ndata: a\ndata: b\n\n")
    assert events == [("message", "a\nb")]
