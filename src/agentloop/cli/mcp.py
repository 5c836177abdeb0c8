"""``agentloop mcp serve``: offer agentloop tools to any MCP client.

    agentloop mcp serve TOOLS... [--http [--host 127.0.0.1] [--port 8000]] [--name NAME]

TOOLS are tool files, folders or importable names (``agentloop.toolpack``), as ``--tools``
takes them. Over stdio (the default) the client starts this command; with ``--http`` it serves
Streamable HTTP at ``http://HOST:PORT/mcp`` until Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib

from agentloop.cli._output import EXIT_OK, positive_int, say
from agentloop.errors import UserError
from agentloop.loading import load_tools
from agentloop.terminal import escape
from agentloop.tools import Toolset


def register(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    group = commands.add_parser(
        "mcp", parents=[common], help="Model Context Protocol: serve agentloop tools"
    )
    sub = group.add_subparsers(title="mcp commands", metavar="COMMAND")
    group.set_defaults(handler=None, help_parser=group)
    serve = sub.add_parser(
        "serve",
        parents=[common],
        help="serve tools to MCP clients over stdio or Streamable HTTP",
        description="Serve the tools in TOOLS (files, folders or importable names such as\n"
        "agentloop.toolpack) as an MCP server: over stdio by default (an MCP client starts\n"
        "this command), or over Streamable HTTP with --http.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve.add_argument("tools", nargs="+", metavar="TOOLS", help="tool files, folders or modules")
    serve.add_argument("--http", action="store_true", help="serve Streamable HTTP at /mcp")
    serve.add_argument("--host", default="127.0.0.1", help="HTTP address (default: 127.0.0.1)")
    serve.add_argument("--port", type=positive_int, default=8000, help="HTTP port (8000)")
    serve.add_argument("--name", default="agentloop", help="the server's name for clients")
    serve.set_defaults(handler=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    from agentloop.mcp.errors import require_sdk
    from agentloop.mcp.serve import mcp_server, serve_http, serve_stdio

    require_sdk()
    tools = Toolset(load_tools(args.tools))
    if not tools:
        raise UserError("no tools to serve: give tool files, folders or modules")
    server = mcp_server(tools, name=args.name)
    say(f"serving {len(tools)} tools: {escape(', '.join(tools))}")
    if args.http:
        say(f"MCP endpoint: http://{escape(args.host)}:{args.port}/mcp")
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve_http(server, host=args.host, port=args.port))
    else:
        asyncio.run(serve_stdio(server))
    return EXIT_OK
