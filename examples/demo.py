"""The `make demo` script: run an agent with a calculator tool, print each step, show the trace.

Until the embedded local model lands this runs on the scripted test model, so it needs no key,
no server and no network.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from agentloop import Agent, ModelResponse, read_trace, tool
from agentloop.events import ModelResponded, ToolResult
from agentloop.testing import ScriptedModel


@tool
def multiply(a: float, b: float) -> float:
    """Multiply two numbers.

    Args:
        a: The first factor.
        b: The second factor.
    """
    return a * b


async def main() -> int:
    model = ScriptedModel(
        [ModelResponse.tool_call("multiply", {"a": 17, "b": 23}), "17 × 23 = 391"]
    )
    agent = Agent(model, tools=[multiply], instructions="Use the tools to compute.")
    task = "What is 17 * 23?"
    print(f"task: {task}")
    async with agent.iter(task) as run:
        async for event in run:
            if isinstance(event, ModelResponded):
                for call in event.response.tool_calls:
                    print(f"  step {event.step}: call {call.name}({call.arguments})")
            elif isinstance(event, ToolResult):
                print(f"  step {event.step}: {event.name} -> {event.content}")
    result = run.result
    print(f"answer: {result.output}")
    assert result.trace_path is not None
    trace = read_trace(result.trace_path)
    version = trace.header.config_hash
    print(f"trace: {Path(result.trace_path)} ({len(trace.events)} events, version {version})")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
