"""Property-based tests (hypothesis) for the parsers that read untrusted input: the trace reader,
the native and JSON-protocol action parsers, and the calculator. Each property says what the
code may do with any input: return its documented result or raise its documented error, never
anything else, and (the calculator) never take long. All of them together run in seconds."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentloop import ModelResponse, ToolCallPart, ToolRetry, Toolset, tool
from agentloop.actions import FinalAnswer, RejectedCall, ToolCall, parse_actions
from agentloop.errors import TraceError
from agentloop.models.protocol import parse_action, response_from_text
from agentloop.trace import Trace, read_trace
from toolpack import load

FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
calculator = load("calculator").calculator


@tool
def search(query: str, limit: int = 5) -> str:
    """Search."""
    return query


@tool
def nested(items: list[dict[str, list[int]]]) -> str:
    """Takes nested data."""
    return "ok"


TOOLS = Toolset([search, nested])

# -- JSON-ish text -------------------------------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


@st.composite
def json_like(draw: st.DrawFn) -> str:
    """JSON documents, JSON with damage, deep nesting, and text around JSON."""
    kind = draw(st.sampled_from([0, 1, 2, 3, 3, 4, 5]))
    value = draw(JSON_VALUES)
    text = json.dumps(value) if kind != 1 else json.dumps(value, ensure_ascii=False)
    if kind == 2:  # cut anywhere
        text = text[: draw(st.integers(0, len(text)))]
    elif kind == 3:  # deep nesting
        depth = draw(st.sampled_from([50, 3000]))
        text = draw(st.sampled_from(["[", "{", '{"a":'])) * depth
    elif kind == 4:  # prose around it
        text = draw(st.text(max_size=20)) + text + draw(st.text(max_size=20))
    elif kind == 5:
        text = draw(st.text(max_size=60))
    return text


# -- the trace reader ----------------------------------------------------------------------------


def _valid_lines() -> list[str]:
    header = {
        "format": "agentloop.trace/1",
        "run_id": "r",
        "created": "2026-01-01T00:00:00Z",
        "task": "t",
        "agent": {},
        "config_hash": "h",
    }
    event = {"type": "warning", "run_id": "r", "step": 0, "seq": 0, "ts": 0.0}
    return [json.dumps(header), json.dumps({**event, "kind": "k", "message": "m"})]


@FUZZ
@given(
    lines=st.lists(json_like(), max_size=4),
    keep=st.integers(0, 2),
    tail=st.sampled_from(["\n", "", "\r\n"]),
    junk=st.binary(max_size=40),
)
def test_the_trace_reader_gives_a_trace_or_a_trace_error(
    tmp_path_factory: pytest.TempPathFactory, lines: list[str], keep: int, tail: str, junk: bytes
) -> None:
    path = tmp_path_factory.mktemp("t") / "t.jsonl"
    data = "\n".join([*_valid_lines()[:keep], *lines]).encode() + tail.encode() + junk
    path.write_bytes(data)
    try:
        trace = read_trace(path)
    except TraceError:
        return
    assert isinstance(trace, Trace)


# -- the action parsers --------------------------------------------------------------------------


@FUZZ
@given(
    names=st.lists(
        st.sampled_from(["search", "nested", "", "nope"]) | st.text(max_size=10), max_size=3
    ),
    arguments=st.lists(json_like(), min_size=3, max_size=3),
    text=st.none() | st.text(max_size=40),
    finish=st.sampled_from(["stop", "length", "tool_calls", None]),
)
def test_the_native_parser_gives_actions_for_any_response(
    names: list[str], arguments: list[str], text: str | None, finish: str | None
) -> None:
    parts = tuple(
        ToolCallPart(call_id=f"c{i}", name=name, arguments=arguments[i])
        for i, name in enumerate(names)
    )
    response = ModelResponse(text=text, tool_calls=parts, finish_reason=finish)
    actions = parse_actions(response, TOOLS)
    if isinstance(actions, FinalAnswer):
        assert not parts and actions.text == text
        return
    assert len(actions) == len(parts)
    for action in actions:
        assert isinstance(action, ToolCall | RejectedCall)
        if isinstance(action, RejectedCall):
            assert action.observation.error is not None


@FUZZ
@given(
    text=json_like()
    | st.builds(lambda v: json.dumps({"tool": "search", "arguments": v}), JSON_VALUES)
)
def test_the_json_protocol_parser_gives_an_action_for_any_reply(text: str) -> None:
    action = parse_action(text)
    assert isinstance(action, ToolCallPart | str)
    response = response_from_text(text, [])
    assert isinstance(parse_actions(response, TOOLS), FinalAnswer | list)


# -- the calculator ------------------------------------------------------------------------------

FUNCTIONS = [
    "abs", "round", "min", "max", "sqrt", "exp", "log", "log2", "log10", "sin", "cos", "tan",
    "asin", "acos", "atan", "atan2", "sinh", "cosh", "tanh", "degrees", "radians", "hypot",
    "floor", "ceil", "factorial", "gcd",
]  # fmt: skip
NUMBERS = st.one_of(
    st.integers(-(10**12), 10**12).map(str),
    st.sampled_from(["10**9", "-10**9", "9**9**9", "2**4095", "1e308", "1e-320", "0", "-1"]),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.sampled_from(["pi", "e", "tau", "nan", "inf"]),
)


def _expressions(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    binary = st.tuples(inner, st.sampled_from(["+", "-", "*", "/", "//", "%", "**", "^"]), inner)
    call = st.tuples(st.sampled_from(FUNCTIONS), st.lists(inner, max_size=3))
    return st.one_of(
        binary.map(lambda t: f"({t[0]}){t[1]}({t[2]})"),
        inner.map(lambda x: f"-({x})"),
        call.map(lambda t: f"{t[0]}({', '.join(t[1])})"),
    )


EXPRESSIONS = st.recursive(NUMBERS, _expressions, max_leaves=12) | st.text(max_size=40)


@FUZZ
@given(expression=EXPRESSIONS)
def test_every_expression_returns_or_refuses_within_50_ms(expression: str) -> None:
    started = time.thread_time()  # CPU time: other processes on the machine do not count
    try:
        result: Any = calculator(expression=expression)
    except ToolRetry:
        result = None
    elapsed = time.thread_time() - started
    assert elapsed < 0.05, f"{expression!r} took {elapsed * 1000:.0f} ms of CPU"
    assert result is None or isinstance(result, str)


@pytest.mark.parametrize(
    "expression",
    ["round(5, -10**9)", "round(1, 10**9)", "factorial(10**6)", "9**9**9", "gcd(*[1])"],
)
def test_known_slow_expressions_are_refused_quickly(expression: str) -> None:
    started = time.thread_time()
    with pytest.raises(ToolRetry):
        calculator(expression=expression)
    assert time.thread_time() - started < 0.05
