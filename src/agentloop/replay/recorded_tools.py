"""Stand-in tools rebuilt from a trace, and its recorded tool list changes, for offline replay.

A trace keeps each tool's schema (the header's ``agent.tools``), not its code: an offline
replay offers stand-ins that cannot run, and serves the recorded results for their calls.
A tool source (an MCP server) that changed its tool list mid-run left a ``tools_changed``
event; the replay feeds those to the loop at the same steps (the same seam the live servers
use), so the model is offered what it was offered then. Replay layer.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from agentloop.errors import UserError
from agentloop.events import ToolsChanged
from agentloop.tools import Tool, ToolChange, ToolChanges
from agentloop.trace import Trace


def offline_tool(spec: dict[str, Any]) -> Tool:
    """A stand-in for the tool a trace recorded (``spec`` is a header ``agent.tools`` entry):
    the same name, description and parameters; calling it is a ``UserError``."""
    name = spec["name"]

    def unavailable(**_: Any) -> Any:
        raise UserError(f"tool {name!r} is not available in an offline replay")

    tool = Tool.from_schema(
        name=name,
        description=spec.get("description", ""),
        parameters=spec.get("parameters", {"type": "object"}),
        func=unavailable,
        timeout=spec.get("timeout"),
        requires_approval=bool(spec.get("requires_approval")),
        idempotent=bool(spec.get("idempotent")),
    )
    # Validation already happened in the recorded run, and its outcome (a rejection message or
    # the result) is served from the trace; re-validating with jsonschema could disagree with
    # the original validator (pydantic converts "3" to 3, jsonschema does not).
    return dataclasses.replace(
        tool, validate=dict, source_hash=spec.get("source_hash", ""), stand_in=True
    )


def recorded_tool_changes(trace: Trace) -> ToolChanges | None:
    """What the loop asks before each step in a replay of ``trace``: the recorded
    ``tools_changed`` events of that step, with stand-in tools; ``None`` if it has none."""
    recorded = [e for e in trace.events if isinstance(e, ToolsChanged)]
    if not recorded:
        return None
    changes = [(e.step, _change(e)) for e in recorded]

    async def at(step: int) -> Sequence[ToolChange]:
        return [change for when, change in changes if when == step]

    return at


def _change(event: ToolsChanged) -> ToolChange:
    """The recorded change: the source's tools it offered before are the ones it offers now,
    less those added, plus those removed."""
    now = {str(t["name"]) for t in event.tools}
    before = (now - set(event.added)) | set(event.removed)
    return ToolChange(
        source=event.source,
        tools=tuple(offline_tool(t) for t in event.tools),
        replaces=frozenset(before),
        config=event.source_config,
    )
