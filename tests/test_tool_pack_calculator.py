"""The calculator tool: exact arithmetic, nothing else, and always within bounds."""

from __future__ import annotations

import math
import time
from pathlib import Path

import pytest

from agentloop import Agent, ModelResponse, ToolRetry, read_trace
from agentloop.testing import ScriptedModel
from toolpack import load

calc = load("calculator")


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("2 * (3 + 4) ** 2", "98"),
        ("7 // 2", "3"),
        ("-7 % 3", "2"),
        ("2^10", "1024"),
        ("1_000_000 * 3", "3000000"),
        ("log(8, 2)", "3.0"),
        ("sqrt(16) + abs(-2)", "6.0"),
        ("factorial(10)", "3628800"),
        ("max(1, 5, 3) - min(4, 2)", "3"),
        ("round(2.675, 2)", repr(round(2.675, 2))),
        ("sin(pi / 2)", "1.0"),
        ("2 ** -2", "0.25"),
        ("gcd(12, 18)", "6"),
    ],
)
def test_evaluates_arithmetic_and_math_functions(expression: str, expected: str) -> None:
    assert calc.calculator(expression) == expected


def test_big_but_bounded_integers_are_exact() -> None:
    assert calc.calculator("2 ** 4000") == str(2**4000)
    assert calc.calculator("0.1 + 0.2") == repr(0.1 + 0.2)


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("__import__('os').system('true')", "unknown name"),
        ("().__class__.__mro__", "not supported"),
        ("open('/etc/passwd')", "unknown name 'open'"),
        ("x + 1", "unknown name 'x'"),
        ("lambda: 1", "not supported"),
        ("[1, 2]", "not supported"),
        ("'a' * 3", "not supported"),
        ("True + 1", "not supported"),
        ("1 if 1 else 2", "not supported"),
        ("sqrt(x=4)", "unknown name"),
        ("1 / 0", "division by zero"),
        ("sqrt(-1)", "math domain error"),
        ("(-1) ** 0.5", "not a real number"),
        ("2 +", "cannot parse"),
        ("1e308 * 10", "not a finite number"),
        ("10.0 ** 400", "too large"),
    ],
)
def test_refuses_anything_but_arithmetic_with_a_clear_message(expression: str, reason: str) -> None:
    with pytest.raises(ToolRetry) as caught:
        calc.calculator(expression)
    assert reason in caught.value.message


@pytest.mark.parametrize(
    "expression",
    [
        "9 ** 9 ** 9",  # would take minutes and gigabytes
        "10 ** 100000",
        "(2 ** 4000) * (2 ** 4000) * (2 ** 4000)",
        "factorial(100000)",
        "factorial(factorial(20))",
        "-" * 400 + "1",  # deep nesting through unary minus
        "(" * 210 + "1" + ")" * 210,  # deeper than the parser allows
        "(-(" * 100 + "1" + "))" * 100,  # deep nesting through parentheses and minus
        "1+" * 240 + "1",
        "1" * 501,  # too long
        "9" * 400 + " ** 9" * 20,
    ],
)
def test_huge_or_deep_expressions_fail_fast_instead_of_hanging(expression: str) -> None:
    started = time.perf_counter()
    with pytest.raises(ToolRetry) as caught:
        calc.calculator(expression)
    assert time.perf_counter() - started < 0.5
    assert caught.value.message.startswith(("cannot", "the expression is longer"))


def test_limits_are_module_settings() -> None:
    assert calc.MAX_INT_BITS == 4096
    assert calc.evaluate("2 ** 4095") == 2**4095
    with pytest.raises(ToolRetry, match="more than 4096 bits"):
        calc.evaluate("2 ** 4096")
    assert math.isclose(calc.evaluate("tau / 2"), math.pi)


async def test_mistakes_reach_the_model_as_observations(tmp_path: Path) -> None:
    model = ScriptedModel(
        [
            ModelResponse.tool_call("calculator", {"expression": "9 ** 9 ** 9"}),
            ModelResponse.tool_call("calculator", {"expression": "9 ** 9"}),
            "387420489",
        ]
    )
    result = await Agent(model, tools=[calc.calculator], trace_dir=tmp_path).run("9^9^9?")
    assert result.output == "387420489"
    assert result.trace_path is not None
    results = read_trace(result.trace_path).tool_results()
    assert [(r.error, r.content[:15]) for r in results] == [
        ("retry", "cannot evaluate"),
        (None, "387420489"),
    ]
