"""Small public type aliases shared across layers."""

from __future__ import annotations

from typing import Any, Literal, TypeAlias

JSONObject: TypeAlias = dict[str, Any]
"""A JSON object: what tool arguments and JSON Schemas are."""

ToolErrorPolicy: TypeAlias = Literal["raise", "observe"]
"""What an unexpected tool exception does: end the run, or become an observation."""
