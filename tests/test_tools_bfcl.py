"""Raw-schema tools against real tool catalogues: the BFCL v4 "simple" categories.

Every function schema in ``tests/data/bfcl`` (Berkeley Function Calling Leaderboard, Apache-2.0;
see README.md and SOURCE.md there) must register with ``Tool.from_schema(...,
python_type_names=True)``. BFCL writes Python type names (``"dict"``, ``"float"``, ``"tuple"``,
``"any"``), which plain registration rejects with a hint; and dotted names such as
``math.factorial`` are renamed with ``name=`` because OpenAI-compatible endpoints refuse dots.

Each ground-truth call is turned into an argument object (per parameter: omit it when ``""``,
BFCL's "may be left out", is allowed and the schema does not require it; else take the first
other allowed value, resolving nested dicts the same way) and must validate; dropping a
required argument or giving one a value of the wrong type must fail, naming that argument.

Three answers are rejected on purpose (``EXPECTED_REJECTIONS``): the data itself is wrong there,
and the test pins the exact set rather than skipping them.
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import Any

import pytest

from agentloop.errors import ToolDefinitionError
from agentloop.tool_schemas import InvalidArguments
from agentloop.tools import Tool

DATA = Path(__file__).parent / "data" / "bfcl"
CATEGORIES = ("simple_python", "live_simple")

EXPECTED_REJECTIONS = {
    # "metrics" is {"type": "array", "items": {"type": "string"}, "enum": [<strings>]}: the enum
    # sits on the array instead of its items, so no array can match it.
    "live_simple_71-35-0": "metrics: ['view'] is not one of [",
    # The ground truth gives no allowed value ([]) for required parameters, so no argument
    # object built from it can be complete.
    "live_simple_106-63-0": "auto_loan_payment_start: Field required",
    "live_simple_112-68-0": "acc_routing_start: Field required",
}

_OMIT: Any = object()


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def _load() -> tuple[dict[str, dict[str, Any]], dict[str, list[dict[str, Any]]]]:
    functions: dict[str, dict[str, Any]] = {}
    answers: dict[str, list[dict[str, Any]]] = {}
    for category in CATEGORIES:
        for record in _lines(DATA / f"BFCL_v4_{category}.json"):
            (function,) = record["function"]  # the "simple" categories offer one function
            functions[record["id"]] = function
        for record in _lines(DATA / f"possible_answer_BFCL_v4_{category}.json"):
            answers[record["id"]] = record["ground_truth"]
    return functions, answers


FUNCTIONS, ANSWERS = _load()
IDS = sorted(FUNCTIONS)


def _register(function: dict[str, Any], **options: Any) -> Tool:
    return Tool.from_schema(
        name=function["name"].replace(".", "_"),
        description=function["description"],
        parameters=function["parameters"],
        func=lambda **kwargs: kwargs,
        **options,
    )


@functools.cache
def registered(record_id: str) -> Tool:
    return _register(FUNCTIONS[record_id], python_type_names=True)


def _pick(allowed: list[Any], schema: Any, required: bool) -> Any:
    if "" in allowed and not required:
        return _OMIT
    for value in allowed:
        if value != "":
            return _resolve(value, schema)
    return _OMIT  # no allowed value at all


def _resolve(value: Any, schema: Any) -> Any:
    """A concrete value from a ground-truth value, whose dicts hold lists of allowed values."""
    schema = schema if isinstance(schema, dict) else {}
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        required = schema.get("required", [])
        picked = {k: _pick(v, properties.get(k), k in required) for k, v in value.items()}
        return {k: v for k, v in picked.items() if v is not _OMIT}
    if isinstance(value, list):
        return [_resolve(v, schema.get("items")) if isinstance(v, dict) else v for v in value]
    return value


def arguments_for(record_id: str) -> dict[str, Any]:
    (call,) = ANSWERS[record_id]
    ((name, parameters),) = call.items()
    assert name == FUNCTIONS[record_id]["name"]
    arguments: dict[str, Any] = _resolve(parameters, registered(record_id).parameters)
    return arguments


def _wrong_value(schema: dict[str, Any]) -> Any:
    """A value of the wrong JSON type for ``schema``: a number for strings, else a string."""
    kinds = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
    return 12345 if "string" in kinds else "not the right type"


def _invalid(tool: Tool, arguments: dict[str, Any]) -> str:
    with pytest.raises(InvalidArguments) as info:
        tool.validate(arguments)
    return str(info.value)


@pytest.mark.parametrize("record_id", IDS)
def test_every_schema_registers(record_id: str) -> None:
    function = FUNCTIONS[record_id]
    tool = registered(record_id)
    assert tool.name == function["name"].replace(".", "_")
    assert tool.description == function["description"]
    assert tool.parameters["type"] == "object"
    assert set(tool.parameters.get("properties", {})) == set(function["parameters"]["properties"])
    assert "dict" not in json.dumps(_types(tool.parameters))


def _types(schema: Any) -> list[Any]:
    """Every "type" value in the schema positions of ``properties``/``items``."""
    if not isinstance(schema, dict):
        return []
    found = [schema["type"]] if "type" in schema else []
    for sub in schema.get("properties", {}).values():
        found += _types(sub)
    return found + _types(schema.get("items"))


@pytest.mark.parametrize("record_id", IDS)
def test_ground_truth_validates_and_mutations_fail(record_id: str) -> None:
    tool = registered(record_id)
    arguments = arguments_for(record_id)
    if record_id in EXPECTED_REJECTIONS:
        assert EXPECTED_REJECTIONS[record_id] in _invalid(tool, arguments)
        return
    assert tool.validate(arguments) == arguments

    properties = tool.parameters.get("properties", {})
    required = [name for name in tool.parameters.get("required", []) if name in arguments]
    if required:
        dropped = {k: v for k, v in arguments.items() if k != required[0]}
        assert f"{required[0]}: Field required" in _invalid(tool, dropped)

    typed = [name for name in arguments if "type" in properties.get(name, {})]
    if typed:
        name = typed[0]
        wrong = {**arguments, name: _wrong_value(properties[name])}
        assert re.search(rf"(^|; ){re.escape(name)}: .* is not of type ", _invalid(tool, wrong))


def test_coverage() -> None:
    """The matrix covers every schema and answer; exactly the known-bad answers fail."""
    assert len(FUNCTIONS) == 658
    assert sorted(ANSWERS) == IDS
    dotted = [i for i in IDS if "." in FUNCTIONS[i]["name"]]
    assert len(dotted) == 244
    rejected = set()
    for record_id in IDS:
        try:
            registered(record_id).validate(arguments_for(record_id))
        except InvalidArguments:
            rejected.add(record_id)
    assert rejected == set(EXPECTED_REJECTIONS)


def test_python_type_names_are_needed() -> None:
    """Without ``python_type_names=True`` every schema using "dict" is refused, and the error
    names the tool, the location in the schema and the option that fixes it."""
    using_dict = [i for i in IDS if '"dict"' in json.dumps(FUNCTIONS[i]["parameters"])]
    assert len(using_dict) == len(IDS)  # BFCL's root type is always "dict"
    for record_id in using_dict:
        function = FUNCTIONS[record_id]
        with pytest.raises(ToolDefinitionError) as info:
            _register(function)
        message = str(info.value)
        name = function["name"].replace(".", "_")
        assert re.match(rf"tool '{re.escape(name)}': invalid JSON Schema at \S*type: ", message), (
            record_id,
            message,
        )
        assert message.endswith("(python_type_names=True translates it)"), (record_id, message)


def test_dotted_names_need_renaming() -> None:
    function = FUNCTIONS["simple_python_0"]
    dotted = {**function, "name": "math.hypot"}
    with pytest.raises(ToolDefinitionError, match=r"'math\.hypot' is not allowed.*'math_hypot'"):
        Tool.from_schema(
            name=dotted["name"],
            description="",
            parameters=dotted["parameters"],
            func=lambda **kwargs: kwargs,
            python_type_names=True,
        )
