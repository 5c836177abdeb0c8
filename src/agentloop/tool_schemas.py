"""Tool parameters: a JSON Schema and a validator, from a function or from a raw schema.

From a function, pydantic builds both from the signature and the docstring (Google, reST or
numpydoc style), and validates in lax mode. From a raw JSON Schema (an MCP server's, a
catalogue's), jsonschema checks the schema once and validates each call strictly. Problems with
a definition raise ``ToolDefinitionError`` naming the tool and the place; problems with a call's
arguments raise ``InvalidArguments`` listing each as ``path: message``.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import inspect
import re
import warnings
from collections.abc import Callable, Iterable, Iterator
from typing import Annotated, Any, TypeAlias, get_args, get_origin, get_type_hints
from urllib.parse import urljoin

import pydantic

from agentloop.context import is_run_context
from agentloop.errors import ToolDefinitionError
from agentloop.types import JSONObject

Validator: TypeAlias = Callable[[JSONObject], dict[str, Any]]
"""Checks raw arguments and returns the keyword arguments for the tool's function."""

MAX_PROBLEMS = 10
"""At most this many argument problems are listed in one ``InvalidArguments`` message."""

MAX_PROBLEM_CHARS = 300
"""Each listed problem is cut to this many characters (jsonschema messages quote the value)."""

_PYTHON_TYPE_NAMES = {
    "dict": "object",
    "float": "number",
    "int": "integer",
    "str": "string",
    "bool": "boolean",
    "list": "array",
    "tuple": "array",
}

# Where a JSON Schema holds other schemas (drafts 4 to 2020-12). Only these positions are
# rewritten or searched, so values such as ``default``, ``enum`` or ``const`` stay untouched.
_SCHEMA_MAPS = frozenset(
    {"properties", "patternProperties", "$defs", "definitions", "dependentSchemas", "dependencies"}
)
_SCHEMA_LISTS = frozenset({"allOf", "anyOf", "oneOf", "prefixItems"})
_SCHEMA_VALUES = frozenset(
    {
        "additionalProperties",
        "items",
        "additionalItems",
        "contains",
        "propertyNames",
        "not",
        "if",
        "then",
        "else",
        "unevaluatedItems",
        "unevaluatedProperties",
        "contentSchema",
    }
)


class InvalidArguments(Exception):
    """The model's arguments do not fit the tool's schema; the message lists each problem as
    ``path: message``, separated by ``; ``."""


def takes_run_context(function: Callable[..., Any]) -> bool:
    """Whether ``function``'s first parameter is annotated ``RunContext[...]``."""
    try:
        first = next(iter(inspect.signature(function).parameters.values()), None)
        hints = _type_hints(function)
    except Exception:
        return False
    return first is not None and is_run_context(hints.get(first.name))


def function_parameters(
    function: Callable[..., Any], tool_name: str
) -> tuple[str, JSONObject, Validator]:
    """The description (docstring summary), parameter schema and validator of a function."""
    import docstring_parser  # on first use: ~10 ms that `import agentloop` need not pay

    doc = docstring_parser.parse(_docstring(function))
    arg_docs = {p.arg_name: p.description or "" for p in doc.params}
    model = _arguments_model(function, tool_name, arg_docs)
    summary = "\n\n".join(p for p in (doc.short_description, doc.long_description) if p)
    return summary, _json_schema(model, tool_name), _pydantic_validator(model)


def raw_parameters(
    parameters: JSONObject, tool_name: str, *, python_type_names: bool = False
) -> tuple[JSONObject, Validator]:
    """A raw JSON Schema checked (and translated if asked), with its validator."""
    import jsonschema  # imported here: only raw-schema tools pay for it

    if not isinstance(parameters, dict):
        raise ToolDefinitionError(
            f"tool {tool_name!r}: parameters must be a JSON Schema object, not "
            f"{type(parameters).__name__}"
        )
    schema = _translate_python_types(parameters) if python_type_names else parameters
    if not isinstance(schema.get("$schema", ""), str):
        raise ToolDefinitionError(
            f"tool {tool_name!r}: invalid JSON Schema at $schema: must be a URI string"
        )
    # An unknown $schema URI is validated as the latest draft (no deprecation warning).
    validator_cls = jsonschema.validators.validator_for(
        schema, default=jsonschema.Draft202012Validator
    )
    try:
        validator_cls.check_schema(schema)
    except jsonschema.SchemaError as exc:
        hint = " (python_type_names=True translates it)" if _has_python_types(schema) else ""
        raise ToolDefinitionError(
            f"tool {tool_name!r}: invalid JSON Schema at {_schema_path(exc.absolute_path)}: "
            f"{exc.message}{hint}"
        ) from None
    kind = schema.get("type", "object")
    if kind != "object" and not (isinstance(kind, list) and "object" in kind):
        raise ToolDefinitionError(
            f"tool {tool_name!r}: parameters must describe an object (the arguments by name), "
            f"not type {kind!r}; wrap the value in an object property"
        )
    _check_refs(schema, tool_name)
    validator = validator_cls(schema)

    def validate(arguments: JSONObject) -> dict[str, Any]:
        problems = _jsonschema_problems(validator.iter_errors(arguments))
        if problems:
            raise InvalidArguments(_join_problems(problems))
        return dict(arguments)

    return schema, validate


def underlying(function: Callable[..., Any]) -> Any:
    """The code behind ``function``: partials and decorators unwrapped; a callable object's
    class (whose ``__call__`` holds the code)."""
    target: Any = function
    while isinstance(target, functools.partial):
        target = target.func
    target = inspect.unwrap(target)
    if not inspect.isroutine(target) and not isinstance(target, type):
        target = type(target)
    return target


def _docstring(function: Callable[..., Any]) -> str:
    """The docstring that describes ``function``: a partial's wrapped function's; a callable
    object's class docstring, or else its ``__call__``'s."""
    target = underlying(function)
    if isinstance(target, type) and not isinstance(function, type):
        return inspect.getdoc(target) or inspect.getdoc(target.__call__) or ""
    return inspect.getdoc(target) or ""


def _type_hints(function: Callable[..., Any]) -> dict[str, Any]:
    target = underlying(function)
    if isinstance(target, type) and not isinstance(function, type):
        target = target.__call__  # a callable object: the hints are on its __call__
    return get_type_hints(target, include_extras=True)


def _arguments_model(
    function: Callable[..., Any], tool_name: str, arg_docs: dict[str, str]
) -> type[pydantic.BaseModel]:
    try:
        hints = _type_hints(function)
        signature = inspect.signature(function)
    except Exception as exc:
        raise ToolDefinitionError(
            f"tool {tool_name!r}: cannot read its signature and type hints: {exc}"
        ) from exc
    fields: dict[str, Any] = {}
    for index, param in enumerate(signature.parameters.values()):
        if index == 0 and is_run_context(hints.get(param.name)):
            continue  # the run's context, passed by the loop: not an argument for the model
        if is_run_context(hints.get(param.name)):
            raise ToolDefinitionError(
                f"tool {tool_name!r}: a RunContext parameter must be the first one"
            )
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            stars = "*" if param.kind is param.VAR_POSITIONAL else "**"
            raise ToolDefinitionError(
                f"tool {tool_name!r}: parameter {stars}{param.name} cannot be described to a "
                "model; list the parameters explicitly"
            )
        if param.kind is param.POSITIONAL_ONLY:
            raise ToolDefinitionError(
                f"tool {tool_name!r}: parameter {param.name!r} is positional-only, but tools are "
                "called with keyword arguments; remove the '/'"
            )
        if param.name not in hints:
            raise ToolDefinitionError(
                f"tool {tool_name!r}: parameter {param.name!r} needs a type hint"
            )
        default = ... if param.default is param.empty else param.default
        # Fields get private names and the parameter name as alias, so parameters called
        # "json" or "schema" cannot clash with BaseModel's own attributes.
        # A description given with Annotated[..., Field(description=...)] wins over the
        # docstring's, which is only added when there is one.
        doc_text = arg_docs.get(param.name)
        explicit = _has_field_description(hints[param.name])
        description = doc_text if doc_text and not explicit else None
        fields[f"p_{param.name}"] = (
            hints[param.name],
            pydantic.Field(default, alias=param.name)
            if description is None
            else pydantic.Field(default, alias=param.name, description=description),
        )
    try:
        return pydantic.create_model(
            f"{tool_name}_arguments",
            __config__=pydantic.ConfigDict(extra="forbid", arbitrary_types_allowed=False),
            **fields,
        )
    except (pydantic.PydanticSchemaGenerationError, pydantic.PydanticUserError, TypeError) as exc:
        raise ToolDefinitionError(
            f"tool {tool_name!r}: {_unsupported(signature, hints)}: {_first_line(exc)}"
        ) from exc


def _has_field_description(hint: Any) -> bool:
    return get_origin(hint) is Annotated and any(
        isinstance(m, pydantic.fields.FieldInfo) and m.description for m in get_args(hint)[1:]
    )


def _unsupported(signature: inspect.Signature, hints: dict[str, Any]) -> str:
    """Which parameter's type pydantic cannot handle, found by trying each one alone."""
    for param in signature.parameters.values():
        hint = hints[param.name]
        try:
            pydantic.TypeAdapter(hint).json_schema()
        except Exception:
            return f"parameter {param.name!r} has an unsupported type {hint!r}"
    return "unsupported parameter type"


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().split("\n", 1)[0]


def _json_schema(model: type[pydantic.BaseModel], tool_name: str) -> JSONObject:
    """The model's JSON Schema, without pydantic's ``title`` keys. Defaults that are not JSON
    (an arbitrary object) are left out: the parameter stays optional."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", pydantic.json_schema.PydanticJsonSchemaWarning)
            schema = model.model_json_schema()
    except pydantic.PydanticUserError as exc:  # e.g. a Callable: validates, has no JSON Schema
        fields = model.model_fields
        for field_name, info in fields.items():
            if info.annotation is None:
                continue
            try:
                pydantic.TypeAdapter(info.annotation).json_schema()
            except pydantic.PydanticUserError:
                raise ToolDefinitionError(
                    f"tool {tool_name!r}: parameter {info.alias or field_name!r} has a type "
                    f"({info.annotation!r}) that cannot be described as JSON Schema: "
                    f"{_first_line(exc)}"
                ) from exc
        raise ToolDefinitionError(f"tool {tool_name!r}: {_first_line(exc)}") from exc
    return _clean_schema(schema)


def _pydantic_validator(model: type[pydantic.BaseModel]) -> Callable[[JSONObject], dict[str, Any]]:
    names = {n: (f.alias or n) for n, f in model.model_fields.items()}

    def validate(arguments: JSONObject) -> dict[str, Any]:
        try:
            parsed = model.model_validate(arguments)
        except pydantic.ValidationError as exc:
            problems = [_problem(e["loc"], e["msg"]) for e in exc.errors(include_url=False)]
            raise InvalidArguments(_join_problems(problems)) from None
        return {names[k]: getattr(parsed, k) for k in type(parsed).model_fields}

    return validate


def _jsonschema_problems(errors: Iterable[Any]) -> list[str]:
    """``path: message`` for each jsonschema error. A missing required property and an
    unexpected one are reported at their own path, in pydantic's words, so both kinds of tool
    name the argument the same way."""
    problems: list[str] = []
    for error in sorted(errors, key=lambda e: [str(p) for p in e.absolute_path]):
        path = list(error.absolute_path)
        instance = error.instance
        if error.validator == "required" and isinstance(instance, dict):
            problems += [
                _problem([*path, key], "Field required")
                for key in error.validator_value
                if key not in instance
            ]
        elif (
            error.validator == "additionalProperties"
            and error.validator_value is False
            and isinstance(instance, dict)
        ):
            known = error.schema.get("properties", {})
            patterns = list(error.schema.get("patternProperties", {}))
            problems += [
                _problem([*path, key], "Extra inputs are not permitted")
                for key in instance
                if key not in known and not any(re.search(p, key) for p in patterns)
            ]
        else:
            problems.append(_problem(path, error.message))
    return list(dict.fromkeys(problems))  # one "required" error per key repeats the others


def _problem(loc: Iterable[str | int], message: str) -> str:
    text = f"{'.'.join(str(p) for p in loc) or '(arguments)'}: {message}"
    if len(text) > MAX_PROBLEM_CHARS:
        text = text[: MAX_PROBLEM_CHARS - 1] + "…"
    return text


def _join_problems(problems: list[str]) -> str:
    shown = "; ".join(problems[:MAX_PROBLEMS])
    more = len(problems) - MAX_PROBLEMS
    return f"{shown}; and {more} more" if more > 0 else shown


def _schema_path(path: Iterable[str | int]) -> str:
    return "/".join(str(p) for p in path) or "(root)"


def _map_schemas(node: Any, change: Callable[[dict[str, Any]], dict[str, Any]]) -> Any:
    """A copy of the schema ``node`` with ``change`` applied to it and to every subschema.
    Only schema positions are visited: values of ``default``, ``enum``, ``const`` and the
    like are copied as they are, and so are the property names in ``properties``."""
    if not isinstance(node, dict):
        return node
    out = change(dict(node))
    for key, value in out.items():
        if key in _SCHEMA_MAPS and isinstance(value, dict):
            out[key] = {k: _map_schemas(v, change) for k, v in value.items()}
        elif key in _SCHEMA_LISTS and isinstance(value, list):
            out[key] = [_map_schemas(v, change) for v in value]
        elif key in _SCHEMA_VALUES:
            if isinstance(value, list):
                out[key] = [_map_schemas(v, change) for v in value]
            else:
                out[key] = _map_schemas(value, change)
    return out


def _walk_schemas(node: Any, path: tuple[str | int, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """``(path, subschema)`` for the schema ``node`` and every dict subschema in it."""
    if not isinstance(node, dict):
        return
    yield path, node
    for key, value in node.items():
        if key in _SCHEMA_MAPS and isinstance(value, dict):
            for k, v in value.items():
                yield from _walk_schemas(v, (*path, key, k))
        elif key in _SCHEMA_LISTS | _SCHEMA_VALUES and isinstance(value, list):
            for i, v in enumerate(value):
                yield from _walk_schemas(v, (*path, key, i))
        elif key in _SCHEMA_VALUES:
            yield from _walk_schemas(value, (*path, key))


def _clean_schema(schema: JSONObject) -> JSONObject:
    """Drop pydantic's generated ``title`` keys, which only add tokens for the model."""

    def drop_title(node: dict[str, Any]) -> dict[str, Any]:
        node.pop("title", None)
        return node

    cleaned: JSONObject = _map_schemas(schema, drop_title)
    return cleaned


def _translate_python_types(schema: JSONObject) -> JSONObject:
    """``"type": "dict"`` → ``"object"`` and so on; ``"any"`` drops the type constraint."""

    def translate(node: dict[str, Any]) -> dict[str, Any]:
        kind = node.get("type")
        kinds = kind if isinstance(kind, list) else [kind]
        if "any" in kinds:
            del node["type"]
        elif isinstance(kind, str):
            node["type"] = _PYTHON_TYPE_NAMES.get(kind, kind)
        elif isinstance(kind, list):
            node["type"] = [_PYTHON_TYPE_NAMES.get(k, k) if isinstance(k, str) else k for k in kind]
        return node

    translated: JSONObject = _map_schemas(schema, translate)
    return translated


def _has_python_types(schema: JSONObject) -> bool:
    return _translate_python_types(schema) != schema


def _check_refs(schema: JSONObject, tool_name: str) -> None:
    """Every ``$ref`` must resolve inside the schema: jsonschema would otherwise fail on the
    first call (or try the network), long after registration."""
    from referencing import Registry
    from referencing.exceptions import Unresolvable
    from referencing.jsonschema import DRAFT202012, specification_with

    spec = specification_with(str(schema.get("$schema", "")), default=DRAFT202012)
    root = spec.create_resource(schema)
    base = root.id() or "urn:agentloop:tool"
    registry = Registry().with_resource(base, root).crawl()
    bases: dict[tuple[Any, ...], str] = {(): base}
    for path, node in _walk_schemas(schema):
        parent = _nearest_base(bases, path)
        own = spec.id_of(node) if path else None
        bases[path] = urljoin(parent, own) if own else parent
        ref = node.get("$ref")
        if not isinstance(ref, str):
            continue
        try:
            registry.resolver(base_uri=bases[path]).lookup(ref)
        except Unresolvable:
            raise ToolDefinitionError(
                f"tool {tool_name!r}: invalid JSON Schema at {_schema_path([*path, '$ref'])}: "
                f"{ref!r} does not resolve inside the schema (nothing is fetched; put the "
                "definition under $defs)"
            ) from None


def _nearest_base(bases: dict[tuple[Any, ...], str], path: tuple[Any, ...]) -> str:
    """The base URI of the closest enclosing schema already visited."""
    for cut in range(len(path) - 1, -1, -1):
        if path[:cut] in bases:
            return bases[path[:cut]]
    return bases[()]


def source_hash(function: Callable[..., Any]) -> str:
    """A hash of the function's source and of its module's whole source (the helpers,
    constants and bounds it uses live there), or of its qualified name if no source exists.
    Partials and decorated functions hash the code they wrap; callable objects their class."""
    target = underlying(function)
    try:
        text = inspect.getsource(target)
    except (OSError, TypeError):
        text = f"{getattr(target, '__module__', '')}.{getattr(target, '__qualname__', '')}"
    module = inspect.getmodule(target)
    if module is not None:
        # No file (a notebook cell, a built-in): the function's own code only.
        with contextlib.suppress(OSError, TypeError):
            text += "\n# module\n" + inspect.getsource(module)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
