"""Helpers for tests that run agents against the fake server: a fast-failing ``OpenAIModel``,
a tool that records its calls, and checks that a run's trace parses and ends as it should."""

from __future__ import annotations

from typing import Any

from agentloop import AgentLoopError, RunResult, Tool, Trace, read_trace
from agentloop.events import RunFailed, RunFinished
from agentloop.models.openai import OpenAIModel

API_KEY = "sk-test-SECRET-0123456789abcdef"
"""A fake key shaped like a real one; tests check it never leaks."""
MODEL_NAME = "fake-model"
OPENED: list[OpenAIModel] = []
"""Models made by ``fast_model``; the ``close_models`` fixture closes them after each test."""


def fast_model(base_url: str, **options: Any) -> OpenAIModel:
    """An ``OpenAIModel`` with millisecond backoff and short timeouts, so faults are quick."""
    settings: dict[str, Any] = {
        "api_key": API_KEY,
        "backoff": 0.01,
        "max_backoff": 0.05,
        "timeout": 5.0,
        "connect_timeout": 2.0,
        **options,
    }
    model = OpenAIModel(MODEL_NAME, base_url=base_url, **settings)
    OPENED.append(model)
    return model


async def close_models() -> None:
    """Close the connections every ``fast_model`` holds on the running loop, so none is left
    for the garbage collector (pytest turns its ResourceWarning into an error)."""
    while OPENED:
        await OPENED.pop().aclose()


class Adder:
    """An ``add`` tool that records every call it gets."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []

        def add(a: int, b: int) -> int:
            """Add two integers.

            Args:
                a: The first number.
                b: The second number.
            """
            self.calls.append((a, b))
            return a + b

        self.tool = Tool.from_function(add)


def finished_trace(result: RunResult) -> Trace:
    """The run's trace, checked to parse and end with ``run_finished`` carrying the output."""
    assert result.trace_path is not None
    trace = read_trace(result.trace_path)
    end = trace.terminal
    assert isinstance(end, RunFinished), f"trace ends with {end!r}"
    assert end.output == result.output
    assert not trace.torn
    return trace


def failed_trace(
    error: AgentLoopError, error_type: type[Exception], reason: str = "model_error"
) -> tuple[Trace, RunFailed]:
    """The failed run's trace, checked to parse and end with ``run_failed`` naming
    ``error_type`` and ``reason``; the error carries the partial result and the trace path."""
    assert isinstance(error, error_type)
    assert error.partial is not None and error.partial.stop_reason == reason
    assert error.trace_path is not None and error.partial.trace_path == error.trace_path
    trace = read_trace(error.trace_path)
    end = trace.terminal
    assert isinstance(end, RunFailed), f"trace ends with {end!r}"
    assert (end.reason, end.error_type) == (reason, error_type.__name__)
    assert not trace.torn
    return trace, end
