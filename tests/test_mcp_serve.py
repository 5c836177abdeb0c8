"""``agentloop mcp serve``, checked with the ``mcp`` SDK's own client over stdio and Streamable
HTTP (127.0.0.1): the tool pack's calculator and files tools, bad arguments, unknown tools."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from mcp import Client, StdioServerParameters

from fakes.mcp import free_port, http_server

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]  # servers start slowly on a busy machine

SERVE = [sys.executable, "-m", "agentloop.cli", "mcp", "serve"]


def texts(result: object) -> str:
    return "\n".join(block.text for block in result.content)  # type: ignore[attr-defined]


async def test_the_tool_pack_over_stdio(tmp_path: Path) -> None:
    params = StdioServerParameters(
        command=SERVE[0], args=[*SERVE[1:], "agentloop.toolpack.calculator"]
    )
    with (tmp_path / "stderr.log").open("w") as log:
        from mcp.client.stdio import stdio_client

        async with Client(stdio_client(params, errlog=log), mode="legacy") as client:
            assert client.server_info is not None and client.server_info.name == "agentloop"
            listed = await client.list_tools()
            (calculator,) = listed.tools
            assert calculator.name == "calculator"
            assert calculator.input_schema["required"] == ["expression"]

            result = await client.call_tool("calculator", {"expression": "6 * 7"})
            assert (texts(result), result.is_error) == ("42", False)

            wrong = await client.call_tool("calculator", {"expr": "1"})
            assert wrong.is_error
            assert "invalid arguments for 'calculator'" in texts(wrong)

            unknown = await client.call_tool("rm_rf", {})
            assert unknown.is_error and "there is no tool named 'rm_rf'" in texts(unknown)
    assert "serving 1 tools: calculator" in (tmp_path / "stderr.log").read_text()


async def test_a_tool_folder_over_streamable_http(tmp_path: Path) -> None:
    folder = tmp_path / "tools"
    folder.mkdir()
    (folder / "shout.py").write_text(
        "from agentloop import tool\n\n\n"
        "@tool\n"
        "def shout(text: str) -> str:\n"
        '    """Say it loudly.\n\n    Args:\n        text: what to say\n    """\n'
        "    return text.upper()\n"
    )
    port = free_port()
    command = [*SERVE, str(folder), "--http", "--port", str(port), "--name", "loud"]
    with http_server(command, port, tmp_path / "http.log") as url:
        async with Client(url, mode="legacy") as client:
            assert client.server_info is not None and client.server_info.name == "loud"
            (shout,) = (await client.list_tools()).tools
            assert shout.description == "Say it loudly."
            assert shout.input_schema["properties"]["text"]["description"] == "what to say"
            result = await client.call_tool("shout", {"text": "hello"})
            assert texts(result) == "HELLO"
