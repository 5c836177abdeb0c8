"""One live connection to an MCP server, owned by a task of its own.

The ``mcp`` SDK's client lives in anyio task groups that must be entered and left by the same
task. A run (or ``async with agent:``) opens the connection in one task, calls tools from
others and closes it from a third, so a dedicated owner task enters the client, lists the
tools, and waits until it is told to close. A stdio server that dies is noticed by its calls
(the SDK reports the closed connection) and restarted for the next call, up to the server's
``restarts``. Its stderr goes to a log file, never to the user's terminal.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from agentloop.errors import ToolRetry
from agentloop.mcp.convert import clean_text, result_text
from agentloop.mcp.errors import MCPServerError, require_sdk

if TYPE_CHECKING:
    from mcp import Client
    from mcp.types import Tool as MCPTool

    from agentloop.mcp.server import MCPServer

_MAX_PAGES = 100
"""tools/list pages followed at most: a server whose cursor never ends cannot hang the run."""


class Connection:
    """A connected client and the tools it listed; ``call`` runs one tool."""

    def __init__(self, server: MCPServer) -> None:
        self.server = server
        self.client: Client | None = None
        self.tools: list[MCPTool] = []
        self.server_info: dict[str, Any] = {}
        self.restarts_left = server.restarts
        self.announced = 0
        """How many times the server announced ``notifications/tools/list_changed``."""
        self.version = 0
        """Counts the listings of ``tools`` (at start, after a restart, after an
        announcement): a run whose tools came from an older one takes the new list."""
        self._listed_for = 0  # the `announced` count that `tools` reflects
        self._stop = asyncio.Event()
        self._owner: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._listing = asyncio.Lock()

    async def start(self) -> None:
        """Start the server (stdio) or connect to it (HTTP) and list its tools; a typed error
        naming the server if it cannot be reached or does not answer in time."""
        require_sdk()
        ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._stop = asyncio.Event()
        self._owner = asyncio.create_task(self._own(ready), name=f"mcp:{self.server.name}")
        try:
            async with asyncio.timeout(self.server.connect_timeout):
                await asyncio.shield(ready)
        except TimeoutError:
            await self.close()
            raise MCPServerError(
                self.server.name,
                f"did not answer within {self.server.connect_timeout:g} s "
                f"(connect_timeout){self.server.log_hint()}",
            ) from None
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        """Stop the server (or end the HTTP session) and wait until it is gone."""
        self._stop.set()
        owner, self._owner = self._owner, None
        if owner is not None:
            if self.client is None:
                owner.cancel()  # still starting, or dying: nothing to wind down politely
            elif not (await asyncio.wait({owner}, timeout=10))[0]:
                owner.cancel()  # the SDK did not manage to stop the server in time
            await asyncio.wait({owner})  # (never raises the owner's exception)
            if not owner.cancelled():
                owner.exception()  # retrieved: a server that died is reported by its calls
        self.client = None

    @property
    def alive(self) -> bool:
        return self._owner is not None and not self._owner.done() and self.client is not None

    async def call(self, raw_name: str, arguments: dict[str, Any]) -> str:
        """Call the server's tool ``raw_name``: the result's text, ``ToolRetry`` with the
        server's message for an ``isError`` result, ``MCPServerError`` when the server is
        gone."""
        from mcp import MCPError
        from mcp.types import CONNECTION_CLOSED, INVALID_PARAMS

        client = await self._client()
        try:
            result = await client.call_tool(raw_name, arguments)
        except MCPError as exc:
            if exc.code == CONNECTION_CLOSED or not self.alive:
                raise self._died(raw_name) from exc
            if exc.code == INVALID_PARAMS:
                raise ToolRetry(f"Error: {clean_text(exc.message, 2000)}") from None
            raise MCPServerError(
                self.server.name,
                f"answered the call to {raw_name!r} with error {exc.code}: "
                f"{clean_text(exc.message, 300)}",
            ) from exc
        except (OSError, EOFError) as exc:
            raise self._died(raw_name) from exc
        except Exception as exc:
            if type(exc).__module__.startswith("anyio") or not self.alive:
                raise self._died(raw_name) from exc
            raise
        text = result_text(result)
        if result.is_error:
            raise ToolRetry(text or f"Error: the tool {raw_name!r} failed without a message")
        return text

    async def refresh(self) -> None:
        """List the tools again if the server announced a change since they were listed (once
        for all the runs that share the connection). ``MCPServerError`` if the server cannot
        be asked; it is not asked again until its next announcement."""
        if self._listed_for >= self.announced:
            return
        async with self._listing:
            announced = self.announced
            if self._listed_for >= announced:
                return  # another run listed them meanwhile
            try:
                tools = await self._list_tools(await self._client())
            except Exception as exc:
                self._listed_for = announced  # not asked again until the next announcement
                if isinstance(exc, MCPServerError):
                    raise
                raise MCPServerError(
                    self.server.name,
                    f"announced a new tool list that could not be listed "
                    f"({type(exc).__name__}: {exc}){self.server.log_hint()}",
                ) from exc
            # Set only now: a run that asks while the list is taken waits for it (the lock).
            self._listed_for = announced
            self.tools = tools
            self.version += 1

    async def _client(self) -> Client:
        """The live client, after restarting a stdio server that died, if restarts are left."""
        async with self._lock:
            if self.alive and self.client is not None:
                return self.client
            if self.server.command is None or self.restarts_left <= 0:
                raise MCPServerError(self.server.name, f"is not running{self.server.log_hint()}")
            self.restarts_left -= 1
            await self.close()
            await self.start()
            assert self.client is not None
            return self.client

    def _died(self, raw_name: str) -> MCPServerError:
        self.client = None
        return MCPServerError(
            self.server.name,
            f"closed the connection during a call to {raw_name!r} (it crashed or exited)"
            f"{self.server.log_hint()}",
        )

    async def _own(self, ready: asyncio.Future[None]) -> None:
        from mcp import Client

        try:
            async with contextlib.AsyncExitStack() as stack:
                transport = await self._transport(stack)
                client = await stack.enter_async_context(
                    Client(transport, message_handler=self._notified, mode="legacy")
                )
                announced = self.announced
                self.tools = await self._list_tools(client)
                self._listed_for, self.version = announced, self.version + 1
                info = client.server_info
                self.server_info = (
                    {"name": info.name, "version": info.version} if info is not None else {}
                )
                self.client = client
                ready.set_result(None)
                await self._stop.wait()
        except BaseException as exc:
            self.client = None
            if isinstance(exc, asyncio.CancelledError):
                ready.cancel()
                raise
            if not ready.done():
                ready.set_exception(self._failed_to_start(exc))

    async def _transport(self, stack: contextlib.AsyncExitStack) -> Any:
        server = self.server
        if server.command is not None:
            from mcp.client.stdio import StdioServerParameters, stdio_client

            log = stack.enter_context(_open_log(server.stderr_log_path))
            params = StdioServerParameters(
                command=server.command,
                args=list(server.args),
                env=dict(server.env) if server.env else None,
                cwd=server.cwd,
            )
            return stdio_client(params, errlog=log)
        import httpx2
        from mcp.client.streamable_http import streamable_http_client

        assert server.url is not None
        http = await stack.enter_async_context(
            httpx2.AsyncClient(
                headers=dict(server.headers), timeout=httpx2.Timeout(30.0, read=300.0)
            )
        )
        return streamable_http_client(server.url, http_client=http)

    async def _list_tools(self, client: Client) -> list[MCPTool]:
        tools: list[MCPTool] = []
        cursor: str | None = None
        for _ in range(_MAX_PAGES):
            page = await client.list_tools(cursor=cursor, cache_mode="refresh")
            tools.extend(page.tools)
            cursor = page.next_cursor
            if cursor is None:
                break
        return tools

    async def _notified(self, message: Any) -> None:
        if getattr(message, "method", None) == "notifications/tools/list_changed":
            self.announced += 1  # the runs take the new list before their next step

    def _failed_to_start(self, exc: BaseException) -> BaseException:
        if isinstance(exc, MCPServerError | asyncio.CancelledError):
            return exc
        what = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if isinstance(exc, BaseExceptionGroup):
            inner = exc.exceptions[0] if exc.exceptions else exc
            what = f"{type(inner).__name__}: {inner}"
        error = MCPServerError(
            self.server.name, f"could not be started or reached ({what}){self.server.log_hint()}"
        )
        error.__cause__ = exc
        return error


def _open_log(path: Path) -> TextIO:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.open("a", encoding="utf-8")
