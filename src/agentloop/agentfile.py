"""Agent files: an agent defined in TOML (``agents/NAME.toml``), so it can be versioned,
reviewed and evaluated like code.

    model = "local"                      # a model string (agentloop.models.infer_model)
    instructions = "Answer briefly."
    tools = ["tools/calc.py", "mypkg.tools:search"]   # paths (relative to this file) or
                                                       # "module:attribute" references
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

import importlib
import os
import re
import tomllib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agentloop.errors import UserError, first_problem
from agentloop.loading import load_tools
from agentloop.mcp.config import MCPServerSpec, server_from_spec
from agentloop.mcp.server import MCPServer
from agentloop.settings import ModelSettings, RunLimits
from agentloop.tools import Tool, Toolset

if TYPE_CHECKING:
    from agentloop.agent import Agent
    from agentloop.models.base import Model

_MODULE_REF = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


class AgentFileError(UserError):
    """An agent file is missing, is not valid TOML, or sets an unknown or invalid field."""


class AgentSpec(BaseModel):
    """What an agent file holds."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str = Field(min_length=1)
    """A model string: ``"openai:<name>"``, ``"local"``, ..."""
    model_options: dict[str, Any] = Field(default_factory=dict)
    """Keyword arguments for the model's backend (``OpenAIModel``, ``LocalModel``)."""
    instructions: str | None = None
    name: str = "agent"
    tools: list[str] = Field(default_factory=list)
    """Paths to tool files or folders (relative to the agent file), or ``module:attribute``."""
    settings: ModelSettings = Field(default_factory=ModelSettings)
    limits: RunLimits = Field(default_factory=RunLimits)
    mcp: list[MCPServerSpec] = Field(default_factory=list)
    """MCP servers whose tools the agent can call (``[[mcp]]`` tables)."""


def read_agent_file(path: str | os.PathLike[str]) -> AgentSpec:
    """Parse and check an agent file; ``AgentFileError`` names the file and the field."""
    file = Path(path)
    try:
        raw = tomllib.loads(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise AgentFileError(f"cannot read agent file {file}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise AgentFileError(f"agent file {file} is not valid TOML: {exc}") from None
    try:
        return AgentSpec.model_validate(raw)
    except ValidationError as exc:
        problem = first_problem(exc)
        hint = ""
        if problem.kind == "extra_forbidden" and "." not in problem.where:
            hint = f" (fields: {', '.join(AgentSpec.model_fields)})"
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
        **options,
    )


def _model(spec: AgentSpec, file: Path) -> Model:
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
    """The tools ``refs`` name: ``module:attribute`` references are imported (a tool, a plain
    function, or a list or ``Toolset`` of them); anything else is a path relative to
    ``base``."""
    found: list[Tool | Callable[..., Any]] = []
    for ref in refs:
        if _MODULE_REF.match(ref) and not ref.endswith(".py"):
            found.extend(_imported(ref))
        else:
            path = Path(ref)
            found.extend(load_tools([path if path.is_absolute() else base / path]))
    return found


def _imported(ref: str) -> list[Tool | Callable[..., Any]]:
    module_name, _, attribute = ref.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise AgentFileError(f"tool reference {ref!r}: cannot import {module_name}: {exc}") from exc
    value = getattr(module, attribute, None)
    if isinstance(value, Toolset):
        return list(value.values())
    if isinstance(value, list | tuple) and all(isinstance(v, Tool) or callable(v) for v in value):
        return list(value)
    if isinstance(value, Tool) or callable(value):
        return [value]
    raise AgentFileError(
        f"tool reference {ref!r}: {module_name} has no tool, function or list of tools "
        f"named {attribute!r}"
    )
