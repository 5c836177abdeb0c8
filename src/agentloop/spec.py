"""The immutable description of an agent that one run executes.

``Agent`` builds an ``AgentSpec`` once per combination of limits, settings and model (and
remembers it); ``Run`` (the loop) reads only this, never the ``Agent``, so a request goes down
the layers: agent -> loop -> model and trace writer. Runtime layer.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from agentloop.dispatch import Approver
from agentloop.hooks import Hooks
from agentloop.models.base import Model
from agentloop.output import OutputSpec
from agentloop.redaction import Redactor
from agentloop.settings import ModelSettings, Price, RunLimits
from agentloop.tools import ToolChanges, Toolset
from agentloop.trace import RunObserver


@dataclass(frozen=True, slots=True)
class AgentSpec:
    """What one run of an agent needs: the model, tools, prompt, limits and its version."""

    name: str
    model: Model
    tools: Toolset
    limits: RunLimits
    settings: ModelSettings
    system_prompt: str | None
    delimit_tool_results: bool
    redact: Redactor
    approver: Approver | None
    config: dict[str, Any]
    """Everything that defines the agent's behaviour, as recorded in the trace header."""
    config_hash: str
    """The agent's version: a hash of ``config``."""
    output: OutputSpec[Any] | None = None
    """The typed output asked for, if any."""
    hooks: Hooks = field(default_factory=Hooks)
    prices: Mapping[str, Price] = field(default_factory=dict)
    """Per model name: what a million tokens cost (for ``RunLimits.max_cost``)."""
    fallback_models: Sequence[Model] = ()
    """Tried in order when ``model`` fails with a rate limit, a server error or a timeout."""
    run_observers: tuple[RunObserver, ...] = ()
    """Called with each run's trace header; each returns one more listener for the run's
    events (``Agent(otel=...)`` adds the OpenTelemetry span writer this way)."""
    tool_changes: tuple[Callable[[], ToolChanges], ...] = ()
    """Per tool source (MCP server): makes, for each run, what the run asks before each model
    request for the source's changed tool list (``SourcedTools.changes``)."""
