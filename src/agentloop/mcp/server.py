"""``MCPServer``: a Model Context Protocol server whose tools an agent can call.

Give one to an agent like any tool: ``Agent(model, tools=[search, MCPServer.stdio("npx -y
some-server")])``. The agent opens it when a run starts and closes it when the run ends, however
it ends; ``async with agent:`` (or ``async with server:``) opens it once for many runs, shared by
concurrent ones. Each of the server's tools becomes an agentloop tool whose calls go to the
server; the server's identity and every schema it served go into the trace header and the
agent's ``config_hash``. A replay serves the recorded results and never starts the server.
"""

from __future__ import annotations

import contextlib
import functools
import re
import shlex
import tempfile
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from agentloop.errors import ToolDefinitionError, UserError
from agentloop.mcp.connection import Connection
from agentloop.mcp.convert import (
    MAX_DESCRIPTION_CHARS,
    clean_schema,
    clean_text,
    served_tool,
    tool_name,
)
from agentloop.mcp.errors import MCPServerError
from agentloop.tools import SourcedTools, Tool, ToolChange, ToolChanges
from agentloop.types import JSONObject

_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
SECRET_NAME = re.compile(r"auth|cookie|token|key|secret|passw|credential", re.IGNORECASE)
"""An environment variable or header whose name matches holds a credential."""

PerTool = bool | Collection[str]
"""A setting for all of a server's tools (``True``/``False``) or for the tools named (the
names the server uses, without the prefix)."""


class MCPServer:
    """An MCP server reached over stdio (a subprocess) or Streamable HTTP (a URL).

    Build one with ``MCPServer.stdio`` or ``MCPServer.http``. ``prefix`` goes before every tool
    name (to tell two servers' ``search`` apart); ``timeout`` caps each call in seconds (the
    run's ``tool_timeout`` when ``None``) and a call that runs over is cancelled on the server
    too; ``requires_approval`` and ``idempotent`` apply to all tools or to the ones named.
    The server's own ``idempotentHint`` is shown in the trace header but never trusted.
    ``restarts`` is how many times a stdio server that died is started again for a later call.
    ``include`` offers only the tools named (their names on the server); the default is all.
    """

    def __init__(
        self,
        *,
        name: str,
        command: str | None = None,
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        cwd: str | Path | None = None,
        url: str | None = None,
        headers: Mapping[str, str] | None = None,
        prefix: str = "",
        timeout: float | None = None,
        connect_timeout: float = 30.0,
        requires_approval: PerTool = False,
        idempotent: PerTool = False,
        restarts: int = 1,
        stderr_log: str | Path | None = None,
        max_description_chars: int = MAX_DESCRIPTION_CHARS,
        include: Collection[str] | None = None,
    ) -> None:
        if (command is None) == (url is None):
            raise UserError(
                f"MCP server {name!r}: give a command (stdio) or a url (HTTP), not both"
            )
        if not isinstance(name, str) or not _NAME.match(name):
            raise UserError(
                f"MCP server name {name!r} is not allowed: use 1-64 letters, digits, '_', '.', '-'"
            )
        if url is not None and urlsplit(url).scheme not in ("http", "https"):
            raise UserError(f"MCP server {name!r}: url {url!r} must start with http:// or https://")
        self.name = name
        self.command = command
        self.args = tuple(args)
        self.env = dict(env) if env else {}
        self.cwd = str(cwd) if cwd is not None else None
        self.url = url
        self.headers = dict(headers) if headers else {}
        self.prefix = prefix
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.requires_approval = _per_tool(requires_approval)
        self.idempotent = _per_tool(idempotent)
        self.restarts = restarts
        self.max_description_chars = max_description_chars
        self.include = frozenset(include) if include is not None else None
        self.stderr_log_path = (
            Path(stderr_log)
            if stderr_log is not None
            else Path(tempfile.gettempdir()) / "agentloop-mcp" / f"{name}.stderr.log"
        )
        self._shared: tuple[Connection, SourcedTools] | None = None
        self._shared_version = 0  # the connection's tool list version it serves
        self._depth = 0  # nested `async with server:` blocks

    @classmethod
    def stdio(
        cls, command: str | Sequence[str], *, name: str | None = None, **options: Any
    ) -> MCPServer:
        """A server the agent starts as a subprocess: ``command`` is a command line (split like
        a shell does) or a list of words. ``env`` adds environment variables; ``stderr_log``
        is where the server's stderr goes (default: a file in the temp folder)."""
        words = shlex.split(command) if isinstance(command, str) else list(command)
        if not words:
            raise UserError("MCPServer.stdio() needs a command")
        return cls(name=name or _name_of(words), command=words[0], args=words[1:], **options)

    @classmethod
    def http(
        cls,
        url: str,
        *,
        name: str | None = None,
        headers: Mapping[str, str] | None = None,
        **options: Any,
    ) -> MCPServer:
        """A server at a Streamable HTTP ``url``; ``headers`` (e.g. ``Authorization``) go with
        every request and are never recorded."""
        host = urlsplit(url).hostname or "mcp"
        guess = re.sub(r"[^A-Za-z0-9_.-]", "_", host)[:64]
        return cls(name=name or guess, url=url, headers=headers, **options)

    def identity(self) -> JSONObject:
        """Where the server runs, without credentials: the command line (environment variable
        names, not values) or the URL without user, password or query (header names only)."""
        if self.command is not None:
            found: JSONObject = {"transport": "stdio", "command": [self.command, *self.args]}
            if self.env:
                found["env"] = sorted(self.env)
            return found
        assert self.url is not None
        parts = urlsplit(self.url)
        netloc = parts.hostname or ""
        if parts.port is not None:
            netloc += f":{parts.port}"
        found = {
            "transport": "streamable_http",
            "url": urlunsplit((parts.scheme, netloc, parts.path, "", "")),
        }
        if self.headers:
            found["headers"] = sorted(self.headers)
        return found

    def secrets(self) -> list[str]:
        """The values of its environment variables and headers whose names say they are secret
        (``SECRET_NAME``), for an agent to mask in what it writes (a tool could echo them)."""
        named = (*self.env.items(), *self.headers.items())
        values = [value for name, value in named if SECRET_NAME.search(name) and value]
        # "Bearer <token>": the token alone is the secret too
        return [*values, *(word for v in values for word in v.split()[1:] if len(word) >= 8)]

    def log_hint(self) -> str:
        return f"; its stderr is in {self.stderr_log_path}" if self.command is not None else ""

    @contextlib.asynccontextmanager
    async def open_tools(self) -> AsyncIterator[SourcedTools]:
        """Connect and yield the server's tools (or those of the connection ``async with
        server:`` opened, listed again if the server announced a change); the connection made
        here is closed on the way out. A run asks ``changes`` before each step for the list
        the server announced meanwhile."""
        if self._shared is not None:
            connection, served = self._shared
            await connection.refresh()  # notifications/tools/list_changed since last time
            if connection.version != self._shared_version:
                self._shared_version = connection.version
                self._shared = (connection, served := self._served(connection))
            yield served
            return
        connection = Connection(self)
        await connection.start()
        try:
            yield self._served(connection)
        finally:
            await connection.close()

    async def __aenter__(self) -> MCPServer:
        """Open one connection for every run until the block ends (nested blocks share it:
        the outermost one closes it)."""
        self._depth += 1
        if self._shared is not None:
            return self
        try:
            await self._open_shared()
        except BaseException:
            self._depth -= 1
            raise
        return self

    async def _open_shared(self) -> None:
        connection = Connection(self)
        await connection.start()
        try:
            self._shared = (connection, self._served(connection))
            self._shared_version = connection.version
        except BaseException:
            await connection.close()
            raise

    async def __aexit__(self, *exc_info: object) -> None:
        self._depth -= 1
        if self._depth > 0:
            return
        shared, self._shared = self._shared, None
        if shared is not None:
            await shared[0].close()

    def _served(self, connection: Connection) -> SourcedTools:
        tools, config = self._offered(connection)
        changes = functools.partial(self._changes, connection, connection.version, tools, config)
        return SourcedTools(tools=tools, config=config, changes=changes)

    def _offered(self, connection: Connection) -> tuple[list[Tool], JSONObject]:
        """The connection's tools as agentloop tools, and the server's identity with every
        schema it served (for the trace)."""
        offered = [
            t for t in connection.tools if self.include is None or str(t.name) in self.include
        ]
        tools = [self._tool(connection, listed) for listed in offered]
        seen: dict[str, str] = {}
        for made, listed in zip(tools, offered, strict=True):
            if made.name in seen:
                raise MCPServerError(
                    self.name,
                    f"serves two tools that are both named {made.name!r} here "
                    f"({seen[made.name]!r} and {listed.name!r})",
                )
            seen[made.name] = listed.name
        config: JSONObject = {
            "kind": "mcp",
            "name": self.name,
            **self.identity(),
            "server": connection.server_info,
            "prefix": self.prefix,
            "tools": [served_tool(t) for t in offered],
        }
        return tools, config

    def _changes(
        self, connection: Connection, version: int, tools: list[Tool], config: JSONObject
    ) -> ToolChanges:
        """For one run that started with ``tools`` (listed as ``version``): what it asks
        before each step. After ``notifications/tools/list_changed`` (or a restart) it lists
        the tools again (once per connection) and answers the new list, unless it is the
        same as before (some servers announce right after they start)."""
        seen, before = version, (tools, config)

        async def changed(step: int) -> list[ToolChange]:
            nonlocal seen, before
            await connection.refresh()
            if connection.version == seen:
                return []
            seen = connection.version
            now, config = self._offered(connection)
            old, old_config = before
            before = (now, config)
            if config == old_config and [t.recorded() for t in now] == [t.recorded() for t in old]:
                return []
            return [ToolChange(self.name, tuple(now), frozenset(t.name for t in old), config)]

        return changed

    def _tool(self, connection: Connection, listed: Any) -> Tool:
        raw = str(listed.name)
        call = functools.partial(_call, connection, raw)
        try:
            return Tool.from_schema(
                name=tool_name(self.prefix, raw),
                description=clean_text(listed.description or "", self.max_description_chars),
                parameters=clean_schema(listed.input_schema, self.max_description_chars),
                func=call,
                timeout=self.timeout,
                requires_approval=_applies(self.requires_approval, raw),
                idempotent=_applies(self.idempotent, raw),
            )
        except ToolDefinitionError as exc:
            raise MCPServerError(self.name, f"served a tool agentloop cannot use: {exc}") from None

    def __repr__(self) -> str:
        where = self.identity().get("url") or shlex.join(self.identity()["command"])
        return f"MCPServer({self.name!r}, {where!r})"


async def _call(connection: Connection, raw_name: str, **arguments: Any) -> str:
    """An MCP tool's function: the call goes to the server."""
    return await connection.call(raw_name, arguments)


_LAUNCHERS = frozenset(
    {"node", "npx", "python", "python3", "uv", "uvx", "sh", "bash", "deno", "bun"}
)


def _name_of(words: list[str]) -> str:
    """A server name guessed from its command line: the first word that is not a launcher
    (``npx``, ``python``...) or an option, without its folder and suffix."""
    chosen = next(
        (w for w in words if not w.startswith("-") and Path(w).name not in _LAUNCHERS), words[0]
    )
    guess = re.sub(r"[^A-Za-z0-9_.-]", "_", Path(chosen).stem)[:64]
    return guess or "mcp"


def _per_tool(value: PerTool) -> bool | frozenset[str]:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return frozenset({value})
    return frozenset(value)


def _applies(setting: bool | frozenset[str], raw_name: str) -> bool:
    return setting if isinstance(setting, bool) else raw_name in setting
