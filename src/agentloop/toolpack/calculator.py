"""calculator: arithmetic and common math functions, evaluated safely and within bounds.

The expression is parsed with ``ast`` and only numbers, arithmetic operators, a few named
constants and a fixed list of math functions are evaluated: no names, attributes, calls or
syntax beyond that, so nothing but arithmetic can run. Long inputs, deep nesting, huge powers,
factorials and roundings, and any integer past ``MAX_INT_BITS`` (as an operand, an argument or
a result) are refused with a message, so a call can never hang the agent.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable
from typing import Any

from agentloop import ToolRetry, tool

MAX_LENGTH = 500
"""Longest expression accepted, in characters."""
MAX_DEPTH = 200
"""Deepest nesting of operations accepted."""
MAX_INT_BITS = 4096
"""Largest integer result, in bits (about 1233 decimal digits)."""
MAX_FACTORIAL = 450
MAX_ROUND_DIGITS = 1300
"""Largest ``ndigits`` (either sign) ``round`` takes: ``round(5, -10**9)`` would build a
billion-digit power of ten."""

MAX_ARGS = 50
"""Most arguments one function call takes (``min``, ``max``, ``hypot``, ``gcd``)."""

Number = int | float

_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
}
_UNARY: dict[type[ast.unaryop], Callable[[Number], Number]] = {
    ast.UAdd: operator.pos,
    ast.USub: operator.neg,
}
_CONSTANTS: dict[str, float] = {"pi": math.pi, "e": math.e, "tau": math.tau}


def _factorial(n: Number) -> int:
    if not float(n).is_integer() or n < 0:
        raise ValueError("factorial needs a whole number >= 0")
    if n > MAX_FACTORIAL:
        raise OverflowError(f"factorial is limited to n <= {MAX_FACTORIAL}")
    return math.factorial(int(n))


def _round(x: Number, ndigits: Number | None = None) -> Number:
    if ndigits is None:
        return round(x)
    if not isinstance(ndigits, int):
        raise TypeError("round's second argument (digits) must be a whole number")
    if abs(ndigits) > MAX_ROUND_DIGITS:
        raise OverflowError(
            f"round is limited to -{MAX_ROUND_DIGITS} <= digits <= {MAX_ROUND_DIGITS}"
        )
    return round(x, ndigits)


_FUNCTIONS: dict[str, Callable[..., Number]] = {
    "abs": abs,
    "round": _round,
    "min": min,
    "max": max,
    "sqrt": math.sqrt,
    "exp": math.exp,
    "log": math.log,
    "log2": math.log2,
    "log10": math.log10,
    "sin": math.sin,
    "cos": math.cos,
    "tan": math.tan,
    "asin": math.asin,
    "acos": math.acos,
    "atan": math.atan,
    "atan2": math.atan2,
    "sinh": math.sinh,
    "cosh": math.cosh,
    "tanh": math.tanh,
    "degrees": math.degrees,
    "radians": math.radians,
    "hypot": math.hypot,
    "floor": math.floor,
    "ceil": math.ceil,
    "factorial": _factorial,
    "gcd": math.gcd,
}


class _Refused(Exception):
    """The expression uses something the calculator does not evaluate."""


def _check_size(value: Number) -> Number:
    if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        raise OverflowError(f"the result has more than {MAX_INT_BITS} bits")
    if isinstance(value, float) and not math.isfinite(value):
        raise OverflowError("the result is not a finite number")
    return value


def _power(base: Number, exponent: Number) -> Number:
    # Refuse before computing: 9**9**9 would take minutes and gigabytes.
    if (
        isinstance(base, int)
        and isinstance(exponent, int)
        and abs(base) > 1
        and (base.bit_length() - 1) * exponent > MAX_INT_BITS
    ):
        raise OverflowError(f"the result would have more than {MAX_INT_BITS} bits")
    result = base**exponent
    if isinstance(result, complex):
        raise ValueError("the result is not a real number")
    return result


def _evaluate(node: ast.AST, depth: int = 0) -> Number:
    if depth > MAX_DEPTH:
        raise _Refused(f"the expression is nested more than {MAX_DEPTH} levels deep")
    if isinstance(node, ast.Expression):
        return _evaluate(node.body, depth + 1)
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        value: Number = node.value  # type: ignore[assignment]  # narrowed by the type check
        return _check_size(value)
    if isinstance(node, ast.Name) and node.id in _CONSTANTS:
        return _CONSTANTS[node.id]
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_evaluate(node.operand, depth + 1))
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow):
        base, exponent = _evaluate(node.left, depth + 1), _evaluate(node.right, depth + 1)
        return _check_size(_power(base, exponent))
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _evaluate(node.left, depth + 1), _evaluate(node.right, depth + 1)
        return _check_size(_BINARY[type(node.op)](left, right))
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in _FUNCTIONS
        and not node.keywords
    ):
        args = [_evaluate(a, depth + 1) for a in node.args]
        if len(args) > MAX_ARGS:
            raise _Refused(f"a function takes at most {MAX_ARGS} arguments here")
        return _check_size(_FUNCTIONS[node.func.id](*args))
    if isinstance(node, ast.Name | ast.Call):
        name = node.id if isinstance(node, ast.Name) else ast.unparse(node.func)
        raise _Refused(f"unknown name {name!r}")
    raise _Refused(f"{type(node).__name__} is not supported")


def evaluate(expression: str) -> Number:
    """The value of ``expression``; raises ``ToolRetry`` with a clear message otherwise."""
    if len(expression) > MAX_LENGTH:
        raise ToolRetry(f"the expression is longer than {MAX_LENGTH} characters; split it up")
    shown = expression if len(expression) <= 60 else expression[:57] + "..."
    try:
        tree = ast.parse(expression.strip().replace("^", "**"), mode="eval")
        return _evaluate(tree)
    except (SyntaxError, RecursionError, MemoryError) as exc:
        raise ToolRetry(f"cannot parse {shown!r}: {type(exc).__name__}") from None
    except _Refused as exc:
        raise ToolRetry(f"cannot evaluate {shown!r}: {exc}. {_help()}") from None
    except ZeroDivisionError:
        raise ToolRetry(f"cannot evaluate {shown!r}: division by zero") from None
    except OverflowError as exc:
        reason = exc.args[0] if isinstance(exc.args[0], str) else "the result is too large"
        raise ToolRetry(f"cannot evaluate {shown!r}: {reason}") from None
    except (ValueError, TypeError) as exc:
        raise ToolRetry(f"cannot evaluate {shown!r}: {exc}") from None


def _help() -> str:
    return (
        "Use numbers, + - * / // % ** (or ^), parentheses, the constants "
        f"{', '.join(_CONSTANTS)} and the functions {', '.join(_FUNCTIONS)}"
    )


@tool(idempotent=True)
def calculator(expression: str) -> str:
    """Evaluate an arithmetic expression exactly, e.g. "2 * (3 + 4) ** 2" or "sqrt(2) / 3".

    Supports + - * / // % ** (or ^), parentheses, pi, e, tau, and sqrt, exp, log (natural, or
    log(x, base)), log2, log10, sin, cos, tan (radians), asin, acos, atan, atan2, sinh, cosh,
    tanh, degrees, radians, hypot, floor, ceil, round, abs, min, max, factorial, gcd.

    Args:
        expression: The expression to evaluate.
    """
    value = evaluate(expression)
    return repr(value) if isinstance(value, float) else str(value)
