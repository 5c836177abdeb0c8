"""A small, safe calculator tool for the demo and the local-model tests.

The expression is parsed with ``ast`` and only numbers and arithmetic operators are evaluated:
no names, no calls, no attributes, so nothing but arithmetic can run (``eval`` is never used).
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable
from typing import Any

from agentloop import ToolRetry, tool

_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {
    ast.UAdd: operator.pos,
    ast.USub: operator.neg,
}
MAX_EXPONENT = 100
MAX_LENGTH = 200


def evaluate(expression: str) -> float | int:
    """The value of an arithmetic expression; ``ValueError`` says what is not allowed."""
    if len(expression) > MAX_LENGTH:
        raise ValueError(f"the expression is longer than {MAX_LENGTH} characters")
    cleaned = expression.replace("×", "*").replace("÷", "/").replace("^", "**").replace(",", "")
    try:
        tree = ast.parse(cleaned.strip(), mode="eval")
    except SyntaxError:
        raise ValueError(f"not an arithmetic expression: {expression!r}") from None
    return _eval(tree.body)


def _eval(node: ast.AST) -> float | int:
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        value: float | int = node.value
        return value
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        result: float | int = _UNARY[type(node.op)](_eval(node.operand))
        return result
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _eval(node.left), _eval(node.right)
        if isinstance(node.op, ast.Pow) and abs(right) > MAX_EXPONENT:
            raise ValueError(f"exponents above {MAX_EXPONENT} are not allowed")
        try:
            result = _BINARY[type(node.op)](left, right)
        except ZeroDivisionError:
            raise ValueError("division by zero") from None
        return result
    raise ValueError("only numbers, + - * / // % ** and parentheses are allowed")


@tool
def calculator(expression: str) -> str:
    """Evaluate an arithmetic expression: numbers with + - * / ** and parentheses.

    Args:
        expression: Only numbers and operators: no words, no units.
    """
    try:
        value = evaluate(expression)
    except ValueError as exc:
        raise ToolRetry(f"Error: {exc}") from None
    if isinstance(value, float) and math.isfinite(value) and value == int(value):
        value = int(value)
    return str(round(value, 10) if isinstance(value, float) else value)
