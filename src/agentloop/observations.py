"""What a tool call gives back to the model: text, an error kind, and whether it was cut.

Every tool result, from every tool, passes through ``to_text`` and ``truncate`` here, so the
size cap and its marker are the same everywhere.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import enum
import json
import math
from typing import Any, Literal, TypeAlias

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


def truncate(text: str, limit: int) -> tuple[str, int | None]:
    """Cut ``text`` to ``limit`` characters with an explicit marker; return it and the original
    length (``None`` if nothing was cut)."""
    if len(text) <= limit:
        return text, None
    marker = f"\n[truncated: {{kept}} of {len(text)} chars]"
    kept = max(0, limit - len(marker.format(kept=limit)))
    return text[:kept] + marker.format(kept=kept), len(text)


def to_text(value: Any) -> str:
    """Render a tool's return value as text, deterministically, whatever its type.

    Strings pass through; pydantic models, dataclasses, mappings and sequences become JSON;
    bytes, dates, sets, enums and non-finite floats get a stable fallback instead of an error.
    """
    if isinstance(value, str):
        return value
    if value is None:
        return "null"
    if isinstance(value, BaseModel):
        return value.model_dump_json()
    return json.dumps(_jsonable(value), ensure_ascii=False, allow_nan=False, default=str)


def _jsonable(value: Any) -> Any:
    if isinstance(value, bool | int | str) or value is None:
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _jsonable(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, set | frozenset):
        return sorted((_jsonable(v) for v in value), key=repr)
    if isinstance(value, bytes | bytearray):
        return {"base64": base64.b64encode(value).decode()}
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return _jsonable(value.value)
    return repr(value)
