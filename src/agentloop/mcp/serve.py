"""``agentloop mcp serve``: agentloop tools as an MCP server, for any MCP client.

A tool folder (or the tool pack: ``agentloop.toolpack``) is served over stdio or Streamable
HTTP with the ``mcp`` SDK's low-level server. Each call goes through the same path a model's
call takes in a run: the arguments are checked against the tool's schema, the tool runs under
its timeout, and its result is cut to ``max_observation_chars``. A tool that requires approval
is listed but its calls are refused: nobody is there to approve them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from agentloop.actions import ToolCall, parse_actions
from agentloop.dispatch import run_tool_calls
from agentloop.messages import ModelResponse
from agentloop.observations import Observation
from agentloop.settings import RunLimits
from agentloop.tools import Toolset

if TYPE_CHECKING:
    from mcp.server.lowlevel.server import Server


def mcp_server(
    tools: Toolset, *, name: str = "agentloop", limits: RunLimits | None = None
) -> Server:
    """An MCP server (the SDK's ``Server``) offering ``tools``."""
    import mcp.types as types
    from mcp.server.lowlevel.server import Server

    run_limits = limits or RunLimits()

    async def list_tools(ctx: Any, params: Any) -> types.ListToolsResult:
        listed = [
            types.Tool(name=t.name, description=t.description, input_schema=t.parameters)
            for t in tools.values()
        ]
        return types.ListToolsResult(tools=listed)

    async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        observation = await call(tools, params.name, params.arguments or {}, run_limits)
        return types.CallToolResult(
            content=[types.TextContent(type="text", text=observation.content)],
            is_error=observation.is_error,
        )

    return Server(name, version=_version(), on_list_tools=list_tools, on_call_tool=call_tool)


async def call(
    tools: Toolset, name: str, arguments: dict[str, Any], limits: RunLimits
) -> Observation:
    """Run one call as a run would: unknown tools and bad arguments are observations."""
    actions = parse_actions(ModelResponse.tool_call(name, arguments), tools)
    assert isinstance(actions, list)  # a response with a tool call is never a final answer
    (action,) = actions
    if not isinstance(action, ToolCall):
        return action.observation
    (outcome,) = await run_tool_calls([action], limits)
    return outcome.observation


async def serve_stdio(server: Server) -> None:
    """Serve on this process's stdin and stdout until the client closes them."""
    from mcp.server.stdio import stdio_server

    async with stdio_server() as (read, write):
        await server.run(read, write, server.create_initialization_options())


async def serve_http(server: Server, *, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serve Streamable HTTP at ``http://HOST:PORT/mcp`` until stopped (Ctrl-C)."""
    import uvicorn

    app = server.streamable_http_app(host=host)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning")
    await uvicorn.Server(config).serve()


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("agentloop")
    except PackageNotFoundError:
        return "unknown"
