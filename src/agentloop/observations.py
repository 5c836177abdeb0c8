"""What a tool call gives back to the model: text, an error kind, and whether it was cut.

Every tool result, from every tool, passes through ``to_text`` and ``truncate`` here, so the
size cap and its marker are the same everywhere.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import decimal
import enum
import json
import math
import uuid
from collections.abc import Mapping
from pathlib import PurePath
from typing import Any, Literal, TypeAlias, get_args

from pydantic import BaseModel, ConfigDict

ErrorKind: TypeAlias = Literal[
    "invalid_json",
    "invalid_arguments",
    "unknown_tool",
    "retry",
    "timeout",
    "truncated_call",
    "tool_error",
    "interrupted",
    "not_run",
    "denied",
]
"""Why a tool call produced an error observation instead of a result."""

_NOT_MISTAKES: frozenset[ErrorKind] = frozenset({"interrupted", "not_run", "denied"})
MISTAKES: frozenset[ErrorKind] = frozenset(get_args(ErrorKind)) - _NOT_MISTAKES
"""The error kinds that are the model's mistakes and count against a run's retry budget: every
kind but a call cut off by cancellation, skipped, or denied approval."""


class Observation(BaseModel):
    """The result of one tool call as the model will see it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    content: str
    error: ErrorKind | None = None
    truncated_from: int | None = None
    """The original length in characters, when the content was cut."""

    @property
    def is_error(self) -> bool:
        return self.error is not None


MAX_DEPTH = 100
"""Containers nested deeper than this render as ``"<too deep>"``: the output must not depend
on how much stack is left when ``to_text`` is called."""


def truncate(text: str, limit: int) -> tuple[str, int | None]:
    """Cut ``text`` to at most ``limit`` characters with an explicit marker; return it and the
    original length (``None`` if nothing was cut).

    The marker, ``\n[truncated: N of M chars]``, says how many characters were kept (N) out of
    how many (M), and counts towards the limit. A limit too small for the marker keeps no text
    and cuts the marker itself, so the result never exceeds ``limit``.
    """
    if limit < 0:
        raise ValueError(f"limit must be >= 0, not {limit}")
    if len(text) <= limit:
        return text, None
    marker = f"\n[truncated: {{kept}} of {len(text)} chars]"
    kept = max(0, limit - len(marker.format(kept=limit)))
    while kept < limit and kept + 1 + len(marker.format(kept=kept + 1)) <= limit:
        kept += 1  # the marker got shorter with fewer digits: use the room
    return (text[:kept] + marker.format(kept=kept))[:limit], len(text)


def to_text(value: Any) -> str:
    """Render a tool's return value as text, deterministically, whatever its type; never raises.

    Strings pass through. ``None`` is ``null``. Pydantic models, dataclasses, mappings, lists
    and tuples become JSON, recursively. Inside them: sets are sorted (numbers by value, the
    rest by their JSON text), bytes become ``{"base64": ...}``, dates and times ISO 8601, enums
    their value, NaN and infinities the strings ``"nan"``/``"inf"``/``"-inf"`` (``null`` inside
    a pydantic model, as pydantic writes them), paths, UUIDs and decimals their ``str``, and
    anything else its ``repr``. A cycle becomes ``"<cycle>"`` and what is nested deeper than
    ``MAX_DEPTH`` ``"<too deep>"``; a value that cannot be rendered at all (its ``repr`` raises)
    becomes ``<unrenderable TypeName>``.
    """
    if isinstance(value, enum.Enum):
        return to_text(value.value)
    if isinstance(value, str):
        return str.__str__(value)  # the characters, even for a subclass with its own __str__
    if value is None:
        return "null"
    try:
        if isinstance(value, BaseModel):
            try:
                return value.model_dump_json()
            except Exception:  # a field pydantic cannot serialize: fall back below
                pass
        return json.dumps(_jsonable(value, set()), ensure_ascii=False, allow_nan=False)
    except Exception:  # RecursionError on absurd nesting, a raising __iter__ ...
        return _safe_repr(value)


def _jsonable(value: Any, active: set[int]) -> Any:
    """``value`` as plain JSON data. ``active`` holds the ids of the containers being rendered,
    to turn a cycle into a marker instead of endless recursion."""
    if isinstance(value, enum.Enum):  # before int and str: IntEnum, (str, Enum) mixins
        return _jsonable(value.value, active)
    if isinstance(value, bool | int | str) or value is None:
        return value
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return {"base64": base64.b64encode(bytes(value)).decode()}
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, PurePath | uuid.UUID | decimal.Decimal):
        return str(value)
    if id(value) in active:
        return "<cycle>"
    if len(active) >= MAX_DEPTH:
        return "<too deep>"
    active.add(id(value))
    try:
        return _container(value, active)
    finally:
        active.discard(id(value))


def _container(value: Any, active: set[int]) -> Any:
    if isinstance(value, BaseModel):
        try:  # as at the top level (NaN becomes null), so nesting does not change the output
            return json.loads(value.model_dump_json())
        except Exception:  # a field pydantic cannot serialize
            return _jsonable(dict(value), active)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        # Not dataclasses.asdict: it deep-copies every field, which fails for locks, files...
        return {
            f.name: _jsonable(getattr(value, f.name), active) for f in dataclasses.fields(value)
        }
    if isinstance(value, Mapping):
        return {_key(k): _jsonable(v, active) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v, active) for v in value]
    if isinstance(value, set | frozenset):
        return sorted((_jsonable(v, active) for v in value), key=_order)
    return _safe_repr(value)


def _order(item: Any) -> tuple[int, float, str]:
    """Sort key for set members: numbers by value first, then the rest by their JSON text."""
    if isinstance(item, int | float) and not isinstance(item, bool):
        return (0, item, "")
    return (1, 0, json.dumps(item, sort_keys=True, ensure_ascii=False))


def _key(key: Any) -> str:
    if isinstance(key, str):
        return str(key)
    rendered = _jsonable(key, set())
    return rendered if isinstance(rendered, str) else json.dumps(rendered, ensure_ascii=False)


def _safe_repr(value: Any) -> str:
    try:
        return repr(value)
    except Exception:
        return f"<unrenderable {type(value).__name__}>"
