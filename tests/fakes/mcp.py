"""The MCP servers the tests start: the reference server from npm and our own fault server.

``make mcp-servers`` (which ``make test`` depends on) installs
``@modelcontextprotocol/server-everything`` pinned into ``.mcp-servers/``. Over HTTP both
servers listen on 127.0.0.1 only: the reference server binds every interface by itself, so
``loopback.cjs`` is preloaded to pin it to loopback.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SERVERS = ROOT / "tests" / "mcp_servers"
EVERYTHING = (
    ROOT / ".mcp-servers/node_modules/@modelcontextprotocol/server-everything/dist/index.js"
)
FAULT_SERVER = SERVERS / "fault_server.py"


def everything_command() -> list[str]:
    if not EVERYTHING.exists():
        raise RuntimeError(f"{EVERYTHING} is missing: run `make mcp-servers`")
    return ["node", str(EVERYTHING), "stdio"]


def fault_command(markers: Path) -> list[str]:
    return [sys.executable, str(FAULT_SERVER), "stdio", str(markers)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def http_server(
    command: list[str], port: int, log: Path, env: dict[str, str] | None = None
) -> Iterator[str]:
    """Start ``command`` listening on 127.0.0.1:``port``; yield its MCP URL; stop it."""
    with log.open("w") as err:
        process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=err, env={**os.environ, **(env or {})}
        )
    try:
        deadline = time.monotonic() + 20
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"MCP server exited: {log.read_text()}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"MCP server did not listen: {log.read_text()}") from None
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def everything_http(log: Path) -> Iterator[str]:
    """The reference server over Streamable HTTP on loopback."""
    port = free_port()
    command = ["node", "--require", str(SERVERS / "loopback.cjs"), everything_command()[1]]
    with http_server([*command, "streamableHttp"], port, log, {"PORT": str(port)}) as url:
        yield url


@contextmanager
def fault_http(markers: Path, log: Path) -> Iterator[str]:
    port = free_port()
    command = [sys.executable, str(FAULT_SERVER), "http", str(port), str(markers)]
    with http_server(command, port, log) as url:
        yield url
