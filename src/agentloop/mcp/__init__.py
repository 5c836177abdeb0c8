"""MCP tools: any Model Context Protocol server's tools in an agent, recorded and replayable.

``MCPServer.stdio("COMMAND ARGS")`` or ``MCPServer.http(URL, headers=...)`` goes into an
agent's tools; see ``docs/mcp.md``. Needs the ``mcp`` extra (``pip install
'agentloop[mcp]'``): the official ``mcp`` SDK is imported only when a server is opened, so
configuring one (in an agent file, on the command line) works without it.
"""

from __future__ import annotations

from agentloop.mcp.errors import MCPServerError
from agentloop.mcp.server import MCPServer

__all__ = ["MCPServer", "MCPServerError"]
