"""Agent files: an agent defined in TOML (``agents/NAME.toml``), so it can be versioned,
reviewed and evaluated like code.

    model = "local"                      # a model string (agentloop.models.infer_model)
    instructions = "Answer briefly."
    tools = ["tools/calc.py", "agentloop.toolpack.calculator", "mypkg.tools:search"]
                                         # paths (relative to this file), modules, packages
                                         # or "module:attribute" references
    [settings]                           # ModelSettings: temperature, seed, max_tokens, ...
    temperature = 0
    [limits]                             # RunLimits: max_steps, max_tool_calls, ...
    max_steps = 5
    [model_options]                      # keyword options of the model's backend: threads,
    threads = 2                          # context_size (local); base_url, native_tools,
                                         # prompt_form (openai). Never api_key: use the env.
    [[mcp]]                              # an MCP server's tools (agentloop.mcp.config):
    command = "npx -y @modelcontextprotocol/server-everything"   # or url = "http://..."
    env = { API_KEY = "${MY_KEY}" }      # secrets from the environment only

The agent's version is its ``config_hash``, computed from the ``Agent`` the file builds
(instructions, model, settings, limits, tool schemas and tool source), so neither the file's
path nor its comments or layout change the version; any change to what the agent does does.
Only ``name`` is optional metadata that still counts (it is part of the agent's config).
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agentloop.errors import UserError, first_problem
from agentloop.loading import ToolLoadError, load_tools
from agentloop.mcp.config import MCPServerSpec, server_from_spec
from agentloop.mcp.server import MCPServer
from agentloop.settings import ModelSettings, RunLimits
from agentloop.tools import Tool

if TYPE_CHECKING:
    from agentloop.agent import Agent
    from agentloop.models.base import Model


class AgentFileError(UserError):
    """An agent file is missing, is not valid TOML, or sets an unknown or invalid field."""


class AgentFile(BaseModel):
    """What an agent file holds."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str = Field(min_length=1)
    """A model string: ``"openai:<name>"``, ``"local"``, ..."""
    model_options: dict[str, Any] = Field(default_factory=dict)
    """Keyword arguments for the model's backend (``OpenAIModel``, ``LocalModel``)."""
    instructions: str | None = None
    name: str = "agent"
    tools: list[str] = Field(default_factory=list)
    """Paths to tool files or folders (relative to the agent file), or importable names: a
    module, a package or ``module:attribute`` (see ``agentloop.loading``)."""
    settings: ModelSettings = Field(default_factory=ModelSettings)
    limits: RunLimits = Field(default_factory=RunLimits)
    otel: bool = False
    """Also write each run as OpenTelemetry spans, configured by the standard ``OTEL_*``
    environment (needs ``agentloop[otel]``; see ``agentloop.otel``)."""
    mcp: list[MCPServerSpec] = Field(default_factory=list)
    """MCP servers whose tools the agent can call (``[[mcp]]`` tables)."""


def read_agent_file(path: str | os.PathLike[str]) -> AgentFile:
    """Parse and check an agent file; ``AgentFileError`` names the file and the field."""
    file = Path(path)
    try:
        raw = tomllib.loads(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise AgentFileError(f"cannot read agent file {file}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise AgentFileError(f"agent file {file} is not valid TOML: {exc}") from None
    try:
        return AgentFile.model_validate(raw)
    except ValidationError as exc:
        problem = first_problem(exc)
        hint = ""
        if problem.kind == "extra_forbidden" and "." not in problem.where:
            hint = f" (fields: {', '.join(AgentFile.model_fields)})"
        where = problem.where or "file"
        raise AgentFileError(f"agent file {file}: {where}: {problem.message}{hint}") from None


def load_agent(
    path: str | os.PathLike[str],
    *,
    model: Model | str | None = None,
    trace_dir: str | Path | None = "traces",
    mcp: Sequence[MCPServer] = (),
    **options: Any,
) -> Agent:
    """The ``Agent`` an agent file describes. ``model`` replaces the file's model (a test
    model, another endpoint); ``mcp`` adds MCP servers to the file's (from a command line);
    other keyword arguments go to ``Agent`` as they are."""
    from agentloop.agent import Agent

    file = Path(path)
    spec = read_agent_file(file)
    servers = list(mcp)
    for n, server in enumerate(spec.mcp):
        try:
            servers.append(server_from_spec(server, file.parent))
        except UserError as exc:
            raise AgentFileError(f"agent file {file}: mcp[{n}]: {exc}") from None
    # Credentials the servers got from the environment are masked in traces and logs.
    secrets = [*options.pop("secrets", ()), *(v for s in servers for v in s.secrets())]
    return Agent(
        model if model is not None else _model(spec, file),
        tools=[*resolve_tools(spec.tools, file.parent), *servers],
        secrets=secrets,
        instructions=spec.instructions,
        name=spec.name,
        settings=spec.settings,
        limits=spec.limits,
        trace_dir=trace_dir,
        **{"otel": spec.otel, **options},
    )


def _model(spec: AgentFile, file: Path) -> Model:
    from agentloop.models import infer_model

    if "api_key" in spec.model_options:
        raise AgentFileError(
            f"agent file {file}: model_options: api_key does not belong in a file that is "
            "versioned and shared: set OPENAI_API_KEY instead"
        )
    try:
        return infer_model(spec.model, **spec.model_options)
    except UserError as exc:
        raise AgentFileError(f"agent file {file}: model_options: {exc}") from None


def resolve_tools(refs: list[str], base: Path) -> list[Tool | Callable[..., Any]]:
    """The tools ``refs`` name: paths relative to ``base``, or importable names (see
    ``agentloop.loading``)."""
    try:
        return load_tools(refs, base)
    except ToolLoadError as exc:
        raise AgentFileError(str(exc)) from exc
