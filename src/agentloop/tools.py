"""Tools: plain Python functions (or raw JSON Schemas) the model can call, and the toolset.

``@tool`` builds the parameter schema from the signature and the docstring (Google, reST or
numpydoc style) through pydantic, which also validates and converts the model's arguments.
``Tool.from_schema`` takes a raw JSON Schema, as an MCP server or a tool catalogue gives it, and
validates arguments with jsonschema. Each tool is validated by exactly one of the two.
"""

from __future__ import annotations

import hashlib
import inspect
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, get_type_hints, overload

import docstring_parser
import pydantic

from agentloop.errors import ToolDefinitionError
from agentloop.types import JSONObject

TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
"""Names every OpenAI-compatible endpoint accepts."""

_PYTHON_TYPE_NAMES = {
    "dict": "object",
    "float": "number",
    "int": "integer",
    "str": "string",
    "bool": "boolean",
    "list": "array",
    "tuple": "array",
}


class InvalidArguments(Exception):
    """The model's arguments do not fit the tool's schema; the message lists each problem."""


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

    def __post_init__(self) -> None:
        if not TOOL_NAME.match(self.name):
            raise ToolDefinitionError(
                f"tool name {self.name!r} is not allowed: use 1-64 letters, digits, '_' or '-' "
                "(pass name=... to rename it)"
            )

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.function)

    def spec(self) -> JSONObject:
        """What the model is told about this tool: name, description, parameters."""
        return {"name": self.name, "description": self.description, "parameters": self.parameters}

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
        """Build a tool from a typed function; its docstring describes it and its parameters."""
        tool_name = name or function.__name__
        doc = docstring_parser.parse(inspect.getdoc(function) or "")
        arg_docs = {p.arg_name: p.description or "" for p in doc.params}
        model = _arguments_model(function, tool_name, arg_docs)
        summary = "\n\n".join(p for p in (doc.short_description, doc.long_description) if p)
        return cls(
            name=tool_name,
            description=description if description is not None else summary,
            parameters=_clean_schema(model.model_json_schema()),
            function=function,
            validate=_pydantic_validator(model),
            timeout=timeout,
            requires_approval=requires_approval,
            idempotent=idempotent,
            source_hash=_source_hash(function),
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

        The schema must be one a JSON Schema validator accepts, describing an object. Some
        catalogues write Python type names (``"dict"``, ``"float"``, ``"tuple"``, ``"any"``);
        ``python_type_names=True`` translates them to JSON Schema first.
        """
        import jsonschema  # imported here: only raw-schema tools pay for it

        schema = _translate_python_types(parameters) if python_type_names else parameters
        if not isinstance(schema, dict):
            raise ToolDefinitionError(f"tool {name!r}: parameters must be a JSON object schema")
        validator_cls = jsonschema.validators.validator_for(schema)
        try:
            validator_cls.check_schema(schema)
        except jsonschema.SchemaError as exc:
            where = "/".join(str(p) for p in exc.absolute_path) or "(root)"
            hint = " (python_type_names=True translates it)" if _has_python_types(schema) else ""
            raise ToolDefinitionError(
                f"tool {name!r}: invalid JSON Schema at {where}: {exc.message}{hint}"
            ) from None
        if schema.get("type", "object") != "object":
            raise ToolDefinitionError(
                f"tool {name!r}: parameters must describe an object, not {schema.get('type')!r}"
            )
        validator = validator_cls(schema)

        def validate(arguments: JSONObject) -> dict[str, Any]:
            problems = [
                f"{_json_path(e.absolute_path)}: {e.message}"
                for e in sorted(validator.iter_errors(arguments), key=lambda e: list(e.path))
            ]
            if problems:
                raise InvalidArguments("; ".join(problems))
            return arguments

        return cls(
            name=name,
            description=description,
            parameters=schema,
            function=func,
            validate=validate,
            timeout=timeout,
            requires_approval=requires_approval,
            idempotent=idempotent,
            source_hash=_source_hash(func),
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
    """Make a tool of a sync or async function: ``@tool`` or ``@tool(name=..., timeout=...)``."""

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


class Toolset(Mapping[str, Tool]):
    """The tools one agent offers, by name. Names are unique: a clash is an error naming both."""

    def __init__(self, tools: Iterable[Tool | Callable[..., Any]] = ()) -> None:
        self._tools: dict[str, Tool] = {}
        for item in tools:
            t = item if isinstance(item, Tool) else Tool.from_function(item)
            if t.name in self._tools:
                raise ToolDefinitionError(
                    f"two tools are named {t.name!r}: {_where(self._tools[t.name])} and "
                    f"{_where(t)}; rename one with @tool(name=...)"
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


def _where(t: Tool) -> str:
    fn = t.function
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"


def _arguments_model(
    function: Callable[..., Any], tool_name: str, arg_docs: dict[str, str]
) -> type[pydantic.BaseModel]:
    try:
        hints = get_type_hints(function, include_extras=True)
    except Exception as exc:
        raise ToolDefinitionError(f"tool {tool_name!r}: cannot resolve type hints: {exc}") from exc
    fields: dict[str, Any] = {}
    for param in inspect.signature(function).parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise ToolDefinitionError(
                f"tool {tool_name!r}: *{param.name} cannot be described to a model; "
                "list the parameters explicitly"
            )
        if param.name not in hints:
            raise ToolDefinitionError(
                f"tool {tool_name!r}: parameter {param.name!r} needs a type hint"
            )
        default = ... if param.default is param.empty else param.default
        # Fields get private names and the parameter name as alias, so parameters called
        # "json" or "schema" cannot clash with BaseModel's own attributes.
        fields[f"p_{param.name}"] = (
            hints[param.name],
            pydantic.Field(default, alias=param.name, description=arg_docs.get(param.name)),
        )
    try:
        return pydantic.create_model(
            f"{tool_name}_arguments",
            __config__=pydantic.ConfigDict(extra="forbid", arbitrary_types_allowed=False),
            **fields,
        )
    except (pydantic.PydanticSchemaGenerationError, TypeError) as exc:
        raise ToolDefinitionError(f"tool {tool_name!r}: unsupported parameter type: {exc}") from exc


def _pydantic_validator(model: type[pydantic.BaseModel]) -> Callable[[JSONObject], dict[str, Any]]:
    names = {n: (f.alias or n) for n, f in model.model_fields.items()}

    def validate(arguments: JSONObject) -> dict[str, Any]:
        try:
            parsed = model.model_validate(arguments)
        except pydantic.ValidationError as exc:
            raise InvalidArguments(
                "; ".join(
                    f"{_json_path(e['loc']) or '(arguments)'}: {e['msg']}" for e in exc.errors()
                )
            ) from None
        return {names[k]: getattr(parsed, k) for k in type(parsed).model_fields}

    return validate


def _json_path(loc: Iterable[str | int]) -> str:
    return ".".join(str(p) for p in loc)


def _clean_schema(schema: JSONObject) -> JSONObject:
    """Drop pydantic's generated ``title`` keys, which only add tokens for the model."""

    def clean(node: Any, in_properties: bool = False) -> Any:
        if isinstance(node, dict):
            return {
                k: clean(v, in_properties=(k in ("properties", "$defs") and not in_properties))
                for k, v in node.items()
                if in_properties or k != "title"
            }
        if isinstance(node, list):
            return [clean(v) for v in node]
        return node

    cleaned: JSONObject = clean(schema)
    return cleaned


def _translate_python_types(schema: Any) -> Any:
    if isinstance(schema, dict):
        out = {k: _translate_python_types(v) for k, v in schema.items()}
        kind = schema.get("type")
        if kind == "any":
            del out["type"]
        elif isinstance(kind, str) and kind in _PYTHON_TYPE_NAMES:
            out["type"] = _PYTHON_TYPE_NAMES[kind]
        return out
    if isinstance(schema, list):
        return [_translate_python_types(v) for v in schema]
    return schema


def _has_python_types(schema: Any) -> bool:
    return bool(_translate_python_types(schema) != schema)


def _source_hash(function: Callable[..., Any]) -> str:
    """A hash of the function's source, or of its qualified name if no source exists."""
    target = inspect.unwrap(function)
    try:
        text = inspect.getsource(target)
    except (OSError, TypeError):
        text = f"{getattr(target, '__module__', '')}.{getattr(target, '__qualname__', '')}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]
