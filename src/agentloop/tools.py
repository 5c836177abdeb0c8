"""Tools: plain Python functions (or raw JSON Schemas) the model can call, and the toolset.

``@tool`` builds the parameter schema from the signature and the docstring (Google, reST or
numpydoc style) through pydantic, which also validates and converts the model's arguments.
``Tool.from_schema`` takes a raw JSON Schema, as an MCP server or a tool catalogue gives it, and
validates arguments with jsonschema. Each tool is validated by exactly one of the two.
A ``ToolSource`` (an MCP server) serves tools that exist only while it is open: the agent opens
it for a run, or once for many runs, and takes its tools and its identity from it then.

Problems with a tool's definition raise ``ToolDefinitionError`` when the tool is built, naming
the tool and what to fix. Problems with a call's arguments raise ``InvalidArguments``, whose
message lists each problem as ``path: message`` (``point.x: Input should be a valid integer``);
that message goes back to the model as an observation.
"""

from __future__ import annotations

import functools
import inspect
import re
from collections.abc import (
    Awaitable,
    Callable,
    Collection,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol, overload, runtime_checkable

from agentloop.errors import ToolDefinitionError
from agentloop.tool_schemas import (
    function_parameters,
    raw_parameters,
    source_hash,
    takes_run_context,
    underlying,
)
from agentloop.types import JSONObject

TOOL_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
"""Names every OpenAI-compatible endpoint accepts; use ``fullmatch`` (a ``$`` anchor would
accept a trailing newline)."""


@dataclass(frozen=True, eq=False)
class Tool:
    """A function the model can call. Build one with ``@tool`` or ``Tool.from_schema``."""

    name: str
    description: str
    parameters: JSONObject
    """JSON Schema of the arguments object, as sent to the model."""
    function: Callable[..., Any]
    validate: Callable[[JSONObject], dict[str, Any]] = field(repr=False)
    """Checks raw arguments and returns the keyword arguments to call ``function`` with;
    raises ``InvalidArguments``."""
    timeout: float | None = None
    """Seconds one call may take; ``None`` uses the run's ``tool_timeout``."""
    requires_approval: bool = False
    """Calls need approval before they run (side effects: writes, sends, deletes)."""
    idempotent: bool = False
    """Running a call twice is harmless; lets resume re-run a call that was cut off."""
    source_hash: str = ""
    """Hash of the function's source, part of the agent's ``config_hash``."""
    stand_in: bool = False
    """Rebuilt from a trace's schema for an offline replay: it cannot run, and whether a call
    was valid is what the recording says (it accepts any arguments)."""
    takes_context: bool = False
    """The function's first parameter is a ``RunContext``: the loop passes the run's context
    there (it is not in ``parameters``)."""

    def __post_init__(self) -> None:
        _check_name(self.name)

    @functools.cached_property
    def is_async(self) -> bool:
        """Whether calling ``function`` returns a coroutine (async def, also behind
        ``functools.partial`` or as an object's ``async def __call__``). Asked for every call;
        found once (``function`` never changes)."""
        fn = self.function
        return inspect.iscoroutinefunction(fn) or (
            not inspect.isroutine(fn)
            and not isinstance(fn, functools.partial)
            and inspect.iscoroutinefunction(getattr(fn, "__call__", None))  # noqa: B004
        )

    def spec(self) -> JSONObject:
        """What the model is told about this tool: name, description, parameters."""
        return {"name": self.name, "description": self.description, "parameters": self.parameters}

    def recorded(self) -> JSONObject:
        """The tool as a trace records it (the header's ``agent.tools`` entries, a
        ``tools_changed`` event's ``tools``): its spec and the settings that change a run."""
        return {
            **self.spec(),
            "timeout": self.timeout,
            "requires_approval": self.requires_approval,
            "idempotent": self.idempotent,
            "source_hash": self.source_hash,
        }

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the underlying function directly, as if ``@tool`` had not wrapped it."""
        return self.function(*args, **kwargs)

    @classmethod
    def from_function(
        cls,
        function: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
        timeout: float | None = None,
        requires_approval: bool = False,
        idempotent: bool = False,
    ) -> Tool:
        """Build a tool from a typed function; its docstring describes it and its parameters.

        Every parameter needs a type hint that pydantic can validate and describe as JSON
        Schema: ``str``, ``int``, ``float``, ``bool``, ``Literal``, ``Enum``, ``Optional``/``X |
        None``, lists, dicts, ``Annotated[..., Field(...)]`` and pydantic models. A parameter
        with a default is optional. ``*args``, ``**kwargs`` and positional-only parameters
        cannot be described to a model and are rejected.

        Arguments are validated in pydantic's lax mode, because models often quote numbers:
        ``"3"`` is accepted for an ``int`` (``3.5`` is not), ``"true"`` for a ``bool``. Enum
        parameters receive Enum members, model parameters receive model instances, and omitted
        parameters receive their defaults. Unknown arguments are rejected.
        """
        if not callable(function):
            raise ToolDefinitionError(f"cannot make a tool of {function!r}: it is not callable")
        tool_name = name if name is not None else getattr(function, "__name__", None)
        if not isinstance(tool_name, str):
            raise ToolDefinitionError(
                f"cannot name a tool made of {function!r}: it has no __name__; pass name=..."
            )
        _check_name(tool_name)
        summary, parameters, validate = function_parameters(function, tool_name)
        return cls(
            name=tool_name,
            description=description if description is not None else summary,
            parameters=parameters,
            function=function,
            validate=validate,
            timeout=timeout,
            requires_approval=requires_approval,
            idempotent=idempotent,
            source_hash=source_hash(function),
            takes_context=takes_run_context(function),
        )

    @classmethod
    def from_schema(
        cls,
        *,
        name: str,
        description: str,
        parameters: JSONObject,
        func: Callable[..., Any],
        timeout: float | None = None,
        requires_approval: bool = False,
        idempotent: bool = False,
        python_type_names: bool = False,
    ) -> Tool:
        """Register a tool from a raw JSON Schema; ``func`` gets the arguments as keywords.

        The schema must be one a JSON Schema validator accepts (its ``$schema`` picks the
        draft; 2020-12 when absent or unknown), must describe an object, and every ``$ref`` in
        it must resolve inside it (nothing is fetched). Anything else raises
        ``ToolDefinitionError`` naming the location in the schema. Some catalogues write Python
        type names (``"dict"``, ``"float"``, ``"tuple"``, ``"any"``); ``python_type_names=True``
        translates them to JSON Schema first (``"any"`` drops the type constraint).

        Arguments are validated as JSON Schema says, strictly: ``"3"`` is not an ``integer``.
        They are passed on as sent: schema ``default`` values are not filled in, so ``func``
        should give the optional parameters defaults of its own (or take ``**kwargs``).
        """
        _check_name(name)
        schema, validate = raw_parameters(parameters, name, python_type_names=python_type_names)
        return cls(
            name=name,
            description=description,
            parameters=schema,
            function=func,
            validate=validate,
            timeout=timeout,
            requires_approval=requires_approval,
            idempotent=idempotent,
            source_hash=source_hash(func),
        )


@overload
def tool(function: Callable[..., Any], /) -> Tool: ...
@overload
def tool(
    *,
    name: str | None = None,
    description: str | None = None,
    timeout: float | None = None,
    requires_approval: bool = False,
    idempotent: bool = False,
) -> Callable[[Callable[..., Any]], Tool]: ...
def tool(
    function: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    timeout: float | None = None,
    requires_approval: bool = False,
    idempotent: bool = False,
) -> Tool | Callable[[Callable[..., Any]], Tool]:
    """Make a tool of a sync or async function: ``@tool`` or ``@tool(name=..., timeout=...)``.

    See ``Tool.from_function`` for the supported parameter types and how arguments are
    validated.
    """

    def build(fn: Callable[..., Any]) -> Tool:
        return Tool.from_function(
            fn,
            name=name,
            description=description,
            timeout=timeout,
            requires_approval=requires_approval,
            idempotent=idempotent,
        )

    return build(function) if function is not None else build


@dataclass(frozen=True)
class SourcedTools:
    """What an open ``ToolSource`` serves: its tools, and the identity recorded in the trace
    header and hashed into the agent's ``config_hash`` (name, version, where it runs, every
    schema it served)."""

    tools: list[Tool]
    config: JSONObject
    changes: Callable[[], ToolChanges] | None = None
    """Called once per run: the function that run asks, before each model request, whether
    the source's tool list changed (an MCP server's ``notifications/tools/list_changed``)."""


@dataclass(frozen=True)
class ToolChange:
    """A tool source's new tool list, taken between two steps of a run: ``tools`` (all it
    offers now) replace the tools named in ``replaces`` (all it offered until now; after its
    first change a run goes by what it took from the source, less any name it left out).
    ``config`` is the source's identity with what it serves now (like the header's
    ``tool_sources`` entry), for the record."""

    source: str
    tools: tuple[Tool, ...]
    replaces: frozenset[str]
    config: JSONObject | None = None


ToolChanges = Callable[[int], Awaitable[Sequence[ToolChange]]]
"""Asked by a run before each model request with the step: the tool lists that changed since
it last asked (none, mostly). MCP servers answer live; a replay answers from the trace's
``tools_changed`` events. An ``AgentLoopError`` it raises is recorded as a warning and the
run keeps its tools."""


@runtime_checkable
class ToolSource(Protocol):
    """Tools served from outside the agent's process (an MCP server, ``agentloop.mcp``).

    ``open_tools`` connects (or reuses the connection ``async with source:`` opened) and yields
    the tools; leaving it closes what it opened. The agent calls it around each run; inside
    ``async with agent:`` it first enters every source, so runs share their connections (and
    a source may serve new tools to a later run)."""

    name: str

    def open_tools(self) -> AbstractAsyncContextManager[SourcedTools]: ...

    async def __aenter__(self) -> Any: ...

    async def __aexit__(self, *exc_info: Any) -> Any: ...


class Toolset(Mapping[str, Tool]):
    """The tools one agent offers, by name. Names are unique: a clash is an error naming both."""

    def __init__(self, tools: Iterable[Tool | Callable[..., Any]] = ()) -> None:
        self._tools: dict[str, Tool] = {}
        for item in tools:
            t = item if isinstance(item, Tool) else Tool.from_function(item)
            if t.name in self._tools:
                raise ToolDefinitionError(
                    f"two tools are named {t.name!r}: {_where(self._tools[t.name])} and "
                    f"{_where(t)}; rename one with @tool(name=...) (an MCP server's tools: "
                    "give the server a prefix=)"
                )
            self._tools[t.name] = t

    def __getitem__(self, name: str) -> Tool:
        return self._tools[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._tools)

    def __len__(self) -> int:
        return len(self._tools)

    def specs(self) -> list[JSONObject]:
        return [t.spec() for t in self._tools.values()]

    def changed(
        self, tools: Iterable[Tool], replaces: Collection[str]
    ) -> tuple[Toolset, list[Tool], list[str]]:
        """This toolset with a source's new ``tools`` in place of the ones named in
        ``replaces``. A new tool whose name another tool (local, or another source's) already
        has is left out and named in the third item, so a source cannot take over a name
        mid-run; the second item is the source's tools as now offered."""
        kept = [t for name, t in self._tools.items() if name not in replaces]
        taken = {t.name for t in kept}
        offered: list[Tool] = []
        clashes: list[str] = []
        for t in tools:
            if t.name in taken:
                clashes.append(t.name)
            else:
                taken.add(t.name)
                offered.append(t)
        return Toolset([*kept, *offered]), offered, clashes


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not TOOL_NAME.fullmatch(name):
        fixed = re.sub(r"[^A-Za-z0-9_-]", "_", str(name))[:64] or "my_tool"
        raise ToolDefinitionError(
            f"tool name {name!r} is not allowed: use 1-64 letters, digits, '_' or '-' "
            f"(pass name=... to rename it, e.g. name={fixed!r})"
        )


def _where(t: Tool) -> str:
    fn = underlying(t.function)
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"
