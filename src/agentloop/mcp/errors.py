"""The error an MCP server's failure raises, naming the server."""

from __future__ import annotations

import importlib.util

from agentloop.errors import AgentLoopError, UserError


class MCPServerError(AgentLoopError):
    """An MCP server could not be started or reached, did not answer in time, crashed, or
    answered with a protocol error. ``server`` names it; the message says what happened and,
    for a stdio server, where its stderr log is."""

    def __init__(self, server: str, problem: str) -> None:
        super().__init__(f"MCP server {server!r} {problem}")
        self.server = server


def require_sdk() -> None:
    """A ``UserError`` saying how to install the ``mcp`` SDK, when it is missing."""
    if importlib.util.find_spec("mcp") is None:
        raise UserError("MCP servers need the mcp extra: pip install 'agentloop[mcp]'")
