"""Tools: schemas built from signatures and docstrings, argument validation and conversion,
definition errors, raw-schema tools and the toolset.

Validation policy under test (documented in ``Tool.from_function``): ``@tool`` validates in
pydantic's lax mode, so ``"3"`` is accepted for an ``int`` and converted, while ``3.5`` is
rejected; ``Tool.from_schema`` validates strictly, as JSON Schema says.
"""

from __future__ import annotations

import asyncio
import enum
import functools
from collections.abc import Callable
from typing import Annotated, Any, Literal

import pydantic
import pytest

from agentloop import Agent
from agentloop.errors import ToolDefinitionError
from agentloop.messages import ModelResponse, ToolMessage
from agentloop.testing import ScriptedModel
from agentloop.tool_schemas import MAX_PROBLEM_CHARS, MAX_PROBLEMS, InvalidArguments
from agentloop.tools import Tool, Toolset, tool
from agentloop.untrusted import delimit_untrusted


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


class Point(pydantic.BaseModel):
    x: int
    y: int = 0


class Book(pydantic.BaseModel):
    title: str
    """A field called "title" must survive the removal of pydantic's generated titles."""


class Shape(pydantic.BaseModel):
    name: str
    corners: list[Point]


def props(t: Tool) -> dict[str, Any]:
    properties: dict[str, Any] = t.parameters["properties"]
    return properties


def errors_of(t: Tool, arguments: dict[str, Any]) -> str:
    with pytest.raises(InvalidArguments) as info:
        t.validate(arguments)
    return str(info.value)


def schema_keys(node: Any) -> set[str]:
    """Every key used anywhere in a JSON document."""
    if isinstance(node, dict):
        return set(node) | {k for v in node.values() for k in schema_keys(v)}
    if isinstance(node, list):
        return {k for v in node for k in schema_keys(v)}
    return set()


# --- schema generation --------------------------------------------------------------------


def test_scalar_types_and_required_list() -> None:
    @tool
    def f(s: str, i: int, x: float, b: bool) -> None:
        """Scalars."""

    assert f.parameters == {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "s": {"type": "string"},
            "i": {"type": "integer"},
            "x": {"type": "number"},
            "b": {"type": "boolean"},
        },
        "required": ["s", "i", "x", "b"],
    }


def test_literal_enum_and_defaults() -> None:
    @tool
    def f(mode: Literal["fast", "slow"], color: Color = Color.GREEN, n: int = 5) -> None:
        """Options."""

    assert props(f)["mode"] == {"type": "string", "enum": ["fast", "slow"]}
    assert props(f)["color"] == {"$ref": "#/$defs/Color", "default": "green"}
    assert f.parameters["$defs"]["Color"] == {"type": "string", "enum": ["red", "green"]}
    assert props(f)["n"] == {"type": "integer", "default": 5}
    assert f.parameters["required"] == ["mode"]


def test_optional_is_any_of_null() -> None:
    @tool
    def f(limit: int | None = None, name: str | None = "x", must: float | None = None) -> None:
        """Optionals."""

    assert props(f)["limit"] == {"anyOf": [{"type": "integer"}, {"type": "null"}], "default": None}
    assert props(f)["name"] == {"anyOf": [{"type": "string"}, {"type": "null"}], "default": "x"}
    assert "required" not in f.parameters


def test_optional_without_default_is_required() -> None:
    @tool
    def f(when: str | None) -> None:
        """Required but nullable."""

    assert f.parameters["required"] == ["when"]
    assert f.validate({"when": None}) == {"when": None}


def test_lists_and_dicts() -> None:
    @tool
    def f(ids: list[int], weights: dict[str, float], tags: list[str] | None = None) -> None:
        """Containers."""

    assert props(f)["ids"] == {"type": "array", "items": {"type": "integer"}}
    assert props(f)["weights"] == {"type": "object", "additionalProperties": {"type": "number"}}
    assert props(f)["tags"] == {
        "anyOf": [{"type": "array", "items": {"type": "string"}}, {"type": "null"}],
        "default": None,
    }


def test_nested_models_use_defs_and_refs_without_titles() -> None:
    @tool
    def f(shape: Shape, book: Book, where: Point | None = None) -> None:
        """Nested."""

    assert props(f)["shape"] == {"$ref": "#/$defs/Shape"}
    assert props(f)["where"] == {
        "anyOf": [{"$ref": "#/$defs/Point"}, {"type": "null"}],
        "default": None,
    }
    assert f.parameters["$defs"]["Point"] == {
        "type": "object",
        "properties": {"x": {"type": "integer"}, "y": {"type": "integer", "default": 0}},
        "required": ["x"],
    }
    assert f.parameters["$defs"]["Shape"]["properties"]["corners"] == {
        "type": "array",
        "items": {"$ref": "#/$defs/Point"},
    }
    # pydantic's generated titles are gone, but a property named "title" stays.
    assert f.parameters["$defs"]["Book"]["properties"] == {"title": {"type": "string"}}
    assert f.parameters["$defs"]["Book"]["required"] == ["title"]
    without_book = {k: v for k, v in f.parameters["$defs"].items() if k != "Book"}
    assert "title" not in schema_keys(without_book) | schema_keys(props(f))


def test_title_inside_a_default_value_is_kept() -> None:
    @tool
    def f(book: dict[str, str] | None = None, first: dict[str, str] = {"title": "Dune"}) -> None:  # noqa: B006
        """Defaults are values, not schemas."""

    assert props(f)["first"]["default"] == {"title": "Dune"}


def test_annotated_field_constraints() -> None:
    @tool
    def f(
        page: Annotated[int, pydantic.Field(ge=1, le=50, description="Page number.")] = 1,
    ) -> None:
        """Constrained."""

    assert props(f)["page"] == {
        "type": "integer",
        "minimum": 1,
        "maximum": 50,
        "default": 1,
        "description": "Page number.",
    }
    assert "page: Input should be greater than or equal to 1" in errors_of(f, {"page": 0})


def test_no_parameters() -> None:
    @tool
    def now() -> str:
        """The time."""
        return "noon"

    assert now.parameters == {"type": "object", "additionalProperties": False, "properties": {}}
    assert now.validate({}) == {}


# --- descriptions from docstrings ----------------------------------------------------------


def test_google_docstring() -> None:
    @tool
    def search(query: str, limit: int = 10) -> list[str]:
        """Search the web.

        Returns the top results, best first.

        Args:
            query: What to look for.
            limit: How many results,
                at most.

        Returns:
            The result URLs.
        """
        return []

    assert search.description == "Search the web.\n\nReturns the top results, best first."
    assert props(search)["query"] == {"type": "string", "description": "What to look for."}
    assert props(search)["limit"] == {
        "type": "integer",
        "default": 10,
        "description": "How many results,\nat most.",
    }


def test_rest_docstring() -> None:
    @tool
    def fetch(url: str, timeout: float = 5.0) -> str:
        """Fetch a page.

        :param url: The address to fetch.
        :param timeout: Seconds to wait.
        :returns: The page text.
        """
        return ""

    assert fetch.description == "Fetch a page."
    assert props(fetch)["url"]["description"] == "The address to fetch."
    assert props(fetch)["timeout"]["description"] == "Seconds to wait."


def test_numpydoc_docstring() -> None:
    @tool
    def area(width: float, height: float) -> float:
        """Area of a rectangle.

        Parameters
        ----------
        width : float
            Width in metres.
        height : float
            Height in metres.
        """
        return width * height

    assert area.description == "Area of a rectangle."
    assert props(area)["width"]["description"] == "Width in metres."
    assert props(area)["height"]["description"] == "Height in metres."


def test_annotated_description_wins_over_the_docstring() -> None:
    @tool
    def f(
        page: Annotated[int, pydantic.Field(description="From Field.")],
        size: Annotated[int, pydantic.Field(ge=1)],
    ) -> None:
        """Both.

        Args:
            page: From the docstring.
            size: Size from the docstring.
        """

    assert props(f)["page"] == {"type": "integer", "description": "From Field."}
    assert props(f)["size"] == {
        "type": "integer",
        "minimum": 1,
        "description": "Size from the docstring.",
    }


def test_no_docstring_and_description_override() -> None:
    def bare(x: int) -> int:
        return x

    assert Tool.from_function(bare).description == ""
    assert props(Tool.from_function(bare))["x"] == {"type": "integer"}
    assert tool(description="Echo x.")(bare).description == "Echo x."


# --- validation and conversion -------------------------------------------------------------


@tool
def plot(point: Point, color: Color, label: str = "p", size: int = 1) -> str:
    """Plot a point."""
    return f"{point.x},{point.y} {color.value} {label} {size}"


def test_valid_arguments_are_converted() -> None:
    kwargs = plot.validate({"point": {"x": 1}, "color": "red"})
    assert kwargs == {"point": Point(x=1, y=0), "color": Color.RED, "label": "p", "size": 1}
    assert type(kwargs["point"]) is Point
    assert kwargs["color"] is Color.RED
    assert plot.function(**kwargs) == "1,0 red p 1"


def test_lax_mode_accepts_numeric_strings_but_not_fractions() -> None:
    assert plot.validate({"point": {"x": "3"}, "color": "green", "size": "7"})["size"] == 7
    assert "size: Input should be a valid integer, got a number with a fractional part" in (
        errors_of(plot, {"point": {"x": 1}, "color": "red", "size": 3.5})
    )


def test_error_paths_name_nested_fields() -> None:
    message = errors_of(plot, {"point": {"x": "abc"}, "color": "blue"})
    assert message == (
        "point.x: Input should be a valid integer, unable to parse string as an integer; "
        "color: Input should be 'red' or 'green'"
    )


def test_error_paths_index_into_lists() -> None:
    @tool
    def draw(shape: Shape) -> None:
        """Draw."""

    message = errors_of(draw, {"shape": {"name": "tri", "corners": [{"x": 1}, {"y": 2}]}})
    assert message == "shape.corners.1.x: Field required"


def test_missing_and_extra_arguments() -> None:
    assert errors_of(plot, {"color": "red", "colour": "red"}) == (
        "point: Field required; colour: Extra inputs are not permitted"
    )


def test_internal_field_names_are_not_accepted() -> None:
    # Fields are stored as p_<name>; only the parameter name itself may be used.
    assert "p_label: Extra inputs are not permitted" in errors_of(
        plot, {"point": {"x": 1}, "color": "red", "p_label": "x"}
    )


def test_not_an_object() -> None:
    with pytest.raises(InvalidArguments, match=r"^\(arguments\): Input should be"):
        plot.validate([1, 2])  # type: ignore[arg-type]


def test_many_problems_are_capped() -> None:
    @tool
    def total(numbers: list[int]) -> int:
        """Sum."""
        return sum(numbers)

    message = errors_of(total, {"numbers": ["x"] * 25})
    assert message.count("Input should be a valid integer") == MAX_PROBLEMS
    assert message.startswith("numbers.0: ")
    assert message.endswith(f"; and {25 - MAX_PROBLEMS} more")


def test_parameter_names_that_collide_with_basemodel_attributes() -> None:
    @tool
    def odd(json: str, schema: int, copy: bool = False, model_config: str = "c") -> str:
        """Parameters named like BaseModel attributes."""
        return f"{json}/{schema}/{copy}/{model_config}"

    assert set(props(odd)) == {"json", "schema", "copy", "model_config"}
    kwargs = odd.validate({"json": "j", "schema": 2, "copy": True})
    assert kwargs == {"json": "j", "schema": 2, "copy": True, "model_config": "c"}
    assert odd.function(**kwargs) == "j/2/True/c"
    assert errors_of(odd, {"json": "j"}) == "schema: Field required"


# --- definition errors ------------------------------------------------------------------------


def test_var_positional_is_rejected() -> None:
    def spread(*items: str) -> None: ...

    with pytest.raises(ToolDefinitionError, match=r"tool 'spread': parameter \*items cannot"):
        tool(spread)


def test_var_keyword_is_rejected() -> None:
    def options(name: str, **extra: str) -> None: ...

    with pytest.raises(ToolDefinitionError, match=r"tool 'options': parameter \*\*extra cannot"):
        tool(options)


def test_positional_only_is_rejected() -> None:
    def pos(a: int, /, b: int) -> None: ...

    with pytest.raises(ToolDefinitionError, match=r"tool 'pos': parameter 'a' is positional-only"):
        tool(pos)


def test_missing_hint_is_rejected() -> None:
    def loose(a: int, b) -> None:  # type: ignore[no-untyped-def]
        ...

    with pytest.raises(ToolDefinitionError, match=r"tool 'loose': parameter 'b' needs a type hint"):
        tool(loose)


def test_unresolvable_hint_is_rejected() -> None:
    def ghost(a: NoSuchType) -> None:  # type: ignore[name-defined]  # noqa: F821
        ...

    with pytest.raises(ToolDefinitionError, match=r"tool 'ghost': cannot read .*NoSuchType"):
        tool(ghost)


class Opaque:
    pass


def test_unsupported_type_names_the_parameter() -> None:
    def takes(a: int, thing: Opaque) -> None: ...

    with pytest.raises(ToolDefinitionError, match=r"tool 'takes': parameter 'thing' has an unsupp"):
        tool(takes)


def test_type_without_json_schema_names_the_parameter() -> None:
    def hook(name: str, callback: Callable[[], int]) -> None: ...

    with pytest.raises(
        ToolDefinitionError, match=r"tool 'hook': parameter 'callback' .* cannot be described"
    ):
        tool(hook)


def test_default_that_is_not_json_is_left_out_of_the_schema() -> None:
    sentinel = Opaque()

    def maybe(value: Any = sentinel) -> Any:
        return value

    t = tool(maybe)  # no PydanticJsonSchemaWarning (pytest runs with -W error)
    assert props(t)["value"] == {}
    assert t.validate({}) == {"value": sentinel}


@pytest.mark.parametrize(
    ("bad_name", "suggestion"),
    [
        ("math.factorial", "math_factorial"),
        ("web search", "web_search"),
        ("x" * 65, "x" * 64),
        ("", "my_tool"),
        ("search\n", "search_"),  # a trailing newline, which a $ anchor lets through
    ],
)
def test_invalid_names_suggest_a_fix(bad_name: str, suggestion: str) -> None:
    def f(a: int) -> int:
        return a

    with pytest.raises(ToolDefinitionError) as info:
        tool(name=bad_name)(f)
    assert f"tool name {bad_name!r} is not allowed" in str(info.value)
    assert f"pass name=... to rename it, e.g. name={suggestion!r}" in str(info.value)


def test_lambda_needs_a_name() -> None:
    with pytest.raises(ToolDefinitionError, match=r"'<lambda>' is not allowed.*name="):
        tool(lambda x: x)


def test_64_character_name_is_fine() -> None:
    def f(a: int) -> int:
        return a

    assert tool(name="a" * 64)(f).name == "a" * 64


def test_not_callable() -> None:
    with pytest.raises(ToolDefinitionError, match="not callable"):
        Tool.from_function(42)  # type: ignore[arg-type]


# --- partials, callable objects, async ----------------------------------------------------


def scale(value: float, factor: float) -> float:
    """Scale a value.

    Args:
        value: The value.
        factor: The factor.
    """
    return value * factor


def test_partial_needs_a_name_and_keeps_hints() -> None:
    double = functools.partial(scale, factor=2.0)
    with pytest.raises(ToolDefinitionError, match=r"has no __name__; pass name=\.\.\."):
        tool(double)
    t = tool(name="double")(double)
    assert t.description == "Scale a value."
    assert props(t)["value"] == {"type": "number", "description": "The value."}
    assert props(t)["factor"]["default"] == 2.0
    assert t.function(**t.validate({"value": 3})) == 6.0
    assert t.source_hash == tool(scale).source_hash  # the code behind the partial


class Counter:
    """Count up.

    Args:
        step: How much to add.
    """

    def __call__(self, step: int = 1) -> int:
        return step


class AsyncCounter:
    async def __call__(self, step: int = 1) -> int:
        """Count up, asynchronously."""
        return step


def test_callable_objects() -> None:
    sync_tool = tool(name="count")(Counter())
    async_tool = tool(name="acount")(AsyncCounter())
    assert sync_tool.description == "Count up."
    assert props(sync_tool)["step"] == {
        "type": "integer",
        "default": 1,
        "description": "How much to add.",
    }
    assert async_tool.description == "Count up, asynchronously."
    assert not sync_tool.is_async
    assert async_tool.is_async
    assert asyncio.run(async_tool(step=3)) == 3


def test_async_detection_and_call_forwarding() -> None:
    @tool
    async def fetch(url: str) -> str:
        """Fetch."""
        return f"got {url}"

    @tool
    def echo(text: str) -> str:
        """Echo."""
        return text

    assert fetch.is_async
    assert not echo.is_async
    assert tool(name="afetch")(functools.partial(fetch.function)).is_async
    assert asyncio.run(fetch("a")) == "got a"
    assert echo("hi") == "hi"
    assert echo(text="kw") == "kw"


def test_configurable_form() -> None:
    @tool(name="rm", timeout=2.5, requires_approval=True, idempotent=True)
    def remove(path: str) -> None:
        """Remove a file."""

    assert (remove.name, remove.timeout, remove.requires_approval, remove.idempotent) == (
        "rm",
        2.5,
        True,
        True,
    )
    assert remove.spec() == {
        "name": "rm",
        "description": "Remove a file.",
        "parameters": remove.parameters,
    }

    @tool
    def plain(path: str) -> None:
        """Plain."""

    assert (plain.timeout, plain.requires_approval, plain.idempotent) == (None, False, False)


# --- source hash -----------------------------------------------------------------------------


def test_source_hash_follows_the_source() -> None:
    def version_one(x: int) -> int:
        return x + 1

    def version_two(x: int) -> int:
        return x + 2

    one = tool(name="f")(version_one)
    two = tool(name="f")(version_two)
    assert len(one.source_hash) == 16
    assert one.source_hash != two.source_hash
    assert tool(name="f")(version_one).source_hash == one.source_hash
    assert tool(name="g", timeout=1)(version_one).source_hash == one.source_hash


def test_source_hash_without_source_uses_the_qualified_name() -> None:
    namespace: dict[str, Any] = {}
    exec("def made(x: int) -> int:\n    return x", namespace)  # no source file to read
    made = tool(namespace["made"])
    assert len(made.source_hash) == 16
    assert made.source_hash == tool(namespace["made"]).source_hash


# --- toolset ---------------------------------------------------------------------------------


def test_toolset_rejects_duplicate_names_naming_both() -> None:
    def lookup(q: str) -> str:
        return q

    @tool(name="lookup")
    def other_lookup(q: str) -> str:
        return q

    with pytest.raises(ToolDefinitionError) as info:
        Toolset([lookup, other_lookup])
    message = str(info.value)
    assert "two tools are named 'lookup'" in message
    assert "test_toolset_rejects_duplicate_names_naming_both.<locals>.lookup" in message
    assert "test_toolset_rejects_duplicate_names_naming_both.<locals>.other_lookup" in message
    assert "@tool(name=...)" in message


def test_agent_rejects_duplicate_names() -> None:
    with pytest.raises(ToolDefinitionError, match="two tools are named 'plot'"):
        Agent(ScriptedModel([]), tools=[plot, plot.function])


def test_toolset_mapping() -> None:
    def echo(text: str) -> str:
        return text

    tools = Toolset([plot, echo])
    assert list(tools) == ["plot", "echo"]
    assert len(tools) == 2
    assert tools["echo"].validate({"text": "x"}) == {"text": "x"}
    assert [s["name"] for s in tools.specs()] == ["plot", "echo"]
    assert "missing" not in tools


# --- raw JSON Schema tools -------------------------------------------------------------------

ADDRESS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "description": "Who."},
        "age": {"type": "integer", "minimum": 0},
        "address": {
            "type": "object",
            "properties": {"zip": {"type": "string", "pattern": "^[0-9]{5}$"}},
            "required": ["zip"],
        },
        "tags": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["name"],
    "additionalProperties": False,
}


def register(**kwargs: Any) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(kwargs.items()))


def address_tool() -> Tool:
    return Tool.from_schema(
        name="register", description="Register.", parameters=ADDRESS_SCHEMA, func=register
    )


def test_from_schema_valid_arguments_pass_as_sent() -> None:
    t = address_tool()
    raw = {"name": "Ada", "age": 36, "address": {"zip": "12345"}}
    kwargs = t.validate(raw)
    assert kwargs == raw
    assert kwargs is not raw
    assert t.function(**kwargs) == "address={'zip': '12345'},age=36,name=Ada"
    assert t.parameters == ADDRESS_SCHEMA
    assert t.spec()["description"] == "Register."


def test_from_schema_errors_list_paths() -> None:
    t = address_tool()
    message = errors_of(
        t, {"age": "36", "address": {"zip": "1"}, "tags": ["a", 2], "nick": "x", "alias": "y"}
    )
    assert message.split("; ") == [
        "name: Field required",
        "nick: Extra inputs are not permitted",
        "alias: Extra inputs are not permitted",
        "address.zip: '1' does not match '^[0-9]{5}$'",
        "age: '36' is not of type 'integer'",
        "tags.1: 2 is not of type 'string'",
    ]


def test_from_schema_nested_required_and_extra() -> None:
    schema = {
        "type": "object",
        "properties": {
            "point": {
                "type": "object",
                "properties": {"x": {"type": "number"}, "y": {"type": "number"}},
                "required": ["x", "y"],
                "additionalProperties": False,
                "patternProperties": {"^meta_": {}},
            }
        },
    }
    t = Tool.from_schema(name="p", description="", parameters=schema, func=register)
    assert errors_of(t, {"point": {"z": 1, "meta_ok": 1}}) == (
        "point.x: Field required; point.y: Field required; point.z: Extra inputs are not permitted"
    )


def test_from_schema_long_values_are_cut_in_messages() -> None:
    message = errors_of(address_tool(), {"name": "Ada", "age": "9" * 10_000})
    assert message.startswith("age: '999")
    assert len(message) == MAX_PROBLEM_CHARS
    assert message.endswith("…")


def test_from_schema_rejects_non_object_schemas() -> None:
    with pytest.raises(ToolDefinitionError, match=r"tool 'arr': parameters must describe an obj"):
        Tool.from_schema(name="arr", description="", parameters={"type": "array"}, func=register)
    with pytest.raises(ToolDefinitionError, match=r"tool 'lst': parameters must be a JSON Schema"):
        Tool.from_schema(name="lst", description="", parameters=[], func=register)  # type: ignore[arg-type]


def test_from_schema_accepts_nullable_object_and_untyped_schemas() -> None:
    for parameters in ({"type": ["object", "null"]}, {}, {"properties": {"a": {}}}):
        t = Tool.from_schema(name="ok", description="", parameters=parameters, func=register)
        assert t.validate({"a": 1}) == {"a": 1}


def test_from_schema_invalid_schema_names_the_location() -> None:
    bad = {"type": "object", "properties": {"n": {"type": "integer", "minimum": "zero"}}}
    with pytest.raises(ToolDefinitionError) as info:
        Tool.from_schema(name="bad", description="", parameters=bad, func=register)
    assert str(info.value) == (
        "tool 'bad': invalid JSON Schema at properties/n/minimum: 'zero' is not of type 'number'"
    )


def test_from_schema_python_type_names_are_rejected_with_a_hint() -> None:
    bfcl_like = {"type": "dict", "properties": {"x": {"type": "float"}}, "required": ["x"]}
    with pytest.raises(ToolDefinitionError) as info:
        Tool.from_schema(name="calc", description="", parameters=bfcl_like, func=register)
    message = str(info.value)
    assert message.startswith("tool 'calc': invalid JSON Schema at ")
    assert "'dict' is not valid" in message or "'float' is not valid" in message
    assert message.endswith("(python_type_names=True translates it)")


def test_python_type_names_translation() -> None:
    schema = {
        "type": "dict",
        "properties": {
            "type": {"type": "string", "enum": ["dict", "float"], "default": "dict"},
            "coords": {"type": "tuple", "items": {"type": "float"}},
            "anything": {"type": "any", "description": "Any value."},
            "opts": {"type": "dict", "default": {"type": "dict"}},
            "maybe": {"type": ["int", "null"]},
            "flag": {"type": "bool"},
            "names": {"type": "list", "items": {"type": "str"}},
        },
        "required": ["coords"],
    }
    t = Tool.from_schema(
        name="t", description="", parameters=schema, func=register, python_type_names=True
    )
    assert t.parameters == {
        "type": "object",
        "properties": {
            "type": {"type": "string", "enum": ["dict", "float"], "default": "dict"},
            "coords": {"type": "array", "items": {"type": "number"}},
            "anything": {"description": "Any value."},
            "opts": {"type": "object", "default": {"type": "dict"}},
            "maybe": {"type": ["integer", "null"]},
            "flag": {"type": "boolean"},
            "names": {"type": "array", "items": {"type": "string"}},
        },
        "required": ["coords"],
    }
    assert schema["type"] == "dict"  # the caller's schema is not modified
    assert t.validate({"coords": [1, 2.5], "anything": [None], "maybe": None}) == {
        "coords": [1, 2.5],
        "anything": [None],
        "maybe": None,
    }
    assert errors_of(t, {"coords": ["a"]}) == "coords.0: 'a' is not of type 'number'"


def test_from_schema_refs_resolve() -> None:
    schema = {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "object",
        "definitions": {"unit": {"type": "string", "enum": ["c", "f"]}},
        "properties": {"unit": {"$ref": "#/definitions/unit"}},
    }
    t = Tool.from_schema(name="temp", description="", parameters=schema, func=register)
    assert t.validate({"unit": "c"}) == {"unit": "c"}
    assert errors_of(t, {"unit": "k"}) == "unit: 'k' is not one of ['c', 'f']"


def test_from_schema_dialects() -> None:
    draft4 = {
        "$schema": "http://json-schema.org/draft-04/schema#",
        "type": "object",
        "properties": {"n": {"type": "number", "minimum": 0, "exclusiveMinimum": True}},
    }
    t = Tool.from_schema(name="d4", description="", parameters=draft4, func=register)
    assert errors_of(t, {"n": 0}) == "n: 0 is less than or equal to the minimum of 0"
    # An unknown dialect is validated as the latest draft, without a warning (-W error).
    custom = {"$schema": "https://example.com/my-dialect", "type": "object", "required": ["a"]}
    t = Tool.from_schema(name="custom", description="", parameters=custom, func=register)
    assert errors_of(t, {}) == "a: Field required"
    with pytest.raises(ToolDefinitionError, match=r"tool 'bad': invalid JSON Schema at \$schema"):
        Tool.from_schema(name="bad", description="", parameters={"$schema": [1]}, func=register)


def test_from_schema_dangling_ref_is_rejected_at_registration() -> None:
    schema = {"type": "object", "properties": {"unit": {"$ref": "#/$defs/unit"}}}
    with pytest.raises(ToolDefinitionError) as info:
        Tool.from_schema(name="temp", description="", parameters=schema, func=register)
    assert str(info.value).startswith(
        "tool 'temp': invalid JSON Schema at properties/unit/$ref: '#/$defs/unit' does not "
        "resolve inside the schema"
    )


def test_from_schema_remote_ref_is_rejected() -> None:
    schema = {"type": "object", "properties": {"a": {"$ref": "https://example.com/a.json"}}}
    with pytest.raises(ToolDefinitionError, match=r"properties/a/\$ref: .*\(nothing is fetched"):
        Tool.from_schema(name="remote", description="", parameters=schema, func=register)


def test_from_schema_ref_relative_to_nested_id() -> None:
    schema = {
        "$id": "https://example.com/root.json",
        "type": "object",
        "properties": {
            "item": {
                "$id": "https://example.com/item.json",
                "$defs": {"name": {"type": "string"}},
                "type": "object",
                "properties": {"name": {"$ref": "#/$defs/name"}},
            }
        },
    }
    t = Tool.from_schema(name="nested", description="", parameters=schema, func=register)
    assert errors_of(t, {"item": {"name": 1}}) == "item.name: 1 is not of type 'string'"


def test_from_schema_name_is_checked() -> None:
    with pytest.raises(ToolDefinitionError, match=r"e\.g\. name='math_factorial'"):
        Tool.from_schema(name="math.factorial", description="", parameters={}, func=register)


async def test_from_schema_async_func() -> None:
    async def lookup(**kwargs: Any) -> str:
        return str(kwargs)

    t = Tool.from_schema(name="lookup", description="", parameters={}, func=lookup)
    assert t.is_async
    assert await t(q=1) == "{'q': 1}"


async def test_from_schema_tool_in_a_run() -> None:
    """The model's bad arguments come back as an observation; the good ones reach ``func``."""
    calls: list[dict[str, Any]] = []

    def record(**kwargs: Any) -> str:
        calls.append(kwargs)
        return "registered"

    t = Tool.from_schema(name="register", description="", parameters=ADDRESS_SCHEMA, func=record)
    model = ScriptedModel(
        [
            ModelResponse.tool_call("register", {"age": -1}),
            ModelResponse.tool_call("register", {"name": "Ada", "age": 36}),
            "done",
        ]
    )
    result = await Agent(model, tools=[t], trace_dir=None).run("register Ada")
    assert result.output == "done"
    assert calls == [{"name": "Ada", "age": 36}]
    observations = [m.content for m in result.messages if isinstance(m, ToolMessage)]
    assert observations[0] == (
        "Error: invalid arguments for 'register': name: Field required; "
        "age: -1 is less than the minimum of 0. Fix them and call again."
    )
    assert observations[1] == delimit_untrusted("register", "registered")
