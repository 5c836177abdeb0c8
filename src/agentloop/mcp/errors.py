"""The error an MCP server's failure raises, naming the server."""

from __future__ import annotations

from agentloop.errors import AgentLoopError


class MCPServerError(AgentLoopError):
    """An MCP server could not be started or reached, did not answer in time, crashed, or
    answered with a protocol error. ``server`` names it; the message says what happened and,
    for a stdio server, where its stderr log is."""

    def __init__(self, server: str, problem: str) -> None:
        super().__init__(f"MCP server {server!r} {problem}")
        self.server = server
