"""MCP servers described in agent files (``[[mcp]]`` tables) and on the command line.

    [[mcp]]
    name = "everything"                      # optional; guessed from the command or URL
    command = ["npx", "-y", "@modelcontextprotocol/server-everything"]
    env = { API_KEY = "${EVERYTHING_KEY}" }  # secrets come from the environment only
    prefix = "ev_"
    timeout = 20
    requires_approval = ["write_file"]       # or true for every tool
    idempotent = ["echo"]

    [[mcp]]
    url = "https://mcp.example.com/mcp"
    headers = { Authorization = "Bearer ${EXAMPLE_TOKEN}" }

A value in ``env`` or ``headers`` may hold ``${NAME}``, replaced by the environment variable
``NAME`` when the file is loaded. A header or variable whose name says it holds a secret
(authorization, cookie, token, key, secret, password, credential) must take its value from
the environment: a file is versioned and shared, a credential written into it leaks.
"""

from __future__ import annotations

import functools
import os
import re
import shlex
from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from agentloop.errors import UserError
from agentloop.mcp.server import SECRET_NAME, MCPServer

_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class MCPServerSpec(BaseModel):
    """One ``[[mcp]]`` table of an agent file."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str | None = None
    command: str | list[str] | None = None
    """A command line (split like a shell does) or a list of words; or give ``url``."""
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    cwd: str | None = None
    """Relative to the agent file."""
    url: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    prefix: str = ""
    timeout: float | None = Field(default=None, gt=0)
    connect_timeout: float = Field(default=30.0, gt=0)
    requires_approval: bool | list[str] = False
    idempotent: bool | list[str] = False
    restarts: int = Field(default=1, ge=0)
    include: list[str] | None = None
    """Offer only these tools (their names on the server)."""


def server_from_spec(spec: MCPServerSpec, base: Path) -> MCPServer:
    """The ``MCPServer`` an ``[[mcp]]`` table describes (``base``: the agent file's folder)."""
    if (spec.command is None) == (spec.url is None):
        raise UserError("[[mcp]]: give command (a server to start) or url (one to reach)")
    options = {
        "prefix": spec.prefix,
        "timeout": spec.timeout,
        "connect_timeout": spec.connect_timeout,
        "requires_approval": spec.requires_approval,
        "idempotent": spec.idempotent,
        "restarts": spec.restarts,
        "include": spec.include,
    }
    if spec.url is not None:
        headers = _from_environment(spec.headers, "headers")
        return MCPServer.http(spec.url, name=spec.name, headers=headers, **options)
    assert spec.command is not None
    words = shlex.split(spec.command) if isinstance(spec.command, str) else list(spec.command)
    cwd = base / spec.cwd if spec.cwd is not None else None
    env = _from_environment(spec.env, "env")
    return MCPServer.stdio([*words, *spec.args], name=spec.name, env=env, cwd=cwd, **options)


def server_from_option(value: str, *, url: bool) -> MCPServer:
    """A server from ``--mcp "COMMAND ARGS"`` or ``--mcp-url URL`` on the command line."""
    return MCPServer.http(value) if url else MCPServer.stdio(value)


def _from_environment(values: Mapping[str, str], field: str) -> dict[str, str]:
    resolved: dict[str, str] = {}
    for name, value in values.items():
        if SECRET_NAME.search(name) and not _VARIABLE.search(value):
            raise UserError(
                f"[[mcp]] {field}.{name}: a secret does not belong in a file that is versioned "
                f'and shared; write "${{VARIABLE}}" and set the environment variable'
            )
        resolved[name] = _VARIABLE.sub(functools.partial(_variable, f"{field}.{name}"), value)
    return resolved


def _variable(where: str, match: re.Match[str]) -> str:
    variable = match.group(1)
    value = os.environ.get(variable)
    if value is None:
        raise UserError(f"[[mcp]] {where}: the environment variable {variable} is not set")
    return value
